//! End-to-end tests of `lambda-image push` and `lambda-image build` against a real registry
//! (Debian's `docker-registry`), checked with the independent reader in `tests/tools/`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{
    base_layout, copy_dir, example_app, inspect_layout, inspect_registry,
    inspect_registry_platform, inspect_registry_unpack, invoke_function_url, push_base, Registry,
    BASE_TAG,
};
use serde_json::Value;

/// Runs the product binary with a clean environment: no Docker config, no SOURCE_DATE_EPOCH.
fn lambda_image(args: &[&str]) -> Output {
    lambda_image_with_env(args, &[])
}

fn lambda_image_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let docker_config = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_lambda-image"));
    command
        .args(args)
        .env("DOCKER_CONFIG", docker_config.path())
        // One cache for the whole run, so the example app's dependencies install once.
        .env(
            "XDG_CACHE_HOME",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("push-cache"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("SOURCE_DATE_EPOCH");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("cannot run lambda-image")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "lambda-image failed:\n{}",
        stderr(output)
    );
}

/// A private copy of the installed example app, which a test may change.
fn example_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    copy_dir(&example_app(), &app);
    (dir, app)
}

/// Pushes the OCI base layout into `registry` and returns the `--base` reference for it.
fn base_in(registry: &Registry, layout: &str) -> String {
    push_base(registry, layout, "lambda/nodejs", BASE_TAG);
    format!("{}/lambda/nodejs:{BASE_TAG}", registry.host())
}

/// Returns the digest printed by `push`, checking the line is `IMAGE@sha256:<hex>` and alone.
fn pushed_digest(output: &Output, image: &str) -> String {
    assert_success(output);
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

/// Lists every file, folder and link under `dir` with its content, mode and mtime, to prove
/// that a command left it untouched.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut entries = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.unwrap();
        let metadata = fs::symlink_metadata(entry.path()).unwrap();
        let content = if metadata.is_file() {
            fs::read(entry.path()).unwrap()
        } else {
            Vec::new()
        };
        entries.insert(
            entry.path().to_path_buf(),
            (content, metadata.mode(), metadata.mtime()),
        );
    }
    entries
}

fn added_layers(image: &Value) -> Vec<&Value> {
    let layers = image["layers"].as_array().unwrap();
    layers[2..].iter().collect()
}

fn entry_paths(layer: &Value) -> Vec<String> {
    layer["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            entry["path"]
                .as_str()
                .unwrap()
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

#[test]
fn push_example_app_and_invoke_handler() {
    let registry = Registry::start();
    let base = base_in(&registry, "base");
    let (_dir, app) = example_copy();
    let before = snapshot(&app);

    let image = format!("{}/my-app:latest", registry.host());
    let output = lambda_image(&["push", app.to_str().unwrap(), &image, "--base", &base]);
    let digest = pushed_digest(&output, &image);
    assert_eq!(snapshot(&app), before, "push modified the app directory");

    let unpacked = tempfile::tempdir().unwrap();
    let pulled = inspect_registry_unpack(
        &registry,
        "my-app",
        "latest",
        "linux/amd64",
        unpacked.path(),
    );
    assert_eq!(pulled["manifest_digest"], digest.as_str());
    assert_eq!(
        pulled["manifest_media_type"],
        "application/vnd.oci.image.manifest.v1+json"
    );

    let response = invoke_function_url(&unpacked.path().join("var/task"), "lambda.handler");
    assert_eq!(response["statusCode"], 200, "{response}");
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["message"], "Hello from Lambda!");
}

#[test]
fn pushed_image_layers_are_normalized() {
    let registry = Registry::start();
    let base = base_in(&registry, "base");
    let (_dir, app) = example_copy();
    fs::set_permissions(app.join("app.js"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(app.join("run.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(app.join("run.sh"), fs::Permissions::from_mode(0o700)).unwrap();

    let image = format!("{}/my-app:v1", registry.host());
    pushed_digest(
        &lambda_image(&["push", app.to_str().unwrap(), &image, "--base", &base]),
        &image,
    );
    let pulled = inspect_registry(&registry, "my-app", "v1");
    let added = added_layers(&pulled);
    assert_eq!(added.len(), 2, "one dependency layer and one app layer");

    let dependencies = entry_paths(added[0]);
    assert_eq!(
        dependencies[..3],
        ["var", "var/task", "var/task/node_modules"]
    );
    assert!(dependencies[2..]
        .iter()
        .all(|p| p.starts_with("var/task/node_modules")));
    assert!(dependencies
        .iter()
        .any(|p| p == "var/task/node_modules/express/package.json"));

    let app_paths = entry_paths(added[1]);
    assert_eq!(app_paths[..2], ["var", "var/task"]);
    assert!(app_paths
        .iter()
        .all(|p| !p.starts_with("var/task/node_modules")));
    assert!(app_paths.contains(&"var/task/lambda.js".to_string()));
    assert!(
        !app_paths.contains(&"var/task/README.md".to_string()),
        ".dockerignore excludes *.md"
    );

    for layer in &added {
        let mut seen = std::collections::HashSet::new();
        for entry in layer["entries"].as_array().unwrap() {
            let path = entry["path"].as_str().unwrap().trim_end_matches('/');
            let parent = Path::new(path).parent().unwrap().to_str().unwrap();
            assert!(
                parent.is_empty() || seen.contains(parent),
                "{path} comes before its parent"
            );
            seen.insert(path.to_string());
            assert_eq!(entry["uid"], 0, "{path}");
            assert_eq!(entry["gid"], 0, "{path}");
            assert_eq!(entry["uname"], "", "{path}");
            assert_eq!(entry["gname"], "", "{path}");
            assert_eq!(entry["mtime"], 1, "{path}");
            let mode = entry["mode"].as_u64().unwrap();
            match entry["type"].as_str().unwrap() {
                "dir" => assert_eq!(mode, 0o755, "{path}"),
                "file" if path.ends_with("run.sh") => assert_eq!(mode, 0o755, "{path}"),
                "file" if path.ends_with("app.js") && !path.contains("node_modules") => {
                    assert_eq!(mode, 0o644, "{path}")
                }
                "file" => assert!(mode == 0o644 || mode == 0o755, "{path}: {mode:o}"),
                "symlink" => assert_eq!(mode, 0o777, "{path}"),
                other => panic!("{path}: unexpected entry type {other}"),
            }
        }
    }

    let config = &pulled["config"];
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["lambda.handler"])
    );
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/lambda-entrypoint.sh"])
    );
    assert_eq!(config["config"]["WorkingDir"], "/var/task");
    assert_eq!(
        config["x-synthetic"], "made by testdata/make-base.py",
        "unknown fields survive"
    );
    assert_eq!(config["history"].as_array().unwrap().len(), 4);
    assert_eq!(config["created"], "1970-01-01T00:00:01Z");
}

#[test]
fn build_and_push_give_the_same_digest() {
    let registry = Registry::start();
    let base = base_in(&registry, "base");
    let app = example_app();
    let image = format!("{}/same:latest", registry.host());
    let pushed = pushed_digest(
        &lambda_image(&["push", app.to_str().unwrap(), &image, "--base", &base]),
        &image,
    );

    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("image");
    let layout_base = format!("oci:{}:{BASE_TAG}", base_layout("base").display());
    let output = lambda_image(&[
        "build",
        app.to_str().unwrap(),
        "--output",
        layout.to_str().unwrap(),
        "--base",
        &layout_base,
    ]);
    assert_success(&output);
    assert!(
        stdout(&output).trim_end().ends_with(&pushed),
        "{}",
        stdout(&output)
    );

    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], pushed.as_str());
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    assert_eq!(
        fs::read_to_string(layout.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    assert_eq!(inspect_layout(&layout)["manifest_digest"], pushed.as_str());
}

#[test]
fn docker_base_keeps_docker_media_types() {
    let registry = Registry::start();
    let base = base_in(&registry, "base-docker");
    let image = format!("{}/docker-family:latest", registry.host());
    pushed_digest(
        &lambda_image(&[
            "push",
            example_app().to_str().unwrap(),
            &image,
            "--base",
            &base,
        ]),
        &image,
    );

    let pulled = inspect_registry(&registry, "docker-family", "latest");
    assert_eq!(
        pulled["manifest_media_type"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        pulled["manifest"]["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    for layer in pulled["layers"].as_array().unwrap() {
        assert_eq!(
            layer["media_type"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }
}

#[test]
fn arm64_platform_is_picked_from_the_index() {
    let registry = Registry::start();
    let base = base_in(&registry, "base");
    let image = format!("{}/arm:latest", registry.host());
    let output = lambda_image(&[
        "push",
        example_app().to_str().unwrap(),
        &image,
        "--base",
        &base,
        "--platform",
        "linux/arm64",
    ]);
    pushed_digest(&output, &image);
    let pulled = inspect_registry_platform(&registry, "arm", "latest", "linux/arm64");
    assert_eq!(pulled["config"]["architecture"], "arm64");
    assert_eq!(pulled["config"]["variant"], "v8");
    let first = entry_paths(&pulled["layers"][0]);
    assert!(first.contains(&"etc/architecture".to_string()));
}

#[test]
fn base_from_another_registry_is_copied() {
    let source = Registry::start();
    let base = base_in(&source, "base");
    let target = Registry::start();
    let image = format!("{}/copied:latest", target.host());
    let digest = pushed_digest(
        &lambda_image(&[
            "push",
            example_app().to_str().unwrap(),
            &image,
            "--base",
            &base,
        ]),
        &image,
    );
    let pulled = inspect_registry(&target, "copied", "latest");
    assert_eq!(pulled["manifest_digest"], digest.as_str());
    assert_eq!(pulled["layers"].as_array().unwrap().len(), 4);
}

#[test]
fn second_push_uploads_nothing() {
    let registry = Registry::start();
    let base = base_in(&registry, "base");
    let image = format!("{}/again:latest", registry.host());
    let app = example_app();
    let first = lambda_image(&["push", app.to_str().unwrap(), &image, "--base", &base]);
    let second = lambda_image(&["push", app.to_str().unwrap(), &image, "--base", &base]);
    assert_eq!(
        pushed_digest(&first, &image),
        pushed_digest(&second, &image)
    );
    assert!(!stderr(&second).contains("uploaded"), "{}", stderr(&second));
}

#[test]
fn basic_auth_from_docker_config() {
    let registry = Registry::start_with_basic_auth("ci", "s3cret-pass");
    let base = base_in(&registry, "base");
    let image = format!("{}/private:latest", registry.host());
    let app = example_app();

    let anonymous = lambda_image(&["push", app.to_str().unwrap(), &image, "--base", &base]);
    assert_eq!(anonymous.status.code(), Some(1));
    let message = stderr(&anonymous);
    assert!(message.contains("docker login"), "{message}");
    assert_eq!(
        message.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{message}"
    );

    let config = tempfile::tempdir().unwrap();
    let auth = base64_encode(b"ci:s3cret-pass");
    fs::write(
        config.path().join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let output = lambda_image_with_env(
        &[
            "push",
            app.to_str().unwrap(),
            &image,
            "--base",
            &base,
            "-vvv",
        ],
        &[("DOCKER_CONFIG", config.path().to_str().unwrap())],
    );
    pushed_digest(&output, &image);
    assert!(
        !stderr(&output).contains("s3cret-pass"),
        "the password reached the log"
    );
    assert!(
        !stderr(&output).contains(&auth),
        "the Basic credentials reached the log"
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn bad_input_fails_with_one_line_and_pushes_nothing() {
    let registry = Registry::start();
    let base = base_in(&registry, "base");
    let image = format!("{}/never:latest", registry.host());
    let app = example_app();
    let app = app.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["push", "/nonexistent/app", &image, "--base", &base],
            "`/nonexistent/app` does not exist",
        ),
        (
            vec!["push", app, "127.0.0.1:1/Upper:latest", "--base", &base],
            "repository names must be lowercase",
        ),
        (
            vec![
                "push",
                app,
                &image,
                "--base",
                &base,
                "--handler",
                "missing.handler",
            ],
            "missing",
        ),
        (
            vec![
                "push",
                app,
                &image,
                "--base",
                &base,
                "--platform",
                "linux/s390x",
            ],
            "linux/s390x",
        ),
        (
            vec!["push", app, &image, "--base", "oci:/nonexistent/layout"],
            "/nonexistent/layout",
        ),
    ];
    for (args, expected) in cases {
        let output = lambda_image(&args);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {message}");
        assert!(stdout(&output).is_empty(), "{args:?}");
        let errors: Vec<&str> = message
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{args:?}: {message}");
        assert!(errors[0].contains(expected), "{args:?}: {message}");
        assert!(!message.contains("panicked"), "{args:?}: {message}");
    }
    let missing = common::try_inspect(["registry", &registry.url(), "never", "latest"]);
    assert!(missing.is_err(), "a failed push left a manifest behind");
}

/// Pushes the example app to `image` on `base` for linux/amd64 and linux/arm64.
fn push_two_platforms(image: &str, base: &str, extra: &[&str]) -> Output {
    let app = example_app();
    let mut args = vec![
        "push",
        app.to_str().unwrap(),
        image,
        "--base",
        base,
        "--platform",
        "linux/amd64,linux/arm64",
    ];
    args.extend_from_slice(extra);
    lambda_image(&args)
}

#[test]
fn two_platforms_push_one_tag_each() {
    let registry = Registry::start();
    let base = base_in(&registry, "base");
    let image = format!("{}/multi:v1", registry.host());
    let output = push_two_platforms(&image, &base, &["--index"]);
    assert_success(&output);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for (tag, architecture) in [
        ("v1-amd64", "amd64"),
        ("v1", "amd64"),
        ("v1-arm64", "arm64"),
    ] {
        let pulled = inspect_registry(&registry, "multi", tag);
        assert_eq!(
            pulled["manifest_media_type"], "application/vnd.oci.image.manifest.v1+json",
            "{tag}"
        );
        assert_eq!(pulled["config"]["architecture"], architecture, "{tag}");
        let line = format!(
            "{}/multi:{tag}@{}",
            registry.host(),
            pulled["manifest_digest"].as_str().unwrap()
        );
        assert!(lines.contains(&line.as_str()), "{line} not in {text}");
    }
    let index = inspect_registry_platform(&registry, "multi", "v1-index", "linux/arm64");
    assert_eq!(
        index["index"]["media_type"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(index["config"]["architecture"], "arm64");
}

/// A base layer that both platforms' bases contain is uploaded once. The two transfers start
/// together, so without care both find the layer missing and both send it.
#[test]
fn two_platforms_send_a_shared_base_layer_once() {
    let registry = Registry::start();
    let layout = base_layout("base");
    let base = format!("oci:{}:{BASE_TAG}", layout.display());
    let image = format!("{}/shared:v1", registry.host());

    let output = push_two_platforms(&image, &base, &[]);

    assert_success(&output);
    let log = stderr(&output);
    let uploaded: Vec<&str> = log
        .lines()
        .filter_map(|line| line.strip_prefix("uploaded "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    let distinct: std::collections::BTreeSet<&str> = uploaded.iter().copied().collect();
    assert!(!uploaded.is_empty(), "{log}");
    assert_eq!(
        uploaded.len(),
        distinct.len(),
        "a blob uploaded twice:\n{log}"
    );
}

#[test]
fn index_needs_two_platforms() {
    let output = lambda_image(&[
        "push",
        example_app().to_str().unwrap(),
        "127.0.0.1:9/x:y",
        "--index",
        "--base",
        &format!("oci:{}:{BASE_TAG}", base_layout("base").display()),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("--index needs two platforms"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn credential_helper_supplies_the_password() {
    let registry = Registry::start_with_basic_auth("helper-user", "helper-pass");
    let base = base_in(&registry, "base");
    let tools = tempfile::tempdir().unwrap();
    let helper = tools.path().join("docker-credential-fake");
    // The helper protocol: the server name on stdin, JSON with Username and Secret on stdout.
    fs::write(
        &helper,
        "#!/bin/sh\nread server\necho \"$server\" > \"$(dirname \"$0\")/asked\"\n\
         echo '{\"ServerURL\":\"'\"$server\"'\",\"Username\":\"helper-user\",\"Secret\":\"helper-pass\"}'\n",
    )
    .unwrap();
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    let config = tempfile::tempdir().unwrap();
    fs::write(
        config.path().join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"fake"}}}}"#, registry.host()),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        tools.path().display(),
        std::env::var("PATH").unwrap()
    );

    let image = format!("{}/helped:latest", registry.host());
    let output = lambda_image_with_env(
        &[
            "push",
            example_app().to_str().unwrap(),
            &image,
            "--base",
            &base,
        ],
        &[
            ("DOCKER_CONFIG", config.path().to_str().unwrap()),
            ("PATH", &path),
        ],
    );
    pushed_digest(&output, &image);
    assert_eq!(
        fs::read_to_string(tools.path().join("asked"))
            .unwrap()
            .trim(),
        registry.host()
    );
}
