//! Lambda Node.js handler strings, resolved to a module file the way the Lambda Node.js
//! runtime loads them (aws-lambda-nodejs-runtime-interface-client, `src/UserFunction.js`).
//!
//! A handler such as `src/api/index.routes.get` names a module path (`src/api/index`) and a
//! function path inside the module's exports (`routes.get`). The runtime loads the first of
//! `src/api/index`, `.js`, `.mjs` and `.cjs` that exists below `/var/task`.
//!
//! NOTE: three runtime fallbacks are not modelled. An extensionless path that is a directory
//! is loaded as a folder module, but [`TaskFiles`] cannot show directories. When no file is
//! found, the runtime also tries `require.resolve`, which searches `node_modules`. Node.js 24
//! and later also load `.ts`, `.mts` and `.cts` files.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// Modules that [`detect`] tries at the task root, in order, before package.json's `main`.
const DETECTED_MODULES: [&str; 4] = ["lambda", "index", "handler", "app"];

/// Function that [`detect`] looks for.
const DETECTED_FUNCTION: &str = "handler";

/// Read access to the files that end up under `/var/task`, by path relative to it.
pub trait TaskFiles {
    /// Returns the contents of the regular file at `path` (`/`-separated, relative to
    /// `/var/task`), or `None` when there is no regular file there.
    fn read_file(&self, path: &str) -> Option<Vec<u8>>;
}

impl TaskFiles for BTreeMap<String, Vec<u8>> {
    fn read_file(&self, path: &str) -> Option<Vec<u8>> {
        self.get(path).cloned()
    }
}

/// A parsed handler string such as `lambda.handler` or `src/api/index.routes.get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    /// The module's path relative to `/var/task`, without extension, such as `src/api/index`.
    pub module_path: String,
    /// The property path of the function in the module's exports, such as `routes.get`.
    pub function: String,
}

/// Module system that the runtime loads a module file with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleFormat {
    /// Loaded with `require()`.
    CommonJs,
    /// Loaded with `import()`.
    EsModule,
}

/// A handler whose module file was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedHandler {
    pub handler: Handler,
    /// The module file relative to `/var/task`, such as `src/api/index.mjs`.
    pub module_file: String,
    pub module_format: ModuleFormat,
}

/// A handler string that is invalid or does not resolve to an exported function.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    #[error(
        "invalid handler `{handler}`: {reason}; pass --handler MODULE.FUNCTION, for example \
         `index.handler` or `src/app.handler`"
    )]
    Invalid { handler: String, reason: String },

    #[error(
        "handler `{handler}`: module `{module_path}` not found, tried {}; add one of these \
         files or pass --handler MODULE.FUNCTION with the module's path in the app directory",
        tried.join(", ")
    )]
    ModuleNotFound {
        handler: String,
        module_path: String,
        /// Every file path looked up, in lookup order.
        tried: Vec<String>,
    },

    #[error(
        "handler `{handler}`: module `{module_file}` does not export `{function}`; export it \
         (`export const {function} = ...` or `exports.{function} = ...`) or pass --handler \
         with the name the module exports"
    )]
    NotExported {
        handler: String,
        module_file: String,
        function: String,
    },

    #[error(
        "no handler found in the app: tried {}; pass --handler MODULE.FUNCTION",
        tried.join(", ")
    )]
    NotDetected {
        /// Each module tried, in order, with the reason it was not used.
        tried: Vec<String>,
    },
}

impl FromStr for Handler {
    type Err = HandlerError;

    /// Parses a handler string as the runtime does: the module root is everything up to the
    /// last `/`, and the rest splits at its first `.` into module name and function path.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| HandlerError::Invalid {
            handler: value.to_string(),
            reason,
        };
        check_characters(value).map_err(invalid)?;

        let (module_root, last_segment) = match value.rfind('/') {
            Some(slash) => value.split_at(slash + 1),
            None => ("", value),
        };
        if last_segment.is_empty() {
            return Err(invalid(
                "it ends with `/`, so it names no module".to_string(),
            ));
        }
        let Some((module, function)) = last_segment.split_once('.') else {
            return Err(invalid(format!(
                "`{last_segment}` has no `.` between the module name and the function name"
            )));
        };
        if module.is_empty() {
            return Err(invalid(
                "the module name before the `.` is empty".to_string(),
            ));
        }
        if function.is_empty() {
            return Err(invalid(
                "the function name after the `.` is empty".to_string(),
            ));
        }
        if function.split('.').any(str::is_empty) {
            return Err(invalid(format!(
                "the function path `{function}` has an empty name between dots"
            )));
        }
        Ok(Handler {
            module_path: format!("{module_root}{module}"),
            function: function.to_string(),
        })
    }
}

/// Rejects what no handler may contain.
fn check_characters(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("the handler is empty".to_string());
    }
    if value.chars().any(char::is_whitespace) {
        return Err("it contains whitespace".to_string());
    }
    if value.chars().any(char::is_control) {
        return Err("it contains a control character".to_string());
    }
    // The runtime rejects `..` anywhere in the string, not only as a path segment.
    if value.contains("..") {
        return Err("it contains `..`, which the Lambda runtime rejects".to_string());
    }
    if value.starts_with('/') {
        return Err(
            "it is an absolute path, but the module path must be relative to the app directory"
                .to_string(),
        );
    }
    Ok(())
}

impl fmt::Display for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module_path, self.function)
    }
}

/// Finds the handler's module file in lookup order and checks, as far as the source shows,
/// that the module exports the first name of the function path.
///
/// # Errors
///
/// [`HandlerError::Invalid`] when the fields do not form a valid handler string,
/// [`HandlerError::ModuleNotFound`] when no candidate file exists, and
/// [`HandlerError::NotExported`] when the source clearly does not export the name.
pub fn resolve(handler: &Handler, files: &dyn TaskFiles) -> Result<ResolvedHandler, HandlerError> {
    let text = handler.to_string();
    // The fields are public, so check that they form a handler string that parses back.
    let parsed: Handler = text.parse()?;
    if parsed != *handler {
        return Err(HandlerError::Invalid {
            handler: text,
            reason: format!(
                "the module path `{}` has a `.` in its last segment, which a handler cannot \
                 express",
                handler.module_path
            ),
        });
    }

    let base = normalize_module_path(&handler.module_path);
    let candidates = module_candidates(&base, files);
    let found = candidates
        .iter()
        .find_map(|(path, format)| files.read_file(path).map(|source| (path, *format, source)));
    let Some((module_file, module_format, source)) = found else {
        return Err(HandlerError::ModuleNotFound {
            handler: text,
            module_path: handler.module_path.clone(),
            tried: candidates.into_iter().map(|(path, _)| path).collect(),
        });
    };

    let exported_name = handler.function.split('.').next().unwrap_or_default();
    if !exports_function(&String::from_utf8_lossy(&source), exported_name) {
        return Err(HandlerError::NotExported {
            handler: text,
            module_file: module_file.clone(),
            function: exported_name.to_string(),
        });
    }
    Ok(ResolvedHandler {
        handler: handler.clone(),
        module_file: module_file.clone(),
        module_format,
    })
}

/// Drops empty and `.` segments, which the runtime's `path.resolve` ignores.
fn normalize_module_path(module_path: &str) -> String {
    let segments: Vec<&str> = module_path
        .split('/')
        .filter(|segment| !segment.is_empty() && *segment != ".")
        .collect();
    segments.join("/")
}

/// Returns the files the runtime tries for a module, in order, with the format each loads as.
fn module_candidates(base: &str, files: &dyn TaskFiles) -> Vec<(String, ModuleFormat)> {
    let js_format = if package_type_is_module(base, files) {
        ModuleFormat::EsModule
    } else {
        ModuleFormat::CommonJs
    };
    vec![
        // UserFunction.js loads an extensionless file with require().
        (base.to_string(), ModuleFormat::CommonJs),
        (format!("{base}.js"), js_format),
        (format!("{base}.mjs"), ModuleFormat::EsModule),
        (format!("{base}.cjs"), ModuleFormat::CommonJs),
    ]
}

/// Returns whether the nearest package.json, from the module's folder up to the task root,
/// sets `"type": "module"`.
///
/// As in the runtime, the search stops at a folder named `node_modules` and at a package.json
/// that is not valid JSON. A package.json whose whole value is falsy in JavaScript (`null`,
/// `false`, `0`, `""`) does not stop it.
fn package_type_is_module(module_base: &str, files: &dyn TaskFiles) -> bool {
    let mut folder = parent_folder(module_base);
    loop {
        if folder == "node_modules" || folder.ends_with("/node_modules") {
            return false;
        }
        let package_json = if folder.is_empty() {
            "package.json".to_string()
        } else {
            format!("{folder}/package.json")
        };
        if let Some(bytes) = files.read_file(&package_json) {
            match serde_json::from_slice::<Value>(&bytes) {
                Err(_) => return false,
                Ok(value) if is_falsy(&value) => {}
                Ok(value) => return value.get("type").and_then(Value::as_str) == Some("module"),
            }
        }
        if folder.is_empty() {
            return false;
        }
        folder = parent_folder(folder);
    }
}

/// Returns the folder part of a `/`-separated path, or "" for the task root.
fn parent_folder(path: &str) -> &str {
    path.rfind('/').map_or("", |slash| &path[..slash])
}

fn is_falsy(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(flag) => !flag,
        Value::Number(number) => number.as_f64() == Some(0.0),
        Value::String(text) => text.is_empty(),
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// Finds the handler when none was given: the first of `lambda`, `index`, `handler`, `app`
/// and package.json's `main` whose module exists and exports `handler`.
///
/// # Errors
///
/// [`HandlerError::NotDetected`], listing each module tried, when none of them qualifies.
pub fn detect(files: &dyn TaskFiles) -> Result<ResolvedHandler, HandlerError> {
    let mut candidates: Vec<(String, String)> = DETECTED_MODULES
        .iter()
        .map(|module| (module.to_string(), module.to_string()))
        .collect();
    if let Some(main) = package_main(files) {
        let module_path = main_module_path(&main);
        if !candidates.iter().any(|(path, _)| *path == module_path) {
            candidates.push((module_path, format!("package.json main `{main}`")));
        }
    }

    let mut tried = Vec::new();
    for (module_path, label) in candidates {
        let handler = Handler {
            module_path,
            function: DETECTED_FUNCTION.to_string(),
        };
        match resolve(&handler, files) {
            Ok(resolved) => return Ok(resolved),
            Err(HandlerError::NotExported { module_file, .. }) => tried.push(format!(
                "{label} (`{module_file}` does not export `{DETECTED_FUNCTION}`)"
            )),
            Err(HandlerError::Invalid { .. }) => {
                tried.push(format!("{label} (cannot be named in a handler)"))
            }
            Err(_) => tried.push(format!("{label} (not found)")),
        }
    }
    Err(HandlerError::NotDetected { tried })
}

/// Returns package.json's `main` at the task root, when it is a non-empty string.
fn package_main(files: &dyn TaskFiles) -> Option<String> {
    let bytes = files.read_file("package.json")?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    let main = value.get("main")?.as_str()?;
    (!main.is_empty()).then(|| main.to_string())
}

/// Turns `./dist/index.js` into the module path `dist/index`.
fn main_module_path(main: &str) -> String {
    let path = main.strip_prefix("./").unwrap_or(main);
    [".js", ".mjs", ".cjs"]
        .iter()
        .find_map(|extension| path.strip_suffix(extension))
        .unwrap_or(path)
        .to_string()
}

/// Returns whether the JavaScript source exports `function` by name, or may do so in a way
/// that a textual check cannot follow.
///
/// Recognized exports: `exports.NAME =`, `module.exports.NAME =`, `exports["NAME"] =`,
/// `module.exports = { ... }` with `NAME` as a key, `export const|let|var NAME`,
/// `export [async] function NAME`, `export class NAME`, `export { NAME }`,
/// `export { x as NAME }`, `export * as NAME from`, `export default` for `default`, and
/// `Object.defineProperty(exports, "NAME", ...)`. The function also returns true for
/// `module.exports = require(...)` and other computed values, `export * from`, spreads and
/// computed keys, because the source does not show what they export. Comments, strings and
/// template literals are skipped, so text inside them never counts.
pub fn exports_function(source: &str, function: &str) -> bool {
    let tokens = tokenize(source);
    let mut undecided = false;
    for index in 0..tokens.len() {
        let found = match &tokens[index] {
            Token::Word(word) if word == "exports" => {
                check_exports_member(&tokens, index, function)
            }
            Token::Word(word) if word == "module" => check_module_exports(&tokens, index, function),
            Token::Word(word) if word == "export" => check_export(&tokens, index, function),
            Token::Word(word) if word == "Object" => check_object_call(&tokens, index, function),
            _ => Export::None,
        };
        match found {
            Export::Found => return true,
            Export::Undecided => undecided = true,
            Export::None => {}
        }
    }
    undecided
}

/// The result of checking one statement for an export of the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Export {
    Found,
    /// The statement may export the name, for example through `require()` or a spread.
    Undecided,
    None,
}

/// Checks `exports.NAME =` and `exports["NAME"] =`, where `exports` may follow `module.`.
fn check_exports_member(tokens: &[Token], index: usize, function: &str) -> Export {
    if index > 0 && tokens[index - 1].is_punct('.') {
        let after_module = index >= 2 && tokens[index - 2].is_word("module");
        if !after_module {
            return Export::None;
        }
    }
    if is_object_call_target(tokens, index) {
        return Export::None;
    }
    let rest = &tokens[index + 1..];
    match rest {
        [Token::Punct('.'), Token::Word(name), assignment @ ..] if is_assignment(assignment) => {
            found_if(name == function)
        }
        [Token::Punct('['), Token::Str(name), Token::Punct(']'), assignment @ ..]
            if is_assignment(assignment) =>
        {
            found_if(name == function)
        }
        // Reading a property, a comparison, or `exports = ...`, which leaves
        // `module.exports` unchanged.
        [Token::Punct('.'), ..]
        | [Token::Punct('['), Token::Str(_), ..]
        | [Token::Punct('='), ..] => Export::None,
        // A computed property, or `exports` passed on or aliased, for example by a bundler.
        _ => Export::Undecided,
    }
}

/// Checks `module.exports = VALUE`.
fn check_module_exports(tokens: &[Token], index: usize, function: &str) -> Export {
    let rest = &tokens[index + 1..];
    let [Token::Punct('.'), Token::Word(exports), value @ ..] = rest else {
        return Export::None;
    };
    if exports != "exports" || !is_assignment(value) {
        return Export::None;
    }
    let mut value = &value[1..];
    // Skip further targets of a chained assignment: `module.exports = exports = {...}`.
    while let [Token::Word(word), Token::Punct('='), after @ ..] = value {
        if word != "exports" || !is_assignment(&value[1..]) {
            break;
        }
        value = after;
    }
    match value {
        [Token::Punct('{'), ..] => check_object_keys(value, function),
        [Token::Word(word), ..] if ["function", "class", "async"].contains(&word.as_str()) => {
            Export::None
        }
        [Token::Word(_), Token::Punct('='), Token::Punct('>'), ..] => Export::None,
        [Token::Punct('('), ..] if is_arrow_function(value) => Export::None,
        [Token::Str(_) | Token::Other, ..] => Export::None,
        // An identifier, a call such as require(...), or another expression.
        _ => Export::Undecided,
    }
}

/// Checks the top-level keys of the object literal that starts at `tokens[0]`.
fn check_object_keys(tokens: &[Token], function: &str) -> Export {
    let mut depth = 0usize;
    let mut at_entry_start = true;
    let mut undecided = false;
    for (index, token) in tokens.iter().enumerate() {
        match token {
            Token::Punct('{' | '(' | '[') => {
                // A `[` that starts an entry is a computed key.
                if depth == 1 && at_entry_start {
                    undecided = true;
                }
                depth += 1;
                at_entry_start = depth == 1;
                continue;
            }
            Token::Punct('}' | ')' | ']') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
                continue;
            }
            Token::Punct(',') if depth == 1 => {
                at_entry_start = true;
                continue;
            }
            _ => {}
        }
        if depth != 1 || !at_entry_start {
            continue;
        }
        at_entry_start = false;
        match entry_key(&tokens[index..]) {
            EntryKey::Name(name) if name == function => return Export::Found,
            EntryKey::Name(_) => {}
            EntryKey::Unknown => undecided = true,
        }
    }
    if undecided {
        Export::Undecided
    } else {
        Export::None
    }
}

enum EntryKey<'a> {
    Name(&'a str),
    /// A spread or another entry whose key the source does not show.
    Unknown,
}

/// Returns the key of the object literal entry that starts at `tokens[0]`.
fn entry_key(tokens: &[Token]) -> EntryKey<'_> {
    match tokens {
        [Token::Punct('.'), Token::Punct('.'), Token::Punct('.'), ..] => EntryKey::Unknown,
        // A method with a modifier: `async NAME()`, `get NAME()`, `async *NAME()`.
        [Token::Word(modifier), Token::Word(name), ..]
        | [Token::Word(modifier), Token::Punct('*'), Token::Word(name), ..]
            if ["async", "get", "set"].contains(&modifier.as_str()) =>
        {
            EntryKey::Name(name)
        }
        [Token::Punct('*'), Token::Word(name), ..] => EntryKey::Name(name),
        [Token::Word(name) | Token::Str(name), ..] => EntryKey::Name(name),
        _ => EntryKey::Unknown,
    }
}

/// Checks the ES module forms that start with `export`.
fn check_export(tokens: &[Token], index: usize, function: &str) -> Export {
    let rest = &tokens[index + 1..];
    match rest {
        [Token::Word(keyword), Token::Word(name), ..]
            if ["const", "let", "var", "function", "class"].contains(&keyword.as_str()) =>
        {
            found_if(name == function)
        }
        [Token::Word(keyword), Token::Punct('{' | '['), ..]
            if ["const", "let", "var"].contains(&keyword.as_str()) =>
        {
            // A destructuring declaration, whose names this check does not follow.
            Export::Undecided
        }
        [Token::Word(keyword), Token::Punct('*'), Token::Word(name), ..]
            if keyword == "function" =>
        {
            found_if(name == function)
        }
        [Token::Word(keyword), Token::Word(function_keyword), tail @ ..]
            if keyword == "async" && function_keyword == "function" =>
        {
            let name = match tail {
                [Token::Punct('*'), Token::Word(name), ..] => name,
                [Token::Word(name), ..] => name,
                _ => return Export::None,
            };
            found_if(name == function)
        }
        [Token::Word(keyword), ..] if keyword == "default" => found_if(function == "default"),
        [Token::Punct('*'), Token::Word(keyword), Token::Word(name) | Token::Str(name), ..]
            if keyword == "as" =>
        {
            found_if(name == function)
        }
        [Token::Punct('*'), ..] => Export::Undecided,
        [Token::Punct('{'), ..] => check_export_clause(rest, function),
        _ => Export::None,
    }
}

/// Checks `{ a, b as NAME, "c" as "NAME" }`, starting at the `{`.
fn check_export_clause(tokens: &[Token], function: &str) -> Export {
    let Some(end) = tokens.iter().position(|token| token.is_punct('}')) else {
        return Export::None;
    };
    for entry in tokens[1..end].split(|token| token.is_punct(',')) {
        let exported = match entry {
            [.., Token::Word(keyword), Token::Word(name) | Token::Str(name)] if keyword == "as" => {
                name
            }
            [Token::Word(name) | Token::Str(name)] => name,
            _ => continue,
        };
        if exported == function {
            return Export::Found;
        }
    }
    Export::None
}

/// Checks `Object.defineProperty(exports, "NAME", ...)` and `Object.assign(exports, ...)`,
/// also with `module.exports`.
fn check_object_call(tokens: &[Token], index: usize, function: &str) -> Export {
    let rest = &tokens[index + 1..];
    let [Token::Punct('.'), Token::Word(method), Token::Punct('('), arguments @ ..] = rest else {
        return Export::None;
    };
    let after_target = match arguments {
        [Token::Word(module), Token::Punct('.'), Token::Word(exports), after @ ..]
            if module == "module" && exports == "exports" =>
        {
            after
        }
        [Token::Word(exports), after @ ..] if exports == "exports" => after,
        _ => return Export::None,
    };
    match (method.as_str(), after_target) {
        ("defineProperty", [Token::Punct(','), Token::Str(name), ..]) => found_if(name == function),
        ("defineProperty" | "assign" | "defineProperties", _) => Export::Undecided,
        _ => Export::None,
    }
}

/// Returns whether the `exports` at `index`, or the `module.exports` that ends there, is the
/// first argument of an `Object` method, which [`check_object_call`] checks.
fn is_object_call_target(tokens: &[Token], index: usize) -> bool {
    let start = if index >= 2 && tokens[index - 1].is_punct('.') {
        index - 2
    } else {
        index
    };
    start >= 4
        && tokens[start - 1].is_punct('(')
        && tokens[start - 3].is_punct('.')
        && tokens[start - 4].is_word("Object")
}

fn found_if(condition: bool) -> Export {
    if condition {
        Export::Found
    } else {
        Export::None
    }
}

/// Returns whether the tokens start with `=` that is not part of `==`, `===` or `=>`.
fn is_assignment(tokens: &[Token]) -> bool {
    match tokens {
        [Token::Punct('='), Token::Punct('=' | '>'), ..] => false,
        [Token::Punct('='), ..] => true,
        _ => false,
    }
}

/// Returns whether the parenthesized tokens at `tokens[0]` are followed by `=>`.
fn is_arrow_function(tokens: &[Token]) -> bool {
    let mut depth = 0usize;
    for (index, token) in tokens.iter().enumerate() {
        match token {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return matches!(
                        &tokens[index + 1..],
                        [Token::Punct('='), Token::Punct('>'), ..]
                    );
                }
            }
            _ => {}
        }
    }
    false
}

/// A JavaScript token, as far as the export check needs one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An identifier, keyword or number.
    Word(String),
    /// A string literal's value. Escapes are kept as written, minus the backslash.
    Str(String),
    Punct(char),
    /// A template or regular expression literal.
    Other,
}

impl Token {
    fn is_punct(&self, expected: char) -> bool {
        *self == Token::Punct(expected)
    }

    fn is_word(&self, expected: &str) -> bool {
        matches!(self, Token::Word(word) if word == expected)
    }
}

/// Splits JavaScript source into tokens, dropping comments.
///
/// A `/` starts a regular expression literal when the previous token cannot end an
/// expression, which is the usual heuristic without a full parser.
fn tokenize(source: &str) -> Vec<Token> {
    let characters: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    if source.starts_with("#!") {
        index = skip_line(&characters, 0);
    }
    while let Some(&character) = characters.get(index) {
        let next = characters.get(index + 1).copied();
        if character.is_whitespace() {
            index += 1;
        } else if character == '/' && next == Some('/') {
            index = skip_line(&characters, index);
        } else if character == '/' && next == Some('*') {
            index = skip_block_comment(&characters, index + 2);
        } else if character == '"' || character == '\'' {
            let (value, end) = read_string(&characters, index);
            tokens.push(Token::Str(value));
            index = end;
        } else if character == '`' {
            index = skip_template(&characters, index + 1);
            tokens.push(Token::Other);
        } else if character == '/' && regex_may_start(tokens.last()) {
            index = skip_regex(&characters, index + 1);
            tokens.push(Token::Other);
        } else if is_word_character(character) {
            let end = index
                + characters[index..]
                    .iter()
                    .take_while(|&&c| is_word_character(c))
                    .count();
            tokens.push(Token::Word(characters[index..end].iter().collect()));
            index = end;
        } else {
            tokens.push(Token::Punct(character));
            index += 1;
        }
    }
    tokens
}

fn is_word_character(character: char) -> bool {
    character == '_' || character == '$' || character.is_alphanumeric()
}

fn regex_may_start(previous: Option<&Token>) -> bool {
    const KEYWORDS: [&str; 14] = [
        "return",
        "typeof",
        "instanceof",
        "in",
        "of",
        "new",
        "delete",
        "void",
        "throw",
        "case",
        "do",
        "else",
        "yield",
        "await",
    ];
    match previous {
        None => true,
        Some(Token::Word(word)) => KEYWORDS.contains(&word.as_str()),
        Some(Token::Punct(punct)) => !matches!(punct, ')' | ']'),
        Some(Token::Str(_) | Token::Other) => false,
    }
}

/// Returns the index of the line break that ends the line at `start`, or the end.
fn skip_line(characters: &[char], start: usize) -> usize {
    characters[start..]
        .iter()
        .position(|&c| c == '\n')
        .map_or(characters.len(), |offset| start + offset)
}

/// Returns the index after the `*/` that closes a comment whose body starts at `start`.
fn skip_block_comment(characters: &[char], start: usize) -> usize {
    let mut index = start;
    while index + 1 < characters.len() {
        if characters[index] == '*' && characters[index + 1] == '/' {
            return index + 2;
        }
        index += 1;
    }
    characters.len()
}

/// Reads the string literal that starts with the quote at `start`. Returns its value and
/// the index after the closing quote. An unterminated string ends at the line break.
fn read_string(characters: &[char], start: usize) -> (String, usize) {
    let quote = characters[start];
    let mut value = String::new();
    let mut index = start + 1;
    while let Some(&character) = characters.get(index) {
        index += 1;
        match character {
            '\\' => {
                if let Some(&escaped) = characters.get(index) {
                    value.push(escaped);
                    index += 1;
                }
            }
            '\n' => break,
            c if c == quote => break,
            c => value.push(c),
        }
    }
    (value, index)
}

/// Returns the index after the backtick that closes a template literal whose body starts at
/// `start`. Substitutions are skipped by brace depth.
fn skip_template(characters: &[char], start: usize) -> usize {
    let mut index = start;
    let mut substitution_depth = 0usize;
    while let Some(&character) = characters.get(index) {
        index += 1;
        match character {
            '\\' => index += 1,
            '`' if substitution_depth == 0 => return index,
            '$' if substitution_depth == 0 && characters.get(index) == Some(&'{') => {
                substitution_depth = 1;
                index += 1;
            }
            '{' if substitution_depth > 0 => substitution_depth += 1,
            '}' if substitution_depth > 0 => substitution_depth -= 1,
            _ => {}
        }
    }
    characters.len()
}

/// Returns the index after a regular expression literal whose body starts at `start`,
/// including its flags. An unterminated literal ends at the line break.
fn skip_regex(characters: &[char], start: usize) -> usize {
    let mut index = start;
    let mut in_class = false;
    while let Some(&character) = characters.get(index) {
        match character {
            '\\' => index += 1,
            '[' => in_class = true,
            ']' => in_class = false,
            '/' if !in_class => {
                index += 1;
                while characters.get(index).is_some_and(|&c| is_word_character(c)) {
                    index += 1;
                }
                return index;
            }
            '\n' => return index,
            _ => {}
        }
        index += 1;
    }
    characters.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        entries
            .iter()
            .map(|(path, content)| (path.to_string(), content.as_bytes().to_vec()))
            .collect()
    }

    fn handler(value: &str) -> Handler {
        value
            .parse()
            .unwrap_or_else(|error| panic!("{value:?} should parse: {error}"))
    }

    fn resolve_str(
        value: &str,
        task: &BTreeMap<String, Vec<u8>>,
    ) -> Result<ResolvedHandler, HandlerError> {
        resolve(&handler(value), task)
    }

    const CJS_HANDLER: &str = "exports.handler = async (event) => ({ statusCode: 200 });\n";

    #[test]
    fn parse_splits_module_and_function() {
        // (handler, module_path, function)
        let cases = [
            ("lambda.handler", "lambda", "handler"),
            ("index.handler", "index", "handler"),
            ("src/api/index.routes.get", "src/api/index", "routes.get"),
            ("a/b/c/mod.fn", "a/b/c/mod", "fn"),
            ("index.a.b.c", "index", "a.b.c"),
            ("./index.handler", "./index", "handler"),
            ("dist/v1.2/index.handler", "dist/v1.2/index", "handler"),
            ("my-app_1.$handler", "my-app_1", "$handler"),
        ];
        for (value, module_path, function) in cases {
            let parsed = handler(value);
            assert_eq!(parsed.module_path, module_path, "{value}");
            assert_eq!(parsed.function, function, "{value}");
            assert_eq!(parsed.to_string(), value, "round trip of {value}");
        }
    }

    #[test]
    fn parse_rejects_invalid_handlers() {
        let error = "".parse::<Handler>().expect_err("empty handler");
        assert_eq!(
            error.to_string(),
            "invalid handler ``: the handler is empty; pass --handler MODULE.FUNCTION, for \
             example `index.handler` or `src/app.handler`"
        );

        // (handler, reason in the message)
        let cases = [
            (
                "index",
                "`index` has no `.` between the module name and the function name",
            ),
            (
                "src.v2/index",
                "`index` has no `.` between the module name and the function name",
            ),
            (".handler", "the module name before the `.` is empty"),
            ("src/.handler", "the module name before the `.` is empty"),
            ("index.", "the function name after the `.` is empty"),
            (
                "index.routes.",
                "the function path `routes.` has an empty name between dots",
            ),
            (
                "../index.handler",
                "it contains `..`, which the Lambda runtime rejects",
            ),
            (
                "src/../index.handler",
                "it contains `..`, which the Lambda runtime rejects",
            ),
            (
                "index..handler",
                "it contains `..`, which the Lambda runtime rejects",
            ),
            (
                "/var/task/index.handler",
                "it is an absolute path, but the module path must be relative to the app directory",
            ),
            ("index.handler ", "it contains whitespace"),
            ("my app.handler", "it contains whitespace"),
            ("index.hand\tler", "it contains whitespace"),
            ("index.hand\u{0}ler", "it contains a control character"),
            (
                "src/index.handler/",
                "it ends with `/`, so it names no module",
            ),
        ];
        for (value, reason) in cases {
            let error = value
                .parse::<Handler>()
                .expect_err(&format!("{value:?} should be rejected"));
            assert_eq!(
                error,
                HandlerError::Invalid {
                    handler: value.to_string(),
                    reason: reason.to_string(),
                },
                "{value:?}"
            );
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("invalid handler `{value}`: {reason}; ")),
                "{error}"
            );
        }
    }

    #[test]
    fn resolve_rejects_handler_that_does_not_round_trip() {
        let bad = Handler {
            module_path: "index.min".to_string(),
            function: "handler".to_string(),
        };
        let task = files(&[("index.min.js", CJS_HANDLER)]);
        let error = resolve(&bad, &task).expect_err("a `.` in the module name");
        assert!(matches!(error, HandlerError::Invalid { .. }), "{error:?}");
        assert!(error.to_string().contains("`index.min`"), "{error}");
    }

    #[test]
    fn resolve_tries_extensions_in_runtime_order() {
        // (files present, expected module file, expected format)
        let cases: [(&[&str], &str, ModuleFormat); 6] = [
            (
                &["app", "app.js", "app.mjs", "app.cjs"],
                "app",
                ModuleFormat::CommonJs,
            ),
            (
                &["app.js", "app.mjs", "app.cjs"],
                "app.js",
                ModuleFormat::CommonJs,
            ),
            (&["app.mjs", "app.cjs"], "app.mjs", ModuleFormat::EsModule),
            (&["app.cjs"], "app.cjs", ModuleFormat::CommonJs),
            (&["app.cjs", "other.js"], "app.cjs", ModuleFormat::CommonJs),
            (&["app.mjs", "app.ts"], "app.mjs", ModuleFormat::EsModule),
        ];
        for (present, module_file, module_format) in cases {
            let task: BTreeMap<String, Vec<u8>> = present
                .iter()
                .map(|path| (path.to_string(), CJS_HANDLER.as_bytes().to_vec()))
                .collect();
            let resolved = resolve_str("app.handler", &task)
                .unwrap_or_else(|error| panic!("{present:?}: {error}"));
            assert_eq!(resolved.module_file, module_file, "{present:?}");
            assert_eq!(resolved.module_format, module_format, "{present:?}");
            assert_eq!(resolved.handler, handler("app.handler"));
        }
    }

    #[test]
    fn resolve_nested_module_and_function_path() {
        let task = files(&[(
            "src/api/index.mjs",
            "export const routes = { get: async () => ({}) };\n",
        )]);
        let resolved = resolve_str("src/api/index.routes.get", &task).expect("resolves");
        assert_eq!(resolved.module_file, "src/api/index.mjs");
        assert_eq!(resolved.module_format, ModuleFormat::EsModule);
        assert_eq!(resolved.handler.function, "routes.get");

        let resolved = resolve_str("./src//api/index.routes.get", &task).expect("resolves");
        assert_eq!(resolved.module_file, "src/api/index.mjs");
        assert_eq!(resolved.handler.module_path, "./src//api/index");
    }

    #[test]
    fn js_format_follows_nearest_package_json() {
        let esm = "export const handler = async () => {};\n";
        // (files, expected format)
        let cases = [
            (
                files(&[("index.js", esm), ("package.json", r#"{"type": "module"}"#)]),
                ModuleFormat::EsModule,
            ),
            (
                files(&[
                    ("index.js", esm),
                    ("package.json", r#"{"type": "commonjs"}"#),
                ]),
                ModuleFormat::CommonJs,
            ),
            (
                files(&[("index.js", esm), ("package.json", r#"{"name": "app"}"#)]),
                ModuleFormat::CommonJs,
            ),
            (files(&[("index.js", esm)]), ModuleFormat::CommonJs),
        ];
        for (task, expected) in cases {
            let resolved = resolve_str("index.handler", &task).expect("resolves");
            assert_eq!(resolved.module_format, expected, "{task:?}");
        }

        // A package.json in a parent folder applies to the module's folder.
        let task = files(&[
            ("src/api/index.js", esm),
            ("src/package.json", r#"{"type": "module"}"#),
            ("package.json", r#"{"type": "commonjs"}"#),
        ]);
        let resolved = resolve_str("src/api/index.handler", &task).expect("resolves");
        assert_eq!(resolved.module_format, ModuleFormat::EsModule);

        // The nearest package.json wins over one further up.
        let task = files(&[
            ("src/api/index.js", esm),
            ("src/api/package.json", r#"{"name": "api"}"#),
            ("package.json", r#"{"type": "module"}"#),
        ]);
        let resolved = resolve_str("src/api/index.handler", &task).expect("resolves");
        assert_eq!(resolved.module_format, ModuleFormat::CommonJs);

        // A falsy package.json is skipped, an invalid one ends the search.
        let task = files(&[
            ("src/index.js", esm),
            ("src/package.json", "null"),
            ("package.json", r#"{"type": "module"}"#),
        ]);
        let resolved = resolve_str("src/index.handler", &task).expect("resolves");
        assert_eq!(resolved.module_format, ModuleFormat::EsModule);
        let task = files(&[
            ("src/index.js", esm),
            ("src/package.json", "{ not json"),
            ("package.json", r#"{"type": "module"}"#),
        ]);
        let resolved = resolve_str("src/index.handler", &task).expect("resolves");
        assert_eq!(resolved.module_format, ModuleFormat::CommonJs);

        // The search stops at a node_modules folder.
        let task = files(&[
            ("node_modules/lib/index.js", esm),
            ("package.json", r#"{"type": "module"}"#),
        ]);
        let resolved = resolve_str("node_modules/lib/index.handler", &task).expect("resolves");
        assert_eq!(resolved.module_format, ModuleFormat::CommonJs);
    }

    #[test]
    fn module_not_found_lists_every_path_tried() {
        let task = files(&[("src/other.js", CJS_HANDLER)]);
        let error = resolve_str("src/api/index.handler", &task).expect_err("no module");
        assert_eq!(
            error,
            HandlerError::ModuleNotFound {
                handler: "src/api/index.handler".to_string(),
                module_path: "src/api/index".to_string(),
                tried: vec![
                    "src/api/index".to_string(),
                    "src/api/index.js".to_string(),
                    "src/api/index.mjs".to_string(),
                    "src/api/index.cjs".to_string(),
                ],
            }
        );
        assert_eq!(
            error.to_string(),
            "handler `src/api/index.handler`: module `src/api/index` not found, tried \
             src/api/index, src/api/index.js, src/api/index.mjs, src/api/index.cjs; add one of \
             these files or pass --handler MODULE.FUNCTION with the module's path in the app \
             directory"
        );
    }

    #[test]
    fn not_exported_names_module_and_function() {
        let task = files(&[("lambda.js", "module.exports = async (event) => ({});\n")]);
        let error = resolve_str("lambda.handler", &task).expect_err("not exported");
        assert_eq!(
            error.to_string(),
            "handler `lambda.handler`: module `lambda.js` does not export `handler`; export it \
             (`export const handler = ...` or `exports.handler = ...`) or pass --handler with \
             the name the module exports"
        );

        // Only the first name of a nested function path is checked.
        let task = files(&[("index.js", "exports.main = async () => ({});\n")]);
        let error = resolve_str("index.routes.get", &task).expect_err("not exported");
        assert_eq!(
            error,
            HandlerError::NotExported {
                handler: "index.routes.get".to_string(),
                module_file: "index.js".to_string(),
                function: "routes".to_string(),
            }
        );
    }

    #[test]
    fn resolve_accepts_non_utf8_source() {
        let mut task = BTreeMap::new();
        task.insert(
            "index.js".to_string(),
            b"// \xff\xfe\nexports.handler = () => {};\n".to_vec(),
        );
        let resolved = resolve_str("index.handler", &task).expect("resolves");
        assert_eq!(resolved.module_file, "index.js");
    }

    #[test]
    fn detect_tries_modules_in_order() {
        let cases = [
            (
                files(&[("lambda.js", CJS_HANDLER), ("index.js", CJS_HANDLER)]),
                "lambda.js",
            ),
            (
                files(&[
                    ("index.mjs", "export const handler = 1;"),
                    ("handler.js", CJS_HANDLER),
                ]),
                "index.mjs",
            ),
            (
                files(&[("handler.cjs", CJS_HANDLER), ("app.js", CJS_HANDLER)]),
                "handler.cjs",
            ),
            (files(&[("app.js", CJS_HANDLER)]), "app.js"),
            // A module that exists but does not export `handler` is passed over.
            (
                files(&[("lambda.js", "exports.other = 1;"), ("app.js", CJS_HANDLER)]),
                "app.js",
            ),
        ];
        for (task, module_file) in cases {
            let resolved = detect(&task).unwrap_or_else(|error| panic!("{task:?}: {error}"));
            assert_eq!(resolved.module_file, module_file);
            assert_eq!(resolved.handler.function, "handler");
        }
    }

    #[test]
    fn detect_uses_package_json_main_last() {
        let task = files(&[
            ("package.json", r#"{"main": "./dist/main.js"}"#),
            ("dist/main.js", CJS_HANDLER),
        ]);
        let resolved = detect(&task).expect("detects main");
        assert_eq!(resolved.handler, handler("dist/main.handler"));
        assert_eq!(resolved.module_file, "dist/main.js");

        let task = files(&[
            (
                "package.json",
                r#"{"main": "server.mjs", "type": "module"}"#,
            ),
            ("server.mjs", "export async function handler() {}"),
            ("index.js", "export const other = 1;"),
        ]);
        let resolved = detect(&task).expect("detects main");
        assert_eq!(resolved.module_file, "server.mjs");
        assert_eq!(resolved.module_format, ModuleFormat::EsModule);

        // `main` comes after the fixed names.
        let task = files(&[
            ("package.json", r#"{"main": "dist/main.js"}"#),
            ("dist/main.js", CJS_HANDLER),
            ("app.js", CJS_HANDLER),
        ]);
        assert_eq!(detect(&task).expect("detects").module_file, "app.js");
    }

    #[test]
    fn detect_lists_every_module_tried() {
        let task = files(&[
            ("package.json", r#"{"main": "dist/server.js"}"#),
            ("index.js", "module.exports = { main };"),
        ]);
        let error = detect(&task).expect_err("nothing exports handler");
        assert_eq!(
            error.to_string(),
            "no handler found in the app: tried lambda (not found), index (`index.js` does not \
             export `handler`), handler (not found), app (not found), package.json main \
             `dist/server.js` (not found); pass --handler MODULE.FUNCTION"
        );

        let error = detect(&BTreeMap::new()).expect_err("empty app");
        assert_eq!(
            error,
            HandlerError::NotDetected {
                tried: vec![
                    "lambda (not found)".to_string(),
                    "index (not found)".to_string(),
                    "handler (not found)".to_string(),
                    "app (not found)".to_string(),
                ],
            }
        );
    }

    #[test]
    fn detect_skips_unusable_main() {
        // (package.json, tried entry for main, or None when main adds no entry)
        let cases = [
            (r#"{"main": "index.js"}"#, None),
            (r#"{"main": "./app.cjs"}"#, None),
            (r#"{"main": ""}"#, None),
            (r#"{"main": 5}"#, None),
            ("not json", None),
            (
                r#"{"main": "dist/app.min.js"}"#,
                Some("package.json main `dist/app.min.js` (cannot be named in a handler)"),
            ),
            (
                r#"{"main": "../outside.js"}"#,
                Some("package.json main `../outside.js` (cannot be named in a handler)"),
            ),
            (
                r#"{"main": "/abs/app.js"}"#,
                Some("package.json main `/abs/app.js` (cannot be named in a handler)"),
            ),
            (
                r#"{"main": "lib"}"#,
                Some("package.json main `lib` (not found)"),
            ),
        ];
        for (package_json, main_entry) in cases {
            let task = files(&[("package.json", package_json)]);
            let Err(HandlerError::NotDetected { tried }) = detect(&task) else {
                panic!("{package_json}: expected NotDetected");
            };
            assert_eq!(
                tried.len(),
                4 + usize::from(main_entry.is_some()),
                "{package_json}: {tried:?}"
            );
            if let Some(entry) = main_entry {
                assert_eq!(tried[4], entry, "{package_json}");
            }
        }
    }

    #[test]
    fn exports_function_recognizes_exports() {
        // (source, exported name)
        let cases = [
            ("exports.handler = async () => {};", "handler"),
            ("module.exports.handler = function () {};", "handler"),
            ("exports['handler'] = () => {};", "handler"),
            ("module.exports[\"handler\"] = () => {};", "handler"),
            ("module.exports = { handler };", "handler"),
            (
                "module.exports = { other, handler: async () => {} };",
                "handler",
            ),
            ("module.exports = { 'handler': main };", "handler"),
            (
                "module.exports = { async handler(event) { return 1; } };",
                "handler",
            ),
            ("module.exports = { a: { b: 1 }, handler, };", "handler"),
            ("exports = module.exports = { handler };", "handler"),
            ("module.exports = exports = { handler };", "handler"),
            ("export const handler = async () => {};", "handler"),
            ("export let handler = 1;", "handler"),
            ("export var handler;", "handler"),
            ("export function handler(event) {}", "handler"),
            ("export async function handler(event) {}", "handler"),
            ("export async function* handler(event) {}", "handler"),
            ("export class handler {}", "handler"),
            ("const main = 1;\nexport { main as handler };", "handler"),
            ("export { a, handler, b };", "handler"),
            ("export { handler } from './impl.js';", "handler"),
            ("export { main as \"handler\" };", "handler"),
            ("export * as handler from './impl.js';", "handler"),
            (
                "Object.defineProperty(exports, \"handler\", { enumerable: true, get: () => h });",
                "handler",
            ),
            (
                "Object.defineProperty(module.exports, 'handler', { value: h });",
                "handler",
            ),
            ("export default async function () {}", "default"),
            ("#!/usr/bin/env node\nexports.handler = 1;", "handler"),
            ("const x = a / b; exports.handler = 1;", "handler"),
            (
                "const re = /\\/\\/ not a comment/; exports.handler = 1;",
                "handler",
            ),
        ];
        for (source, name) in cases {
            assert!(exports_function(source, name), "{source:?} exports {name}");
        }
    }

    #[test]
    fn exports_function_cannot_tell_means_true() {
        let cases = [
            "module.exports = require('./impl');",
            "export * from './impl.js';",
            "module.exports = handlers;",
            "module.exports = __toCommonJS(src_exports);",
            "module.exports = { ...require('./impl') };",
            "module.exports = { [name]: fn };",
            "exports[name] = fn;",
            "var target = exports; for (var key in all) target[key] = all[key];",
            "Object.assign(module.exports, impl);",
            "export const { handler, other } = impl;",
            "__exportStar(require('./impl'), exports);",
        ];
        for source in cases {
            assert!(exports_function(source, "handler"), "{source:?}");
        }
    }

    #[test]
    fn exports_function_rejects_clear_non_exports() {
        let cases = [
            "",
            "const handler = async () => {};",
            "async function handler() {}",
            "exports.main = async () => {};",
            "exports.handlerV2 = 1;",
            "exports.handler2 = 1;",
            "module.exports = async (event) => ({});",
            "module.exports = function handler(event) {};",
            "module.exports = event => event;",
            "module.exports = { main, other: 1 };",
            "module.exports = { main: { handler: 1 } };",
            "exports = { handler };",
            "if (exports.handler === undefined) {}",
            "export default async function handler() {}",
            "export const main = 1; export { other as main2 };",
            "export * as other from './impl.js';",
            "// exports.handler = 1;\nexports.main = 1;",
            "/* export const handler = 1; */ export const main = 1;",
            "const text = 'exports.handler = 1'; export const main = 1;",
            "const text = `module.exports = ${value}`; export const main = 1;",
            "pkg.exports.handler = 1;",
            "Object.defineProperty(exports, '__esModule', { value: true });",
        ];
        for source in cases {
            assert!(!exports_function(source, "handler"), "{source:?}");
        }
    }

    #[test]
    fn exports_function_survives_malformed_source() {
        for source in [
            "exports.",
            "module.exports = {",
            "module.exports = { handler",
            "export {",
            "export { handler",
            "'unterminated",
            "`unterminated ${",
            "/* unterminated",
            "/unterminated regex",
            "Object.defineProperty(",
            "module.exports = (",
        ] {
            // Only the absence of a panic matters for malformed input.
            let _ = exports_function(source, "handler");
        }
    }

    #[test]
    fn task_files_for_btree_map() {
        let task = files(&[("index.js", "x")]);
        assert_eq!(task.read_file("index.js"), Some(b"x".to_vec()));
        assert_eq!(task.read_file("missing.js"), None);
    }
}
