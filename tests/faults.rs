//! Fault tests of `lambda-image push`: a fault-injecting proxy (`tests/support/fault_proxy.rs`)
//! sits between the product and a real registry (Debian's `docker-registry`) and breaks chosen
//! requests: connections closed mid-body, error statuses, throttling, stalls, lost responses and
//! corrupted bytes. Each test checks the exit status and stdout, reads the result back with the
//! independent reader in `tests/tools/`, and counts requests in the proxy's log.
//!
//! Every test starts its own registries and proxies on 127.0.0.1, so the tests run in parallel.

mod common;
#[path = "support/fault_proxy.rs"]
mod fault_proxy;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    base_layout, copy_dir, example_app, inspect_layout, inspect_registry, push_base, try_inspect,
    Registry, BASE_TAG,
};
use fault_proxy::{Fault, FaultProxy, RecordedRequest, Rule};
use tempfile::TempDir;

/// Repository of the synthetic base in each test registry.
const BASE_REPOSITORY: &str = "lambda/nodejs";
/// Repository and tag that the tests push to.
const APP_REPOSITORY: &str = "app";
const APP_TAG: &str = "latest";

/// How many times the product sends a request before a transport failure, 429 or 5xx is final.
const MAX_ATTEMPTS: usize = 5;
/// Upper bound for a push that gives up. The retry policy waits at most 11.25 s per request:
/// MAX_ATTEMPTS attempts, with backoff of 0.5 s, 1 s, 2 s and 4 s plus up to 50 % jitter. A
/// stalled request adds 5 timeouts of 2 s.
const FAILURE_TIME_LIMIT: Duration = Duration::from_secs(30);
/// How long a test waits for a product run that should end by itself.
const RUN_TIME_LIMIT: Duration = Duration::from_secs(60);

// --- Running the product -------------------------------------------------------------------------

/// A private folder for one test's product runs, with the layer cache (`XDG_CACHE_HOME`) and
/// an empty Docker config.
struct Workspace {
    dir: TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::Builder::new()
            .prefix("lambda-image-faults-")
            .tempdir()
            .expect("cannot create a temporary folder");
        fs::create_dir(dir.path().join("docker")).expect("cannot create the Docker config folder");
        Workspace { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Returns the `lambda-image` command with ARGS, the private cache and Docker config, no
    /// instance metadata lookups, and none of the machine's proxy or AWS settings.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lambda-image"));
        command.args(args);
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy().to_ascii_lowercase();
            if text.starts_with("aws_") || text.ends_with("_proxy") {
                command.env_remove(&name);
            }
        }
        command
            .env("XDG_CACHE_HOME", self.path().join("cache"))
            .env("DOCKER_CONFIG", self.path().join("docker"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("SOURCE_DATE_EPOCH")
            .stdin(Stdio::null());
        command
    }

    /// Runs `lambda-image ARGS` to completion, within RUN_TIME_LIMIT.
    fn run(&self, args: &[&str]) -> Run {
        let started = Instant::now();
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start lambda-image");
        let output = wait_with_limit(child, RUN_TIME_LIMIT);
        Run {
            output,
            elapsed: started.elapsed(),
        }
    }
}

/// Returns the arguments of `push APP IMAGE --base BASE --node-modules local`, then EXTRA.
fn push_args<'a>(app: &'a Path, image: &'a str, base: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "push",
        path_str(app),
        image,
        "--base",
        base,
        "--node-modules",
        "local",
    ];
    args.extend_from_slice(extra);
    args
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Waits for CHILD's output, killing it and failing the test once LIMIT passes.
fn wait_with_limit(child: Child, limit: Duration) -> Output {
    let id = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(limit) {
        Ok(output) => output.expect("cannot wait for lambda-image"),
        Err(_) => {
            // The waiting thread owns the child, so the kill goes by its process id.
            let _ = Command::new("kill")
                .args(["-KILL", &id.to_string()])
                .status();
            panic!("lambda-image (pid {id}) ran longer than {limit:?} and was killed");
        }
    }
}

/// One finished product run.
struct Run {
    output: Output,
    elapsed: Duration,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Checks that the push succeeded and printed only `IMAGE@sha256:<hex>`, and returns the
    /// digest.
    fn pushed_digest(&self, image: &str) -> String {
        assert!(
            self.output.status.success(),
            "lambda-image failed with {}:\n{}",
            self.output.status,
            self.stderr()
        );
        let stdout = self.stdout();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "stdout must be one line: {stdout:?}");
        let digest = lines[0]
            .strip_prefix(&format!("{image}@"))
            .unwrap_or_else(|| panic!("stdout {stdout:?} does not start with {image}@"));
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "stdout names no sha256 digest: {stdout:?}"
        );
        digest.to_string()
    }

    /// Checks that the run failed with exit status 1, printed nothing to stdout, and ended
    /// stderr with exactly one `error:` line, which it returns.
    fn error_line(&self) -> String {
        assert_eq!(
            self.output.status.code(),
            Some(1),
            "lambda-image must fail with exit status 1; stderr:\n{}",
            self.stderr()
        );
        assert_eq!(
            self.stdout(),
            "",
            "a failed push must print nothing to stdout"
        );
        let stderr = self.stderr();
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|line| line.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "expected one error line in:\n{stderr}");
        assert_eq!(
            stderr.lines().last(),
            Some(errors[0]),
            "the error must be the last line of stderr:\n{stderr}"
        );
        errors[0].to_string()
    }
}

// --- Checking the registry -----------------------------------------------------------------------

/// Reads REPOSITORY:TAG straight from REGISTRY, which verifies every blob's digest and size, and
/// checks that it is the manifest with DIGEST.
fn assert_valid_image(registry: &Registry, repository: &str, tag: &str, digest: &str) {
    let image = inspect_registry(registry, repository, tag);
    assert_eq!(
        image["manifest_digest"], digest,
        "{repository}:{tag} in the registry is not the pushed manifest"
    );
    let layers = image["manifest"]["layers"]
        .as_array()
        .expect("the manifest has layers");
    // The two base layers, the dependencies and the app.
    assert_eq!(layers.len(), 4, "unexpected layers: {layers:?}");
}

/// Checks that REGISTRY has no manifest for REPOSITORY:TAG.
fn assert_no_manifest(registry: &Registry, repository: &str, tag: &str) {
    let result = try_inspect(["registry", registry.url().as_str(), repository, tag]);
    match result {
        Ok(image) => panic!(
            "{repository}:{tag} exists in the registry: {}",
            image["manifest_digest"]
        ),
        Err(stderr) => assert!(
            stderr.contains("MANIFEST_UNKNOWN") || stderr.contains("NAME_UNKNOWN"),
            "reading {repository}:{tag} failed, but not for a missing manifest:\n{stderr}"
        ),
    }
}

/// Returns the digests of the blobs linked into REPOSITORY in REGISTRY's storage: the blobs a
/// HEAD request in that repository finds.
fn linked_blobs(registry: &Registry, repository: &str) -> BTreeSet<String> {
    let prefix = Path::new("docker/registry/v2/repositories")
        .join(repository)
        .join("_layers/sha256");
    registry
        .stored_files()
        .iter()
        .filter_map(|file| {
            let hex = file.strip_prefix(&prefix).ok()?.parent()?.to_str()?;
            Some(format!("sha256:{hex}"))
        })
        .collect()
}

// --- Fixtures ------------------------------------------------------------------------------------

/// A registry with the synthetic base in it, behind a fault proxy, with a workspace for the
/// product's runs.
struct Fixture {
    registry: Registry,
    proxy: FaultProxy,
    workspace: Workspace,
}

impl Fixture {
    fn start() -> Fixture {
        let registry = Registry::start();
        push_base(&registry, "base", BASE_REPOSITORY, BASE_TAG);
        let proxy = FaultProxy::start(registry.port);
        Fixture {
            registry,
            proxy,
            workspace: Workspace::new(),
        }
    }

    /// Returns the app image reference through the proxy.
    fn image(&self) -> String {
        format!("{}/{APP_REPOSITORY}:{APP_TAG}", self.proxy.host())
    }

    /// Returns the base reference through the proxy.
    fn base(&self) -> String {
        format!("{}/{BASE_REPOSITORY}:{BASE_TAG}", self.proxy.host())
    }

    /// Pushes the example app through the proxy with EXTRA options.
    fn push(&self, extra: &[&str]) -> Run {
        let app = example_app();
        let image = self.image();
        let base = self.base();
        self.workspace.run(&push_args(&app, &image, &base, extra))
    }

    /// Checks that the push succeeded and that the registry contains a valid manifest for it.
    fn assert_pushed(&self, run: &Run) {
        let digest = run.pushed_digest(&self.image());
        assert_valid_image(&self.registry, APP_REPOSITORY, APP_TAG, &digest);
    }

    /// Returns the digests and sizes of the layers that `lambda-image build` makes for the
    /// example app on this base, in manifest order: base layers, dependencies, app. Nothing goes
    /// through the proxy.
    fn built_layers(&self) -> Vec<(String, u64)> {
        let layout = self.workspace.path().join("layout");
        let base = format!("{}/{BASE_REPOSITORY}:{BASE_TAG}", self.registry.host());
        let app = example_app();
        let args = [
            "build",
            path_str(&app),
            "--output",
            path_str(&layout),
            "--base",
            &base,
            "--node-modules",
            "local",
        ];
        let run = self.workspace.run(&args);
        assert!(
            run.output.status.success(),
            "lambda-image build failed:\n{}",
            run.stderr()
        );
        inspect_layout(&layout)["manifest"]["layers"]
            .as_array()
            .expect("the manifest has layers")
            .iter()
            .map(|layer| {
                let digest = layer["digest"].as_str().expect("a layer digest");
                let size = layer["size"].as_u64().expect("a layer size");
                (digest.to_string(), size)
            })
            .collect()
    }
}

fn layer_digests(image: &serde_json::Value) -> Vec<String> {
    image["manifest"]["layers"]
        .as_array()
        .expect("the manifest has layers")
        .iter()
        .map(|layer| {
            layer["digest"]
                .as_str()
                .expect("a layer digest")
                .to_string()
        })
        .collect()
}

/// Returns the digests of the linux/amd64 base layers in `testdata/base`.
fn base_layer_digests() -> Vec<String> {
    layer_digests(&inspect_layout(&base_layout("base")))
}

/// Returns the hex part of the `digest` query parameter of an upload's PUT target.
fn upload_digest(request: &RecordedRequest) -> Option<&str> {
    let query = request.target.split_once('?')?.1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("digest="))
        .and_then(|value| {
            value
                .strip_prefix("sha256%3A")
                .or_else(|| value.strip_prefix("sha256:"))
        })
}

/// Returns the index of the only request in LOG that a fault was applied to.
fn faulted_index(log: &[RecordedRequest]) -> usize {
    let faulted: Vec<usize> = (0..log.len()).filter(|&i| log[i].fault.is_some()).collect();
    assert_eq!(
        faulted.len(),
        1,
        "expected one faulted request in:\n{}",
        format_log(log)
    );
    faulted[0]
}

fn format_log(log: &[RecordedRequest]) -> String {
    log.iter().map(|request| format!("  {request}\n")).collect()
}

// --- Connections closed mid-transfer -------------------------------------------------------------

#[test]
fn upload_reset_mid_body_is_retried() {
    let fixture = Fixture::start();
    let layers = fixture.built_layers();
    let (app_layer, size) = layers.last().expect("the image has layers").clone();
    let hex = app_layer.trim_start_matches("sha256:");
    fixture.proxy.add_rule(Rule::new(
        "PUT",
        &format!("/v2/{APP_REPOSITORY}/blobs/uploads/*{hex}*"),
        Fault::CloseDuringRequestBody { after_bytes: 1024 },
    ));

    let run = fixture.push(&[]);

    fixture.assert_pushed(&run);
    let log = fixture.proxy.requests();
    let puts: Vec<&RecordedRequest> = log
        .iter()
        .filter(|request| request.method == "PUT" && upload_digest(request) == Some(hex))
        .collect();
    assert!(!puts.is_empty(), "no app layer PUT:\n{}", format_log(&log));
    assert!(
        puts[0].fault.is_some(),
        "the first app layer PUT must be the one cut:\n{}",
        format_log(&log)
    );
    assert_eq!(
        puts[0].body_bytes, 1024,
        "the proxy cut the body after 1024 bytes"
    );
    let completed: Vec<&&RecordedRequest> =
        puts.iter().filter(|request| request.succeeded()).collect();
    assert_eq!(
        completed.len(),
        1,
        "the app layer must be uploaded exactly once more:\n{}",
        format_log(&log)
    );
    let full_bodies = puts[1..]
        .iter()
        .filter(|request| request.body_bytes == size)
        .count();
    assert_eq!(
        full_bodies,
        1,
        "after the cut, the app layer's whole body must be sent once:\n{}",
        format_log(&log)
    );
}

#[test]
fn base_download_reset_is_retried() {
    // The base lives in another registry, so its layers are streamed through the product
    // instead of mounted.
    let base_registry = Registry::start();
    push_base(&base_registry, "base", BASE_REPOSITORY, BASE_TAG);
    let base_proxy = FaultProxy::start(base_registry.port);
    let target = Registry::start();
    let layer = base_layer_digests()[0].clone();
    let blob_path = format!("/v2/{BASE_REPOSITORY}/blobs/{layer}");
    base_proxy.add_rule(Rule::new(
        "GET",
        &blob_path,
        Fault::CloseDuringResponseBody { after_bytes: 100 },
    ));
    let workspace = Workspace::new();
    let image = format!("{}/{APP_REPOSITORY}:{APP_TAG}", target.host());
    let base = format!("{}/{BASE_REPOSITORY}:{BASE_TAG}", base_proxy.host());

    let run = workspace.run(&push_args(&example_app(), &image, &base, &[]));

    let digest = run.pushed_digest(&image);
    assert_valid_image(&target, APP_REPOSITORY, APP_TAG, &digest);
    let downloads = base_proxy.requests_matching("GET", &blob_path);
    assert!(
        downloads.len() >= 2,
        "the base layer must be downloaded again:\n{}",
        base_proxy.log()
    );
    assert!(downloads[0].fault.is_some(), "{}", base_proxy.log());
    assert!(
        downloads.last().is_some_and(RecordedRequest::succeeded),
        "the last download of the base layer must be whole:\n{}",
        base_proxy.log()
    );
}

#[test]
fn manifest_put_reset_is_retried() {
    let fixture = Fixture::start();
    let manifest_path = format!("/v2/{APP_REPOSITORY}/manifests/{APP_TAG}");
    fixture.proxy.add_rule(Rule::new(
        "PUT",
        &manifest_path,
        Fault::CloseDuringRequestBody { after_bytes: 100 },
    ));

    let run = fixture.push(&[]);

    fixture.assert_pushed(&run);
    let puts = fixture.proxy.requests_matching("PUT", &manifest_path);
    assert_eq!(
        puts.len(),
        2,
        "one cut PUT and one retry:\n{}",
        fixture.proxy.log()
    );
    assert_eq!(puts[0].body_bytes, 100, "{}", fixture.proxy.log());
    assert!(puts[1].succeeded(), "{}", fixture.proxy.log());
}

/// A registry that reports a blob as present when it is not, as docker-registry does for a moment
/// while another push rewrites the blob's link. The registry then rejects the manifest with
/// MANIFEST_BLOB_UNKNOWN. The push must check its blobs again, upload the missing one and send
/// the manifest once more.
#[test]
fn vanished_blob_manifest_is_resent() {
    let fixture = Fixture::start();
    let layers = fixture.built_layers();
    let (app_layer, _) = layers.last().expect("the image has an app layer");
    let blob_path = format!("/v2/{APP_REPOSITORY}/blobs/{app_layer}");
    fixture
        .proxy
        .add_rule(Rule::new("HEAD", &blob_path, Fault::status(200)));
    let manifest_path = format!("/v2/{APP_REPOSITORY}/manifests/{APP_TAG}");

    let run = fixture.push(&[]);

    fixture.assert_pushed(&run);
    let log = fixture.proxy.log();
    let puts = fixture.proxy.requests_matching("PUT", &manifest_path);
    assert_eq!(
        puts.len(),
        2,
        "one rejected manifest and one accepted:\n{log}"
    );
    assert_eq!(puts[0].status, Some(400), "{log}");
    assert!(puts[1].succeeded(), "{log}");
    let uploads: Vec<_> = fixture
        .proxy
        .requests_matching("PUT", &format!("/v2/{APP_REPOSITORY}/blobs/uploads/*"))
        .into_iter()
        .filter(|request| upload_digest(request) == app_layer.strip_prefix("sha256:"))
        .collect();
    assert_eq!(
        uploads.len(),
        1,
        "the app layer is uploaded after the rejection:\n{log}"
    );
    assert!(
        run.stderr().contains("MANIFEST_BLOB_UNKNOWN"),
        "the retry is logged:\n{}",
        run.stderr()
    );
}

/// A push of an unchanged app sends only HEAD requests: the target's manifest, found with the
/// same digest, and the base layers that the early transfer checks, each once.
#[test]
fn warm_push_sends_only_heads() {
    let fixture = Fixture::start();
    let first = fixture.push(&[]);
    fixture.assert_pushed(&first);
    fixture.proxy.clear_requests();

    let second = fixture.push(&[]);

    fixture.assert_pushed(&second);
    assert_eq!(
        first.pushed_digest(&fixture.image()),
        second.pushed_digest(&fixture.image())
    );
    let (first_log, second_log) = (first.stderr(), second.stderr());
    assert!(first_log.contains("built app layer"), "{first_log}");
    assert!(
        second_log.contains("reused cached app layer"),
        "{second_log}"
    );
    assert!(!second_log.contains("built "), "{second_log}");
    let log = fixture.proxy.log();
    let requests = fixture.proxy.requests();
    for request in &requests {
        assert_eq!(
            request.method, "HEAD",
            "{} in a warm push:\n{log}",
            request.target
        );
    }
    let manifest_path = format!("/v2/{APP_REPOSITORY}/manifests/{APP_TAG}");
    let manifest_heads = fixture.proxy.requests_matching("HEAD", &manifest_path);
    assert_eq!(manifest_heads.len(), 1, "{log}");
    let blob_heads: Vec<&str> = requests
        .iter()
        .filter(|request| request.matches("HEAD", &format!("/v2/{APP_REPOSITORY}/blobs/*")))
        .map(|request| request.target.as_str())
        .collect();
    let distinct: BTreeSet<&str> = blob_heads.iter().copied().collect();
    assert_eq!(
        blob_heads.len(),
        distinct.len(),
        "a blob checked twice:\n{log}"
    );
    assert_eq!(
        distinct.len(),
        base_layer_digests().len(),
        "the base layers:\n{log}"
    );
}

// --- Error statuses ------------------------------------------------------------------------------

/// A kind of request that a push sends, and the pattern of its target in repository REPOSITORY
/// or, for the base manifest, in BASE_REPOSITORY.
struct RequestKind {
    name: &'static str,
    method: &'static str,
    pattern: fn(repository: &str, base_repository: &str) -> String,
}

const REQUEST_KINDS: [RequestKind; 5] = [
    RequestKind {
        name: "head-blob",
        method: "HEAD",
        pattern: |repository, _| format!("/v2/{repository}/blobs/*"),
    },
    RequestKind {
        name: "post-upload",
        method: "POST",
        // Without a query string, which a mount request has.
        pattern: |repository, _| format!("/v2/{repository}/blobs/uploads/"),
    },
    RequestKind {
        name: "put-upload",
        method: "PUT",
        pattern: |repository, _| format!("/v2/{repository}/blobs/uploads/*"),
    },
    RequestKind {
        name: "put-manifest",
        method: "PUT",
        pattern: |repository, _| format!("/v2/{repository}/manifests/*"),
    },
    RequestKind {
        name: "get-base-manifest",
        method: "GET",
        pattern: |_, base_repository| format!("/v2/{base_repository}/manifests/*"),
    },
];

#[test]
fn server_errors_on_each_request_are_retried() {
    // One push per status, each failing once on every kind of request. The pushes run at the
    // same time through one proxy, so each has its own repositories for its rules to match, and
    // its own cache, so that its base manifest is fetched.
    let registry = Registry::start();
    let proxy = FaultProxy::start(registry.port);
    let statuses = [500, 502, 503];
    for status in statuses {
        let (repository, base_repository) = status_repositories(status);
        push_base(&registry, "base", &base_repository, BASE_TAG);
        for kind in &REQUEST_KINDS {
            let pattern = (kind.pattern)(&repository, &base_repository);
            proxy.add_rule(Rule::new(kind.method, &pattern, Fault::status(status)));
        }
    }

    let app = example_app();
    thread::scope(|scope| {
        for status in statuses {
            let (registry, proxy, app) = (&registry, &proxy, &app);
            scope.spawn(move || {
                let (repository, base_repository) = status_repositories(status);
                let workspace = Workspace::new();
                let image = format!("{}/{repository}:{APP_TAG}", proxy.host());
                let base = format!("{}/{base_repository}:{BASE_TAG}", proxy.host());

                let run = workspace.run(&push_args(app, &image, &base, &[]));

                let digest = run.pushed_digest(&image);
                assert_valid_image(registry, &repository, APP_TAG, &digest);
                for kind in &REQUEST_KINDS {
                    let case = format!("HTTP {status} on {}", kind.name);
                    let pattern = (kind.pattern)(&repository, &base_repository);
                    let log = proxy.requests_matching(kind.method, &pattern);
                    assert_eq!(
                        log.first().and_then(|request| request.status),
                        Some(status),
                        "{case}: the first matching request must get the injected status:\n{}",
                        format_log(&log)
                    );
                    // A retry may repeat the request or, for an upload, start a new one.
                    let answered_later = log[1..].iter().any(|request| {
                        request.fault.is_none() && request.status.is_some_and(|s| s < 500)
                    });
                    assert!(
                        answered_later,
                        "{case}: a request of the same kind must be sent again and answered:\n{}",
                        format_log(&log)
                    );
                }
            });
        }
    });
}

/// Returns the app and base repositories of the server-error push for STATUS.
fn status_repositories(status: u16) -> (String, String) {
    (format!("{status}/app"), format!("{status}/nodejs"))
}

#[test]
fn throttled_request_waits_for_retry_after() {
    let fixture = Fixture::start();
    let manifest_path = format!("/v2/{APP_REPOSITORY}/manifests/{APP_TAG}");
    fixture.proxy.add_rule(Rule::new(
        "PUT",
        &manifest_path,
        Fault::Status {
            status: 429,
            retry_after: Some(1),
        },
    ));

    let run = fixture.push(&[]);

    fixture.assert_pushed(&run);
    let puts = fixture.proxy.requests_matching("PUT", &manifest_path);
    assert_eq!(puts.len(), 2, "{}", fixture.proxy.log());
    let wait = puts[1].started - puts[0].finished.expect("the 429 was sent");
    assert!(
        wait >= Duration::from_secs(1),
        "the retry came {wait:?} after a 429 with Retry-After: 1"
    );
    assert!(wait < Duration::from_secs(5), "the retry waited {wait:?}");
}

#[test]
fn throttled_request_without_retry_after_backs_off() {
    let fixture = Fixture::start();
    let manifest_path = format!("/v2/{APP_REPOSITORY}/manifests/{APP_TAG}");
    fixture
        .proxy
        .add_rule(Rule::new("PUT", &manifest_path, Fault::status(429)));

    let run = fixture.push(&[]);

    fixture.assert_pushed(&run);
    let puts = fixture.proxy.requests_matching("PUT", &manifest_path);
    assert_eq!(puts.len(), 2, "{}", fixture.proxy.log());
    let wait = puts[1].started - puts[0].finished.expect("the 429 was sent");
    // The first backoff is 0.5 s plus up to 50 % jitter.
    assert!(
        wait >= Duration::from_millis(500),
        "the retry came {wait:?} after a 429, before the first backoff of 0.5 s"
    );
    assert!(wait < Duration::from_secs(5), "the retry waited {wait:?}");
}

#[test]
fn persistent_503_fails_in_bounded_time() {
    let fixture = Fixture::start();
    fixture
        .proxy
        .add_rule(Rule::new("*", "*", Fault::status(503)).every_time());

    let run = fixture.push(&[]);

    let error = run.error_line();
    assert!(
        error.contains(&fixture.proxy.host()),
        "the error must name the registry: {error}"
    );
    assert!(
        error.contains("503"),
        "the error must name the status: {error}"
    );
    assert_no_manifest(&fixture.registry, APP_REPOSITORY, APP_TAG);
    assert!(
        run.elapsed < FAILURE_TIME_LIMIT,
        "giving up took {:?}",
        run.elapsed
    );
    let log = fixture.proxy.requests();
    for request in &log {
        let attempts = log
            .iter()
            .filter(|other| other.method == request.method && other.target == request.target)
            .count();
        assert!(
            attempts <= MAX_ATTEMPTS,
            "{} {} was sent {attempts} times, more than the {MAX_ATTEMPTS} attempts of the \
             retry policy:\n{}",
            request.method,
            request.target,
            format_log(&log)
        );
    }
}

// --- Stalls and lost responses -------------------------------------------------------------------

/// How long a stalled request waits. It is longer than `--timeout 2`, so the product gives up
/// first.
const STALL: Duration = Duration::from_secs(10);

#[test]
fn one_stall_times_out_and_is_retried() {
    let fixture = Fixture::start();
    let manifest_path = format!("/v2/{APP_REPOSITORY}/manifests/{APP_TAG}");
    fixture.proxy.add_rule(Rule::new(
        "PUT",
        &manifest_path,
        Fault::Stall { duration: STALL },
    ));

    let run = fixture.push(&["--timeout", "2"]);

    fixture.assert_pushed(&run);
    let puts = fixture.proxy.requests_matching("PUT", &manifest_path);
    assert_eq!(puts.len(), 2, "{}", fixture.proxy.log());
    assert_eq!(puts[0].status, None, "{}", fixture.proxy.log());
    let gave_up_after = puts[1].started - puts[0].started;
    assert!(
        gave_up_after >= Duration::from_secs(2),
        "the retry came {gave_up_after:?} after the stalled request, before --timeout 2"
    );
    assert!(
        gave_up_after < STALL,
        "the product waited for the stall to end ({gave_up_after:?})"
    );
}

#[test]
fn persistent_stall_fails_with_timed_out() {
    let fixture = Fixture::start();
    fixture
        .proxy
        .add_rule(Rule::new("*", "*", Fault::Stall { duration: STALL }).every_time());

    let run = fixture.push(&["--timeout", "2"]);

    let error = run.error_line();
    assert!(error.contains("timed out"), "{error}");
    assert!(
        error.contains(&fixture.proxy.host()),
        "the error must name the registry: {error}"
    );
    assert_no_manifest(&fixture.registry, APP_REPOSITORY, APP_TAG);
    assert!(
        run.elapsed < FAILURE_TIME_LIMIT,
        "giving up took {:?}",
        run.elapsed
    );
}

#[test]
fn lost_commit_response_checks_blob_first() {
    let fixture = Fixture::start();
    let layers = fixture.built_layers();
    let (app_layer, _) = layers.last().expect("the image has layers").clone();
    let hex = app_layer.trim_start_matches("sha256:");
    fixture.proxy.add_rule(Rule::new(
        "PUT",
        &format!("/v2/{APP_REPOSITORY}/blobs/uploads/*{hex}*"),
        Fault::LoseResponse,
    ));

    let run = fixture.push(&[]);

    fixture.assert_pushed(&run);
    let log = fixture.proxy.requests();
    let lost = faulted_index(&log);
    assert_eq!(
        log[lost].upstream_status,
        Some(201),
        "the registry must have stored the blob:\n{}",
        format_log(&log)
    );
    let later = &log[lost + 1..];
    let blob_path = format!("/v2/{APP_REPOSITORY}/blobs/{app_layer}");
    assert!(
        later
            .iter()
            .any(|request| request.method == "HEAD" && request.target == blob_path),
        "after the lost response the product must check the blob with HEAD:\n{}",
        format_log(&log)
    );
    let puts_again: Vec<&RecordedRequest> = later
        .iter()
        .filter(|request| {
            request.method == "PUT" && upload_digest(request) == Some(hex) && request.body_bytes > 0
        })
        .collect();
    assert!(
        puts_again.is_empty(),
        "the blob is stored, so its body must not be sent again:\n{}",
        format_log(&log)
    );
}

#[test]
fn retries_are_logged_at_warn() {
    let fixture = Fixture::start();
    let manifest_path = format!("/v2/{APP_REPOSITORY}/manifests/{APP_TAG}");
    fixture
        .proxy
        .add_rule(Rule::new("PUT", &manifest_path, Fault::status(503)));

    let run = fixture.push(&["-v"]);

    fixture.assert_pushed(&run);
    let stderr = run.stderr();
    let retries: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("retrying"))
        .collect();
    assert_eq!(retries.len(), 1, "expected one retry in:\n{stderr}");
    let line = retries[0];
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("push manifest"),
        "the operation is missing: {line}"
    );
    assert!(
        line.contains(&fixture.image()),
        "the reference is missing: {line}"
    );
    assert!(line.contains("attempt=1"), "the attempt is missing: {line}");
    assert!(line.contains("503"), "the reason is missing: {line}");
}

// --- Interrupted pushes --------------------------------------------------------------------------

/// Bytes of incompressible files added to the example app for the interrupted pushes, and the
/// proxy's bandwidth per body, which make the app layer's upload take about 1 s.
const LARGE_APP_BYTES: usize = 2 << 20;
const THROTTLE_BYTES_PER_SECOND: u64 = 2 << 20;

/// Copies the example app into WORKSPACE and adds LARGE_APP_BYTES of pseudo-random files, the
/// same on every call.
fn large_app(workspace: &Workspace) -> PathBuf {
    let app = workspace.path().join("large-app");
    copy_dir(&example_app(), &app);
    let data = app.join("data");
    fs::create_dir(&data).expect("cannot create the data folder");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let file_bytes = LARGE_APP_BYTES / 4;
    for index in 0..4 {
        let mut bytes = Vec::with_capacity(file_bytes);
        while bytes.len() < file_bytes {
            // xorshift64: fast, and its output does not compress.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.extend_from_slice(&state.to_le_bytes());
        }
        fs::write(data.join(format!("blob-{index}.bin")), &bytes).expect("cannot write app data");
    }
    app
}

/// A small pseudo-random generator for kill points, seeded from the clock and printed, so a
/// failing run can be replayed by putting the seed in place of the clock.
struct KillPoints {
    state: u64,
}

impl KillPoints {
    fn new() -> KillPoints {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_nanos() as u64)
            | 1;
        eprintln!("kill point seed: {seed}");
        KillPoints { state: seed }
    }

    /// Returns a delay between MIN and MAX.
    fn next(&mut self, min: Duration, max: Duration) -> Duration {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let span = (max - min).as_millis() as u64;
        min + Duration::from_millis(self.state % span.max(1))
    }
}

/// Waits up to LIMIT for CHILD to exit by itself, and returns its status if it did.
fn wait_up_to(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("cannot poll lambda-image") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the proxy has seen a blob upload start (a POST without a mount) or CHILD has
/// exited, and returns its exit status in the second case.
fn wait_for_first_upload(proxy: &FaultProxy, child: &mut Child) -> Option<ExitStatus> {
    let upload_start = format!("/v2/{APP_REPOSITORY}/blobs/uploads/");
    let deadline = Instant::now() + RUN_TIME_LIMIT;
    loop {
        if let Some(status) = child.try_wait().expect("cannot poll lambda-image") {
            return Some(status);
        }
        if !proxy.requests_matching("POST", &upload_start).is_empty() {
            return None;
        }
        assert!(
            Instant::now() < deadline,
            "no upload started within {RUN_TIME_LIMIT:?}:\n{}",
            proxy.log()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

const KILL_ITERATIONS: usize = 5;

#[test]
fn killed_pushes_resume_with_missing_blobs() {
    let registry = Registry::start();
    push_base(&registry, "base", BASE_REPOSITORY, BASE_TAG);
    let proxy = FaultProxy::start_throttled(registry.port, THROTTLE_BYTES_PER_SECOND);
    let workspace = Workspace::new();
    let app = large_app(&workspace);
    let image = format!("{}/{APP_REPOSITORY}:{APP_TAG}", proxy.host());
    let base = format!("{}/{BASE_REPOSITORY}:{BASE_TAG}", proxy.host());
    let args = push_args(&app, &image, &base, &[]);
    let mut kill_points = KillPoints::new();
    let manifest_path = format!("/v2/{APP_REPOSITORY}/manifests/{APP_TAG}");

    for iteration in 1..=KILL_ITERATIONS {
        proxy.clear_requests();
        let mut child = workspace
            .command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start lambda-image");
        // The first run is killed while it builds, which takes about 2 s on an empty cache. The
        // later runs are killed during their uploads, before the app layer's 1 s upload can end,
        // so that each leaves work for the next.
        let finished = if iteration == 1 {
            let delay = kill_points.next(Duration::from_millis(100), Duration::from_millis(1500));
            eprintln!("run {iteration}: kill {delay:?} after the start");
            wait_up_to(&mut child, delay)
        } else {
            let delay = kill_points.next(Duration::ZERO, Duration::from_millis(900));
            eprintln!("run {iteration}: kill {delay:?} after the first upload starts");
            wait_for_first_upload(&proxy, &mut child).or_else(|| wait_up_to(&mut child, delay))
        };
        if let Some(status) = finished {
            // The push finished before its kill point, which leaves nothing to resume.
            assert!(status.success(), "run {iteration} failed with {status}");
            eprintln!("run {iteration} finished before its kill point");
            continue;
        }
        child.kill().expect("cannot kill lambda-image");
        proxy.drop_connections();
        child.wait().expect("cannot wait for lambda-image");
        let manifest_stored = proxy
            .requests_matching("PUT", &manifest_path)
            .iter()
            .any(|request| request.upstream_status == Some(201));
        if !manifest_stored {
            assert_no_manifest(&registry, APP_REPOSITORY, APP_TAG);
        }
    }

    let present = linked_blobs(&registry, APP_REPOSITORY);
    proxy.clear_requests();
    let run = workspace.run(&args);

    let digest = run.pushed_digest(&image);
    assert_valid_image(&registry, APP_REPOSITORY, APP_TAG, &digest);
    let log = proxy.requests();
    let uploads: Vec<&RecordedRequest> = log
        .iter()
        .filter(|request| request.method == "PUT" && upload_digest(request).is_some())
        .collect();
    eprintln!(
        "the last run took {:?}, found {} blobs present and sent {} uploads",
        run.elapsed,
        present.len(),
        uploads.len()
    );
    for request in uploads {
        let hex = upload_digest(request).expect("filtered above");
        assert!(
            !present.contains(&format!("sha256:{hex}")),
            "blob sha256:{hex} was present but uploaded again:\n{}",
            format_log(&log)
        );
    }
}

#[test]
fn interrupt_exits_130_without_manifest() {
    let registry = Registry::start();
    push_base(&registry, "base", BASE_REPOSITORY, BASE_TAG);
    let proxy = FaultProxy::start_throttled(registry.port, THROTTLE_BYTES_PER_SECOND);
    let workspace = Workspace::new();
    let app = large_app(&workspace);
    let image = format!("{}/{APP_REPOSITORY}:{APP_TAG}", proxy.host());
    let base = format!("{}/{BASE_REPOSITORY}:{BASE_TAG}", proxy.host());
    let child = workspace
        .command(&push_args(&app, &image, &base, &[]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start lambda-image");

    // Interrupt once an upload is under way, as a user pressing Ctrl-C would.
    let upload_pattern = format!("/v2/{APP_REPOSITORY}/blobs/uploads/*digest=*");
    let deadline = Instant::now() + RUN_TIME_LIMIT;
    while proxy.requests_matching("PUT", &upload_pattern).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no upload started:\n{}",
            proxy.log()
        );
        thread::sleep(Duration::from_millis(10));
    }
    let signal = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("cannot run kill");
    assert!(signal.success(), "kill -INT failed");
    let output = wait_with_limit(child, Duration::from_secs(10));

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(130),
        "an interrupted push must exit with 130; stderr:\n{stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "an interrupted push must print nothing to stdout"
    );
    assert_no_manifest(&registry, APP_REPOSITORY, APP_TAG);
}

// --- Corrupted blobs -----------------------------------------------------------------------------

#[test]
fn corrupt_base_blob_fails_the_push() {
    let base_registry = Registry::start();
    push_base(&base_registry, "base", BASE_REPOSITORY, BASE_TAG);
    let base_proxy = FaultProxy::start(base_registry.port);
    let target = Registry::start();
    let layer = base_layer_digests()[0].clone();
    base_proxy.add_rule(
        Rule::new(
            "GET",
            &format!("/v2/{BASE_REPOSITORY}/blobs/{layer}"),
            Fault::CorruptResponseBody { offset: 100 },
        )
        .every_time(),
    );
    let workspace = Workspace::new();
    let image = format!("{}/{APP_REPOSITORY}:{APP_TAG}", target.host());
    let base = format!("{}/{BASE_REPOSITORY}:{BASE_TAG}", base_proxy.host());

    let run = workspace.run(&push_args(&example_app(), &image, &base, &[]));

    let error = run.error_line();
    assert!(
        error.contains(&layer),
        "the error must name the blob: {error}"
    );
    assert_no_manifest(&target, APP_REPOSITORY, APP_TAG);
    assert!(
        run.elapsed < FAILURE_TIME_LIMIT,
        "giving up took {:?}",
        run.elapsed
    );
    assert!(
        error.contains(&base_proxy.host()),
        "the error must name the registry the blob came from: {error}"
    );
}
