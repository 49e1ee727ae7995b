//! The secret guard: files in the app directory that are almost certainly credentials, which
//! an image would hand to everyone who can pull it.
//!
//! A file counts as a secret by its name (`.env`, `id_rsa`, `.aws/credentials`) or by its
//! contents (a PEM private key, an `.npmrc` auth token, an `aws_secret_access_key` line).
//! `.dockerignore` keeps a file out of the [`FileList`] and so out of this check, and
//! `--allow-secret PATH` lets a named file through.
//!
//! Nothing under a `node_modules` folder is checked. Packages are already public on the npm
//! registry, so packing them discloses nothing new, and they ship test keys and sample `.env`
//! files that the user can neither fix nor sensibly list one by one.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use tracing::debug;

use crate::error::Error;
use crate::files::{EntryKind, FileEntry, FileList};

/// Largest file whose contents are searched for keys and tokens. Credentials files are small.
const MAX_SCANNED_SIZE: u64 = 1024 * 1024;

/// How much of a file decides whether it is text: a NUL byte there means binary.
const TEXT_SNIFF_SIZE: usize = 8 * 1024;

/// `.env.*` files that conventionally hold placeholders, not values.
const ENV_TEMPLATES: [&str; 3] = [".env.example", ".env.sample", ".env.template"];

/// File names that OpenSSH gives private keys.
const SSH_KEY_NAMES: [&str; 4] = ["id_rsa", "id_ed25519", "id_ecdsa", "id_dsa"];

/// The reason a file counts as a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// `.env` or `.env.*`, other than the template names.
    EnvFile,
    /// A file named like an OpenSSH private key.
    SshPrivateKey,
    /// A PEM `-----BEGIN ... PRIVATE KEY-----` block with key data.
    PrivateKey,
    /// An `.npmrc` with `_authToken`, `_auth` or `_password`.
    NpmToken,
    /// `.aws/credentials`, or a line setting `aws_secret_access_key`.
    AwsCredentials,
}

impl fmt::Display for SecretKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecretKind::EnvFile => "environment file",
            SecretKind::SshPrivateKey => "SSH private key",
            SecretKind::PrivateKey => "PEM private key",
            SecretKind::NpmToken => "npm auth token",
            SecretKind::AwsCredentials => "AWS secret access key",
        })
    }
}

/// A file that looks like a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFinding {
    /// The `/`-separated path relative to the app directory.
    pub path: String,
    pub kind: SecretKind,
}

impl fmt::Display for SecretFinding {
    /// Formats as `` `path` (kind) ``.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` ({})", self.path, self.kind)
    }
}

/// Lists the files in `files` that look like secrets, except those that `allowed` names by
/// their path relative to the app directory (`./` and a trailing `/` are ignored).
pub fn find_secrets(files: &FileList, allowed: &[String]) -> Vec<SecretFinding> {
    let allowed: Vec<&str> = allowed.iter().map(|path| normalize(path)).collect();
    files
        .entries_matching(|path| !in_node_modules(path) && !allowed.contains(&path))
        .filter_map(|entry| {
            secret_kind(&entry).map(|kind| SecretFinding {
                path: entry.path,
                kind,
            })
        })
        .collect()
}

/// Describes `findings` as one error line that lists the files and the two ways out.
pub fn secrets_error(app_dir: &Path, findings: &[SecretFinding]) -> Error {
    const LISTED: usize = 10;
    let mut list: Vec<String> = findings
        .iter()
        .take(LISTED)
        .map(ToString::to_string)
        .collect();
    if findings.len() > LISTED {
        list.push(format!("and {} more", findings.len() - LISTED));
    }
    let count = findings.len();
    Error::AppDirectory {
        path: app_dir.to_path_buf(),
        reason: format!(
            "contains {count} {}, which anyone who can pull the image could read: {}; add {} \
             to .dockerignore, or pass --allow-secret PATH for each file that belongs in the \
             image",
            if count == 1 {
                "file that looks like a secret"
            } else {
                "files that look like secrets"
            },
            list.join(", "),
            if count == 1 { "it" } else { "them" },
        ),
    }
}

fn normalize(path: &str) -> &str {
    let mut path = path.trim_end_matches('/');
    while let Some(rest) = path.strip_prefix("./") {
        path = rest;
    }
    path
}

fn in_node_modules(path: &str) -> bool {
    path.split('/').any(|segment| segment == "node_modules")
}

fn secret_kind(entry: &FileEntry) -> Option<SecretKind> {
    let (folder, name) = entry.path.rsplit_once('/').unwrap_or(("", &entry.path));
    let size = match entry.kind {
        EntryKind::Directory => return None,
        EntryKind::File { size } => Some(size),
        // A link is checked by name only; its target, when inside the app, is checked itself.
        EntryKind::Symlink { .. } => None,
    };
    if let Some(kind) = kind_by_name(folder, name) {
        return Some(kind);
    }
    let size = size.filter(|size| *size <= MAX_SCANNED_SIZE)?;
    let text = read_text(entry, size)?;
    if name == ".npmrc" {
        return has_npm_token(&text).then_some(SecretKind::NpmToken);
    }
    if contains_private_key(&text) {
        return Some(SecretKind::PrivateKey);
    }
    has_aws_secret(&text).then_some(SecretKind::AwsCredentials)
}

fn kind_by_name(folder: &str, name: &str) -> Option<SecretKind> {
    let is_env = name == ".env" || (name.starts_with(".env.") && !ENV_TEMPLATES.contains(&name));
    if is_env {
        return Some(SecretKind::EnvFile);
    }
    if SSH_KEY_NAMES.contains(&name) {
        return Some(SecretKind::SshPrivateKey);
    }
    let folder_name = folder.rsplit('/').next().unwrap_or(folder);
    if folder_name == ".aws" && name == "credentials" {
        return Some(SecretKind::AwsCredentials);
    }
    None
}

/// Reads the file as text, or returns `None` for a binary or unreadable file.
fn read_text(entry: &FileEntry, size: u64) -> Option<String> {
    let mut bytes = Vec::with_capacity(size as usize);
    let read = File::open(entry.source())
        .and_then(|file| file.take(MAX_SCANNED_SIZE).read_to_end(&mut bytes));
    if let Err(error) = read {
        // Packing the layer reads the file again and reports the error there.
        debug!(path = %entry.source().display(), %error, "cannot read the file to check it for secrets");
        return None;
    }
    let sniffed = &bytes[..bytes.len().min(TEXT_SNIFF_SIZE)];
    if sniffed.contains(&0) {
        return None;
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Finds a PEM private key block with key data, not just its marker: source code that
/// mentions `-----BEGIN PRIVATE KEY-----` in a string or a pattern is not a key.
fn contains_private_key(text: &str) -> bool {
    const BEGIN: &str = "-----BEGIN ";
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        rest = &rest[start + BEGIN.len()..];
        let Some(label_end) = rest.find("-----") else {
            return false;
        };
        let label = &rest[..label_end];
        if !label.ends_with("PRIVATE KEY") || label.contains('\n') {
            continue;
        }
        let body = &rest[label_end + "-----".len()..];
        let end_marker = format!("-----END {label}-----");
        if let Some(body_end) = body.find(&end_marker) {
            if is_key_data(&body[..body_end]) {
                return true;
            }
        }
    }
    false
}

/// Reports whether the text between PEM markers is base64 key data: at least 64 base64
/// characters, with few others. Header lines of encrypted keys (`Proc-Type: ...`) are
/// skipped, and `\n` escapes count as line breaks, so a key inside a JSON string (as in a
/// Google service account file) is found too.
fn is_key_data(body: &str) -> bool {
    let body = body.replace("\\n", "\n").replace("\\r", "\n");
    let mut base64 = 0usize;
    let mut other = 0usize;
    for line in body.lines().filter(|line| !line.contains(':')) {
        for character in line.trim().chars() {
            if character.is_ascii_alphanumeric() || matches!(character, '+' | '/' | '=') {
                base64 += 1;
            } else {
                other += 1;
            }
        }
    }
    base64 >= 64 && other * 20 <= base64
}

/// Finds an `.npmrc` line that sets `_authToken`, `_auth` or `_password` (also scoped to a
/// registry, as `//registry.npmjs.org/:_authToken=...`) to a value. A value that is only an
/// environment variable reference (`${NPM_TOKEN}`), which npm expands when it reads the
/// file, is the recommended way to keep the token out of the file and does not count.
fn has_npm_token(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            return false;
        }
        let Some((key, value)) = line.split_once('=') else {
            return false;
        };
        let name = key.trim().rsplit(':').next().unwrap_or_default();
        let value = value.trim().trim_matches('"').trim_matches('\'');
        matches!(name, "_authToken" | "_auth" | "_password")
            && !value.is_empty()
            && !is_environment_reference(value)
    })
}

fn is_environment_reference(value: &str) -> bool {
    value
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
        .is_some_and(|name| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Finds a line that sets `aws_secret_access_key` to a value, as the AWS credentials and
/// config files do (`aws_secret_access_key = ...`, any case).
fn has_aws_secret(text: &str) -> bool {
    const KEY: &str = "aws_secret_access_key";
    text.lines().any(|line| {
        let line = line.trim_start();
        line.get(..KEY.len())
            .is_some_and(|key| key.eq_ignore_ascii_case(KEY))
            && line[KEY.len()..]
                .trim_start()
                .strip_prefix('=')
                .is_some_and(|value| !value.trim().is_empty())
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use super::*;
    use crate::dockerignore::DockerIgnore;

    /// 64 lines of a made-up RSA key body: base64 characters, but not a real key.
    fn key_body() -> String {
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2\n".repeat(4)
    }

    fn pem_key(label: &str) -> String {
        format!(
            "-----BEGIN {label}-----\n{}-----END {label}-----\n",
            key_body()
        )
    }

    struct App {
        dir: tempfile::TempDir,
    }

    impl App {
        fn new() -> App {
            App {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn write(&self, path: &str, content: impl AsRef<[u8]>) -> &App {
            let full: PathBuf = self.dir.path().join(path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, content).unwrap();
            self
        }

        fn scan(&self) -> FileList {
            let ignore = DockerIgnore::load(self.dir.path()).unwrap();
            FileList::scan(self.dir.path(), &ignore).unwrap()
        }

        fn secrets(&self, allowed: &[&str]) -> Vec<(String, SecretKind)> {
            let allowed: Vec<String> = allowed.iter().map(|path| path.to_string()).collect();
            find_secrets(&self.scan(), &allowed)
                .into_iter()
                .map(|finding| (finding.path, finding.kind))
                .collect()
        }
    }

    fn found(entries: &[(&str, SecretKind)]) -> Vec<(String, SecretKind)> {
        entries
            .iter()
            .map(|(path, kind)| (path.to_string(), *kind))
            .collect()
    }

    #[test]
    fn env_files_are_found_except_templates() {
        let app = App::new();
        for name in [
            ".env",
            ".env.production",
            "config/.env.local",
            ".env.example",
            ".env.sample",
            ".env.template",
            ".envrc",
            "env.js",
        ] {
            app.write(name, "KEY=value\n");
        }
        assert_eq!(
            app.secrets(&[]),
            found(&[
                (".env", SecretKind::EnvFile),
                (".env.production", SecretKind::EnvFile),
                ("config/.env.local", SecretKind::EnvFile),
            ])
        );
    }

    #[test]
    fn private_keys_are_found_by_content_and_name() {
        let app = App::new();
        app.write("certs/server.key", pem_key("RSA PRIVATE KEY"))
            .write("certs/server.pem", pem_key("PRIVATE KEY"))
            .write("certs/ca.pem", pem_key("CERTIFICATE"))
            .write("deploy/id_ed25519", "anything")
            .write("deploy/id_ed25519.pub", "ssh-ed25519 AAAA")
            .write("notes.txt", pem_key("OPENSSH PRIVATE KEY"));
        assert_eq!(
            app.secrets(&[]),
            found(&[
                ("certs/server.key", SecretKind::PrivateKey),
                ("certs/server.pem", SecretKind::PrivateKey),
                ("deploy/id_ed25519", SecretKind::SshPrivateKey),
                ("notes.txt", SecretKind::PrivateKey),
            ])
        );
    }

    #[test]
    fn key_inside_json_string_is_found() {
        let escaped = pem_key("PRIVATE KEY").replace('\n', "\\n");
        let json = format!(
            "{{\"type\": \"service_account\", \"private_key\": \"{escaped}\", \"client_email\": \"x\"}}"
        );
        let app = App::new();
        app.write("service-account.json", json);
        assert_eq!(
            app.secrets(&[]),
            found(&[("service-account.json", SecretKind::PrivateKey)])
        );
    }

    #[test]
    fn encrypted_key_with_headers_is_found() {
        let key = format!(
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: \
             AES-128-CBC,0123456789ABCDEF\n\n{}-----END RSA PRIVATE KEY-----\n",
            key_body()
        );
        assert!(contains_private_key(&key));
    }

    #[test]
    fn key_markers_in_code_are_ignored() {
        let source = r#"
            const BEGIN = "-----BEGIN PRIVATE KEY-----";
            const pem = `-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----`;
            if (text.includes("-----BEGIN RSA PRIVATE KEY-----")) throw new Error("no keys");
        "#;
        assert!(!contains_private_key(source));
        let truncated = format!("-----BEGIN PRIVATE KEY-----\n{}", key_body());
        assert!(!contains_private_key(&truncated));
    }

    #[test]
    fn npmrc_with_token_is_found() {
        assert!(has_npm_token(
            "//registry.npmjs.org/:_authToken=npm_abc123\n"
        ));
        assert!(has_npm_token("_auth = dXNlcjpwYXNz\n"));
        assert!(has_npm_token(
            "//npm.example:8080/:_password=\"cGFzcw==\"\n"
        ));
        assert!(!has_npm_token(
            "//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n"
        ));
        assert!(!has_npm_token(
            "# _authToken=npm_abc123\nregistry=https://r.example/\n"
        ));
        assert!(!has_npm_token("//registry.npmjs.org/:_authToken=\n"));
        assert!(!has_npm_token("always-auth=true\n"));

        let app = App::new();
        app.write(".npmrc", "//registry.npmjs.org/:_authToken=npm_abc123\n")
            .write(
                "packages/lib/.npmrc",
                "//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n",
            );
        assert_eq!(app.secrets(&[]), found(&[(".npmrc", SecretKind::NpmToken)]));
    }

    #[test]
    fn aws_credentials_are_found() {
        let app = App::new();
        app.write(".aws/credentials", "[default]\n")
            .write(
                "deploy/settings.ini",
                "[prod]\nAWS_Secret_Access_Key = abc/def\n",
            )
            .write(
                "docs/setup.md",
                "Set aws_secret_access_key in ~/.aws/credentials.\n",
            )
            .write("empty.ini", "aws_secret_access_key =\n");
        assert_eq!(
            app.secrets(&[]),
            found(&[
                (".aws/credentials", SecretKind::AwsCredentials),
                ("deploy/settings.ini", SecretKind::AwsCredentials),
            ])
        );
    }

    #[test]
    fn node_modules_are_not_checked() {
        let app = App::new();
        app.write("node_modules/pkg/.env", "KEY=value\n")
            .write("node_modules/pkg/test/key.pem", pem_key("PRIVATE KEY"))
            .write("src/node_modules/local/.npmrc", "_auth=abc\n");
        assert_eq!(app.secrets(&[]), []);
    }

    #[test]
    fn allowed_and_ignored_files_pass() {
        let app = App::new();
        app.write(".env", "KEY=value\n")
            .write("certs/dev.pem", pem_key("EC PRIVATE KEY"))
            .write("secret/.env.prod", "KEY=value\n")
            .write(".dockerignore", "secret/\n");
        assert_eq!(app.secrets(&["./.env", "certs/dev.pem"]), []);
        assert_eq!(
            app.secrets(&[]),
            found(&[
                (".env", SecretKind::EnvFile),
                ("certs/dev.pem", SecretKind::PrivateKey),
            ])
        );
    }

    #[test]
    fn binary_and_large_files_are_not_searched() {
        let mut binary = pem_key("PRIVATE KEY").into_bytes();
        binary.insert(0, 0);
        let mut large = pem_key("PRIVATE KEY");
        large.push_str(&" ".repeat(MAX_SCANNED_SIZE as usize));
        let app = App::new();
        app.write("image.bin", binary).write("big.txt", large);
        assert_eq!(app.secrets(&[]), []);
    }

    #[test]
    fn symlink_is_checked_by_name_only() {
        let app = App::new();
        app.write("config/prod.txt", "KEY=value\n");
        std::os::unix::fs::symlink("config/prod.txt", app.dir.path().join(".env")).unwrap();
        std::os::unix::fs::symlink("certs/x.pem", app.dir.path().join("key-link")).unwrap();
        assert_eq!(app.secrets(&[]), found(&[(".env", SecretKind::EnvFile)]));
    }

    #[test]
    fn error_lists_files_and_fixes() {
        let findings = [
            SecretFinding {
                path: ".env".to_string(),
                kind: SecretKind::EnvFile,
            },
            SecretFinding {
                path: ".npmrc".to_string(),
                kind: SecretKind::NpmToken,
            },
        ];
        assert_eq!(
            secrets_error(Path::new("/src/app"), &findings).to_string(),
            "app directory `/src/app` contains 2 files that look like secrets, which anyone who \
             can pull the image could read: `.env` (environment file), `.npmrc` (npm auth \
             token); add them to .dockerignore, or pass --allow-secret PATH for each file that \
             belongs in the image"
        );
        assert_eq!(
            secrets_error(Path::new("/src/app"), &findings[..1]).to_string(),
            "app directory `/src/app` contains 1 file that looks like a secret, which anyone who \
             can pull the image could read: `.env` (environment file); add it to \
             .dockerignore, or pass --allow-secret PATH for each file that belongs in the image"
        );
    }

    #[test]
    fn error_shortens_long_lists() {
        let findings: Vec<SecretFinding> = (0..12)
            .map(|number| SecretFinding {
                path: format!("keys/{number}.pem"),
                kind: SecretKind::PrivateKey,
            })
            .collect();
        let message = secrets_error(Path::new("/a"), &findings).to_string();
        assert!(
            message.contains("`keys/9.pem` (PEM private key), and 2 more;"),
            "{message}"
        );
        assert!(!message.contains("keys/10.pem"), "{message}");
    }
}
