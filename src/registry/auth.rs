//! Registry authentication: `WWW-Authenticate` challenges and the credentials in Docker's
//! `config.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

/// Longest `WWW-Authenticate` header this parser reads; real ones are a few hundred bytes.
const MAX_CHALLENGE_LENGTH: usize = 8 * 1024;

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    /// The token flow: GET `realm?service=…&scope=…` for a token.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header; `None` for unknown schemes, missing realms or headers
/// too long to be genuine.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    if header.len() > MAX_CHALLENGE_LENGTH {
        return None;
    }
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let parameters = parse_parameters(rest)?;
    Some(Challenge::Bearer {
        realm: parameters.get("realm")?.clone(),
        service: parameters.get("service").cloned(),
        scope: parameters.get("scope").cloned(),
    })
}

/// Parses `key="value", key=value` pairs; quoted values may contain commas and `\"`.
fn parse_parameters(text: &str) -> Option<BTreeMap<String, String>> {
    let mut parameters = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(parameters);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return None;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.push(chars.next()?),
                    '"' => {
                        closed = true;
                        break;
                    }
                    other => value.push(other),
                }
            }
            if !closed {
                return None;
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        parameters.insert(key, value);
    }
}

/// A username and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // The password never reaches a log, even at trace level.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// The `Authorization` header value for Basic authentication.
    pub fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", BASE64.encode(pair))
    }
}

/// The credential parts of Docker's `config.json`: `auths`, `credHelpers` and `credsStore`.
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    auths: BTreeMap<String, Credentials>,
    cred_helpers: BTreeMap<String, String>,
    creds_store: Option<String>,
}

impl DockerConfig {
    /// Loads `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`; a missing or unreadable
    /// file gives an empty configuration, as the Docker CLI treats it.
    pub fn load() -> DockerConfig {
        match config_path() {
            Some(path) => DockerConfig::load_from(&path),
            None => DockerConfig::default(),
        }
    }

    pub fn load_from(path: &Path) -> DockerConfig {
        let Ok(text) = std::fs::read(path) else {
            return DockerConfig::default();
        };
        match DockerConfig::parse(&text) {
            Some(config) => config,
            None => {
                tracing::warn!(path = %path.display(), "ignoring Docker config that is not valid JSON");
                DockerConfig::default()
            }
        }
    }

    pub fn parse(text: &[u8]) -> Option<DockerConfig> {
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(default)]
            auths: BTreeMap<String, Entry>,
            #[serde(default, rename = "credHelpers")]
            cred_helpers: BTreeMap<String, String>,
            #[serde(default, rename = "credsStore")]
            creds_store: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            auth: Option<String>,
            username: Option<String>,
            password: Option<String>,
            identitytoken: Option<String>,
        }
        let file: File = serde_json::from_slice(text).ok()?;
        let mut auths = BTreeMap::new();
        for (key, entry) in file.auths {
            let credentials = if let Some(token) = entry.identitytoken.filter(|t| !t.is_empty()) {
                // Docker sends an identity token as the password of the `<token>` user.
                Some(Credentials {
                    username: "<token>".to_string(),
                    password: token,
                })
            } else if let (Some(username), Some(password)) = (entry.username, entry.password) {
                Some(Credentials { username, password })
            } else {
                entry.auth.as_deref().and_then(decode_auth)
            };
            if let Some(credentials) = credentials {
                auths.insert(normalize_registry_key(&key), credentials);
            }
        }
        let cred_helpers = file
            .cred_helpers
            .into_iter()
            .map(|(key, helper)| (normalize_registry_key(&key), helper))
            .collect();
        Some(DockerConfig {
            auths,
            cred_helpers,
            creds_store: file.creds_store.filter(|store| !store.is_empty()),
        })
    }

    /// The helper that config.json's `credHelpers` names for `registry` alone.
    pub fn registry_helper(&self, registry: &str) -> Option<&str> {
        self.cred_helpers.get(registry).map(String::as_str)
    }

    /// The credential helper that config.json names for `registry`: its `credHelpers` entry,
    /// else `credsStore`.
    pub fn helper_for(&self, registry: &str) -> Option<&str> {
        self.cred_helpers
            .get(registry)
            .or(self.creds_store.as_ref())
            .map(String::as_str)
    }

    /// Returns the stored credentials for `registry` (`host[:port]`).
    pub fn credentials(&self, registry: &str) -> Option<&Credentials> {
        let key = if registry == crate::reference::DOCKER_HUB || registry == "registry-1.docker.io"
        {
            "index.docker.io"
        } else {
            registry
        };
        self.auths.get(key)
    }
}

/// Runs `docker-credential-<helper> get` for `registry`, as the Docker CLI does. Returns
/// `Ok(None)` when the helper has no credentials for it.
pub fn run_credential_helper(helper: &str, registry: &str) -> Result<Option<Credentials>, String> {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is reported by its exit status below.
        let _ = stdin.write_all(registry.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("{program} failed: {e}"))?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stdout).trim().to_string();
        // The helpers' protocol reports a missing entry with this message on stdout.
        if message.contains("credentials not found") {
            return Ok(None);
        }
        return Err(format!(
            "{program} get failed with {}: {message}",
            output.status
        ));
    }

    #[derive(serde::Deserialize)]
    struct HelperOutput {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let parsed: HelperOutput = serde_json::from_slice(&output.stdout)
        .map_err(|_| format!("{program} get printed something other than its JSON answer"))?;
    Ok(Some(Credentials {
        username: parsed.username,
        password: parsed.secret,
    }))
}

/// Reports whether `docker-credential-<helper>` is on `PATH`.
pub fn credential_helper_installed(helper: &str) -> bool {
    let program = format!("docker-credential-{helper}");
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(&program).is_file()))
}

fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// Decodes the base64 `user:password` of an `auth` entry.
fn decode_auth(auth: &str) -> Option<Credentials> {
    let decoded = BASE64.decode(auth.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (username, password) = text.split_once(':')?;
    Some(Credentials {
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// Reduces a config key such as `https://index.docker.io/v1/` to its `host[:port]`.
fn normalize_registry_key(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme.split('/').next().unwrap_or(without_scheme);
    if host == "registry-1.docker.io" || host == "docker.io" {
        "index.docker.io".to_string()
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_bearer_challenge() {
        let header = r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#;
        assert_eq!(
            parse_challenge(header),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".to_string(),
                service: Some("registry.example".to_string()),
                scope: Some("repository:a/b:pull,push".to_string()),
            })
        );
    }

    #[test]
    fn parse_basic_and_unknown_challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge(r#"Bearer realm="unterminated"#), None);
        assert_eq!(
            parse_challenge(&format!("Bearer realm=\"{}\"", "a".repeat(10_000))),
            None
        );
    }

    #[test]
    fn docker_config_forms() {
        let config = DockerConfig::parse(
            br#"{"auths":{
                "https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},
                "localhost:5000":{"username":"u","password":"p:w"},
                "https://r.example/v2/":{"identitytoken":"tok"},
                "broken.example":{"auth":"!!"}
            }}"#,
        )
        .unwrap();
        let hub = config.credentials("docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("user", "pass")
        );
        assert_eq!(
            config.credentials("localhost:5000").unwrap().password,
            "p:w"
        );
        assert_eq!(config.credentials("r.example").unwrap().username, "<token>");
        assert!(config.credentials("broken.example").is_none());
    }

    #[test]
    fn credential_helpers_are_found_per_registry() {
        let config = DockerConfig::parse(
            br#"{"credHelpers":{"123456789012.dkr.ecr.us-east-1.amazonaws.com":"ecr-login"},"credsStore":"desktop"}"#,
        )
        .unwrap();
        assert_eq!(
            config.helper_for("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            Some("ecr-login")
        );
        assert_eq!(config.helper_for("localhost:5000"), Some("desktop"));
        assert_eq!(DockerConfig::default().helper_for("x"), None);
    }

    #[test]
    fn debug_output_hides_password() {
        let credentials = Credentials {
            username: "u".to_string(),
            password: "secret".to_string(),
        };
        assert!(!format!("{credentials:?}").contains("secret"));
    }
}
