//! Local invocation: images built by `lambda-image build` are unpacked and their handlers run
//! with the host's node, and crafted layers check what the unpacking accepts and rejects.
//!
//! The fixtures in `testdata/invoke/` are described in its README.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lambda_image::base::{BaseImage, BaseLocation};
use lambda_image::invoke::{
    default_event, function_url_event, image_handler, image_layers, invoke, parse_event,
    unpack_task_root, HandlerOutput, InvokeError, InvokeOutcome, InvokeRequest,
};
use lambda_image::registry::{ClientOptions, RegistryClient};
use lambda_image::{Digest, Platform};
use serde_json::{json, Value};
use tempfile::TempDir;

use common::{base_layout, example_app, project_path, BASE_TAG};

/// A function timeout that the timeout tests can wait out quickly.
const SHORT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long past its timeout a killed invocation may take to return.
const KILL_SLACK: Duration = Duration::from_secs(5);

// --- Helpers -------------------------------------------------------------------------------------

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Runtime::new()
        .expect("cannot start a tokio runtime")
        .block_on(future)
}

fn client() -> RegistryClient {
    RegistryClient::new(&ClientOptions::default()).expect("cannot create a registry client")
}

/// Builds APP with `lambda-image build` on the synthetic base and returns the layout's folder.
fn build_layout(app: &Path, output_dir: &Path) -> PathBuf {
    let layout = output_dir.join("image");
    let base = format!("oci:{}:{BASE_TAG}", base_layout("base").display());
    let output = Command::new(env!("CARGO_BIN_EXE_lambda-image"))
        .args(["build", "--base", &base, "--output"])
        .arg(&layout)
        .arg(app)
        .output()
        .expect("cannot run lambda-image");
    assert!(
        output.status.success(),
        "lambda-image build {} failed:\n{}",
        app.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    layout
}

/// An image's `/var/task`, unpacked, with the handler its config names.
struct Unpacked {
    task_root: TempDir,
    handler: String,
    _layout_dir: TempDir,
}

/// Loads the only image in the layout at PATH and unpacks its task root.
async fn try_unpack_layout(path: &Path) -> Result<(TempDir, String), InvokeError> {
    let client = client();
    let location = BaseLocation::Layout {
        path: path.to_path_buf(),
        tag: None,
    };
    let image = BaseImage::load(location, &Platform::linux_amd64(), &client).await?;
    let handler = image_handler(&image.config)?;
    let task_root = unpack_task_root(&image_layers(&image), &image, &client).await?;
    Ok((task_root, handler))
}

fn build_and_unpack(app: &Path) -> Unpacked {
    let layout_dir = tempfile::tempdir().unwrap();
    let layout = build_layout(app, layout_dir.path());
    let (task_root, handler) = block_on(try_unpack_layout(&layout))
        .unwrap_or_else(|error| panic!("cannot unpack {}: {error}", layout.display()));
    Unpacked {
        task_root,
        handler,
        _layout_dir: layout_dir,
    }
}

/// Builds and unpacks the handlers fixture. Each test builds its own, because a shared one in
/// a static would never be dropped, and its temporary folders would outlive the tests.
fn handlers_image() -> Unpacked {
    build_and_unpack(&project_path("testdata/invoke/handlers"))
}

fn request(task_root: &Path, handler: &str) -> InvokeRequest {
    let mut request = InvokeRequest::new(task_root, handler);
    request.handler_output = HandlerOutput::Capture;
    request
}

fn run(request: &InvokeRequest) -> InvokeOutcome {
    block_on(invoke(request)).unwrap_or_else(|error| {
        panic!("invoking {} failed: {error}", request.handler);
    })
}

/// Invokes HANDLER from the handlers fixture with the default event.
fn run_handler(handler: &str) -> InvokeOutcome {
    let image = handlers_image();
    run(&request(image.task_root.path(), handler))
}

/// Asserts that the outcome is a failure of ERROR_TYPE and returns its message.
fn expect_error(outcome: &InvokeOutcome, error_type: &str) -> String {
    let logs = String::from_utf8_lossy(&outcome.handler_output);
    assert!(
        !outcome.success,
        "expected {error_type}, got success: {}\nhandler output:\n{logs}",
        outcome.output
    );
    assert_eq!(
        outcome.output["errorType"], error_type,
        "output: {}\nhandler output:\n{logs}",
        outcome.output
    );
    outcome.output["errorMessage"]
        .as_str()
        .unwrap_or_else(|| panic!("errorMessage is not a string: {}", outcome.output))
        .to_string()
}

fn expect_success(outcome: &InvokeOutcome) -> &Value {
    assert!(
        outcome.success,
        "expected success, got {}\nhandler output:\n{}",
        outcome.output,
        String::from_utf8_lossy(&outcome.handler_output)
    );
    &outcome.output
}

// --- The example app -----------------------------------------------------------------------------

fn example_image() -> Unpacked {
    build_and_unpack(&example_app())
}

#[test]
fn example_app_default_event_says_hello() {
    let image = example_image();
    assert_eq!(image.handler, "lambda.handler");

    let outcome = run(&request(image.task_root.path(), &image.handler));

    let output = expect_success(&outcome);
    assert_eq!(output["statusCode"], 200, "{output}");
    let body: Value = serde_json::from_str(output["body"].as_str().expect("body is a string"))
        .expect("body is JSON");
    assert_eq!(body, json!({"message": "Hello from Lambda!"}));
}

#[test]
fn example_app_health_event_from_file() {
    let image = example_image();
    let folder = tempfile::tempdir().unwrap();
    let event_file = folder.path().join("health.json");
    fs::write(
        &event_file,
        serde_json::to_vec_pretty(&function_url_event("GET", "/health")).unwrap(),
    )
    .unwrap();

    let bytes = fs::read(&event_file).unwrap();
    let mut request = request(image.task_root.path(), &image.handler);
    request.event = parse_event(&bytes, &event_file.display().to_string()).unwrap();
    let outcome = run(&request);

    let output = expect_success(&outcome);
    assert_eq!(output["statusCode"], 200, "{output}");
    let body: Value = serde_json::from_str(output["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"status": "ok"}));
}

#[test]
fn example_app_unknown_path_is_404() {
    let image = example_image();
    let mut request = request(image.task_root.path(), &image.handler);
    request.event = function_url_event("GET", "/missing?x=1");

    let outcome = run(&request);

    assert_eq!(expect_success(&outcome)["statusCode"], 404);
}

// --- Handler styles ------------------------------------------------------------------------------

#[test]
fn async_handler_gets_lambda_context() {
    let image = handlers_image();
    assert_eq!(image.handler, "index.handler");
    let mut request = request(image.task_root.path(), "index.handler");
    request.function_name = "orders".to_string();
    request.request_id = "0f4c7e0e-8d4e-4c3f-9a6e-3d6f2b1a0c9d".to_string();

    let outcome = run(&request);

    let output = expect_success(&outcome);
    assert_eq!(output["path"], "/");
    let context = &output["context"];
    assert_eq!(context["functionName"], "orders");
    assert_eq!(context["functionVersion"], "$LATEST");
    assert!(
        context["invokedFunctionArn"]
            .as_str()
            .unwrap()
            .ends_with(":function:orders"),
        "{context}"
    );
    assert_eq!(context["memoryLimitInMB"], "128");
    assert_eq!(context["awsRequestId"], request.request_id);
    assert_eq!(context["logGroupName"], "/aws/lambda/orders");
    assert!(context["logStreamName"]
        .as_str()
        .unwrap()
        .contains("[$LATEST]"));
    let remaining = context["remainingTimeInMillis"].as_u64().unwrap();
    assert!(remaining > 0, "{remaining}");
    assert!(remaining <= 30_000, "{remaining}");
    assert_eq!(context["callbackWaitsForEmptyEventLoop"], true);
    assert_eq!(
        context["legacyMethods"],
        json!(["function", "function", "function"])
    );
}

#[test]
fn handler_runs_in_task_root_with_lambda_variables() {
    let image = handlers_image();
    let outcome = run(&request(image.task_root.path(), "index.handler"));

    let environment = &expect_success(&outcome)["environment"];
    let task_root = fs::canonicalize(image.task_root.path()).unwrap();
    let cwd = fs::canonicalize(environment["cwd"].as_str().unwrap()).unwrap();
    assert_eq!(cwd, task_root);
    assert_eq!(
        fs::canonicalize(environment["taskRoot"].as_str().unwrap()).unwrap(),
        task_root
    );
    assert_eq!(environment["handler"], "index.handler");
    assert_eq!(environment["functionName"], "lambda-image-invoke");
}

#[test]
fn handler_output_stays_out_of_result() {
    let outcome = run_handler("index.handler");

    let logs = String::from_utf8_lossy(&outcome.handler_output);
    assert!(logs.contains("log from the handler"), "{logs}");
    assert!(logs.contains("written to stdout"), "{logs}");
    let result = expect_success(&outcome).to_string();
    assert!(!result.contains("log from the handler"), "{result}");
}

#[test]
fn callback_handler_result() {
    let outcome = run_handler("callback.handler");

    assert_eq!(
        *expect_success(&outcome),
        json!({"style": "callback", "path": "/"})
    );
}

#[test]
fn callback_error_is_lambda_error() {
    let outcome = run_handler("callback.fails");

    let message = expect_error(&outcome, "TypeError");
    assert_eq!(message, "expected a POST request");
    assert_eq!(
        outcome.output["trace"][0],
        "TypeError: expected a POST request"
    );
}

#[test]
fn context_succeed_returns_result() {
    let outcome = run_handler("callback.legacy");

    assert_eq!(
        *expect_success(&outcome),
        json!({"style": "context.succeed"})
    );
}

#[test]
fn non_async_return_value_is_ignored() {
    let outcome = run_handler("sync-return.handler");

    assert_eq!(*expect_success(&outcome), Value::Null);
}

#[test]
fn mjs_handler_runs_as_es_module() {
    let outcome = run_handler("esm.handler");

    assert_eq!(
        *expect_success(&outcome),
        json!({"format": "mjs", "path": "/"})
    );
}

#[test]
fn type_module_js_handler_runs_as_es_module() {
    let image = build_and_unpack(&project_path("testdata/invoke/esm-type-module"));
    assert_eq!(image.handler, "index.handler");

    let outcome = run(&request(image.task_root.path(), &image.handler));

    assert_eq!(
        *expect_success(&outcome),
        json!({"format": "type-module", "path": "/", "module": "index.js"})
    );
}

#[test]
fn nested_module_and_property_path() {
    let outcome = run_handler("src/api/routes.routes.get");

    assert_eq!(
        *expect_success(&outcome),
        json!({"route": "nested", "path": "/"})
    );
}

#[test]
fn absolute_handler_under_var_task() {
    let outcome = run_handler("/var/task/esm.handler");

    assert_eq!(expect_success(&outcome)["format"], "mjs");
}

// --- Errors in Lambda's format -------------------------------------------------------------------

#[test]
fn thrown_error_is_lambda_error() {
    let outcome = run_handler("throws.handler");

    let message = expect_error(&outcome, "ValidationError");
    assert_eq!(message, "order 42 has no items");
    let trace: Vec<&str> = outcome.output["trace"]
        .as_array()
        .expect("trace is an array")
        .iter()
        .map(|line| line.as_str().unwrap())
        .collect();
    assert_eq!(trace[0], "ValidationError: order 42 has no items");
    assert!(
        trace[1..].iter().any(|line| line.contains("throws.js")),
        "{trace:?}"
    );
}

#[test]
fn missing_module_is_import_module_error() {
    let outcome = run_handler("lambda.handler");

    let message = expect_error(&outcome, "Runtime.ImportModuleError");
    assert!(
        message.starts_with("Error: Cannot find module 'lambda'\nRequire stack:"),
        "{message}"
    );
    assert!(
        outcome.output["trace"][0]
            .as_str()
            .unwrap()
            .starts_with("Runtime.ImportModuleError: Error: Cannot find module 'lambda'"),
        "{}",
        outcome.output
    );
}

#[test]
fn unexported_function_is_handler_not_found() {
    let outcome = run_handler("index.nothere");

    let message = expect_error(&outcome, "Runtime.HandlerNotFound");
    assert_eq!(message, "index.nothere is undefined or not exported");
}

#[test]
fn non_function_export_is_handler_not_found() {
    let outcome = run_handler("not-a-function.handler");

    let message = expect_error(&outcome, "Runtime.HandlerNotFound");
    assert_eq!(message, "not-a-function.handler is not a function");
}

#[test]
fn handler_without_dot_is_malformed() {
    let outcome = run_handler("index");

    let message = expect_error(&outcome, "Runtime.MalformedHandlerName");
    assert_eq!(message, "Bad handler");
}

#[test]
fn handler_with_parent_path_is_malformed() {
    let outcome = run_handler("../index.handler");

    let message = expect_error(&outcome, "Runtime.MalformedHandlerName");
    assert!(
        message.starts_with("'../index.handler' is not a valid handler name."),
        "{message}"
    );
}

#[test]
fn syntax_error_is_user_code_syntax_error() {
    let outcome = run_handler("syntax-error.handler");

    let message = expect_error(&outcome, "Runtime.UserCodeSyntaxError");
    assert!(message.starts_with("SyntaxError: "), "{message}");
}

#[test]
fn unhandled_rejection_fails_invocation() {
    let outcome = run_handler("unhandled.handler");

    let message = expect_error(&outcome, "Runtime.UnhandledPromiseRejection");
    assert_eq!(message, "Error: nobody handles this");
}

#[test]
fn unserializable_result_fails() {
    let outcome = run_handler("circular.handler");

    let message = expect_error(&outcome, "Error");
    assert_eq!(message, "Unable to stringify response body");
}

#[test]
fn process_exit_is_runtime_exit_error() {
    let image = handlers_image();
    let mut request = request(image.task_root.path(), "exits.handler");
    request.request_id = "exit-test".to_string();

    let outcome = run(&request);

    let message = expect_error(&outcome, "Runtime.ExitError");
    assert_eq!(
        message,
        "RequestId: exit-test Error: Runtime exited with error: exit status 3"
    );
}

#[test]
fn unsettled_promise_is_node_exit() {
    let outcome = run_handler("unsettled.handler");

    expect_error(&outcome, "Runtime.NodeJsExit");
}

// --- Timeouts ----------------------------------------------------------------------------------

fn run_until_timeout(handler: &str) -> (InvokeOutcome, Duration) {
    let image = handlers_image();
    let mut request = request(image.task_root.path(), handler);
    request.function_timeout = SHORT_TIMEOUT;
    request.request_id = "timeout-test".to_string();
    let started = Instant::now();
    let outcome = run(&request);
    (outcome, started.elapsed())
}

#[test]
fn pending_handler_times_out() {
    let (outcome, elapsed) = run_until_timeout("never.handler");

    let message = expect_error(&outcome, "Sandbox.Timedout");
    assert_eq!(
        message,
        "RequestId: timeout-test Error: Task timed out after 1.00 seconds"
    );
    assert!(elapsed >= SHORT_TIMEOUT, "{elapsed:?}");
    assert!(elapsed < SHORT_TIMEOUT + KILL_SLACK, "{elapsed:?}");
}

#[test]
fn blocked_event_loop_times_out() {
    let (outcome, elapsed) = run_until_timeout("never.busy");

    let message = expect_error(&outcome, "Sandbox.Timedout");
    assert!(
        message.ends_with("Task timed out after 1.00 seconds"),
        "{message}"
    );
    assert!(elapsed < SHORT_TIMEOUT + KILL_SLACK, "{elapsed:?}");
}

// --- Failures to invoke --------------------------------------------------------------------------

#[test]
fn missing_node_is_named() {
    let image = handlers_image();
    let mut request = request(image.task_root.path(), "index.handler");
    request.node = PathBuf::from("/nonexistent/bin/node");

    let error = block_on(invoke(&request)).unwrap_err();

    assert!(
        matches!(error, InvokeError::NodeNotFound { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("/nonexistent/bin/node"), "{message}");
    assert!(message.contains("install Node.js"), "{message}");
    assert!(message.contains("host's node"), "{message}");
}

#[test]
fn handler_outside_task_root_is_rejected() {
    let image = handlers_image();
    let request = request(image.task_root.path(), "/opt/layer.handler");

    let error = block_on(invoke(&request)).unwrap_err();

    assert!(
        matches!(error, InvokeError::HandlerOutsideTaskRoot { .. }),
        "{error:?}"
    );
}

#[test]
fn missing_task_root_is_an_error() {
    let folder = tempfile::tempdir().unwrap();
    let request = request(&folder.path().join("missing"), "index.handler");

    let error = block_on(invoke(&request)).unwrap_err();

    assert!(error.to_string().contains("missing"), "{error}");
}

#[test]
fn invalid_event_is_rejected() {
    let error = parse_event(b"{\"rawPath\": \"/\",}", "event.json").unwrap_err();

    let message = error.to_string();
    assert!(message.contains("event.json"), "{message}");
    assert!(message.contains("not valid JSON"), "{message}");
}

#[test]
fn default_event_is_function_url_request() {
    let event = default_event();

    assert_eq!(event["version"], "2.0");
    assert_eq!(event["requestContext"]["http"]["method"], "GET");
    assert_eq!(event["rawPath"], "/");
    assert!(event["headers"]["host"]
        .as_str()
        .unwrap()
        .ends_with(".lambda-url.us-east-1.on.aws"));
}

// --- Unpacking crafted layers --------------------------------------------------------------------

/// A gzip tar layer written entry by entry; names are written as given, `..` included.
struct LayerBuilder {
    tar: Vec<u8>,
}

impl LayerBuilder {
    fn new() -> LayerBuilder {
        LayerBuilder { tar: Vec::new() }
    }

    fn entry(mut self, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) -> Self {
        let mut header = tar::Header::new_old();
        let old = header.as_old_mut();
        assert!(name.len() < old.name.len(), "name too long: {name}");
        assert!(link.len() < old.linkname.len(), "link too long: {link}");
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_mtime(1);
        header.set_cksum();
        self.tar.extend_from_slice(header.as_bytes());
        self.tar.extend_from_slice(data);
        let padding = (512 - data.len() % 512) % 512;
        self.tar.extend(std::iter::repeat_n(0u8, padding));
        self
    }

    fn dir(self, name: &str) -> Self {
        self.entry(name, tar::EntryType::Directory, "", b"")
    }

    fn file(self, name: &str, data: &str) -> Self {
        self.entry(name, tar::EntryType::Regular, "", data.as_bytes())
    }

    fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(name, tar::EntryType::Symlink, target, b"")
    }

    fn hard_link(self, name: &str, target: &str) -> Self {
        self.entry(name, tar::EntryType::Link, target, b"")
    }

    /// Returns the uncompressed tar and the gzip blob.
    fn finish(mut self) -> (Vec<u8>, Vec<u8>) {
        use std::io::Write;
        self.tar.extend_from_slice(&[0; 1024]);
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&self.tar).unwrap();
        (self.tar, encoder.finish().unwrap())
    }
}

/// Writes an OCI image layout with the given layers into DIR and returns its path.
fn write_layout(dir: &Path, layers: Vec<LayerBuilder>, layer_media_type: &str) -> PathBuf {
    let root = dir.join("crafted");
    let blobs = root.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let write_blob = |bytes: &[u8]| {
        let digest = Digest::of(bytes);
        fs::write(blobs.join(digest.hex()), bytes).unwrap();
        json!({"digest": digest.to_string(), "size": bytes.len()})
    };

    let mut diff_ids = Vec::new();
    let mut layer_descriptors = Vec::new();
    for layer in layers {
        let (tar, gzip) = layer.finish();
        diff_ids.push(Digest::of(&tar).to_string());
        let mut descriptor = write_blob(&gzip);
        descriptor["mediaType"] = json!(layer_media_type);
        layer_descriptors.push(descriptor);
    }
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["index.handler"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let mut config_descriptor = write_blob(config.to_string().as_bytes());
    config_descriptor["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_descriptor,
        "layers": layer_descriptors,
    });
    let mut manifest_descriptor = write_blob(manifest.to_string().as_bytes());
    manifest_descriptor["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
    manifest_descriptor["annotations"] = json!({"org.opencontainers.image.ref.name": "latest"});
    let index = json!({"schemaVersion": 2, "manifests": [manifest_descriptor]});

    fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(root.join("index.json"), index.to_string()).unwrap();
    root
}

const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn unpack_crafted(layers: Vec<LayerBuilder>) -> Result<TempDir, InvokeError> {
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), layers, GZIP_LAYER);
    block_on(try_unpack_layout(&layout)).map(|(task_root, _)| task_root)
}

fn read(root: &TempDir, relative: &str) -> Option<String> {
    fs::read_to_string(root.path().join(relative)).ok()
}

#[test]
fn unpack_keeps_only_var_task() {
    let layer = LayerBuilder::new()
        .dir("etc/")
        .file("etc/passwd", "root:x:0:0")
        .dir("var/")
        .dir("var/task/")
        .file("var/task/index.js", "exports.handler = async () => 'ok';")
        .file("/var/task/absolute.js", "absolute")
        .file("./var/task/dotted.js", "dotted")
        .file("var/taskforce.js", "not the task root");

    let root = unpack_crafted(vec![layer]).unwrap();

    let mut names: Vec<String> = fs::read_dir(root.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["absolute.js", "dotted.js", "index.js"]);
    let outcome = run(&request(root.path(), "index.handler"));
    assert_eq!(*expect_success(&outcome), json!("ok"));
}

#[test]
fn unpack_applies_whiteouts() {
    let lower = LayerBuilder::new()
        .file("var/task/deleted.js", "lower")
        .file("var/task/kept.js", "lower")
        .file("var/task/dir/old.js", "lower")
        .file("var/task/dir/sub/deep.js", "lower");
    let upper = LayerBuilder::new()
        .file("var/task/.wh.deleted.js", "")
        .file("var/task/dir/.wh..wh..opq", "")
        .file("var/task/dir/new.js", "upper")
        // A whiteout spares what its own layer writes.
        .file("var/task/same-layer.js", "upper")
        .file("var/task/.wh.same-layer.js", "")
        .file("var/task/.wh.never-existed.js", "");

    let root = unpack_crafted(vec![lower, upper]).unwrap();

    assert_eq!(read(&root, "deleted.js"), None);
    assert_eq!(read(&root, "kept.js").as_deref(), Some("lower"));
    assert_eq!(read(&root, "dir/old.js"), None);
    assert!(!root.path().join("dir/sub").exists());
    assert_eq!(read(&root, "dir/new.js").as_deref(), Some("upper"));
    assert_eq!(read(&root, "same-layer.js").as_deref(), Some("upper"));
    assert!(!root.path().join(".wh.deleted.js").exists());
}

#[test]
fn unpack_whiteout_of_task_root_empties_it() {
    let lower = LayerBuilder::new().file("var/task/old.js", "lower");
    let upper = LayerBuilder::new()
        .file("var/.wh.task", "")
        .file("var/task/new.js", "upper");

    let root = unpack_crafted(vec![lower, upper]).unwrap();

    assert_eq!(read(&root, "old.js"), None);
    assert_eq!(read(&root, "new.js").as_deref(), Some("upper"));
}

#[test]
fn unpack_later_layer_replaces_files() {
    let lower = LayerBuilder::new()
        .file("var/task/config.json", "{\"v\": 1}")
        .file("var/task/lib", "a file that becomes a folder");
    let upper = LayerBuilder::new()
        .file("var/task/config.json", "{\"v\": 2}")
        .file("var/task/lib/a.js", "inside");

    let root = unpack_crafted(vec![lower, upper]).unwrap();

    assert_eq!(read(&root, "config.json").as_deref(), Some("{\"v\": 2}"));
    assert_eq!(read(&root, "lib/a.js").as_deref(), Some("inside"));
}

#[test]
fn unpack_keeps_links_inside_task_root() {
    let layer = LayerBuilder::new()
        .file("var/task/lib/real.js", "real")
        .symlink("var/task/relative.js", "lib/real.js")
        .symlink("var/task/bin/absolute.js", "/var/task/lib/real.js")
        .hard_link("var/task/hard.js", "var/task/lib/real.js")
        .symlink("var/task/etc", "/etc")
        .symlink("var/task/up", "../../etc/passwd")
        .symlink("var/task/layers", "/opt/nodejs/node_modules")
        .file("etc/hosts", "127.0.0.1 localhost")
        .hard_link("var/task/hosts", "etc/hosts");

    let root = unpack_crafted(vec![layer]).unwrap();

    assert_eq!(read(&root, "relative.js").as_deref(), Some("real"));
    assert_eq!(read(&root, "bin/absolute.js").as_deref(), Some("real"));
    assert_eq!(
        fs::read_link(root.path().join("bin/absolute.js")).unwrap(),
        Path::new("../lib/real.js")
    );
    assert_eq!(read(&root, "hard.js").as_deref(), Some("real"));
    for skipped in ["etc", "up", "layers", "hosts"] {
        assert!(
            fs::symlink_metadata(root.path().join(skipped)).is_err(),
            "{skipped} should not be unpacked"
        );
    }
}

#[test]
fn unpack_rejects_hard_link_to_missing_file() {
    let layer = LayerBuilder::new().hard_link("var/task/hard.js", "var/task/missing.js");

    let error = unpack_crafted(vec![layer]).unwrap_err();

    assert!(
        matches!(error, InvokeError::UnsafeLayerEntry { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("no earlier entry"), "{error}");
}

#[test]
fn unpack_rejects_parent_path_entries() {
    let marker = format!("lambda-image-escape-{}", std::process::id());
    let layer = LayerBuilder::new()
        .file("var/task/index.js", "fine")
        .file(&format!("var/task/../../../{marker}"), "escaped");

    let error = unpack_crafted(vec![layer]).unwrap_err();

    assert!(
        matches!(error, InvokeError::UnsafeLayerEntry { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&marker), "{message}");
    assert!(message.contains("`..`"), "{message}");
    assert!(!std::env::temp_dir().join(&marker).exists());
}

#[test]
fn unpack_rejects_entries_through_escaping_links() {
    // `d1/d2/up` points at the task root, so `d1/d2/out` (`up/..`) leads to the folder above it
    // although its own text stays inside. An entry written through it must be rejected.
    let marker = format!("lambda-image-escape-{}.js", std::process::id());
    let layer = LayerBuilder::new()
        .dir("var/task/d1/d2/")
        .symlink("var/task/d1/d2/up", "../..")
        .symlink("var/task/d1/d2/out", "up/..")
        .file(&format!("var/task/d1/d2/out/{marker}"), "escaped");

    let error = unpack_crafted(vec![layer]).unwrap_err();

    let escaped = std::env::temp_dir().join(&marker);
    let escaped_exists = escaped.exists();
    let _ = fs::remove_file(&escaped);
    assert!(!escaped_exists, "{} was written", escaped.display());
    assert!(
        matches!(error, InvokeError::UnsafeLayerEntry { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("symbolic link"), "{error}");
}

#[test]
fn unpack_removes_link_chains_that_escape() {
    let layer = LayerBuilder::new()
        .dir("var/task/d1/d2/")
        .symlink("var/task/d1/d2/up", "../..")
        .symlink("var/task/d1/d2/out", "up/..")
        .file("var/task/index.js", "fine");

    let root = unpack_crafted(vec![layer]).unwrap();

    assert!(fs::symlink_metadata(root.path().join("d1/d2/out")).is_err());
    assert!(fs::symlink_metadata(root.path().join("d1/d2/up")).is_ok());
}

#[test]
fn unpack_rejects_layer_not_matching_digest() {
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(
        dir.path(),
        vec![LayerBuilder::new().file("var/task/index.js", "original")],
        GZIP_LAYER,
    );
    // Put another valid layer's bytes under the first layer's digest.
    let layer_path = fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| fs::read(path).unwrap().starts_with(&[0x1f, 0x8b]))
        .unwrap();
    let digest = layer_path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let (_, tampered) = LayerBuilder::new()
        .file("var/task/index.js", "tampered")
        .finish();
    fs::write(&layer_path, tampered).unwrap();

    let error = block_on(try_unpack_layout(&layout)).unwrap_err();

    let message = error.to_string();
    assert!(message.contains(&digest), "{message}");
    assert!(
        message.contains("expected") || message.contains("content has digest"),
        "{message}"
    );
}

#[test]
fn unpack_rejects_zstd_layers() {
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(
        dir.path(),
        vec![LayerBuilder::new().file("var/task/index.js", "x")],
        "application/vnd.oci.image.layer.v1.tar+zstd",
    );

    let error = block_on(try_unpack_layout(&layout)).unwrap_err();

    // The base image check rejects it first; either way the message names the media type.
    assert!(error.to_string().contains("zstd"), "{error}");
}
