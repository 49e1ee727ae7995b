//! `.dockerignore` matching with the semantics that `docker build` applies to the build
//! context, for example in `COPY . .`.
//!
//! Lines are read as moby/patternmatcher's `ignorefile.ReadAll` reads them, and paths are
//! matched as its `PatternMatcher.MatchesOrParentMatches` matches them:
//!
//! - A line whose first character is `#` is a comment. Other lines are trimmed, and blank
//!   lines are skipped. A UTF-8 byte order mark before the first line is dropped.
//! - A leading `!` makes the line an exception, which re-includes what it matches.
//! - Each pattern is cleaned like Go's `filepath.Clean`, and a leading `/` is removed.
//! - `*` and `?` match within one path component. `**` matches any number of directories,
//!   including none. `[...]` classes and `\` escapes follow Go's `filepath.Match`.
//! - A pattern that matches a directory also matches everything below it.
//! - The last pattern that matches a path decides whether the path is excluded.
//!
//! Docker compiles each pattern to a Go regular expression. This module translates the same
//! pattern to a `globset` glob that matches the same paths.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

const FILE_NAME: &str = ".dockerignore";

/// Maximum number of characters that one `[...]` class may contain once its ranges are
/// expanded. Classes are expanded because globset matches bytes (see [`push_class`]), and
/// the bound keeps the compiled glob small.
const MAX_CLASS_CHARACTERS: usize = 4096;

/// The rules of a parsed `.dockerignore`, in file order.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    rules: Vec<Rule>,
}

/// A `.dockerignore` that cannot be read or has an invalid pattern.
#[derive(Debug, thiserror::Error)]
pub enum DockerIgnoreError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: line {line}: invalid pattern `{pattern}`: {reason}; fix or remove the line", path.display())]
    Pattern {
        path: PathBuf,
        /// Line number, counted from 1 and including comments and blank lines.
        line: usize,
        /// The line as written, without surrounding whitespace.
        pattern: String,
        reason: String,
    },
}

/// One pattern line.
#[derive(Debug, Clone)]
struct Rule {
    /// Whether the line started with `!`, so that the rule re-includes what it matches.
    exception: bool,
    matcher: GlobSet,
    /// The pattern split at `/`, used to tell whether the rule can match below a directory.
    components: Vec<ComponentMatcher>,
}

#[derive(Debug, Clone)]
enum ComponentMatcher {
    /// A part that matches exactly one path component.
    Single(GlobSet),
    /// A part with `**` or a class that matches `/`, which can span several components.
    Spanning,
}

/// One element of a pattern, with the meaning that Docker's regular expression gives it.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(char),
    /// `*`: any text without `/`.
    Star,
    /// `?`: one character other than `/`.
    Question,
    /// `**` or `**/` before more pattern text: nothing, or any text that ends with `/`.
    AnyDirectories,
    /// `**` at the end of the pattern: any text.
    AnyText,
    Class(Class),
}

/// A `[...]` character class.
#[derive(Debug, Clone, PartialEq)]
struct Class {
    negated: bool,
    /// Inclusive character ranges, each with start <= end.
    ranges: Vec<(char, char)>,
}

impl Class {
    fn matches(&self, character: char) -> bool {
        let listed = self
            .ranges
            .iter()
            .any(|&(start, end)| (start..=end).contains(&character));
        listed != self.negated
    }
}

impl DockerIgnore {
    /// Returns rules that exclude nothing.
    pub fn empty() -> DockerIgnore {
        DockerIgnore::default()
    }

    /// Reads `app_dir/.dockerignore`, or returns [`DockerIgnore::empty`] when there is no
    /// such file.
    ///
    /// # Errors
    ///
    /// [`DockerIgnoreError::Read`] when the file exists but cannot be read as UTF-8 text, and
    /// [`DockerIgnoreError::Pattern`] for the first invalid pattern.
    pub fn load(app_dir: &Path) -> Result<DockerIgnore, DockerIgnoreError> {
        let path = app_dir.join(FILE_NAME);
        match fs::read_to_string(&path) {
            Ok(text) => DockerIgnore::parse(&text, &path),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(DockerIgnore::empty()),
            Err(source) => Err(DockerIgnoreError::Read { path, source }),
        }
    }

    /// Parses the text of a `.dockerignore`. `source` names the file in error messages.
    ///
    /// # Errors
    ///
    /// [`DockerIgnoreError::Pattern`] for the first invalid pattern.
    pub fn parse(text: &str, source: &Path) -> Result<DockerIgnore, DockerIgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rules = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let Some(entry) = read_line(line) else {
                continue;
            };
            let rule = compile_rule(&entry).map_err(|reason| DockerIgnoreError::Pattern {
                path: source.to_path_buf(),
                line: index + 1,
                pattern: line.trim().to_string(),
                reason,
            })?;
            rules.push(rule);
        }
        Ok(DockerIgnore { rules })
    }

    /// Returns whether `docker build` leaves the file or directory out of the build context.
    ///
    /// `relative_path` is `/`-separated and relative to the app directory. Empty and `.`
    /// components are ignored, and the app directory itself is never excluded.
    pub fn is_excluded(&self, relative_path: &str) -> bool {
        let path = normalize(relative_path);
        self.last_match(&path)
            .is_some_and(|index| !self.rules[index].exception)
    }

    /// Returns false only when the directory is excluded and no exception can re-include
    /// anything below it, so that a directory walk can skip it.
    ///
    /// The answer errs towards true: an exception with `**` below the directory's depth,
    /// for example, counts as one that may re-include something.
    pub fn may_include_below(&self, relative_dir: &str) -> bool {
        let dir = normalize(relative_dir);
        let Some(last) = self.last_match(&dir) else {
            return true;
        };
        if self.rules[last].exception {
            return true;
        }
        // A path below the directory is matched by every rule that matches the directory,
        // so only a later exception that matches deeper paths can re-include it.
        let components: Vec<&str> = dir.split('/').collect();
        self.rules[last + 1..]
            .iter()
            .any(|rule| rule.exception && rule.may_match_below(&components))
    }

    /// Returns the index of the last rule that matches `path` or one of its parent
    /// directories, which is the rule that decides about `path`.
    fn last_match(&self, path: &str) -> Option<usize> {
        if path.is_empty() {
            return None;
        }
        let parents = path.match_indices('/').map(|(end, _)| &path[..end]);
        let candidates: Vec<Candidate<'_>> = parents
            .chain(std::iter::once(path))
            .map(|prefix| Candidate::from_bytes(prefix.as_bytes()))
            .collect();
        self.rules.iter().rposition(|rule| {
            candidates
                .iter()
                .any(|candidate| rule.matcher.is_match_candidate(candidate))
        })
    }
}

impl Rule {
    /// Returns whether the rule can match a path strictly below the directory with these
    /// components. A rule that matches only the directory or its parents does not count.
    fn may_match_below(&self, dir_components: &[&str]) -> bool {
        for (index, dir_component) in dir_components.iter().enumerate() {
            match self.components.get(index) {
                None => return false,
                Some(ComponentMatcher::Spanning) => return true,
                Some(ComponentMatcher::Single(matcher)) => {
                    if !matcher.is_match_candidate(&Candidate::from_bytes(dir_component.as_bytes()))
                    {
                        return false;
                    }
                }
            }
        }
        self.components.len() > dir_components.len()
    }
}

/// Drops empty and `.` components, so that `./src/` and `src` name the same directory.
fn normalize(path: &str) -> String {
    let components: Vec<&str> = path
        .split('/')
        .filter(|component| !component.is_empty() && *component != ".")
        .collect();
    components.join("/")
}

/// Applies `ignorefile.ReadAll` to one line. Returns `None` for a comment or a blank line,
/// else the cleaned pattern, with its leading `!` when it has one.
fn read_line(line: &str) -> Option<String> {
    // Docker checks for `#` before trimming, so ` #x` is a pattern, not a comment.
    if line.starts_with('#') {
        return None;
    }
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let (exception, pattern) = match line.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, line),
    };
    let mut pattern = if pattern.is_empty() {
        String::new()
    } else {
        clean(pattern)
    };
    if pattern.len() > 1 && pattern.starts_with('/') {
        pattern.remove(0);
    }
    Some(if exception {
        format!("!{pattern}")
    } else {
        pattern
    })
}

/// Applies `PatternMatcher.New` to one entry of [`read_line`] and compiles it.
fn compile_rule(entry: &str) -> Result<Rule, String> {
    // New cleans the entry again, `!` included, which turns `!/` into a bare `!`.
    let entry = clean(entry);
    let (exception, pattern) = match entry.strip_prefix('!') {
        Some("") => return Err("`!` is not followed by a pattern".to_string()),
        Some(rest) => (true, rest),
        None => (false, entry.as_str()),
    };
    let mut pieces = parse_pattern(pattern)?;
    if matches_as_suffix(pattern) {
        pieces[0] = Piece::AnyText;
    }
    let matcher = compile_pieces(&pieces)?;
    let components = pieces
        .split(|piece| *piece == Piece::Literal('/'))
        .map(compile_component)
        .collect::<Result<_, _>>()?;
    Ok(Rule {
        exception,
        matcher,
        components,
    })
}

/// Returns whether Docker matches the pattern by suffix instead of by its regular
/// expression. It does so when the pattern starts with `**` and has no other wildcard.
/// The results differ only when the suffix does not start with `/`: `**foo` matches
/// `barfoo`, which `(.*/)?foo` would not.
fn matches_as_suffix(pattern: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix("**") else {
        return false;
    };
    !suffix.is_empty() && !suffix.starts_with('/') && !suffix.contains(['*', '?', '[', ']', '\\'])
}

/// Cleans a path like Go's `filepath.Clean` on Unix.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut components: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if components.last().is_some_and(|last| *last != "..") {
                    components.pop();
                } else if !rooted {
                    components.push("..");
                }
            }
            _ => components.push(component),
        }
    }
    let joined = components.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

/// Splits a cleaned pattern into pieces, rejecting what Go's `filepath.Match` rejects and
/// character ranges that Docker's regular expression cannot compile.
fn parse_pattern(pattern: &str) -> Result<Vec<Piece>, String> {
    let characters: Vec<char> = pattern.chars().collect();
    let mut pieces = Vec::new();
    let mut index = 0;
    while let Some(&character) = characters.get(index) {
        index += 1;
        let piece = match character {
            '*' if characters.get(index) == Some(&'*') => {
                index += 1;
                if characters.get(index) == Some(&'/') {
                    index += 1;
                }
                if index == characters.len() {
                    Piece::AnyText
                } else {
                    Piece::AnyDirectories
                }
            }
            '*' => Piece::Star,
            '?' => Piece::Question,
            '\\' => {
                let Some(&escaped) = characters.get(index) else {
                    return Err("the trailing `\\` escapes nothing".to_string());
                };
                index += 1;
                Piece::Literal(escaped)
            }
            '[' => {
                let (class, next) = parse_class(&characters, index)?;
                index = next;
                Piece::Class(class)
            }
            other => Piece::Literal(other),
        };
        pieces.push(piece);
    }
    Ok(pieces)
}

/// Parses a class whose `[` ends just before `start`. Returns the class and the index after
/// its `]`.
fn parse_class(characters: &[char], start: usize) -> Result<(Class, usize), String> {
    let mut index = start;
    let negated = characters.get(index) == Some(&'^');
    if negated {
        index += 1;
    }
    let mut ranges = Vec::new();
    loop {
        match characters.get(index) {
            None => return Err("the character class `[` is not closed by `]`".to_string()),
            Some(']') if ranges.is_empty() => {
                return Err(
                    "the character class is empty; escape a literal `]` as `\\]`".to_string(),
                )
            }
            Some(']') => return Ok((Class { negated, ranges }, index + 1)),
            Some(_) => {}
        }
        let (range_start, next) = parse_class_character(characters, index)?;
        index = next;
        let mut range_end = range_start;
        if characters.get(index) == Some(&'-') {
            (range_end, index) = parse_class_character(characters, index + 1)?;
        }
        if range_start > range_end {
            // Go's filepath.Match accepts this, but Docker's regular expression does not
            // compile, so Docker's matcher returns an error for it.
            return Err(format!(
                "the character range `{range_start}-{range_end}` is reversed"
            ));
        }
        ranges.push((range_start, range_end));
    }
}

/// Reads one possibly escaped character of a class at `index`. Returns it and the index
/// after it.
fn parse_class_character(characters: &[char], index: usize) -> Result<(char, usize), String> {
    match characters.get(index) {
        None => Err("the character class `[` is not closed by `]`".to_string()),
        Some('-' | ']') => {
            Err("`-` and `]` inside a character class must be escaped with `\\`".to_string())
        }
        Some('\\') => match characters.get(index + 1) {
            None => Err("the character class `[` is not closed by `]`".to_string()),
            Some(&escaped) => Ok((escaped, index + 2)),
        },
        Some(&character) => Ok((character, index + 1)),
    }
}

fn compile_component(pieces: &[Piece]) -> Result<ComponentMatcher, String> {
    let spanning = pieces.iter().any(|piece| match piece {
        Piece::AnyDirectories | Piece::AnyText => true,
        Piece::Class(class) => class.matches('/'),
        _ => false,
    });
    if spanning {
        Ok(ComponentMatcher::Spanning)
    } else {
        Ok(ComponentMatcher::Single(compile_pieces(pieces)?))
    }
}

fn compile_pieces(pieces: &[Piece]) -> Result<GlobSet, String> {
    let mut text = String::new();
    for piece in pieces {
        match piece {
            Piece::Literal(character) => push_literal(&mut text, *character),
            Piece::Star => text.push('*'),
            Piece::Question => text.push('?'),
            // With `literal_separator`, `*/**/` is text that contains and ends with `/`.
            Piece::AnyDirectories => text.push_str("{,*/**/}"),
            // Text without `/`, or text with at least one `/`.
            Piece::AnyText => text.push_str("{*,*/**}"),
            Piece::Class(class) => push_class(&mut text, class)?,
        }
    }
    let glob = GlobBuilder::new(&text)
        .literal_separator(true)
        .backslash_escape(true)
        .empty_alternates(true)
        .build()
        .map_err(|error| format!("cannot be compiled: {}", error.kind()))?;
    GlobSetBuilder::new()
        .add(glob)
        .build()
        .map_err(|error| format!("cannot be compiled: {}", error.kind()))
}

fn push_literal(glob: &mut String, character: char) {
    if matches!(character, '?' | '*' | '[' | ']' | '{' | '}' | ',' | '\\') {
        glob.push('\\');
    }
    glob.push(character);
}

/// Writes a class as an alternation of the characters it matches.
///
/// globset compiles globs to byte-oriented regular expressions, so its own `[...]` would
/// match one byte of a multi-byte character. Listing the characters keeps a non-negated
/// class exact. A negated class lists the ASCII characters it matches, `/` included when
/// not listed, because Docker's class can match `/` while globset's never does.
///
/// NOTE: a negated class and `?` match one byte, so neither matches a non-ASCII character
/// as Docker's do. globset offers no way to match one whole UTF-8 character.
fn push_class(glob: &mut String, class: &Class) -> Result<(), String> {
    let mut members: Vec<char> = Vec::new();
    if class.negated {
        members.extend((0..=0x7f_u8).map(char::from).filter(|&c| class.matches(c)));
    } else {
        for &(start, end) in &class.ranges {
            for character in start..=end {
                if members.len() == MAX_CLASS_CHARACTERS {
                    return Err(format!(
                        "the character class contains more than {MAX_CLASS_CHARACTERS} \
                         characters, which this tool cannot match; list fewer characters"
                    ));
                }
                members.push(character);
            }
        }
    }
    members.sort_unstable();
    members.dedup();
    match members.as_slice() {
        // `[/]` never matches with `literal_separator`, which is right for a negated class
        // that lists every ASCII character.
        [] => glob.push_str("[/]"),
        [only] => push_literal(glob, *only),
        _ => {
            glob.push('{');
            for (index, member) in members.iter().enumerate() {
                if index > 0 {
                    glob.push(',');
                }
                push_literal(glob, *member);
            }
            glob.push('}');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text, Path::new(".dockerignore"))
            .unwrap_or_else(|error| panic!("{text:?} should parse: {error}"))
    }

    fn parse_error(text: &str) -> String {
        match DockerIgnore::parse(text, Path::new("app/.dockerignore")) {
            Ok(rules) => panic!("{text:?} should be rejected, parsed as {rules:?}"),
            Err(error) => error.to_string(),
        }
    }

    /// Checks `is_excluded` for each (patterns, path, expected) case.
    fn check_exclusions(cases: &[(&str, &str, bool)]) {
        for &(text, path, expected) in cases {
            assert_eq!(
                parse(text).is_excluded(path),
                expected,
                "patterns {text:?}, path {path:?}"
            );
        }
    }

    #[test]
    fn documented_examples() {
        // The examples of Docker's `.dockerignore` documentation.
        check_exclusions(&[
            ("*/temp*", "somedir/temporary.txt", true),
            ("*/temp*", "somedir/temp", true),
            ("*/temp*", "somedir/temp/inner.txt", true),
            ("*/temp*", "temporary.txt", false),
            ("*/temp*", "a/b/temporary.txt", false),
            ("*/*/temp*", "somedir/subdir/temporary.txt", true),
            ("*/*/temp*", "somedir/temporary.txt", false),
            ("temp?", "tempa", true),
            ("temp?", "tempb/file.txt", true),
            ("temp?", "temp", false),
            ("temp?", "tempab", false),
            ("temp?", "dir/tempa", false),
            ("**/*.go", "main.go", true),
            ("**/*.go", "cmd/tool/main.go", true),
            ("**/*.go", "main.gox", false),
            ("*.md\n!README.md", "README.md", false),
            ("*.md\n!README.md", "CHANGELOG.md", true),
            ("*.md\n!README.md", "docs/guide.md", false),
            (
                "*.md\n!README*.md\nREADME-secret.md",
                "README-secret.md",
                true,
            ),
            (
                "*.md\n!README*.md\nREADME-secret.md",
                "README-public.md",
                false,
            ),
            (
                "*.md\nREADME-secret.md\n!README*.md",
                "README-secret.md",
                false,
            ),
        ]);
    }

    #[test]
    fn wildcards_stay_in_one_component() {
        check_exclusions(&[
            ("*", "file.txt", true),
            ("*", "dir/deep/file.txt", true),
            ("*.log", "debug.log", true),
            ("*.log", "logs/debug.log", false),
            ("src/*.test.js", "src/a.test.js", true),
            ("src/*.test.js", "src/lib/a.test.js", false),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
        ]);
    }

    #[test]
    fn double_star_forms() {
        check_exclusions(&[
            ("**", "anything", true),
            ("**", "a/b/c", true),
            ("**/", "a/b/c", true),
            ("**/test", "test", true),
            ("**/test", "a/b/test", true),
            ("**/test", "a/b/test/x.js", true),
            ("**/test", "a/latest", false),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "a/xb", false),
            ("a/**", "a/x", true),
            ("a/**", "a/x/y", true),
            ("a/**", "a", false),
            ("a/**", "ab", false),
            ("foo**", "foo", true),
            ("foo**", "foobar", true),
            ("foo**", "foo/bar", true),
            ("**/*.test.js", "x/y/z.test.js", true),
            ("**/node_modules/**", "node_modules/a", true),
            ("**/node_modules/**", "pkg/node_modules/a/b", true),
            ("**/node_modules/**", "pkg/node_modules", false),
            // Docker matches a leading `**` without other wildcards by suffix.
            ("**foo", "foo", true),
            ("**foo", "barfoo", true),
            ("**foo", "a/barfoo", true),
            ("**foo", "foobar", false),
            // Docker's `(.*/)?` for a `**` in the middle of a component.
            ("a**b", "ab", true),
            ("a**b", "ax/b", true),
            ("a**b", "axb", false),
        ]);
    }

    #[test]
    fn classes_and_escapes() {
        check_exclusions(&[
            ("[abc].txt", "a.txt", true),
            ("[abc].txt", "d.txt", false),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[^a].txt", "b.txt", true),
            ("[^a].txt", "a.txt", false),
            ("[\\]]", "]", true),
            ("[\\-x]", "-", true),
            ("[*?]", "*", true),
            ("[*?]", "a", false),
            ("[!]", "!", true),
            ("a[/]b", "a/b", true),
            ("a[^x]b", "a/b", true),
            ("[éè].txt", "é.txt", true),
            ("[éè].txt", "e.txt", false),
            ("\\*.txt", "*.txt", true),
            ("\\*.txt", "a.txt", false),
            ("file\\[1\\]", "file[1]", true),
            ("file\\[1\\]", "file1", false),
            ("\\!important", "!important", true),
            ("\\#notes", "#notes", true),
            // `{`, `}` and `,` are plain characters in Docker, not an alternation.
            ("{a,b}", "{a,b}", true),
            ("{a,b}", "a", false),
            ("a,b", "a,b", true),
            ("résumé.pdf", "résumé.pdf", true),
            ("*.pdf", "résumé.pdf", true),
        ]);
    }

    #[test]
    fn lines_are_read_like_docker() {
        check_exclusions(&[
            ("# comment\nsecret", "secret", true),
            ("# secret", "# secret", false),
            // Only a `#` in the first column starts a comment.
            (" # secret", "# secret", true),
            ("\n\n   \nsecret", "secret", true),
            ("  secret  ", "secret", true),
            ("\u{feff}secret", "secret", true),
            ("secret\r\nother\r\n", "other", true),
            ("/secret", "secret", true),
            ("./build", "build/app.js", true),
            ("build/", "build/app.js", true),
            ("a//b/../c", "a/c", true),
            ("a//b/../c", "a/b", false),
            ("*\n! /keep", "keep", false),
            ("*\n!./keep/", "keep/file", false),
            ("/", "anything", false),
        ]);
    }

    #[test]
    fn last_match_wins() {
        check_exclusions(&[
            ("*.log\n!important.log", "important.log", false),
            (
                "*.log\n!important.log\nimportant.log",
                "important.log",
                true,
            ),
            ("!important.log\n*.log", "important.log", true),
            ("build\n!build", "build/app.js", false),
            ("*\n!src\n!package.json", "src/handlers/app.js", false),
            ("*\n!src\n!package.json", "package.json", false),
            ("*\n!src\n!package.json", "node_modules/a/index.js", true),
            ("*\n!src\nsrc/*.test.js", "src/app.test.js", true),
        ]);
    }

    #[test]
    fn exception_inside_excluded_directory() {
        let rules = parse("foo\n!foo/bar.txt");
        assert!(rules.is_excluded("foo"));
        assert!(rules.is_excluded("foo/other.txt"));
        assert!(!rules.is_excluded("foo/bar.txt"));
        assert!(rules.may_include_below("foo"));

        let rules = parse("node_modules\n!node_modules/keep");
        assert!(!rules.is_excluded("node_modules/keep/index.js"));
        assert!(rules.is_excluded("node_modules/other/index.js"));
        assert!(rules.may_include_below("node_modules/keep"));
        assert!(rules.may_include_below("node_modules/keep/lib"));
        assert!(!rules.may_include_below("node_modules/other"));
    }

    #[test]
    fn may_include_below_cases() {
        // (patterns, directory, expected)
        let cases: &[(&str, &str, bool)] = &[
            ("", "node_modules", true),
            ("", "", true),
            ("node_modules", "node_modules", false),
            ("node_modules", "node_modules/a/b", false),
            ("node_modules", "src", true),
            ("node_modules", "", true),
            ("*\n!src\n!package.json", "node_modules", false),
            ("*\n!src\n!package.json", "src", true),
            ("node_modules\n!*.md", "node_modules", false),
            ("node_modules\n!**/*.md", "node_modules", true),
            (
                "node_modules\n!node_modules/*/package.json",
                "node_modules",
                true,
            ),
            (
                "node_modules\n!node_modules/*/package.json",
                "node_modules/a",
                true,
            ),
            (
                "node_modules\n!node_modules/*/package.json",
                "node_modules/a/lib",
                false,
            ),
            ("node_modules\n!node_modules/a", "node_modules/b", false),
            ("node_modules\n!node_modules", "node_modules", true),
            // An exception before the rule that excludes the directory is overridden.
            ("!node_modules/keep\nnode_modules", "node_modules", false),
            // The exception matches only the directory itself, which a later rule excludes.
            ("dist\n!dist\ndist", "dist", false),
            ("dist\n!dis[a-z]/keep", "dist", true),
            ("dist\n!di?t/keep", "dist", true),
            ("dist\n!x?t/keep", "dist", false),
            ("dist\n!dist[^a]keep", "dist", true),
            ("./dist/\n", "./dist/", false),
        ];
        for &(text, dir, expected) in cases {
            assert_eq!(
                parse(text).may_include_below(dir),
                expected,
                "patterns {text:?}, directory {dir:?}"
            );
        }
    }

    #[test]
    fn may_include_below_agrees_with_is_excluded() {
        // Whenever a directory is reported as prunable, nothing below it may be included.
        let texts = [
            "node_modules\n!node_modules/*/package.json",
            "*\n!src\n!package.json",
            "a\n!a/**/keep",
            "a/b\n!a/b/c/d",
            "**/temp*\n!**/temp/keep",
        ];
        let paths = [
            "a/b/c/d",
            "a/b/keep",
            "a/x/y/keep",
            "node_modules/x/package.json",
            "node_modules/x/lib/package.json",
            "src/index.js",
            "package.json",
            "temp/keep",
            "x/temp/keep",
            "x/temporary/file",
        ];
        for text in texts {
            let rules = parse(text);
            for path in paths {
                let mut dir = String::new();
                for component in path.split('/') {
                    if !dir.is_empty() && !rules.may_include_below(&dir) {
                        assert!(
                            rules.is_excluded(path),
                            "patterns {text:?}: {dir:?} was pruned but {path:?} is included"
                        );
                    }
                    if !dir.is_empty() {
                        dir.push('/');
                    }
                    dir.push_str(component);
                }
            }
        }
    }

    #[test]
    fn paths_are_normalized() {
        let rules = parse("build");
        assert!(rules.is_excluded("./build/app.js"));
        assert!(rules.is_excluded("build/"));
        assert!(rules.is_excluded("build//app.js"));
        assert!(!rules.is_excluded(""));
        assert!(!rules.is_excluded("."));
        assert!(!parse("*").is_excluded(""));
        assert!(!DockerIgnore::empty().is_excluded("anything"));
    }

    #[test]
    fn invalid_patterns_name_file_line_and_pattern() {
        let cases: &[(&str, &str)] = &[
            (
                "ok\n# comment\n\n[abc",
                "app/.dockerignore: line 4: invalid pattern `[abc`: the character class `[` \
                 is not closed by `]`; fix or remove the line",
            ),
            (
                "[]",
                "app/.dockerignore: line 1: invalid pattern `[]`: the character class is empty; \
                 escape a literal `]` as `\\]`; fix or remove the line",
            ),
            (
                "  [z-a]  ",
                "app/.dockerignore: line 1: invalid pattern `[z-a]`: the character range `z-a` \
                 is reversed; fix or remove the line",
            ),
            (
                "x\nfoo\\",
                "app/.dockerignore: line 2: invalid pattern `foo\\`: the trailing `\\` escapes \
                 nothing; fix or remove the line",
            ),
            (
                "!",
                "app/.dockerignore: line 1: invalid pattern `!`: `!` is not followed by a \
                 pattern; fix or remove the line",
            ),
            (
                "a\nb\n!/",
                "app/.dockerignore: line 3: invalid pattern `!/`: `!` is not followed by a \
                 pattern; fix or remove the line",
            ),
        ];
        for &(text, expected) in cases {
            assert_eq!(parse_error(text), expected, "patterns {text:?}");
        }
    }

    #[test]
    fn invalid_pattern_variants() {
        for text in [
            "! ",
            "[a-]",
            "[-a]",
            "[^]",
            "[a\\",
            "[",
            "x[\\",
            "[\u{100}-\u{2000}]",
        ] {
            let error = DockerIgnore::parse(text, Path::new(".dockerignore"))
                .expect_err(&format!("{text:?} should be rejected"));
            assert!(
                matches!(error, DockerIgnoreError::Pattern { line: 1, .. }),
                "{text:?}: {error}"
            );
        }
    }

    #[test]
    fn load_reads_the_file_in_the_app_directory() {
        let app = tempfile::tempdir().expect("temporary directory");
        let rules = DockerIgnore::load(app.path()).expect("a missing file is no error");
        assert!(!rules.is_excluded("node_modules"));

        fs::write(app.path().join(".dockerignore"), "node_modules\n").expect("write");
        let rules = DockerIgnore::load(app.path()).expect("load");
        assert!(rules.is_excluded("node_modules"));
        assert!(!rules.is_excluded("src"));
    }

    #[test]
    fn load_reports_invalid_pattern_with_path() {
        let app = tempfile::tempdir().expect("temporary directory");
        let path = app.path().join(".dockerignore");
        fs::write(&path, "ok\n[oops\n").expect("write");
        let error = DockerIgnore::load(app.path()).expect_err("invalid pattern");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "{}: line 2: invalid pattern `[oops`",
                path.display()
            )),
            "{message}"
        );
    }

    #[test]
    fn load_reports_unreadable_file() {
        let app = tempfile::tempdir().expect("temporary directory");
        let path = app.path().join(".dockerignore");
        fs::create_dir(&path).expect("create directory");
        let error = DockerIgnore::load(app.path()).expect_err("a directory is not readable");
        assert!(matches!(error, DockerIgnoreError::Read { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("cannot read {}: ", path.display())),
            "{error}"
        );

        fs::remove_dir(&path).expect("remove directory");
        fs::write(&path, b"node_modules\n\xff\xfe\n").expect("write");
        let error = DockerIgnore::load(app.path()).expect_err("not UTF-8");
        assert!(matches!(error, DockerIgnoreError::Read { .. }), "{error:?}");
    }
}
