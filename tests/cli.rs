//! The command line as users meet it: `check`, `invoke`, the secret guard and the dependency
//! install, run through the binary with their exit statuses and output streams.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::{base_layout, copy_dir, project_path, BASE_TAG};

fn run(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lambda-image"))
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .env("DOCKER_CONFIG", cache.join("docker"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("cannot run lambda-image")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn base() -> String {
    format!("oci:{}:{BASE_TAG}", base_layout("base").display())
}

/// Writes an app folder at `dir` with a package.json and `index_js` as index.js.
fn write_app(dir: &Path, index_js: &str) {
    fs::create_dir(dir).unwrap();
    fs::write(
        dir.join("package.json"),
        r#"{"name":"app","version":"1.0.0"}"#,
    )
    .unwrap();
    fs::write(dir.join("index.js"), index_js).unwrap();
}

fn shared_cache() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-cache")
}

/// The repository's example app has a lockfile but no node_modules: the build installs the
/// dependencies itself, and the handler answers.
#[test]
fn invoke_installs_dependencies_and_answers() {
    let app = project_path("testdata/example-app");
    let before = fs::read_dir(&app).unwrap().count();
    let output = run(
        &["invoke", app.to_str().unwrap(), "--base", &base(), "-q"],
        &shared_cache(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let result: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(result["statusCode"], 200);
    let body: serde_json::Value = serde_json::from_str(result["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["message"], "Hello from Lambda!");
    assert!(
        !app.join("node_modules").exists() || before == fs::read_dir(&app).unwrap().count(),
        "the app folder changed"
    );
}

#[test]
fn invoke_event_file_and_handler_error() {
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("event.json");
    let health = serde_json::json!({
        "version": "2.0",
        "rawPath": "/health",
        "rawQueryString": "",
        "headers": {"host": "abc.lambda-url.us-east-1.on.aws"},
        "requestContext": {"http": {"method": "GET", "path": "/health", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"}},
        "isBase64Encoded": false
    });
    fs::write(&event, health.to_string()).unwrap();
    let app = project_path("testdata/example-app");
    let output = run(
        &[
            "invoke",
            app.to_str().unwrap(),
            "--base",
            &base(),
            "--event",
            event.to_str().unwrap(),
            "-q",
        ],
        &shared_cache(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(r#"\"status\":\"ok\""#),
        "{}",
        stdout(&output)
    );

    let broken = dir.path().join("broken");
    write_app(
        &broken,
        "exports.handler = async () => { throw new TypeError('boom'); };\n",
    );
    let output = run(
        &["invoke", broken.to_str().unwrap(), "--base", &base(), "-q"],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let error: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(error["errorType"], "TypeError");
    assert_eq!(error["errorMessage"], "boom");
}

#[test]
fn check_flags_buildx_output() {
    let dir = tempfile::tempdir().unwrap();
    let target = format!(
        "oci:{}:buildx",
        project_path("testdata/check/images").display()
    );
    let output = run(&["check", &target], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .starts_with("error[index-not-supported]:"),
        "{text}"
    );
}

#[test]
fn check_passes_the_example_app() {
    let app = project_path("testdata/example-app");
    let output = run(
        &[
            "check",
            app.to_str().unwrap(),
            "--base",
            &base(),
            "--expect-arch",
            "amd64",
        ],
        &shared_cache(),
    );
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    assert_eq!(stdout(&output), "");
    assert!(
        stderr(&output).contains("no findings"),
        "{}",
        stderr(&output)
    );

    let output = run(
        &[
            "check",
            app.to_str().unwrap(),
            "--base",
            &base(),
            "--expect-arch",
            "arm64",
        ],
        &shared_cache(),
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("error[architecture-mismatch]"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn secret_guard_stops_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    copy_dir(&project_path("testdata/golden-app"), &app);
    fs::write(app.join(".env.production"), "DATABASE_PASSWORD=hunter2\n").unwrap();
    fs::write(app.join(".env.example"), "DATABASE_PASSWORD=\n").unwrap();
    let out = dir.path().join("image");
    let args = [
        "build",
        app.to_str().unwrap(),
        "--base",
        &base(),
        "--node-modules",
        "local",
        "--output",
        out.to_str().unwrap(),
    ];

    let output = run(&args, dir.path());
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("`.env.production`"), "{message}");
    assert!(!message.contains(".env.example"), "{message}");
    assert!(message.contains("--allow-secret"), "{message}");
    assert!(!out.exists(), "a refused build wrote output");

    let mut allowed = args.to_vec();
    allowed.extend(["--allow-secret", ".env.production"]);
    let output = run(&allowed, dir.path());
    assert!(output.status.success(), "{}", stderr(&output));

    fs::write(app.join(".dockerignore"), ".env*\n").unwrap();
    let output = run(&args, dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn missing_lockfile_suggests_npm_install() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    fs::create_dir(&app).unwrap();
    fs::write(
        app.join("package.json"),
        r#"{"name":"a","version":"1.0.0","dependencies":{"ms":"2.1.3"}}"#,
    )
    .unwrap();
    fs::write(app.join("index.js"), "exports.handler = async () => 1;\n").unwrap();
    let output = run(
        &[
            "build",
            app.to_str().unwrap(),
            "--base",
            &base(),
            "--output",
            dir.path().join("o").to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("has no lockfile"), "{message}");
    assert!(message.contains("npm install"), "{message}");
    assert!(message.contains("--node-modules local"), "{message}");
}

#[test]
fn engines_mismatch_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    copy_dir(&project_path("testdata/golden-app"), &app);
    let package = fs::read_to_string(app.join("package.json")).unwrap();
    fs::write(
        app.join("package.json"),
        package.replacen(
            "\"private\": true,",
            "\"private\": true,\n  \"engines\": { \"node\": \"22.x\" },",
            1,
        ),
    )
    .unwrap();
    let output = run(
        &[
            "build",
            app.to_str().unwrap(),
            "--base",
            &base(),
            "--node-modules",
            "local",
            "--output",
            dir.path().join("o").to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("engines.node `22.x` does not admit Node.js 24"),
        "{message}"
    );
}

/// A layout's layer blobs are files of their own with the umask's mode, like its index.json:
/// not links to the cache's private blobs, which an edit of the layout would change.
#[test]
fn layout_blobs_are_independent_files() {
    use std::os::unix::fs::MetadataExt;

    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let app = work.path().join("app");
    write_app(&app, "exports.handler = async () => 1;\n");
    let layout = work.path().join("layout");
    let args = [
        "build",
        app.to_str().unwrap(),
        "--output",
        layout.to_str().unwrap(),
        "--base",
        &base(),
        "--handler",
        "index.handler",
        "-q",
    ];

    let output = run(&args, &cache);

    assert!(output.status.success(), "{}", stderr(&output));
    let index_mode = fs::metadata(layout.join("index.json")).unwrap().mode() & 0o777;
    for blob in fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let metadata = blob.unwrap().metadata().unwrap();
        assert_eq!(metadata.nlink(), 1, "{metadata:?}");
        assert_eq!(metadata.mode() & 0o777, index_mode, "{metadata:?}");
    }
}
