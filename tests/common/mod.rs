//! Helpers shared by the integration tests: a real registry (Debian's `docker-registry`), with
//! Basic or token authentication and TLS when a test requests them, the synthetic base image in
//! `testdata/`, the example app with its dependencies installed, and the independent image
//! reader, token server and Lambda invoker in `tests/tools/`.
//!
//! Every helper panics with the failing command's output, because a test cannot go on without it.
//! Test binaries that use only some helpers would warn about the rest, hence `dead_code`.
#![allow(dead_code)]

use std::collections::hash_map::DefaultHasher;
use std::ffi::OsStr;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// Tag of the base images in `testdata/base` and `testdata/base-docker`.
pub const BASE_TAG: &str = "24";

const REGISTRY_READY_TIMEOUT: Duration = Duration::from_secs(20);
const REGISTRY_START_ATTEMPTS: u32 = 3;

/// Returns the absolute path of a file or folder in this crate.
pub fn project_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Returns the path of a synthetic base image layout: `"base"` (OCI) or `"base-docker"`.
pub fn base_layout(layout: &str) -> PathBuf {
    assert!(
        layout == "base" || layout == "base-docker",
        "unknown base layout {layout:?}: expected \"base\" or \"base-docker\""
    );
    project_path("testdata").join(layout)
}

/// Reads the digest of the top manifest or index in an OCI image layout's `index.json`.
pub fn layout_top_digest(layout: &Path) -> String {
    let index_path = layout.join("index.json");
    let text = fs::read_to_string(&index_path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", index_path.display()));
    let index: Value = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{}: invalid JSON: {error}", index_path.display()));
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: first entry has no digest", index_path.display()))
        .to_string()
}

// --- Registry ------------------------------------------------------------------------------------

/// How a test registry authenticates and whether it serves HTTPS, for `Registry::start_with`.
/// Basic and token authentication exclude each other.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    basic_auth: Option<(String, String)>,
    token_auth: Option<TokenAuth>,
    tls_hostname: Option<String>,
}

impl RegistryOptions {
    /// Creates options for an anonymous, plain HTTP registry.
    pub fn new() -> RegistryOptions {
        RegistryOptions::default()
    }

    /// Requires HTTP Basic authentication as USER with PASSWORD.
    pub fn basic_auth(mut self, user: &str, password: &str) -> RegistryOptions {
        self.basic_auth = Some((user.to_string(), password.to_string()));
        self
    }

    /// Requires bearer tokens from a token server started with the registry.
    pub fn token_auth(mut self, token_auth: TokenAuth) -> RegistryOptions {
        self.token_auth = Some(token_auth);
        self
    }

    /// Serves HTTPS with a certificate for HOSTNAME and 127.0.0.1, issued by a throwaway CA.
    pub fn tls(mut self, hostname: &str) -> RegistryOptions {
        self.tls_hostname = Some(hostname.to_string());
        self
    }
}

/// Settings of the token server (`tests/tools/token_server.py`) behind a token-auth registry.
#[derive(Debug, Clone, Default)]
pub struct TokenAuth {
    credentials: Option<(String, String)>,
    anonymous_pull: bool,
}

impl TokenAuth {
    /// Creates settings for a token server that grants any client the actions it requests.
    pub fn new() -> TokenAuth {
        TokenAuth::default()
    }

    /// Requires token requests to carry Basic credentials USER and PASSWORD. Requests without
    /// them get 401 unless `anonymous_pull` lets them pull.
    pub fn credentials(mut self, user: &str, password: &str) -> TokenAuth {
        self.credentials = Some((user.to_string(), password.to_string()));
        self
    }

    /// Gives token requests without credentials a token for `pull` only, as public.ecr.aws
    /// does for public images.
    pub fn anonymous_pull(mut self, enabled: bool) -> TokenAuth {
        self.anonymous_pull = enabled;
        self
    }
}

/// A `docker-registry serve` process on 127.0.0.1 with its storage in a temporary folder, and
/// its token server if it uses token authentication. Dropping it kills both processes and
/// deletes the folder.
pub struct Registry {
    pub port: u16,
    credentials: Option<(String, String)>,
    tls_hostname: Option<String>,
    child: Child,
    token_server: Option<TokenServer>,
    dir: TempDir,
}

impl Registry {
    /// Starts a registry that allows anonymous pull and push.
    pub fn start() -> Registry {
        Registry::start_with(RegistryOptions::new())
    }

    /// Starts a registry that requires HTTP Basic authentication with one user, from an
    /// `htpasswd -B` file.
    pub fn start_with_basic_auth(user: &str, password: &str) -> Registry {
        Registry::start_with(RegistryOptions::new().basic_auth(user, password))
    }

    /// Starts a registry that requires bearer tokens from `tests/tools/token_server.py`.
    pub fn start_with_token_auth(token_auth: TokenAuth) -> Registry {
        Registry::start_with(RegistryOptions::new().token_auth(token_auth))
    }

    /// Starts an anonymous registry that serves HTTPS with a certificate for HOSTNAME and
    /// 127.0.0.1. Clients must trust `cert_path()`.
    pub fn start_with_tls(hostname: &str) -> Registry {
        Registry::start_with(RegistryOptions::new().tls(hostname))
    }

    /// Starts a registry with OPTIONS, retrying on another port if the chosen one was taken.
    pub fn start_with(options: RegistryOptions) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("lambda-image-registry-")
            .tempdir()
            .expect("cannot create a temporary folder for the registry");
        let tls = options
            .tls_hostname
            .as_deref()
            .map(|hostname| make_tls_certificate(dir.path(), hostname));
        let authentication = set_up_authentication(dir.path(), &options);
        let probe = ReadinessProbe {
            expected_status: if matches!(authentication.config, AuthConfig::None) {
                200
            } else {
                401
            },
            tls: tls.clone(),
        };

        for attempt in 1..=REGISTRY_START_ATTEMPTS {
            let port = free_port();
            let config = dir.path().join("config.yml");
            let text = registry_config(dir.path(), port, &authentication.config, tls.as_ref());
            fs::write(&config, text).expect("cannot write the registry config");
            let mut child = spawn_registry(&config, dir.path());

            let problem = match probe.wait_until_ready(&mut child, port) {
                Ok(()) => {
                    return Registry {
                        port,
                        credentials: authentication.credentials,
                        tls_hostname: options.tls_hostname,
                        child,
                        token_server: authentication.token_server,
                        dir,
                    };
                }
                Err(problem) => problem,
            };
            let _ = child.kill();
            let _ = child.wait();
            let log = fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
            // Another process may have taken the port between free_port() and the bind.
            if log.contains("address already in use") && attempt < REGISTRY_START_ATTEMPTS {
                continue;
            }
            let token_log = authentication
                .token_server
                .as_ref()
                .map(|server| format!("\ntoken server stderr:\n{}", server.stderr()))
                .unwrap_or_default();
            panic!("docker-registry on 127.0.0.1:{port} {problem}; its stderr:\n{log}{token_log}");
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Returns `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Returns `http://127.0.0.1:PORT`, or `https://…` for a TLS registry.
    pub fn url(&self) -> String {
        let scheme = if self.tls_hostname.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.host())
    }

    /// Returns the user and password of the registry's Basic authentication or token server,
    /// if it has any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(user, password)| (user.as_str(), password.as_str()))
    }

    /// Returns the hostname that a TLS registry's certificate names, besides 127.0.0.1.
    pub fn tls_hostname(&self) -> Option<&str> {
        self.tls_hostname.as_deref()
    }

    /// Returns the PEM certificate of the CA that issued a TLS registry's certificate, for a
    /// client's trust store (`SSL_CERT_FILE`, `--cacert`). `None` for a plain HTTP registry.
    pub fn cert_path(&self) -> Option<PathBuf> {
        self.tls_hostname
            .as_ref()
            .map(|_| self.dir.path().join(TLS_CA_CERTIFICATE))
    }

    /// Returns the token server's realm, `http://127.0.0.1:PORT/token`. Panics unless the
    /// registry uses token authentication.
    pub fn token_realm(&self) -> String {
        self.token_server().realm()
    }

    /// Returns the registry's storage folder (its `storage.filesystem.rootdirectory`), which
    /// contains every blob, manifest and upload in progress.
    pub fn storage_path(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Lists every file under the storage folder, as paths relative to it, so that a test can
    /// prove that a command uploaded nothing. The folder does not exist before the first push.
    pub fn stored_files(&self) -> std::collections::BTreeSet<PathBuf> {
        let storage = self.storage_path();
        let mut files = Vec::new();
        if storage.is_dir() {
            collect_files(&storage, &storage, &mut files);
        }
        files.into_iter().collect()
    }

    /// Returns what the registry has written to stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Returns the token server's log, one line per request in the form of
    /// `TokenRequest`'s `Display`. Panics unless the registry uses token authentication.
    pub fn token_requests(&self) -> Vec<String> {
        self.token_request_log()
            .iter()
            .map(TokenRequest::to_string)
            .collect()
    }

    /// Returns the token server's log, one entry per request, oldest first. Panics unless the
    /// registry uses token authentication.
    pub fn token_request_log(&self) -> Vec<TokenRequest> {
        read_lines(&self.token_server().request_log_path())
            .iter()
            .map(|line| TokenRequest::parse(line))
            .collect()
    }

    /// Returns every token the token server issued, so a test can check that none leaks.
    /// Panics unless the registry uses token authentication.
    pub fn issued_tokens(&self) -> Vec<String> {
        read_lines(&self.token_server().issued_tokens_path())
    }

    /// Returns what the token server has written to stderr so far. Panics unless the registry
    /// uses token authentication.
    pub fn token_server_log(&self) -> String {
        self.token_server().stderr()
    }

    fn token_server(&self) -> &TokenServer {
        self.token_server
            .as_ref()
            .expect("this registry was not started with token authentication")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    match fs::read_to_string(path) {
        Ok(text) => text.lines().map(str::to_string).collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => panic!("cannot read {}: {error}", path.display()),
    }
}

/// The `auth` section of a registry config.
enum AuthConfig {
    None,
    Htpasswd(PathBuf),
    Token {
        realm: String,
        root_certificate: PathBuf,
    },
}

/// A registry's authentication: its config section, the credentials clients need, and the
/// token server, if any.
struct Authentication {
    config: AuthConfig,
    credentials: Option<(String, String)>,
    token_server: Option<TokenServer>,
}

fn set_up_authentication(dir: &Path, options: &RegistryOptions) -> Authentication {
    match (&options.basic_auth, &options.token_auth) {
        (Some(_), Some(_)) => {
            panic!("a test registry takes Basic or token authentication, not both")
        }
        (Some((user, password)), None) => Authentication {
            config: AuthConfig::Htpasswd(write_htpasswd(dir, user, password)),
            credentials: options.basic_auth.clone(),
            token_server: None,
        },
        (None, Some(token_auth)) => {
            let server = TokenServer::start(dir, token_auth);
            Authentication {
                config: AuthConfig::Token {
                    realm: server.realm(),
                    root_certificate: server.certificate.clone(),
                },
                credentials: token_auth.credentials.clone(),
                token_server: Some(server),
            }
        }
        (None, None) => Authentication {
            config: AuthConfig::None,
            credentials: None,
            token_server: None,
        },
    }
}

fn registry_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("LAMBDA_IMAGE_TEST_REGISTRY_BIN") {
        return PathBuf::from(path);
    }
    find_on_path("docker-registry").unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"))
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Returns a port that was free a moment ago. Another process may still take it before the
/// registry binds it, which `Registry::start_with` handles by retrying.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("cannot bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("bound listener has no address")
        .port()
}

fn registry_config(dir: &Path, port: u16, auth: &AuthConfig, tls: Option<&TlsFiles>) -> String {
    let mut config = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n",
        storage = dir.join("storage").display(),
    );
    if let Some(tls) = tls {
        config.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            tls.certificate.display(),
            tls.key.display()
        ));
    }
    match auth {
        AuthConfig::None => {}
        AuthConfig::Htpasswd(htpasswd) => config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: lambda-image-test\n    path: {}\n",
            htpasswd.display()
        )),
        AuthConfig::Token {
            realm,
            root_certificate,
        } => config.push_str(&format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    \
             issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            root_certificate.display()
        )),
    }
    config
}

fn write_htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    // docker-registry 2.8 reads only bcrypt entries, hence -B.
    let output = Command::new("htpasswd")
        .args(["-B", "-b", "-n", user, password])
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run htpasswd (Debian package apache2-utils): {error}")
        });
    assert!(
        output.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = dir.join("htpasswd");
    fs::write(&path, &output.stdout).expect("cannot write the htpasswd file");
    path
}

fn spawn_registry(config: &Path, dir: &Path) -> Child {
    let binary = registry_binary();
    let log = fs::File::create(dir.join("registry.log")).expect("cannot create the registry log");
    let mut command = Command::new(&binary);
    command
        .arg("serve")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("cannot share the registry log"))
        .stderr(log);
    // REGISTRY_* variables override the config file, so one in the environment could move the
    // registry off 127.0.0.1 or onto other storage.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REGISTRY_") {
            command.env_remove(name);
        }
    }
    command.spawn().unwrap_or_else(|error| {
        panic!(
            "cannot start {}: {error}; install Debian's docker-registry package or set LAMBDA_IMAGE_TEST_REGISTRY_BIN",
            binary.display()
        )
    })
}

// --- Token server ------------------------------------------------------------------------------

/// `service` (the token's `aud`) and `issuer` (its `iss`) shared by the token server and the
/// registry's `auth.token` config.
const TOKEN_SERVICE: &str = "lambda-image-test-registry";
const TOKEN_ISSUER: &str = "lambda-image-test-token-issuer";

/// Files of the token server in the registry's folder: its request log (JSON lines), the tokens
/// it issued (one a line) and its stderr.
const TOKEN_REQUEST_LOG: &str = "token-requests.log";
const ISSUED_TOKENS: &str = "issued-tokens.log";
const TOKEN_SERVER_STDERR: &str = "token-server.log";

/// One request that the token server received, as its log records it. The log never contains
/// the `Authorization` header's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub path: String,
    /// Query parameters in the order sent, percent-decoded.
    pub query: Vec<(String, String)>,
    /// Whether the request carried an `Authorization` header.
    pub authorization: bool,
    pub status: u16,
    /// The `jti` claim of the token issued, if one was.
    pub token_id: Option<String>,
    /// Scopes in the token, as `repository:NAME:ACTIONS`.
    pub granted: Vec<String>,
}

impl TokenRequest {
    /// Returns every requested scope. One `scope` parameter may contain several, separated by
    /// spaces.
    pub fn scopes(&self) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(name, _)| name == "scope")
            .flat_map(|(_, value)| value.split_whitespace())
            .collect()
    }

    fn parse(line: &str) -> TokenRequest {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|error| malformed_log_line(line, &error.to_string()));
        let string = |value: &Value| -> String {
            value
                .as_str()
                .unwrap_or_else(|| malformed_log_line(line, &format!("{value} is not a string")))
                .to_string()
        };
        let array = |field: &str| -> Vec<Value> {
            entry[field]
                .as_array()
                .cloned()
                .unwrap_or_else(|| malformed_log_line(line, &format!("missing list {field}")))
        };
        TokenRequest {
            path: string(&entry["path"]),
            query: array("query")
                .iter()
                .map(|pair| (string(&pair[0]), string(&pair[1])))
                .collect(),
            authorization: entry["authorization"]
                .as_bool()
                .unwrap_or_else(|| malformed_log_line(line, "missing field authorization")),
            status: entry["status"]
                .as_u64()
                .and_then(|status| u16::try_from(status).ok())
                .unwrap_or_else(|| malformed_log_line(line, "missing field status")),
            token_id: entry["token_id"].as_str().map(str::to_string),
            granted: array("granted").iter().map(string).collect(),
        }
    }
}

fn malformed_log_line(line: &str, problem: &str) -> ! {
    panic!("token server log line {line:?}: {problem}")
}

impl std::fmt::Display for TokenRequest {
    /// Formats as `GET /token?service=…&scope=… authorization=yes status=200`, decoded.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let query: Vec<String> = self
            .query
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        write!(
            formatter,
            "GET {}?{} authorization={} status={}",
            self.path,
            query.join("&"),
            if self.authorization { "yes" } else { "no" },
            self.status
        )
    }
}

/// A `tests/tools/token_server.py` process whose files live in the registry's folder.
struct TokenServer {
    port: u16,
    certificate: PathBuf,
    dir: PathBuf,
    child: Child,
}

impl TokenServer {
    fn start(dir: &Path, token_auth: &TokenAuth) -> TokenServer {
        make_certificates("token", dir, &[]);
        let stderr = fs::File::create(dir.join(TOKEN_SERVER_STDERR))
            .expect("cannot create the token server's log");
        let mut child = token_server_command(dir, token_auth)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start tests/tools/token_server.py: {error}"));

        let port = match read_port(&mut child) {
            Ok(port) => port,
            Err(problem) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = fs::read_to_string(dir.join(TOKEN_SERVER_STDERR)).unwrap_or_default();
                panic!("token_server.py {problem}; its stderr:\n{log}");
            }
        };
        TokenServer {
            port,
            certificate: dir.join(TOKEN_CERTIFICATE),
            dir: dir.to_path_buf(),
            child,
        }
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    fn request_log_path(&self) -> PathBuf {
        self.dir.join(TOKEN_REQUEST_LOG)
    }

    fn issued_tokens_path(&self) -> PathBuf {
        self.dir.join(ISSUED_TOKENS)
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join(TOKEN_SERVER_STDERR)).unwrap_or_default()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token_server_command(dir: &Path, token_auth: &TokenAuth) -> Command {
    let mut command = python();
    command
        .arg(project_path("tests/tools/token_server.py"))
        .arg("--key")
        .arg(dir.join(TOKEN_KEY))
        .arg("--cert")
        .arg(dir.join(TOKEN_CERTIFICATE))
        .args(["--issuer", TOKEN_ISSUER, "--service", TOKEN_SERVICE])
        .arg("--log")
        .arg(dir.join(TOKEN_REQUEST_LOG))
        .arg("--tokens")
        .arg(dir.join(ISSUED_TOKENS));
    if let Some((user, password)) = &token_auth.credentials {
        // A file keeps the password out of the process list.
        let path = dir.join("token-credentials");
        fs::write(&path, format!("{user}:{password}"))
            .expect("cannot write the token server's credentials");
        command.arg("--credentials").arg(path);
    }
    if token_auth.anonymous_pull {
        command.arg("--anonymous-pull");
    }
    command
}

/// Reads the port that token_server.py prints as its first line once it listens.
fn read_port(child: &mut Child) -> Result<u16, String> {
    let stdout = child.stdout.take().expect("token server stdout is piped");
    let (sender, receiver) = std::sync::mpsc::channel();
    // Reading a pipe has no timeout, so a thread reads and this function waits on a channel.
    thread::spawn(move || {
        let mut line = String::new();
        let result = std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map(|_| line);
        let _ = sender.send(result);
    });
    let line = match receiver.recv_timeout(REGISTRY_READY_TIMEOUT) {
        Ok(Ok(line)) => line,
        Ok(Err(error)) => return Err(format!("stdout cannot be read: {error}")),
        Err(_) => {
            return Err(format!(
                "printed no port within {} s",
                REGISTRY_READY_TIMEOUT.as_secs()
            ))
        }
    };
    line.trim()
        .parse()
        .map_err(|_| format!("printed {line:?} where its port was expected"))
}

// --- Certificates -------------------------------------------------------------------------------

/// File names that `tests/tools/make_certs.sh` writes.
const TLS_CA_CERTIFICATE: &str = "ca.pem";
const TLS_CERTIFICATE: &str = "tls.pem";
const TLS_KEY: &str = "tls.key";
const TOKEN_CERTIFICATE: &str = "token.pem";
const TOKEN_KEY: &str = "token.key";

/// The certificate and key a TLS registry serves, and the name the certificate is for.
#[derive(Debug, Clone)]
struct TlsFiles {
    hostname: String,
    ca_certificate: PathBuf,
    certificate: PathBuf,
    key: PathBuf,
}

/// Runs `make_certs.sh KIND DIR ARGS…`.
fn make_certificates(kind: &str, dir: &Path, args: &[&str]) {
    let output = Command::new("sh")
        .arg(project_path("tests/tools/make_certs.sh"))
        .arg(kind)
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run tests/tools/make_certs.sh: {error}"));
    assert!(
        output.status.success(),
        "make_certs.sh {kind} {} {} failed (it needs the openssl command):\n{}",
        dir.display(),
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn make_tls_certificate(dir: &Path, hostname: &str) -> TlsFiles {
    make_certificates("tls", dir, &[hostname]);
    TlsFiles {
        hostname: hostname.to_string(),
        ca_certificate: dir.join(TLS_CA_CERTIFICATE),
        certificate: dir.join(TLS_CERTIFICATE),
        key: dir.join(TLS_KEY),
    }
}

// --- Readiness -----------------------------------------------------------------------------------

/// Python script that prints the status of `GET /v2/` over TLS after checking the certificate
/// against the CA and the hostname. The tests have no TLS client of their own.
const TLS_PROBE: &str = r#"
import socket, ssl, sys
ca_file, hostname, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
context = ssl.create_default_context(cafile=ca_file)
with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
    with context.wrap_socket(raw, server_hostname=hostname) as tls:
        tls.settimeout(2)
        tls.sendall(f"GET /v2/ HTTP/1.0\r\nHost: {hostname}:{port}\r\n\r\n".encode())
        print(tls.recv(64).split()[1].decode())
"#;

/// What `GET /v2/` must return before a registry counts as ready, and over which transport.
struct ReadinessProbe {
    /// 200, or 401 with authentication.
    expected_status: u16,
    tls: Option<TlsFiles>,
}

impl ReadinessProbe {
    /// Polls `GET /v2/` until it returns the expected status, the process exits, or the
    /// timeout passes. The error names which of the last two happened.
    fn wait_until_ready(&self, child: &mut Child, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + REGISTRY_READY_TIMEOUT;
        loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|error| format!("cannot be waited on: {error}"))?
            {
                return Err(format!("exited with {status} before it was ready"));
            }
            let problem = match self.status(port) {
                Ok(status) if status == self.expected_status => return Ok(()),
                Ok(status) => format!("last answer HTTP {status}"),
                Err(problem) => problem,
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "did not return {} for GET /v2/ within {} s ({problem})",
                    self.expected_status,
                    REGISTRY_READY_TIMEOUT.as_secs()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn status(&self, port: u16) -> Result<u16, String> {
        let Some(tls) = &self.tls else {
            return http_status(port, "/v2/").ok_or_else(|| "no HTTP answer".to_string());
        };
        // Only start python3 once the port accepts connections, to spawn it once or twice.
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        TcpStream::connect_timeout(&address, Duration::from_secs(1))
            .map_err(|error| format!("connection failed: {error}"))?;
        let mut command = python();
        command
            .args(["-c", TLS_PROBE])
            .arg(&tls.ca_certificate)
            .arg(&tls.hostname)
            .arg(port.to_string());
        let output = run_tool(command, "python3 for the TLS readiness probe");
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last_line = stderr.lines().last().unwrap_or("no output");
            return Err(format!("TLS probe failed: {last_line}"));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        text.trim()
            .parse()
            .map_err(|_| format!("TLS probe printed {text:?}"))
    }
}

/// Sends a plain HTTP/1.0 GET to 127.0.0.1:PORT and returns the status code, or `None` when
/// nothing valid came back.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status_line = response.lines().next()?;
    status_line.split_whitespace().nth(1)?.parse().ok()
}

// --- Python and Node.js tools ----------------------------------------------------------------

fn python() -> Command {
    let interpreter =
        std::env::var_os("LAMBDA_IMAGE_TEST_PYTHON").unwrap_or_else(|| "python3".into());
    let mut command = Command::new(interpreter);
    // push_layout.py imports inspect_image.py, which would leave a __pycache__ in tests/tools.
    command.env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

fn run_tool(mut command: Command, what: &str) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {what}: {error}"))
}

/// Returns the `--user`, `--password` and `--cacert` options that inspect_image.py and
/// push_layout.py need for REGISTRY.
fn registry_tool_options(registry: &Registry) -> Vec<String> {
    let mut options = Vec::new();
    if let Some((user, password)) = registry.credentials() {
        options.extend([
            "--user".into(),
            user.into(),
            "--password".into(),
            password.into(),
        ]);
    }
    if let Some(cert_path) = registry.cert_path() {
        options.extend(["--cacert".into(), path_arg(&cert_path)]);
    }
    options
}

/// Pushes `testdata/<layout>` (`"base"` or `"base-docker"`) to `registry` as `repository:tag`
/// with `tests/tools/push_layout.py`, using the registry's credentials and CA certificate if it
/// has any.
pub fn push_base(registry: &Registry, layout: &str, repository: &str, tag: &str) {
    let mut command = python();
    command
        .arg(project_path("tests/tools/push_layout.py"))
        .arg(base_layout(layout))
        .args([registry.url().as_str(), repository, tag])
        .args(registry_tool_options(registry));
    let output = run_tool(command, "tests/tools/push_layout.py");
    assert!(
        output.status.success(),
        "push_layout.py {layout} to {}/{repository}:{tag} failed:\n{}\nregistry log:\n{}",
        registry.host(),
        String::from_utf8_lossy(&output.stderr),
        registry.log()
    );
}

/// Runs `tests/tools/push_layout.py` with ARGS and returns what it printed, or its stderr when
/// it exits non-zero. For pushes that may fail, such as ones without the needed credentials.
pub fn try_push_layout<I, S>(args: I) -> Result<String, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = python();
    command
        .arg(project_path("tests/tools/push_layout.py"))
        .args(args);
    let output = run_tool(command, "tests/tools/push_layout.py");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `tests/tools/inspect_image.py` with ARGS and returns its JSON, or its stderr when it
/// exits non-zero (a failed check or request).
pub fn try_inspect<I, S>(args: I) -> Result<Value, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = python();
    command
        .arg(project_path("tests/tools/inspect_image.py"))
        .args(args);
    let output = run_tool(command, "tests/tools/inspect_image.py");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|error| format!("inspect_image.py printed invalid JSON: {error}"))
}

fn inspect(args: Vec<String>) -> Value {
    try_inspect(&args)
        .unwrap_or_else(|stderr| panic!("inspect_image.py {} failed:\n{stderr}", args.join(" ")))
}

fn registry_args(registry: &Registry, repository: &str, reference: &str) -> Vec<String> {
    let mut args = vec![
        "registry".into(),
        registry.url(),
        repository.into(),
        reference.into(),
    ];
    args.extend(registry_tool_options(registry));
    args
}

fn path_arg(path: &Path) -> String {
    path.to_str()
        .unwrap_or_else(|| panic!("path is not UTF-8: {}", path.display()))
        .to_string()
}

/// Reads and verifies `repository:reference` (a tag or digest). An index resolves to its only
/// manifest, or else to linux/amd64.
pub fn inspect_registry(registry: &Registry, repository: &str, reference: &str) -> Value {
    inspect(registry_args(registry, repository, reference))
}

/// Like `inspect_registry`, picking PLATFORM (`os/arch[/variant]`) from an index.
pub fn inspect_registry_platform(
    registry: &Registry,
    repository: &str,
    reference: &str,
    platform: &str,
) -> Value {
    let mut args = registry_args(registry, repository, reference);
    args.extend(["--platform".into(), platform.into()]);
    inspect(args)
}

/// Like `inspect_registry_platform`, also extracting the layers' files into UNPACK_DIR.
pub fn inspect_registry_unpack(
    registry: &Registry,
    repository: &str,
    reference: &str,
    platform: &str,
    unpack_dir: &Path,
) -> Value {
    let mut args = registry_args(registry, repository, reference);
    args.extend([
        "--platform".into(),
        platform.into(),
        "--unpack".into(),
        path_arg(unpack_dir),
    ]);
    inspect(args)
}

/// Reads and verifies the only image in an OCI image layout. An index resolves to its only
/// manifest, or else to linux/amd64.
pub fn inspect_layout(path: &Path) -> Value {
    inspect(vec!["layout".into(), path_arg(path)])
}

/// Like `inspect_layout`, picking PLATFORM (`os/arch[/variant]`) from an index.
pub fn inspect_layout_platform(path: &Path, platform: &str) -> Value {
    inspect(vec![
        "layout".into(),
        path_arg(path),
        "--platform".into(),
        platform.into(),
    ])
}

/// Like `inspect_layout_platform`, also extracting the layers' files into UNPACK_DIR.
pub fn inspect_layout_unpack(path: &Path, platform: &str, unpack_dir: &Path) -> Value {
    inspect(vec![
        "layout".into(),
        path_arg(path),
        "--platform".into(),
        platform.into(),
        "--unpack".into(),
        path_arg(unpack_dir),
    ])
}

/// Runs `tests/tools/invoke_function_url.js`: calls HANDLER (`file.export`) in TASK_DIR with a
/// Function URL GET event for REQUEST_PATH. Returns the handler's result, or node's stderr.
pub fn try_invoke_function_url(
    task_dir: &Path,
    handler: &str,
    request_path: &str,
) -> Result<Value, String> {
    let mut command = Command::new("node");
    command
        .arg(project_path("tests/tools/invoke_function_url.js"))
        .arg(task_dir)
        .args([handler, request_path]);
    let output = run_tool(command, "node tests/tools/invoke_function_url.js");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|error| format!("invoke_function_url.js printed invalid JSON: {error}"))
}

/// Calls HANDLER in TASK_DIR with a Function URL `GET /` event and returns its result.
pub fn invoke_function_url(task_dir: &Path, handler: &str) -> Value {
    invoke_function_url_path(task_dir, handler, "/")
}

/// Like `invoke_function_url`, for REQUEST_PATH (which may carry a query string).
pub fn invoke_function_url_path(task_dir: &Path, handler: &str, request_path: &str) -> Value {
    try_invoke_function_url(task_dir, handler, request_path).unwrap_or_else(|stderr| {
        panic!(
            "invoking {handler} in {} failed:\n{stderr}",
            task_dir.display()
        )
    })
}

// --- AWS API emulator (moto) and ECR -------------------------------------------------------------

/// The account id that moto gives every request, and so the registry id of its ECR.
pub const ECR_ACCOUNT: &str = "123456789012";
/// The region of the fixture's ECR registry.
pub const ECR_REGION: &str = "us-east-1";
/// The host of ECR_ACCOUNT's registry in ECR_REGION, which the fixture's TLS certificate names.
pub const ECR_HOSTNAME: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
/// The registry user and password in the token that moto's GetAuthorizationToken returns
/// (moto 5.2: `AWS` and `<account>-auth-token`), which the fixture's registry accepts.
pub const ECR_USER: &str = "AWS";
pub const ECR_PASSWORD: &str = "123456789012-auth-token";

const MOTO_READY_TIMEOUT: Duration = Duration::from_secs(30);
const MOTO_START_ATTEMPTS: u32 = 3;
/// Files of a moto process in its folder: its stdout and stderr, and its request recording.
const MOTO_LOG: &str = "moto.log";
const MOTO_RECORDING: &str = "requests.jsonl";

/// A `moto_server` process on 127.0.0.1, the AWS API emulator, with its files in a temporary
/// folder. Its recorder (`MOTO_ENABLE_RECORDING`) appends every API request with its headers to
/// a file, which `api_calls` reads. Dropping it kills the process and deletes the folder.
pub struct Moto {
    pub port: u16,
    child: Child,
    dir: TempDir,
}

impl Moto {
    /// Starts moto from `LAMBDA_IMAGE_TEST_MOTO`, else `.venv-test/bin/moto_server` (which
    /// `scripts/test` installs), on a free port, retrying on another port if it was taken.
    pub fn start() -> Moto {
        let dir = tempfile::Builder::new()
            .prefix("lambda-image-moto-")
            .tempdir()
            .expect("cannot create a temporary folder for moto");
        let binary = moto_server_path();
        for attempt in 1..=MOTO_START_ATTEMPTS {
            let port = free_port();
            let mut child = spawn_moto(&binary, dir.path(), port);
            let problem = match wait_for_moto(&mut child, port) {
                Ok(()) => return Moto { port, child, dir },
                Err(problem) => problem,
            };
            let _ = child.kill();
            let _ = child.wait();
            let log = fs::read_to_string(dir.path().join(MOTO_LOG)).unwrap_or_default();
            if log.contains("Address already in use") && attempt < MOTO_START_ATTEMPTS {
                continue;
            }
            panic!(
                "{} on 127.0.0.1:{port} {problem}; its output:\n{log}",
                binary.display()
            );
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Returns `http://127.0.0.1:PORT`, the value for `AWS_ENDPOINT_URL_ECR`.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Returns what moto has written to stdout and stderr so far: one line per request.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join(MOTO_LOG)).unwrap_or_default()
    }

    /// Returns every AWS API request that moto received so far, oldest first. Requests without
    /// an `X-Amz-Target` header, such as the readiness probe's, are left out.
    pub fn api_calls(&self) -> Vec<AwsApiCall> {
        read_lines(&self.dir.path().join(MOTO_RECORDING))
            .iter()
            .filter_map(|line| AwsApiCall::parse(line))
            .collect()
    }

    /// Returns the names of the operations that lambda-image (the AWS SDK for Rust) called,
    /// oldest first, leaving out the calls of `tests/tools/ecr_api.py`.
    pub fn product_operations(&self) -> Vec<String> {
        self.api_calls()
            .into_iter()
            .filter(AwsApiCall::is_from_rust_sdk)
            .map(|call| call.operation)
            .collect()
    }

    /// Calls the ECR OPERATION (boto3's method name, such as `describe_repositories`) with
    /// PARAMETERS through `tests/tools/ecr_api.py`. Returns the response, or the API's error as
    /// `Code: message`.
    pub fn try_ecr(&self, operation: &str, parameters: &Value) -> Result<Value, String> {
        let mut command = Command::new(moto_python());
        command
            .arg(project_path("tests/tools/ecr_api.py"))
            .args([self.endpoint_url().as_str(), operation])
            .arg(parameters.to_string())
            .args(["--region", ECR_REGION]);
        remove_outside_settings(&mut command);
        // Files that do not exist, so no AWS configuration of the machine applies.
        command
            .env("AWS_CONFIG_FILE", self.dir.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.path().join("no-aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let output = run_tool(command, "tests/tools/ecr_api.py");
        match output.status.code() {
            Some(0) => serde_json::from_slice(&output.stdout)
                .map_err(|error| format!("ecr_api.py printed invalid JSON: {error}")),
            Some(1) => Err(String::from_utf8_lossy(&output.stderr).trim().to_string()),
            _ => panic!(
                "ecr_api.py {operation} failed with {}:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }

    /// Like `try_ecr`, panicking when the API returns an error.
    pub fn ecr(&self, operation: &str, parameters: &Value) -> Value {
        self.try_ecr(operation, parameters)
            .unwrap_or_else(|error| panic!("ECR {operation} {parameters} failed: {error}"))
    }

    /// Creates REPOSITORY with the API's defaults: mutable tags, no scan on push.
    pub fn create_repository(&self, repository: &str) -> Value {
        self.ecr(
            "create_repository",
            &serde_json::json!({ "repositoryName": repository }),
        )
    }

    /// Returns REPOSITORY's entry from DescribeRepositories, or the API's error, such as
    /// `RepositoryNotFoundException: …`.
    pub fn describe_repository(&self, repository: &str) -> Result<Value, String> {
        let response = self.try_ecr(
            "describe_repositories",
            &serde_json::json!({ "repositoryNames": [repository] }),
        )?;
        Ok(response["repositories"][0].clone())
    }

    /// Records MANIFEST (JSON text) under TAG in REPOSITORY with PutImage, so that
    /// DescribeImages returns it. DIGEST is passed along because moto 5.2 would otherwise make up
    /// the image digest from the layer digests, where ECR takes the manifest's sha256.
    pub fn put_image(
        &self,
        repository: &str,
        tag: &str,
        manifest: &str,
        media_type: &str,
        digest: &str,
    ) -> Value {
        self.ecr(
            "put_image",
            &serde_json::json!({
                "repositoryName": repository,
                "imageTag": tag,
                "imageManifest": manifest,
                "imageManifestMediaType": media_type,
                "imageDigest": digest,
            }),
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One AWS API request that moto received, from its request recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsApiCall {
    /// The operation, such as `GetAuthorizationToken`: the `X-Amz-Target` header's last part.
    pub operation: String,
    /// The access key id in the SigV4 `Authorization` header's credential scope.
    pub access_key_id: Option<String>,
    /// The region in the SigV4 credential scope.
    pub region: Option<String>,
    pub user_agent: String,
}

impl AwsApiCall {
    /// Reports whether the AWS SDK for Rust sent the request, which separates lambda-image's
    /// calls from those of `tests/tools/ecr_api.py` (boto3).
    pub fn is_from_rust_sdk(&self) -> bool {
        self.user_agent.contains("aws-sdk-rust")
    }

    /// Parses one line of moto's recording, returning `None` for a request without
    /// `X-Amz-Target`.
    fn parse(line: &str) -> Option<AwsApiCall> {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("moto recording line {line:?}: {error}"));
        let headers = entry["headers"]
            .as_object()
            .unwrap_or_else(|| panic!("moto recording line {line:?} has no headers"));
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .and_then(|(_, value)| value.as_str())
        };
        let operation = header("X-Amz-Target")?.rsplit('.').next()?.to_string();
        // `AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request, SignedHeaders=…`
        let scope: Option<Vec<&str>> = header("Authorization")
            .and_then(|value| value.split("Credential=").nth(1))
            .and_then(|rest| rest.split(',').next())
            .map(|credential| credential.split('/').collect());
        Some(AwsApiCall {
            operation,
            access_key_id: scope
                .as_ref()
                .and_then(|s| s.first())
                .map(|s| s.to_string()),
            region: scope.as_ref().and_then(|s| s.get(2)).map(|s| s.to_string()),
            user_agent: header("User-Agent").unwrap_or_default().to_string(),
        })
    }
}

fn moto_server_path() -> PathBuf {
    std::env::var_os("LAMBDA_IMAGE_TEST_MOTO")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_path(".venv-test/bin/moto_server"))
}

/// Returns the Python beside moto_server, which has boto3 because moto needs it, else `python3`.
fn moto_python() -> PathBuf {
    let beside = moto_server_path().with_file_name("python");
    if beside.is_file() {
        beside
    } else {
        PathBuf::from("python3")
    }
}

fn spawn_moto(binary: &Path, dir: &Path, port: u16) -> Child {
    let log = fs::File::create(dir.join(MOTO_LOG)).expect("cannot create moto's log");
    let mut command = Command::new(binary);
    command
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("cannot share moto's log"))
        .stderr(log);
    // MOTO_* variables change moto's behaviour (MOTO_ACCOUNT_ID its account, for one).
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MOTO_") {
            command.env_remove(name);
        }
    }
    command
        .env("MOTO_ENABLE_RECORDING", "true")
        .env("MOTO_RECORDER_FILEPATH", dir.join(MOTO_RECORDING));
    command.spawn().unwrap_or_else(|error| {
        panic!(
            "cannot start {}: {error}; run scripts/test, which installs moto[server] into \
             .venv-test, or set LAMBDA_IMAGE_TEST_MOTO to a moto_server",
            binary.display()
        )
    })
}

/// Polls moto's own API until it returns 200, the process exits, or the timeout passes.
fn wait_for_moto(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + MOTO_READY_TIMEOUT;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|error| format!("cannot be waited on: {error}"))?
        {
            return Err(format!("exited with {status} before it was ready"));
        }
        if http_status(port, "/moto-api/data.json") == Some(200) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "did not return 200 for GET /moto-api/data.json within {} s",
                MOTO_READY_TIMEOUT.as_secs()
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Removes the variables through which the machine's own AWS settings, proxies and trusted
/// certificates would reach COMMAND: every `AWS_*`, the proxy variables and `SSL_CERT_DIR`.
fn remove_outside_settings(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        let proxy = text.eq_ignore_ascii_case("http_proxy")
            || text.eq_ignore_ascii_case("https_proxy")
            || text.eq_ignore_ascii_case("all_proxy")
            || text.eq_ignore_ascii_case("no_proxy");
        if text.starts_with("AWS_") || proxy || text == "SSL_CERT_DIR" {
            command.env_remove(&name);
        }
    }
}

/// An ECR registry as lambda-image meets it, on this machine: moto serves the ECR API, and a
/// TLS `docker-registry` with a certificate for ECR_HOSTNAME serves the registry, accepting the
/// user and password that moto's GetAuthorizationToken returns. The registry contains the
/// synthetic base as `lambda/nodejs:24`. A private HOME contains the AWS files, the Docker
/// config (empty) and the cache, so no file of the machine's user is read or written.
///
/// The real ECR registers each pushed image with its API. Here the registry and moto are
/// separate, so a test that needs DescribeImages registers an image with `register_image`.
pub struct EcrFixture {
    pub moto: Moto,
    pub registry: Registry,
    home: TempDir,
}

impl EcrFixture {
    /// Starts moto and the registry side by side and pushes the base.
    pub fn start() -> EcrFixture {
        let (moto, registry) = thread::scope(|scope| {
            let moto = scope.spawn(Moto::start);
            let registry = Registry::start_with(
                RegistryOptions::new()
                    .tls(ECR_HOSTNAME)
                    .basic_auth(ECR_USER, ECR_PASSWORD),
            );
            let moto = moto
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (moto, registry)
        });
        push_base(&registry, "base", "lambda/nodejs", BASE_TAG);

        let home = tempfile::Builder::new()
            .prefix("lambda-image-home-")
            .tempdir()
            .expect("cannot create a temporary HOME");
        for folder in [".aws", ".cache", ".docker"] {
            fs::create_dir(home.path().join(folder))
                .unwrap_or_else(|error| panic!("cannot create {folder} in HOME: {error}"));
        }
        // Empty files, because the AWS SDK warns when AWS_CONFIG_FILE or
        // AWS_SHARED_CREDENTIALS_FILE names a file that does not exist.
        for file in ["config", "credentials"] {
            fs::write(home.path().join(".aws").join(file), "")
                .unwrap_or_else(|error| panic!("cannot create .aws/{file} in HOME: {error}"));
        }
        EcrFixture {
            moto,
            registry,
            home,
        }
    }

    /// Returns `ECR_HOSTNAME:PORT`, the registry part of the fixture's image references.
    pub fn registry_host(&self) -> String {
        format!("{ECR_HOSTNAME}:{}", self.registry.port)
    }

    /// Returns `ECR_HOSTNAME:PORT/REPOSITORY_AND_TAG`, such as `…:PORT/my-app:latest`.
    pub fn image(&self, repository_and_tag: &str) -> String {
        format!("{}/{repository_and_tag}", self.registry_host())
    }

    /// Returns the `--base` reference of the synthetic base in the registry.
    pub fn base(&self) -> String {
        self.image(&format!("lambda/nodejs:{BASE_TAG}"))
    }

    /// Returns the `--resolve` value that sends ECR_HOSTNAME:PORT to 127.0.0.1.
    pub fn resolve(&self) -> String {
        format!("{ECR_HOSTNAME}:{}:127.0.0.1", self.registry.port)
    }

    /// Returns the arguments of `lambda-image push APP IMAGE` with the fixture's base and
    /// `--resolve`.
    pub fn push_args(&self, app: &Path, image: &str) -> Vec<String> {
        vec![
            "push".into(),
            path_arg(app),
            image.into(),
            "--base".into(),
            self.base(),
            "--resolve".into(),
            self.resolve(),
        ]
    }

    /// Returns the private HOME folder.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Returns `$HOME/.aws`, the folder of the AWS config and credentials files.
    pub fn aws_dir(&self) -> PathBuf {
        self.home().join(".aws")
    }

    /// Returns the folder where lambda-image caches ECR tokens:
    /// `$XDG_CACHE_HOME/lambda-image/ecr-tokens`.
    pub fn token_cache_dir(&self) -> PathBuf {
        self.home().join(".cache/lambda-image/ecr-tokens")
    }

    /// Lists the files in the token cache folder, sorted, or none when the folder does not exist.
    pub fn token_cache_files(&self) -> Vec<PathBuf> {
        let dir = self.token_cache_dir();
        if !dir.exists() {
            return Vec::new();
        }
        let mut files: Vec<PathBuf> = read_dir(&dir).iter().map(|entry| entry.path()).collect();
        files.sort();
        files
    }

    /// Returns the environment that points lambda-image, and the AWS SDK in it, at the fixture
    /// only: HOME, XDG_CACHE_HOME, DOCKER_CONFIG, the AWS config and credentials files in HOME
    /// (empty until a test writes them), moto as every AWS endpoint, the fixture's CA as the
    /// only trusted one, and no instance metadata service. It has no credentials.
    pub fn env(&self) -> Vec<(String, String)> {
        let home = self.home();
        let ca = self
            .registry
            .cert_path()
            .expect("the fixture's registry serves TLS");
        [
            ("HOME", home.to_path_buf()),
            ("XDG_CACHE_HOME", home.join(".cache")),
            ("DOCKER_CONFIG", home.join(".docker")),
            ("AWS_CONFIG_FILE", self.aws_dir().join("config")),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                self.aws_dir().join("credentials"),
            ),
            ("SSL_CERT_FILE", ca),
        ]
        .into_iter()
        .map(|(name, path)| (name.to_string(), path_arg(&path)))
        .chain(
            [
                ("AWS_ENDPOINT_URL_ECR", self.moto.endpoint_url()),
                ("AWS_ENDPOINT_URL", self.moto.endpoint_url()),
                ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
            ]
            .into_iter()
            .map(|(name, value)| (name.to_string(), value)),
        )
        .collect()
    }

    /// Clears COMMAND of the machine's AWS, proxy and certificate settings and of
    /// SOURCE_DATE_EPOCH, then sets `env()`.
    pub fn set_environment(&self, command: &mut Command) {
        remove_outside_settings(command);
        command.env_remove("SOURCE_DATE_EPOCH");
        command.envs(self.env());
    }

    /// Writes `$HOME/.aws/credentials` and `$HOME/.aws/config` with one profile, byte for byte
    /// as `aws configure --profile PROFILE` (aws-cli 1.45) writes them.
    pub fn write_profile(
        &self,
        profile: &str,
        access_key_id: &str,
        secret_access_key: &str,
        region: &str,
    ) {
        let credentials = format!(
            "[{profile}]\naws_access_key_id = {access_key_id}\n\
             aws_secret_access_key = {secret_access_key}\n"
        );
        let config = format!("[profile {profile}]\nregion = {region}\noutput = json\n");
        for (name, text) in [("credentials", credentials), ("config", config)] {
            let path = self.aws_dir().join(name);
            fs::write(&path, text)
                .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        }
    }

    /// Registers with moto the image that REPOSITORY:TAG names in the registry (PutImage with its
    /// manifest and digest), as the real ECR does on each push. Returns the manifest digest.
    pub fn register_image(&self, repository: &str, tag: &str) -> String {
        let image = inspect_registry(&self.registry, repository, tag);
        let digest = image["manifest_digest"]
            .as_str()
            .expect("inspect_image.py returns the manifest digest")
            .to_string();
        let media_type = image["manifest_media_type"]
            .as_str()
            .expect("inspect_image.py returns the manifest media type");
        self.moto.put_image(
            repository,
            tag,
            &image["manifest"].to_string(),
            media_type,
            &digest,
        );
        digest
    }
}

// --- Example app -------------------------------------------------------------------------------

static EXAMPLE_APP: OnceLock<PathBuf> = OnceLock::new();

/// Returns a folder containing a copy of `testdata/example-app` after `npm ci`. Treat it as read-only
/// and copy it (`copy_dir`) to change it.
///
/// The install happens once per content of `testdata/example-app`: it is built under
/// `target/test-apps/` in a temporary folder and renamed into place, so test binaries running at
/// the same time never see a half-installed app, and later runs reuse it.
pub fn example_app() -> PathBuf {
    EXAMPLE_APP.get_or_init(install_example_app).clone()
}

fn install_example_app() -> PathBuf {
    let source = project_path("testdata/example-app");
    let apps = target_dir().join("test-apps");
    let installed = apps.join(format!("example-app-{:016x}", hash_tree(&source)));
    if installed.is_dir() {
        return installed;
    }

    fs::create_dir_all(&apps)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", apps.display()));
    let staging = tempfile::Builder::new()
        .prefix(".example-app-")
        .tempdir_in(&apps)
        .unwrap_or_else(|error| panic!("cannot create a folder in {}: {error}", apps.display()));
    copy_tree(&source, staging.path(), &|path| {
        path.file_name() == Some(OsStr::new("node_modules"))
    });
    npm_ci(staging.path());

    let staged = staging.keep();
    if let Err(error) = fs::rename(&staged, &installed) {
        let _ = fs::remove_dir_all(&staged);
        // A test binary running at the same time finished first, and its copy is as good.
        if !installed.is_dir() {
            panic!(
                "cannot rename {} to {}: {error}",
                staged.display(),
                installed.display()
            );
        }
    }
    installed
}

fn npm_ci(dir: &Path) {
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run npm (install Node.js 20 or later and npm): {error}")
        });
    assert!(
        output.status.success(),
        "npm ci in {} failed:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => project_path("").join(dir),
        None => project_path("target"),
    }
}

/// Hashes the relative paths and contents of the files under ROOT, except `node_modules`.
///
/// NOTE: `DefaultHasher`'s output may change between Rust releases, which only costs one more
/// `npm ci` after a toolchain update.
fn hash_tree(root: &Path) -> u64 {
    let mut files = Vec::new();
    collect_files(root, root, &mut files);
    files.sort();
    let mut hasher = DefaultHasher::new();
    for relative in files {
        relative.hash(&mut hasher);
        let contents = fs::read(root.join(&relative))
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", relative.display()));
        contents.hash(&mut hasher);
    }
    hasher.finish()
}

fn collect_files(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in read_dir(dir) {
        let path = entry.path();
        if entry.file_name() == "node_modules" {
            continue;
        }
        if path.is_dir() {
            collect_files(root, &path, files);
        } else {
            files.push(
                path.strip_prefix(root)
                    .expect("path is under root")
                    .to_path_buf(),
            );
        }
    }
}

// --- Files -------------------------------------------------------------------------------------

/// Copies the folder FROM into TO recursively, creating TO if needed. Symlinks are copied as
/// symlinks with the same target, and files keep their permissions.
pub fn copy_dir(from: &Path, to: &Path) {
    copy_tree(from, to, &|_| false);
}

fn copy_tree(from: &Path, to: &Path, skip: &dyn Fn(&Path) -> bool) {
    fs::create_dir_all(to)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", to.display()));
    for entry in read_dir(from) {
        let source = entry.path();
        if skip(&source) {
            continue;
        }
        let destination = to.join(entry.file_name());
        let file_type = entry.file_type().unwrap_or_else(|error| {
            panic!("cannot read the type of {}: {error}", source.display())
        });
        if file_type.is_symlink() {
            let target = fs::read_link(&source)
                .unwrap_or_else(|error| panic!("cannot read link {}: {error}", source.display()));
            std::os::unix::fs::symlink(&target, &destination).unwrap_or_else(|error| {
                panic!("cannot create symlink {}: {error}", destination.display())
            });
        } else if file_type.is_dir() {
            copy_tree(&source, &destination, skip);
        } else {
            fs::copy(&source, &destination).unwrap_or_else(|error| {
                panic!(
                    "cannot copy {} to {}: {error}",
                    source.display(),
                    destination.display()
                )
            });
        }
    }
}

fn read_dir(dir: &Path) -> Vec<fs::DirEntry> {
    fs::read_dir(dir)
        .and_then(|entries| entries.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
}
