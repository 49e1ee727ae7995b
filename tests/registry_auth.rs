//! Registry authentication and TLS against the real `docker-registry`: the bearer token flow
//! with `tests/tools/token_server.py`, anonymous pull tokens, secrets kept out of the output, and
//! the harness's own token and TLS registries.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::Duration;

use common::{
    base_layout, example_app, inspect_registry, push_base, try_inspect, try_push_layout, Registry,
    RegistryOptions, TokenAuth, TokenRequest, BASE_TAG,
};
use tempfile::TempDir;

const USER: &str = "ci";
const PASSWORD: &str = "t0ken-pass";
const WRONG_PASSWORD: &str = "wr0ng-pass";

/// Runs the product binary with `DOCKER_CONFIG` set to DOCKER_CONFIG's folder.
fn lambda_image(args: &[&str], docker_config: &TempDir) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lambda-image"))
        .args(args)
        .env("DOCKER_CONFIG", docker_config.path())
        // Each Docker config folder has its own cache, which a test may search for secrets.
        .env("XDG_CACHE_HOME", docker_config.path().join("cache"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("cannot run lambda-image")
}

/// Returns a Docker config folder with no credentials.
fn empty_docker_config() -> TempDir {
    tempfile::tempdir().unwrap()
}

/// Returns a Docker config folder whose config.json has USER and PASSWORD for REGISTRY.
fn docker_config_with(registry: &Registry, user: &str, password: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let auth = base64_encode(format!("{user}:{password}").as_bytes());
    let config = serde_json::json!({ "auths": { registry.host(): { "auth": auth } } });
    fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Returns the digest printed by `push`, checking the line is `IMAGE@sha256:<hex>` and alone.
fn pushed_digest(output: &Output, image: &str) -> String {
    assert!(
        output.status.success(),
        "lambda-image failed:\n{}",
        stderr(output)
    );
    let text = stdout(output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "stdout must be one line: {text:?}");
    let digest = lines[0]
        .strip_prefix(&format!("{image}@"))
        .unwrap_or_else(|| panic!("stdout {text:?} does not start with {image}@"));
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    digest.to_string()
}

/// Checks that a failed command printed nothing on stdout and one `error:` line on stderr, and
/// returns that line.
fn single_error_line(output: &Output) -> String {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(stdout(output).is_empty(), "stdout: {}", stdout(output));
    assert!(!message.contains("panicked"), "{message}");
    let errors: Vec<&str> = message
        .lines()
        .filter(|line| line.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{message}");
    errors[0].to_string()
}

/// Pushes the OCI base layout into REGISTRY and returns the `--base` reference for it.
fn base_in(registry: &Registry) -> String {
    push_base(registry, "base", "lambda/nodejs", BASE_TAG);
    format!("{}/lambda/nodejs:{BASE_TAG}", registry.host())
}

/// Counts token requests by their scopes, joined with spaces when one request has several.
fn requests_by_scope(requests: &[TokenRequest]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for request in requests {
        *counts.entry(request.scopes().join(" ")).or_default() += 1;
    }
    counts
}

/// Reports whether SCOPE is `repository:REPOSITORY:ACTIONS` with ACTION among its actions.
/// docker-registry 2.8 lists the actions of a challenge in either order.
fn has_action(scope: &str, repository: &str, action: &str) -> bool {
    scope
        .strip_prefix(&format!("repository:{repository}:"))
        .is_some_and(|actions| actions.split(',').any(|a| a == action))
}

fn describe(requests: &[TokenRequest]) -> String {
    requests
        .iter()
        .map(|request| format!("  {request}\n"))
        .collect()
}

fn token_registry_with_credentials() -> Registry {
    Registry::start_with_token_auth(TokenAuth::new().credentials(USER, PASSWORD))
}

// --- The product against a token-auth registry ---------------------------------------------------

#[test]
fn push_with_token_auth_from_docker_config() {
    let registry = token_registry_with_credentials();
    // The base in the same registry makes the product mount its layers, as it would in ECR.
    let base = base_in(&registry);
    let before = registry.token_request_log().len();

    let image = format!("{}/my-app:latest", registry.host());
    let docker_config = docker_config_with(&registry, USER, PASSWORD);
    let app = example_app();
    let output = lambda_image(
        &["push", app.to_str().unwrap(), &image, "--base", &base],
        &docker_config,
    );
    let digest = pushed_digest(&output, &image);

    let pulled = inspect_registry(&registry, "my-app", "latest");
    assert_eq!(pulled["manifest_digest"], digest.as_str());
    assert_eq!(pulled["layers"].as_array().unwrap().len(), 4);

    let requests = registry.token_request_log().split_off(before);
    let log = describe(&requests);
    assert!(!requests.is_empty(), "the product fetched no token");
    for request in &requests {
        assert_eq!(request.path, "/token", "{log}");
        assert!(
            request.authorization,
            "a token request without credentials:\n{log}"
        );
        assert_eq!(request.status, 200, "{log}");
    }
    let push_scope = "repository:my-app:pull,push";
    assert!(
        requests
            .iter()
            .any(|request| request.scopes().contains(&push_scope)),
        "no token request for {push_scope}:\n{log}"
    );
}

#[test]
fn push_fetches_one_token_per_scope() {
    let base_registry = Registry::start();
    let base = base_in(&base_registry);
    let registry = token_registry_with_credentials();

    let image = format!("{}/cached:latest", registry.host());
    let docker_config = docker_config_with(&registry, USER, PASSWORD);
    let app = example_app();
    let output = lambda_image(
        &["push", app.to_str().unwrap(), &image, "--base", &base],
        &docker_config,
    );
    pushed_digest(&output, &image);

    let requests = registry.token_request_log();
    let log = describe(&requests);
    let counts = requests_by_scope(&requests);
    assert!(
        counts.contains_key("repository:cached:pull,push"),
        "no push token for the target:\n{log}"
    );
    // Five blobs and a manifest go up under one scope. One cached token should serve them all,
    // including blob uploads that run in parallel.
    for (scope, count) in &counts {
        assert_eq!(*count, 1, "{count} token requests for {scope:?}:\n{log}");
    }
}

#[test]
fn push_to_token_registry_needs_credentials() {
    let registry = token_registry_with_credentials();
    let base = base_in(&registry);
    let image = format!("{}/denied:latest", registry.host());
    let app = example_app();
    let args = ["push", app.to_str().unwrap(), &image, "--base", &base];

    let cases = [
        ("no credentials", empty_docker_config()),
        (
            "a wrong password",
            docker_config_with(&registry, USER, "wrong"),
        ),
        (
            "an unknown user",
            docker_config_with(&registry, "nobody", PASSWORD),
        ),
    ];
    for (case, docker_config) in cases {
        let output = lambda_image(&args, &docker_config);
        let error = single_error_line(&output);
        assert!(error.contains("docker login"), "{case}: {error}");
        assert!(error.contains(&registry.host()), "{case}: {error}");
    }

    let pushed = try_inspect([
        "registry",
        &registry.url(),
        "denied",
        "latest",
        "--user",
        USER,
        "--password",
        PASSWORD,
    ]);
    assert!(pushed.is_err(), "a failed push left a manifest behind");
}

#[test]
fn base_pulled_with_anonymous_token() {
    let source = Registry::start_with_token_auth(
        TokenAuth::new()
            .credentials(USER, PASSWORD)
            .anonymous_pull(true),
    );
    let base = base_in(&source);
    let before = source.token_request_log().len();
    let target = Registry::start();

    let image = format!("{}/from-public:latest", target.host());
    let app = example_app();
    let output = lambda_image(
        &["push", app.to_str().unwrap(), &image, "--base", &base],
        &empty_docker_config(),
    );
    let digest = pushed_digest(&output, &image);
    let pulled = inspect_registry(&target, "from-public", "latest");
    assert_eq!(pulled["manifest_digest"], digest.as_str());
    assert_eq!(pulled["layers"].as_array().unwrap().len(), 4);

    let requests = source.token_request_log().split_off(before);
    let log = describe(&requests);
    assert!(!requests.is_empty(), "the base was read without a token");
    for request in &requests {
        assert!(
            !request.authorization,
            "a token request carried credentials that the Docker config lacks:\n{log}"
        );
        assert_eq!(request.status, 200, "{log}");
        assert_eq!(request.scopes(), ["repository:lambda/nodejs:pull"], "{log}");
        assert_eq!(request.granted, ["repository:lambda/nodejs:pull"], "{log}");
    }
    for (scope, count) in requests_by_scope(&requests) {
        assert_eq!(count, 1, "{count} token requests for {scope:?}:\n{log}");
    }
}

#[test]
fn verbose_push_never_prints_secrets() {
    // The base comes from a second token registry, so both pull and push use tokens and no
    // mount between repositories happens.
    let base_registry = token_registry_with_credentials();
    let base = base_in(&base_registry);
    let registry = token_registry_with_credentials();
    let image = format!("{}/quiet:latest", registry.host());
    let app = example_app();
    let args = [
        "push",
        app.to_str().unwrap(),
        &image,
        "--base",
        &base,
        "--node-modules",
        "local",
        "-vvv",
    ];

    let auth = base64_encode(format!("{USER}:{PASSWORD}").as_bytes());
    let wrong_auth = base64_encode(format!("{USER}:{WRONG_PASSWORD}").as_bytes());
    let docker_config = tempfile::tempdir().unwrap();
    let config = serde_json::json!({ "auths": {
        base_registry.host(): { "auth": auth },
        registry.host(): { "auth": auth },
    } });
    fs::write(docker_config.path().join("config.json"), config.to_string()).unwrap();
    let output = lambda_image(&args, &docker_config);
    pushed_digest(&output, &image);

    let failed = lambda_image(
        &args,
        &docker_config_with(&base_registry, USER, WRONG_PASSWORD),
    );
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));

    let mut tokens = base_registry.issued_tokens();
    tokens.extend(registry.issued_tokens());
    assert!(!tokens.is_empty(), "the token servers issued no token");
    let mut secrets = vec![
        PASSWORD.to_string(),
        WRONG_PASSWORD.to_string(),
        auth,
        wrong_auth,
        // A JWT whose JSON header starts with `{"` begins with `eyJ`, its base64url.
        "eyJ".to_string(),
    ];
    for token in &tokens {
        secrets.push(token.clone());
        // The signature alone, in case a log shortens the token.
        secrets.push(token.rsplit('.').next().unwrap().to_string());
    }
    for (name, output) in [("successful push", &output), ("failed push", &failed)] {
        let printed = format!("{}{}", stdout(output), stderr(output));
        assert!(
            printed.lines().count() > 3,
            "{name}: -vvv printed almost nothing:\n{printed}"
        );
        for secret in &secrets {
            assert!(
                !printed.contains(secret.as_str()),
                "{name} printed the secret {secret:?}"
            );
        }
        assert!(
            !printed.contains("Bearer "),
            "{name} printed an Authorization value:\n{printed}"
        );
    }
    // Registry passwords and tokens are kept in memory only, so the cache holds none.
    let cache = docker_config.path().join("cache");
    let mut cached_files = 0;
    for entry in walkdir::WalkDir::new(&cache).into_iter().flatten() {
        if !entry.file_type().is_file() {
            continue;
        }
        cached_files += 1;
        let content = String::from_utf8_lossy(&fs::read(entry.path()).unwrap()).into_owned();
        for secret in &secrets {
            assert!(
                !content.contains(secret.as_str()),
                "{} holds the secret {secret:?}",
                entry.path().display()
            );
        }
    }
    assert!(
        cached_files > 0,
        "the push cached nothing in {}",
        cache.display()
    );
}

// --- The harness's token server --------------------------------------------------------------

#[test]
fn token_registry_accepts_issued_tokens() {
    let registry = token_registry_with_credentials();
    push_base(&registry, "base", "lambda/nodejs", BASE_TAG);
    let image = inspect_registry(&registry, "lambda/nodejs", BASE_TAG);
    assert_eq!(image["config"]["architecture"], "amd64");

    let requests = registry.token_request_log();
    let log = describe(&requests);
    assert!(
        requests.iter().all(|r| r.status == 200 && r.authorization),
        "{log}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r
                .granted
                .iter()
                .any(|scope| has_action(scope, "lambda/nodejs", "push"))),
        "no token granted push:\n{log}"
    );
    let issued: Vec<&str> = requests
        .iter()
        .filter_map(|r| r.token_id.as_deref())
        .collect();
    assert_eq!(issued.len(), requests.len(), "{log}");
    assert_eq!(registry.issued_tokens().len(), requests.len());
    for token in registry.issued_tokens() {
        assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
        assert!(token.starts_with("eyJ"), "not a JWT: {token}");
    }
    let lines = registry.token_requests();
    assert!(lines[0].starts_with("GET /token?service="), "{}", lines[0]);
    assert!(
        lines[0].ends_with("authorization=yes status=200"),
        "{}",
        lines[0]
    );
}

#[test]
fn token_registry_rejects_bad_credentials() {
    let registry = token_registry_with_credentials();
    push_base(&registry, "base", "lambda/nodejs", BASE_TAG);
    let url = registry.url();

    let anonymous = try_inspect(["registry", url.as_str(), "lambda/nodejs", BASE_TAG]);
    let error = anonymous.expect_err("an anonymous read must fail");
    assert!(error.contains("HTTP 401"), "{error}");

    let wrong = try_inspect([
        "registry",
        url.as_str(),
        "lambda/nodejs",
        BASE_TAG,
        "--user",
        USER,
        "--password",
        "wrong",
    ]);
    let error = wrong.expect_err("a wrong password must fail");
    assert!(error.contains("HTTP 401"), "{error}");

    let rejected: Vec<TokenRequest> = registry
        .token_request_log()
        .into_iter()
        .filter(|request| request.status == 401)
        .collect();
    assert_eq!(rejected.len(), 2, "{}", describe(&rejected));
    assert!(!rejected[0].authorization);
    assert!(rejected[1].authorization);
    assert!(rejected.iter().all(|request| request.token_id.is_none()));
}

#[test]
fn anonymous_pull_token_cannot_push() {
    let registry = Registry::start_with_token_auth(
        TokenAuth::new()
            .credentials(USER, PASSWORD)
            .anonymous_pull(true),
    );
    push_base(&registry, "base", "lambda/nodejs", BASE_TAG);
    let url = registry.url();

    let anonymous = try_inspect(["registry", url.as_str(), "lambda/nodejs", BASE_TAG])
        .expect("an anonymous read must succeed");
    assert_eq!(anonymous["config"]["architecture"], "amd64");

    let layout = base_layout("base");
    let pushed = try_push_layout([
        layout.to_str().unwrap(),
        url.as_str(),
        "anonymous/nodejs",
        BASE_TAG,
    ]);
    let error = pushed.expect_err("an anonymous push must fail");
    assert!(error.contains("HTTP 401"), "{error}");

    let anonymous_requests: Vec<TokenRequest> = registry
        .token_request_log()
        .into_iter()
        .filter(|request| !request.authorization)
        .collect();
    let log = describe(&anonymous_requests);
    assert!(
        anonymous_requests
            .iter()
            .any(|r| r
                .scopes()
                .iter()
                .any(|scope| has_action(scope, "anonymous/nodejs", "push"))),
        "push_layout.py requested no push token:\n{log}"
    );
    for request in &anonymous_requests {
        assert_eq!(request.status, 200, "{log}");
        for scope in &request.granted {
            assert!(
                scope.ends_with(":pull"),
                "an anonymous token got {scope}:\n{log}"
            );
        }
    }
}

/// Sends `GET PATH_AND_QUERY` with an optional Authorization header to the token server and
/// returns the status code.
fn token_server_status(
    registry: &Registry,
    path_and_query: &str,
    authorization: Option<&str>,
) -> u16 {
    let realm = registry.token_realm();
    let address = realm
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix("/token"))
        .unwrap_or_else(|| panic!("unexpected realm {realm}"));
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let header = authorization
        .map(|value| format!("Authorization: {value}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path_and_query} HTTP/1.0\r\nHost: {address}\r\n{header}\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

#[test]
fn token_server_rejects_malformed_requests() {
    let registry = token_registry_with_credentials();
    let basic = format!(
        "Basic {}",
        base64_encode(format!("{USER}:{PASSWORD}").as_bytes())
    );
    let service = "service=lambda-image-test-registry";
    let cases = [
        (
            format!("/token?{service}&scope=repository:app:pull"),
            Some(basic.as_str()),
            200,
        ),
        (format!("/token?{service}"), Some(basic.as_str()), 200),
        (
            format!("/token?{service}&scope=nonsense"),
            Some(basic.as_str()),
            400,
        ),
        (
            "/token?service=other&scope=repository:app:pull".to_string(),
            Some(basic.as_str()),
            400,
        ),
        (format!("/other?{service}"), Some(basic.as_str()), 404),
        (
            format!("/token?{service}&scope=repository:app:pull"),
            Some("Basic !!!"),
            401,
        ),
        (
            format!("/token?{service}&scope=repository:app:pull"),
            Some("Bearer abc"),
            401,
        ),
        (
            format!("/token?{service}&scope=repository:app:pull"),
            None,
            401,
        ),
    ];
    for (path, authorization, expected) in &cases {
        let status = token_server_status(&registry, path, *authorization);
        assert_eq!(status, *expected, "GET {path} with {authorization:?}");
    }
    let log = registry.token_request_log();
    assert_eq!(log.len(), cases.len(), "{}", describe(&log));
    let issued = log
        .iter()
        .filter(|request| request.token_id.is_some())
        .count();
    assert_eq!(issued, 2, "{}", describe(&log));
    assert_eq!(registry.issued_tokens().len(), 2);
}

// --- The harness's TLS registry --------------------------------------------------------------

#[test]
fn tls_registry_serves_verified_https() {
    let registry = Registry::start_with_tls("registry.test");
    assert_eq!(
        registry.url(),
        format!("https://127.0.0.1:{}", registry.port)
    );
    assert_eq!(registry.tls_hostname(), Some("registry.test"));
    let cert_path = registry
        .cert_path()
        .expect("a TLS registry has a CA certificate");
    let pem = fs::read_to_string(&cert_path).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");

    push_base(&registry, "base", "lambda/nodejs", BASE_TAG);
    let image = inspect_registry(&registry, "lambda/nodejs", BASE_TAG);
    assert_eq!(image["config"]["architecture"], "amd64");

    let url = registry.url();
    let untrusted = try_inspect(["registry", url.as_str(), "lambda/nodejs", BASE_TAG]);
    let error = untrusted.expect_err("a client without the CA must reject the certificate");
    assert!(error.contains("CERTIFICATE_VERIFY_FAILED"), "{error}");

    let plain = format!("http://{}", registry.host());
    let cert = cert_path.to_str().unwrap();
    let over_http = try_inspect([
        "registry",
        plain.as_str(),
        "lambda/nodejs",
        BASE_TAG,
        "--cacert",
        cert,
    ]);
    assert!(over_http.is_err(), "the registry answered plain HTTP");
}

#[test]
fn tls_registry_with_basic_auth() {
    let registry = Registry::start_with(
        RegistryOptions::new()
            .tls("localhost")
            .basic_auth(USER, PASSWORD),
    );
    assert!(registry.url().starts_with("https://"));
    push_base(&registry, "base", "lambda/nodejs", BASE_TAG);
    let image = inspect_registry(&registry, "lambda/nodejs", BASE_TAG);
    assert_eq!(image["config"]["architecture"], "amd64");

    let url = registry.url();
    let cert_path = registry.cert_path().unwrap();
    let cert = cert_path.to_str().unwrap();
    let anonymous = try_inspect([
        "registry",
        url.as_str(),
        "lambda/nodejs",
        BASE_TAG,
        "--cacert",
        cert,
    ]);
    let error = anonymous.expect_err("an anonymous read must fail");
    assert!(error.contains("HTTP 401"), "{error}");
}

#[test]
fn tls_registry_with_token_auth() {
    let registry = Registry::start_with(
        RegistryOptions::new()
            .tls("registry.test")
            .token_auth(TokenAuth::new().credentials(USER, PASSWORD)),
    );
    assert!(registry.url().starts_with("https://"));
    push_base(&registry, "base", "lambda/nodejs", BASE_TAG);
    let image = inspect_registry(&registry, "lambda/nodejs", BASE_TAG);
    assert_eq!(image["config"]["architecture"], "amd64");

    let requests = registry.token_request_log();
    assert!(!requests.is_empty(), "no token was requested");
    assert!(
        requests.iter().all(|request| request.status == 200),
        "{}",
        describe(&requests)
    );
}

#[test]
#[should_panic(expected = "Basic or token authentication, not both")]
fn registry_rejects_basic_and_token_auth() {
    Registry::start_with(
        RegistryOptions::new()
            .basic_auth(USER, PASSWORD)
            .token_auth(TokenAuth::new()),
    );
}

#[test]
fn plain_registry_has_no_cert_path() {
    let registry = Registry::start();
    assert_eq!(
        registry.url(),
        format!("http://127.0.0.1:{}", registry.port)
    );
    assert_eq!(registry.cert_path(), None);
    assert_eq!(registry.tls_hostname(), None);
}
