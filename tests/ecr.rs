//! End-to-end tests of `lambda-image push` to Amazon ECR, on this machine only: moto serves the
//! ECR API and a TLS `docker-registry` named `123456789012.dkr.ecr.us-east-1.amazonaws.com`
//! serves the registry (`common::EcrFixture`). They cover how credentials are found, the
//! repository checks, the token cache, logging in again after a rejected token, immutable tags
//! and keeping secrets out of the output.

mod common;

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{
    copy_dir, example_app, inspect_registry, inspect_registry_unpack, invoke_function_url,
    push_base, try_inspect, EcrFixture, Moto, Registry, BASE_TAG, ECR_ACCOUNT, ECR_PASSWORD,
    ECR_REGION, ECR_USER,
};
use serde_json::{json, Value};

/// The credentials that the tests put in the environment.
const ACCESS_KEY_ID: &str = "testing";
const SECRET_ACCESS_KEY: &str = "env-secret-7Qx2vKp9";
/// The profile that the tests write as `aws configure --profile lambda` would.
const PROFILE: &str = "lambda";
const PROFILE_ACCESS_KEY_ID: &str = "AKIDLAMBDAPROFILE";
const PROFILE_SECRET_ACCESS_KEY: &str = "profile-secret-3Jw8nRt5";
/// ECR tokens last 12 hours. moto's expiry is in the past, so lambda-image assumes that lifetime.
const TOKEN_LIFETIME_SECONDS: u64 = 12 * 3600;

fn environment_credentials() -> [(&'static str, &'static str); 2] {
    [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
    ]
}

/// Runs the product binary with ARGS in the fixture's environment plus ENV.
fn lambda_image<S: AsRef<str>>(fixture: &EcrFixture, args: &[S], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lambda-image"));
    command.args(args.iter().map(AsRef::as_ref));
    fixture.set_environment(&mut command);
    command.envs(env.iter().copied());
    command.output().expect("cannot run lambda-image")
}

/// Like `lambda_image` for `push APP IMAGE` with the fixture's base and `--resolve`, then
/// EXTRA_ARGS.
fn push(
    fixture: &EcrFixture,
    app: &Path,
    image: &str,
    extra_args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let mut args = fixture.push_args(app, image);
    args.extend(extra_args.iter().map(|arg| arg.to_string()));
    lambda_image(fixture, &args, env)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Returns the digest printed by `push`, checking that the line is `IMAGE@sha256:<hex>` and
/// alone.
fn pushed_digest(output: &Output, image: &str) -> String {
    assert!(
        output.status.success(),
        "lambda-image failed with {}:\n{}",
        output.status,
        stderr(output)
    );
    let text = stdout(output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "stdout must be one line: {text:?}");
    let digest = lines[0]
        .strip_prefix(&format!("{image}@"))
        .unwrap_or_else(|| panic!("stdout {text:?} does not start with {image}@"));
    assert!(
        digest.starts_with("sha256:")
            && digest.len() == 71
            && digest[7..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{digest}"
    );
    digest.to_string()
}

/// Checks that a failed command exited 1, printed nothing on stdout and one `error:` line on
/// stderr, and returns that line.
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

/// Copies the installed example app into a temporary folder. With a VERSION, the copy also
/// contains `version.txt`, so its app layer, and the image, differ from the example's.
fn example_copy(version: Option<&str>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    copy_dir(&example_app(), &app);
    if let Some(version) = version {
        fs::write(app.join("version.txt"), version).unwrap();
    }
    (dir, app)
}

fn count(operations: &[String], operation: &str) -> usize {
    operations.iter().filter(|name| *name == operation).count()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Returns the only file in the token cache, checking that there is one.
fn cached_token_file(fixture: &EcrFixture) -> PathBuf {
    let files = fixture.token_cache_files();
    assert_eq!(files.len(), 1, "token cache: {files:?}");
    files[0].clone()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap())
        .unwrap_or_else(|error| panic!("{}: invalid JSON: {error}", path.display()))
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One way to choose an AWS profile: by a command-line option or by the environment.
struct ProfileSelection {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
}

/// Returns the two ways to choose PROFILE: `AWS_PROFILE=PROFILE` and `--profile PROFILE`.
fn profile_selections(profile: &str) -> [ProfileSelection; 2] {
    [
        ProfileSelection {
            name: "AWS_PROFILE",
            args: Vec::new(),
            env: vec![("AWS_PROFILE", profile.to_string())],
        },
        ProfileSelection {
            name: "--profile",
            args: vec!["--profile".to_string(), profile.to_string()],
            env: Vec::new(),
        },
    ]
}

// --- Credentials ---------------------------------------------------------------------------------

#[test]
fn push_with_environment_credentials() {
    let fixture = EcrFixture::start();
    fixture.moto.create_repository("my-app");
    let image = fixture.image("my-app:latest");
    let app = example_app();

    let output = push(&fixture, &app, &image, &[], &environment_credentials());
    let digest = pushed_digest(&output, &image);

    let unpacked = tempfile::tempdir().unwrap();
    let pulled = inspect_registry_unpack(
        &fixture.registry,
        "my-app",
        "latest",
        "linux/amd64",
        unpacked.path(),
    );
    assert_eq!(pulled["manifest_digest"], digest.as_str());
    let response = invoke_function_url(&unpacked.path().join("var/task"), "lambda.handler");
    assert_eq!(response["statusCode"], 200, "{response}");
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["message"], "Hello from Lambda!");

    let calls: Vec<_> = fixture
        .moto
        .api_calls()
        .into_iter()
        .filter(|call| call.is_from_rust_sdk())
        .collect();
    let operations: Vec<&str> = calls.iter().map(|call| call.operation.as_str()).collect();
    assert!(
        operations.contains(&"DescribeRepositories"),
        "{operations:?}"
    );
    assert!(
        operations.contains(&"GetAuthorizationToken"),
        "{operations:?}"
    );
    assert!(!operations.contains(&"CreateRepository"), "{operations:?}");
    for call in &calls {
        assert_eq!(
            call.access_key_id.as_deref(),
            Some(ACCESS_KEY_ID),
            "{call:?}"
        );
        assert_eq!(call.region.as_deref(), Some(ECR_REGION), "{call:?}");
    }
}

#[test]
fn push_with_profile_from_aws_configure() {
    let fixture = EcrFixture::start();
    fixture.moto.create_repository("my-app");
    // The profile's region differs from the registry's, so the region in the host name must
    // win, or DescribeRepositories would not find the repository.
    fixture.write_profile(
        PROFILE,
        PROFILE_ACCESS_KEY_ID,
        PROFILE_SECRET_ACCESS_KEY,
        "eu-west-1",
    );
    let image = fixture.image("my-app:latest");
    let app = example_app();

    let mut digests = Vec::new();
    for selection in profile_selections(PROFILE) {
        let case = selection.name;
        // The default locations in HOME, not the fixture's AWS_CONFIG_FILE and
        // AWS_SHARED_CREDENTIALS_FILE, which name the same files.
        let mut args = fixture.push_args(&app, &image);
        args.extend(selection.args);
        let mut command = Command::new(env!("CARGO_BIN_EXE_lambda-image"));
        command.args(&args);
        fixture.set_environment(&mut command);
        command
            .env_remove("AWS_CONFIG_FILE")
            .env_remove("AWS_SHARED_CREDENTIALS_FILE")
            .envs(selection.env);
        let calls_before = fixture.moto.api_calls().len();
        let output = command.output().expect("cannot run lambda-image");

        digests.push(pushed_digest(&output, &image));
        let calls: Vec<_> = fixture.moto.api_calls()[calls_before..]
            .iter()
            .filter(|call| call.is_from_rust_sdk())
            .cloned()
            .collect();
        assert!(
            calls
                .iter()
                .any(|call| call.operation == "GetAuthorizationToken"),
            "{case}: {calls:?}"
        );
        for call in &calls {
            assert_eq!(
                call.access_key_id.as_deref(),
                Some(PROFILE_ACCESS_KEY_ID),
                "{case}: {call:?}"
            );
            assert_eq!(call.region.as_deref(), Some(ECR_REGION), "{case}: {call:?}");
        }
        // The next case must log in with its own credentials, not reuse this token.
        fs::remove_dir_all(fixture.token_cache_dir()).unwrap();
    }
    assert_eq!(digests[0], digests[1]);
    let pulled = inspect_registry(&fixture.registry, "my-app", "latest");
    assert_eq!(pulled["manifest_digest"], digests[0].as_str());
}

#[test]
fn no_credentials_fails_without_metadata_probe() {
    let fixture = EcrFixture::start();
    fixture.moto.create_repository("my-app");
    let image = fixture.image("my-app:latest");
    let app = example_app();
    // A lambda-image that ignored AWS_EC2_METADATA_DISABLED would connect here, and not to
    // the real metadata address.
    let metadata_trap = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    metadata_trap.set_nonblocking(true).unwrap();
    let trap_url = format!("http://{}", metadata_trap.local_addr().unwrap());
    let trap = [("AWS_EC2_METADATA_SERVICE_ENDPOINT", trap_url.as_str())];
    let stored_before = fixture.registry.stored_files();

    let started = Instant::now();
    let output = push(&fixture, &app, &image, &[], &trap);
    let elapsed = started.elapsed();
    let error = single_error_line(&output);
    assert!(error.contains("no AWS credentials found"), "{error}");
    assert!(
        error.contains(ECR_ACCOUNT) && error.contains(ECR_REGION),
        "{error}"
    );
    for remedy in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "--profile",
        "AWS_PROFILE",
    ] {
        assert!(
            error.contains(remedy),
            "the error does not mention {remedy}: {error}"
        );
    }
    assert!(
        elapsed < Duration::from_secs(10),
        "failing took {elapsed:?}, as if a provider waited on the network"
    );

    // Credentials of a profile that neither --profile nor AWS_PROFILE selects are not used either.
    fixture.write_profile(
        PROFILE,
        PROFILE_ACCESS_KEY_ID,
        PROFILE_SECRET_ACCESS_KEY,
        ECR_REGION,
    );
    let unchosen = push(&fixture, &app, &image, &[], &trap);
    let error = single_error_line(&unchosen);
    assert!(error.contains("no AWS credentials found"), "{error}");

    let accepted = metadata_trap.accept();
    assert!(
        accepted.is_err(),
        "lambda-image connected to the instance metadata endpoint"
    );
    assert_eq!(fixture.moto.product_operations(), Vec::<String>::new());
    assert_eq!(fixture.registry.stored_files(), stored_before);
    assert!(fixture.token_cache_files().is_empty());
}

#[test]
fn unknown_profile_fails_with_its_name() {
    let fixture = EcrFixture::start();
    fixture.moto.create_repository("my-app");
    fixture.write_profile(
        PROFILE,
        PROFILE_ACCESS_KEY_ID,
        PROFILE_SECRET_ACCESS_KEY,
        ECR_REGION,
    );
    let image = fixture.image("my-app:latest");
    let app = example_app();

    for selection in profile_selections("staging") {
        let args: Vec<&str> = selection.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = selection
            .env
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let output = push(&fixture, &app, &image, &args, &env);
        let error = single_error_line(&output);
        assert!(
            error.contains("staging"),
            "{}: the error does not name the profile: {error}",
            selection.name
        );
    }
    assert!(fixture.moto.product_operations().is_empty());
    let missing = try_inspect([
        "registry",
        fixture.registry.url().as_str(),
        "my-app",
        "latest",
    ]);
    assert!(missing.is_err(), "a failed push left an image behind");
}

// --- Repositories --------------------------------------------------------------------------------

#[test]
fn missing_repository_fails_before_upload() {
    let fixture = EcrFixture::start();
    let image = fixture.image("my-app:latest");
    let stored_before = fixture.registry.stored_files();

    let output = push(
        &fixture,
        &example_app(),
        &image,
        &[],
        &environment_credentials(),
    );
    let error = single_error_line(&output);
    assert!(
        error.starts_with(
            "error: repository `my-app` does not exist in registry 123456789012 (us-east-1); \
             create it with --create-repository or `aws ecr create-repository"
        ),
        "{error}"
    );
    assert!(
        error.contains("--repository-name my-app"),
        "the aws command does not name the repository: {error}"
    );

    assert_eq!(
        fixture.registry.stored_files(),
        stored_before,
        "the registry's storage changed"
    );
    let repositories = fixture
        .registry
        .storage_path()
        .join("docker/registry/v2/repositories");
    assert!(repositories.join("lambda/nodejs").is_dir());
    assert!(!repositories.join("my-app").exists(), "an upload began");
    let operations = fixture.moto.product_operations();
    assert!(
        operations.contains(&"DescribeRepositories".to_string()),
        "{operations:?}"
    );
    assert!(
        !operations.contains(&"CreateRepository".to_string()),
        "{operations:?}"
    );
    let described = fixture.moto.describe_repository("my-app");
    assert!(
        described
            .as_ref()
            .is_err_and(|error| error.starts_with("RepositoryNotFoundException")),
        "{described:?}"
    );
}

#[test]
fn create_repository_flag_creates_it() {
    let fixture = EcrFixture::start();
    let app = example_app();
    let credentials = environment_credentials();

    let image = fixture.image("my-app:latest");
    let output = push(
        &fixture,
        &app,
        &image,
        &["--create-repository"],
        &credentials,
    );
    let digest = pushed_digest(&output, &image);
    let repository = fixture.moto.describe_repository("my-app").unwrap();
    assert_eq!(repository["registryId"], ECR_ACCOUNT);
    assert_eq!(repository["imageTagMutability"], "MUTABLE");
    assert_eq!(
        repository["imageScanningConfiguration"]["scanOnPush"],
        false
    );
    let pulled = inspect_registry(&fixture.registry, "my-app", "latest");
    assert_eq!(pulled["manifest_digest"], digest.as_str());

    let image = fixture.image("team/strict-app:v1");
    let output = push(
        &fixture,
        &app,
        &image,
        &[
            "--create-repository",
            "--image-tag-mutability",
            "IMMUTABLE",
            "--scan-on-push",
        ],
        &credentials,
    );
    pushed_digest(&output, &image);
    let repository = fixture.moto.describe_repository("team/strict-app").unwrap();
    assert_eq!(repository["imageTagMutability"], "IMMUTABLE");
    assert_eq!(repository["imageScanningConfiguration"]["scanOnPush"], true);
    assert_eq!(
        count(&fixture.moto.product_operations(), "CreateRepository"),
        2
    );

    // An existing repository keeps its settings, because the flags apply only to a new one.
    let output = push(
        &fixture,
        &app,
        &fixture.image("my-app:latest"),
        &["--create-repository", "--image-tag-mutability", "IMMUTABLE"],
        &credentials,
    );
    pushed_digest(&output, &fixture.image("my-app:latest"));
    let repository = fixture.moto.describe_repository("my-app").unwrap();
    assert_eq!(repository["imageTagMutability"], "MUTABLE");
    assert_eq!(
        count(&fixture.moto.product_operations(), "CreateRepository"),
        2
    );
}

#[test]
fn repository_flags_reject_bad_values() {
    let fixture = EcrFixture::start();
    let app = example_app();
    let image = fixture.image("my-app:latest");
    let cases: [(&[&str], &str); 3] = [
        (
            &["--image-tag-mutability", "IMMUTABLE"],
            "--create-repository",
        ),
        (&["--scan-on-push"], "--create-repository"),
        (
            &["--create-repository", "--image-tag-mutability", "sometimes"],
            "sometimes",
        ),
    ];
    for (extra_args, expected) in cases {
        let output = push(
            &fixture,
            &app,
            &image,
            extra_args,
            &environment_credentials(),
        );
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{extra_args:?}: {message}");
        assert!(stdout(&output).is_empty(), "{extra_args:?}");
        assert!(message.contains(expected), "{extra_args:?}: {message}");
    }
    assert!(fixture.moto.product_operations().is_empty());
    assert!(fixture.moto.describe_repository("my-app").is_err());
}

#[test]
fn unreachable_ecr_api_fails_with_one_line() {
    let fixture = EcrFixture::start();
    // A port that was free a moment ago, so nothing listens there.
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap();
    let endpoint = format!("http://{closed}");
    let mut env = environment_credentials().to_vec();
    env.extend([
        ("AWS_ENDPOINT_URL_ECR", endpoint.as_str()),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ]);
    let stored_before = fixture.registry.stored_files();

    let started = Instant::now();
    let output = push(
        &fixture,
        &example_app(),
        &fixture.image("my-app:latest"),
        &[],
        &env,
    );
    let error = single_error_line(&output);
    assert!(error.contains("ECR"), "{error}");
    assert!(
        error.contains(ECR_ACCOUNT) && error.contains(ECR_REGION),
        "{error}"
    );
    assert!(error.contains("Connection refused"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "giving up took {:?}",
        started.elapsed()
    );
    assert_eq!(fixture.registry.stored_files(), stored_before);
    // Plain words, not the SDK's error structs printed with Debug.
    assert!(!error.contains('{'), "{error}");
}

// --- Tokens --------------------------------------------------------------------------------------

#[test]
fn token_cache_reused_by_second_push() {
    let fixture = EcrFixture::start();
    fixture.moto.create_repository("my-app");
    let image = fixture.image("my-app:latest");
    let credentials = environment_credentials();

    let first = push(&fixture, &example_app(), &image, &[], &credentials);
    let first_digest = pushed_digest(&first, &image);
    let operations = fixture.moto.product_operations();
    assert_eq!(
        count(&operations, "GetAuthorizationToken"),
        1,
        "{operations:?}"
    );

    let token_file = cached_token_file(&fixture);
    assert_eq!(mode(&token_file), 0o600, "{}", token_file.display());
    assert_eq!(mode(&fixture.token_cache_dir()), 0o700);
    let token = read_json(&token_file);
    assert_eq!(token["username"], ECR_USER);
    assert_eq!(token["password"], ECR_PASSWORD);
    let issued_at = token["issued_at"].as_u64().unwrap();
    let expires_at = token["expires_at"].as_u64().unwrap();
    assert_eq!(expires_at - issued_at, TOKEN_LIFETIME_SECONDS, "{token}");

    // Another app, so the second push uploads a layer and a manifest with the cached token.
    let (_dir, app) = example_copy(Some("2"));
    let second = push(&fixture, &app, &image, &[], &credentials);
    let second_digest = pushed_digest(&second, &image);
    assert_ne!(first_digest, second_digest);
    assert!(stderr(&second).contains("uploaded"), "{}", stderr(&second));

    let operations = fixture.moto.product_operations();
    assert_eq!(
        count(&operations, "GetAuthorizationToken"),
        1,
        "the second push logged in again: {operations:?}"
    );
    assert_eq!(
        count(&operations, "DescribeRepositories"),
        2,
        "{operations:?}"
    );
    assert_eq!(read_json(&token_file), token, "the cached token changed");
    let pulled = inspect_registry(&fixture.registry, "my-app", "latest");
    assert_eq!(pulled["manifest_digest"], second_digest.as_str());
}

/// Replaces the password in the only cached token with PASSWORD, as if the registry had
/// revoked the token that lambda-image cached.
fn corrupt_cached_password(fixture: &EcrFixture, password: &str) {
    let token_file = cached_token_file(fixture);
    let mut token = read_json(&token_file);
    token["password"] = json!(password);
    fs::write(&token_file, token.to_string()).unwrap();
}

/// Pushes the example app with the base BASE, spoils the cached token, then pushes another
/// app with that base. Both pushes get EXTRA_ARGS. Returns both outputs, and panics unless the
/// first push succeeds.
fn push_with_revoked_token(
    fixture: &EcrFixture,
    image: &str,
    base: &str,
    extra_args: &[&str],
) -> (Output, Output) {
    let credentials = environment_credentials();
    let push_with_base = |app: &Path| {
        let mut args = vec![
            "push".to_string(),
            app.to_str().unwrap().to_string(),
            image.to_string(),
            "--base".to_string(),
            base.to_string(),
            "--resolve".to_string(),
            fixture.resolve(),
        ];
        args.extend(extra_args.iter().map(|arg| arg.to_string()));
        lambda_image(fixture, &args, &credentials)
    };
    let first = push_with_base(&example_app());
    pushed_digest(&first, image);
    corrupt_cached_password(fixture, "revoked-token");

    let (_dir, app) = example_copy(Some("2"));
    let second = push_with_base(&app);
    (first, second)
}

/// Checks what a push that met a rejected token must leave: two logins, the right password
/// in the cache, and the pushed image in the registry.
fn assert_logged_in_again(fixture: &EcrFixture, output: &Output, image: &str) {
    let digest = pushed_digest(output, image);
    let operations = fixture.moto.product_operations();
    assert_eq!(
        count(&operations, "GetAuthorizationToken"),
        2,
        "{operations:?}"
    );
    let token_file = cached_token_file(fixture);
    let token = read_json(&token_file);
    assert_eq!(token["password"], ECR_PASSWORD, "{}", token_file.display());
    assert_eq!(mode(&token_file), 0o600);
    let pulled = inspect_registry(&fixture.registry, "my-app", "latest");
    assert_eq!(pulled["manifest_digest"], digest.as_str());
}

#[test]
fn rejected_token_during_upload_logs_in_again() {
    let fixture = EcrFixture::start();
    fixture.moto.create_repository("my-app");
    // The base comes from another registry, so the first request with the token is an upload.
    let base_registry = Registry::start();
    push_base(&base_registry, "base", "lambda/nodejs", BASE_TAG);
    let base = format!("{}/lambda/nodejs:{BASE_TAG}", base_registry.host());
    let image = fixture.image("my-app:latest");

    let (_, output) = push_with_revoked_token(&fixture, &image, &base, &[]);
    assert_logged_in_again(&fixture, &output, &image);
}

#[test]
fn rejected_token_during_base_pull_logs_in_again() {
    let fixture = EcrFixture::start();
    fixture.moto.create_repository("my-app");
    // The base is in the same ECR registry, as when a team mirrors it there, so the first
    // request with the token pulls the base.
    let image = fixture.image("my-app:latest");

    let (_, output) = push_with_revoked_token(&fixture, &image, &fixture.base(), &[]);
    assert_logged_in_again(&fixture, &output, &image);
}

// --- Immutable tags ------------------------------------------------------------------------------

#[test]
fn immutable_tag_is_never_overwritten() {
    let fixture = EcrFixture::start();
    fixture.moto.ecr(
        "create_repository",
        &json!({ "repositoryName": "my-app", "imageTagMutability": "IMMUTABLE" }),
    );
    let image = fixture.image("my-app:v1");
    let credentials = environment_credentials();
    let app = example_app();

    let first = push(&fixture, &app, &image, &[], &credentials);
    let digest = pushed_digest(&first, &image);
    assert_eq!(fixture.register_image("my-app", "v1"), digest);
    let described = fixture.moto.ecr(
        "describe_images",
        &json!({ "repositoryName": "my-app", "imageIds": [{ "imageTag": "v1" }] }),
    );
    assert_eq!(described["imageDetails"][0]["imageDigest"], digest.as_str());
    let stored_after_first = fixture.registry.stored_files();

    let again = push(&fixture, &app, &image, &[], &credentials);
    assert_eq!(pushed_digest(&again, &image), digest);
    assert!(
        !stderr(&again).contains("uploaded"),
        "the same image was uploaded again:\n{}",
        stderr(&again)
    );
    assert_eq!(fixture.registry.stored_files(), stored_after_first);
    let operations = fixture.moto.product_operations();
    assert!(
        operations.contains(&"DescribeImages".to_string()),
        "{operations:?}"
    );

    let (_dir, other_app) = example_copy(Some("2"));
    let rejected = push(&fixture, &other_app, &image, &[], &credentials);
    let error = single_error_line(&rejected);
    assert_eq!(
        fixture.registry.stored_files(),
        stored_after_first,
        "the rejected push uploaded blobs"
    );
    let pulled = inspect_registry(&fixture.registry, "my-app", "v1");
    assert_eq!(pulled["manifest_digest"], digest.as_str());
    assert!(error.contains("immutable"), "{error}");
    assert!(
        error.contains("`v1`") && error.contains("`my-app`"),
        "{error}"
    );
    assert!(
        error.contains(&digest),
        "the error does not name the existing image: {error}"
    );
    assert!(
        !error.contains("not valid"),
        "the image is valid, only its tag is taken: {error}"
    );
}

// --- Secrets -------------------------------------------------------------------------------------

#[test]
fn verbose_output_never_contains_secrets() {
    let fixture = EcrFixture::start();
    fixture.moto.create_repository("my-app");
    let image = fixture.image("my-app:latest");
    let credentials = environment_credentials();
    // The base comes from another registry, so the rejected token meets an upload and takes
    // the path that logs in again, with its 401 and retry.
    let base_registry = Registry::start();
    push_base(&base_registry, "base", "lambda/nodejs", BASE_TAG);
    let base = format!("{}/lambda/nodejs:{BASE_TAG}", base_registry.host());

    let (first, relogin) = push_with_revoked_token(&fixture, &image, &base, &["-vvv"]);
    let missing = push(
        &fixture,
        &example_app(),
        &fixture.image("missing:latest"),
        &["-vvv"],
        &credentials,
    );
    single_error_line(&missing);

    let secrets = [
        ECR_PASSWORD.to_string(),
        base64_encode(format!("{ECR_USER}:{ECR_PASSWORD}").as_bytes()),
        base64_encode(ECR_PASSWORD.as_bytes()),
        "revoked-token".to_string(),
        base64_encode(format!("{ECR_USER}:revoked-token").as_bytes()),
        SECRET_ACCESS_KEY.to_string(),
    ];
    for (name, output) in [
        ("first push", &first),
        ("push after a rejected token", &relogin),
        ("push to a missing repository", &missing),
    ] {
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
            !printed.contains("Basic "),
            "{name} printed an Authorization value"
        );
    }

    let files = fixture.token_cache_files();
    assert!(!files.is_empty());
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    assert_eq!(mode(&fixture.token_cache_dir()), 0o700);
}

// --- The harness's moto --------------------------------------------------------------------------

#[test]
fn moto_token_matches_fixture_registry() {
    let moto = Moto::start();
    let response = moto.ecr("get_authorization_token", &json!({}));
    let token = &response["authorizationData"][0]["authorizationToken"];
    assert_eq!(
        token.as_str(),
        Some(base64_encode(format!("{ECR_USER}:{ECR_PASSWORD}").as_bytes()).as_str()),
        "moto's ECR token changed, so ECR_USER and ECR_PASSWORD need the new values"
    );

    let missing = moto.describe_repository("absent");
    assert!(
        missing
            .as_ref()
            .is_err_and(|error| error.starts_with("RepositoryNotFoundException: ")),
        "{missing:?}"
    );

    let calls = moto.api_calls();
    let operations: Vec<&str> = calls.iter().map(|call| call.operation.as_str()).collect();
    assert_eq!(
        operations,
        ["GetAuthorizationToken", "DescribeRepositories"]
    );
    for call in &calls {
        assert!(!call.is_from_rust_sdk(), "{call:?}");
        assert_eq!(call.access_key_id.as_deref(), Some("testing"), "{call:?}");
        assert_eq!(call.region.as_deref(), Some(ECR_REGION), "{call:?}");
    }
    assert!(moto.product_operations().is_empty());
}
