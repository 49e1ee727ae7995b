//! Hostile and broken registry responses that no real registry sends, served by an in-process
//! fake registry on 127.0.0.1. The product pulls its base image from the fake, or pushes to it,
//! and must fail with one clear `error:` line, without a panic, within 20 s and 200 MiB, and
//! without writing its output.

mod common;

#[path = "support/hostile_cli.rs"]
mod hostile_cli;
#[path = "support/hostile_server.rs"]
mod hostile_server;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{base_layout, Registry, BASE_TAG};
use hostile_cli::{write_small_app, Run, Sandbox};
use hostile_server::{
    manifest_response, sha256_digest, BaseImage, Body, HostileServer, Request, Response, OCI_INDEX,
    OCI_MANIFEST,
};
use serde_json::json;

/// Maximum time a hostile case may take. Retries of transport failures (five attempts with backoff
/// of up to 8 s between them) must fit in it.
const TIME_LIMIT: Duration = Duration::from_secs(20);
/// When a run is killed: later than TIME_LIMIT, so that a slow run reports its time.
const KILL_AFTER: Duration = Duration::from_secs(40);
/// Peak memory a run may use. Every hostile body here is at least 1 MiB, most far larger.
const MAX_RSS_MIB: u64 = 200;
/// Maximum time a push with a rejected upload Location may take to fail: far less than a connection attempt to
/// an unreachable address, which waits for the 30 s connect timeout.
const REJECTION_LIMIT: Duration = Duration::from_secs(5);

/// The repository of the base image in the fake registry.
const BASE_REPOSITORY: &str = "lambda/nodejs";

fn base_image() -> BaseImage {
    BaseImage::load(&base_layout("base"))
}

/// An app, an output path and a sandbox for one build.
struct BuildCase {
    sandbox: Sandbox,
    app: PathBuf,
    output: PathBuf,
}

impl BuildCase {
    fn new() -> BuildCase {
        let sandbox = Sandbox::new();
        let app = sandbox.path().join("app");
        write_small_app(&app, "hostile");
        let output = sandbox.path().join("out");
        BuildCase {
            sandbox,
            app,
            output,
        }
    }

    /// Runs `build APP --output OUT --base BASE`.
    fn build(&self, base: &str) -> Run {
        let args = [
            "build",
            self.app.to_str().unwrap(),
            "--output",
            self.output.to_str().unwrap(),
            "--base",
            base,
            "--node-modules",
            "local",
        ];
        self.sandbox.run(&args, KILL_AFTER)
    }

    /// Runs `push APP IMAGE --base BASE`.
    fn push(&self, image: &str, base: &str) -> Run {
        let args = [
            "push",
            self.app.to_str().unwrap(),
            image,
            "--base",
            base,
            "--node-modules",
            "local",
        ];
        self.sandbox.run(&args, KILL_AFTER)
    }

    /// Builds against the fake registry's base as REFERENCE (`:TAG` or `@DIGEST`) and checks the
    /// failure: one `error:` line containing each of NEEDLES, bounded time and memory, no output.
    fn assert_build_fails(
        &self,
        server: &HostileServer,
        reference: &str,
        needles: &[&str],
    ) -> String {
        let base = format!("{}/{BASE_REPOSITORY}{reference}", server.host());
        let run = self.build(&base);
        let line = run.assert_failure(1, needles);
        run.assert_bounded(TIME_LIMIT, MAX_RSS_MIB);
        assert!(
            !self.output.exists(),
            "a failed build left {}\n{run}",
            self.output.display()
        );
        assert!(
            !server.requests().iter().any(Request::is_write),
            "a build wrote to the base registry: {:?}",
            server.request_lines()
        );
        line
    }
}

/// Returns BYTES with the byte in the middle changed, so that size stays and digest changes.
fn corrupt(bytes: &[u8]) -> Vec<u8> {
    let mut changed = bytes.to_vec();
    let middle = changed.len() / 2;
    changed[middle] ^= 0x55;
    changed
}

/// Returns the base's linux/amd64 config and layer digests, in manifest order.
fn amd64_blob_digests(base: &BaseImage) -> (String, Vec<String>) {
    let manifest = base.amd64_manifest();
    let config = manifest["config"]["digest"].as_str().unwrap().to_string();
    let layers = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["digest"].as_str().unwrap().to_string())
        .collect();
    (config, layers)
}

/// Serves the base, but responds to a request for the linux/amd64 manifest by digest with that
/// manifest plus a newline. Returns the server, the requested digest and the served digest.
fn tampered_manifest_server() -> (HostileServer, String, String) {
    let base = base_image();
    let requested = base.amd64_manifest_digest();
    let mut tampered = base.manifests[&requested].clone();
    tampered.push(b'\n');
    let tampered_digest = sha256_digest(&tampered);
    let server = {
        let requested = requested.clone();
        HostileServer::start(move |request| {
            if request.is_manifest() && request.path().ends_with(&requested) {
                return manifest_response(&tampered, OCI_MANIFEST)
                    .header("Docker-Content-Digest", &requested);
            }
            base.serve(request)
        })
    };
    (server, requested, tampered_digest)
}

#[test]
fn manifest_by_digest_with_other_content() {
    let (server, requested, tampered_digest) = tampered_manifest_server();
    let case = BuildCase::new();
    case.assert_build_fails(
        &server,
        &format!("@{requested}"),
        &[&requested, &tampered_digest],
    );
}

/// The registry sent a response in each of these cases, so advice to check that it is
/// reachable would send the user the wrong way.
#[test]
fn registry_responses_skip_reachability_advice() {
    let (tampered, requested, _) = tampered_manifest_server();
    let oversized = failing_manifest_server(
        Response::status(200)
            .header("Content-Type", OCI_MANIFEST)
            .body(oversized_manifest()),
    );
    let html_token = token_server(Response::status(200).body(b"<html></html>".to_vec()));
    let cases = [
        (
            "a manifest with other content",
            &tampered,
            format!("@{requested}"),
        ),
        ("a manifest over 4 MiB", &oversized, format!(":{BASE_TAG}")),
        (
            "a token response in HTML",
            &html_token,
            format!(":{BASE_TAG}"),
        ),
    ];
    let mut misleading = Vec::new();
    for (name, server, reference) in cases {
        let case = BuildCase::new();
        let line = case.assert_build_fails(server, &reference, &[&server.host()]);
        if line.contains("reachable") {
            misleading.push(format!("{name}: {line}"));
        }
    }
    assert!(
        misleading.is_empty(),
        "the registry sent a response, but the error blames reachability:\n{}",
        misleading.join("\n")
    );
}

#[test]
fn index_child_manifest_with_other_content() {
    let base = base_image();
    let child = base.amd64_manifest_digest();
    let other_child = base
        .manifests
        .keys()
        .find(|digest| **digest != child)
        .expect("the base index has two manifests")
        .clone();
    let server = {
        let (base, child) = (base.clone(), child.clone());
        HostileServer::start(move |request| {
            if request.is_manifest() && request.path().ends_with(&child) {
                // The arm64 manifest: valid, but not the one the index names.
                return manifest_response(&base.manifests[&other_child], OCI_MANIFEST)
                    .header("Docker-Content-Digest", &child);
            }
            base.serve(request)
        })
    };

    let case = BuildCase::new();
    case.assert_build_fails(&server, &format!(":{BASE_TAG}"), &[&child]);
}

#[test]
fn base_config_with_wrong_content() {
    let base = base_image();
    let (config, _) = amd64_blob_digests(&base);
    let tampered = corrupt(&base.blobs[&config]);
    let tampered_digest = sha256_digest(&tampered);
    let server = {
        let (base, config) = (base.clone(), config.clone());
        HostileServer::start(move |request| {
            if request.is_blob() && request.path().ends_with(&config) {
                return Response::status(200).body(tampered.clone());
            }
            base.serve(request)
        })
    };

    let case = BuildCase::new();
    case.assert_build_fails(
        &server,
        &format!(":{BASE_TAG}"),
        &[&config, &tampered_digest],
    );
}

/// Serves the base with its first linux/amd64 layer corrupted.
fn server_with_corrupt_layer(base: &BaseImage) -> (HostileServer, String) {
    let (_, layers) = amd64_blob_digests(base);
    let layer = layers[0].clone();
    let tampered = corrupt(&base.blobs[&layer]);
    let server = {
        let (base, layer) = (base.clone(), layer.clone());
        HostileServer::start(move |request| {
            if request.is_blob() && request.path().ends_with(&layer) {
                return Response::status(200).body(tampered.clone());
            }
            base.serve(request)
        })
    };
    (server, layer)
}

#[test]
fn base_layer_with_wrong_content_build() {
    let (server, layer) = server_with_corrupt_layer(&base_image());
    let case = BuildCase::new();
    case.assert_build_fails(&server, &format!(":{BASE_TAG}"), &[&layer]);
}

#[test]
fn base_layer_with_wrong_content_push() {
    let (server, layer) = server_with_corrupt_layer(&base_image());
    let registry = Registry::start();
    let case = BuildCase::new();
    let image = format!("{}/app:latest", registry.host());
    let base = format!("{}/{BASE_REPOSITORY}:{BASE_TAG}", server.host());

    let run = case.push(&image, &base);
    run.assert_failure(1, &[&layer]);
    run.assert_bounded(TIME_LIMIT, MAX_RSS_MIB);
    assert!(
        run.stdout.is_empty(),
        "a failed push printed a result:\n{run}"
    );
    let tags: Vec<_> = registry
        .stored_files()
        .into_iter()
        .filter(|path| path.to_string_lossy().contains("_manifests/tags"))
        .collect();
    assert!(tags.is_empty(), "a failed push tagged a manifest: {tags:?}");
}

/// Starts a push target whose upload sessions live at LOCATION. Blob checks get 404, so every
/// blob is uploaded, and any request other than a blob check or upload start gets 400.
fn upload_redirecting_server(location: String) -> HostileServer {
    HostileServer::start(move |request| {
        if request.method == "HEAD" && request.is_blob() {
            return Response::not_found();
        }
        if request.method == "POST" && request.path().ends_with("/blobs/uploads/") {
            return Response::status(202)
                .header("Location", &location)
                .header("Docker-Upload-UUID", "hostile");
        }
        if request.path() == "/v2/" {
            return Response::status(200);
        }
        Response::status(400).body(b"unexpected request".to_vec())
    })
}

/// Pushes a small app built on the local base layout to SERVER, whose upload Location points
/// at HOST. Checks first what keeps traffic away from HOST: the push fails fast, and the server
/// receives nothing after the upload starts. The error message is left to the caller.
fn push_to_upload_server(server: &HostileServer, host: &str) -> Run {
    let case = BuildCase::new();
    let base = format!("oci:{}:{BASE_TAG}", base_layout("base").display());
    let image = format!("{}/app:latest", server.host());
    let run = case.push(&image, &base);
    assert!(
        run.elapsed < REJECTION_LIMIT,
        "rejecting an upload Location on {host} took {:.1} s; did the push connect there?\n{run}",
        run.elapsed.as_secs_f64()
    );
    assert_eq!(
        run.code(),
        Some(1),
        "the push to {host} did not fail:\n{run}"
    );
    assert!(
        run.stdout.is_empty(),
        "a failed push printed a result:\n{run}"
    );
    let unexpected: Vec<String> = server
        .requests()
        .iter()
        .filter(|request| request.method != "HEAD" && request.method != "POST")
        .map(|request| format!("{} {}", request.method, request.target))
        .collect();
    assert!(
        unexpected.is_empty(),
        "requests after the upload start: {unexpected:?}"
    );
    run
}

/// Upload sessions on another host must be rejected before any byte goes there. The case with a
/// second loopback server runs first and proves that nothing is sent to the other host. Only
/// after that do the private and metadata addresses run, so this test sends them no traffic.
#[test]
fn upload_location_on_other_host_rejected() {
    let decoy = HostileServer::start(|_| Response::status(201));
    let decoy_host = decoy.host();
    let server =
        upload_redirecting_server(format!("http://{decoy_host}/v2/app/blobs/uploads/session"));
    let loopback_run = push_to_upload_server(&server, &decoy_host);
    assert!(
        decoy.requests().is_empty(),
        "the push sent requests to the other host: {:?}",
        decoy.request_lines()
    );

    for address in ["10.0.0.1", "169.254.169.254"] {
        let location = format!("http://{address}/v2/app/blobs/uploads/session");
        let server = upload_redirecting_server(location);
        let run = push_to_upload_server(&server, address);
        run.assert_failure(1, &[address, "Location"]);
    }

    // The registry is 127.0.0.1 too, so only the port shows the user which host was rejected.
    loopback_run.assert_failure(1, &[&decoy_host, "Location"]);
}

/// Counts the redirects a server sent, to prove the product stops following them.
fn redirect_loop_server(loop_on: fn(&Request) -> bool) -> (HostileServer, Arc<AtomicUsize>) {
    let base = base_image();
    let redirects = Arc::new(AtomicUsize::new(0));
    let counter = redirects.clone();
    let server = HostileServer::start(move |request| {
        if loop_on(request) {
            counter.fetch_add(1, Ordering::SeqCst);
            // The same URL again: a loop that never ends on the server's side.
            return Response::status(302).header("Location", &request.target);
        }
        base.serve(request)
    });
    (server, redirects)
}

#[test]
fn redirect_loop_on_manifest() {
    let (server, redirects) = redirect_loop_server(Request::is_manifest);
    let case = BuildCase::new();
    case.assert_build_fails(
        &server,
        &format!(":{BASE_TAG}"),
        &[&server.host(), "redirect"],
    );
    let count = redirects.load(Ordering::SeqCst);
    assert!(count <= 100, "the build followed {count} redirects");
}

#[test]
fn redirect_loop_on_blob() {
    let (server, redirects) = redirect_loop_server(|request| request.is_blob());
    let case = BuildCase::new();
    case.assert_build_fails(
        &server,
        &format!(":{BASE_TAG}"),
        &[&server.host(), "redirect"],
    );
    let count = redirects.load(Ordering::SeqCst);
    assert!(count <= 100, "the build followed {count} redirects");
}

/// Serves the base, but responds to every manifest request with 401 and CHALLENGE.
fn challenging_server(challenge: String) -> HostileServer {
    let base = base_image();
    HostileServer::start(move |request| {
        if request.is_manifest() {
            return Response::status(401)
                .header("WWW-Authenticate", &challenge)
                .header("Content-Type", "application/json")
                .body(
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                        .to_vec(),
                );
        }
        base.serve(request)
    })
}

#[test]
fn huge_challenge_header() {
    let padding = "a".repeat(1024 * 1024);
    let challenge = format!(r#"Bearer realm="http://127.0.0.1:9/token",service="{padding}""#);
    let server = challenging_server(challenge);
    let case = BuildCase::new();
    let line = case.assert_build_fails(&server, &format!(":{BASE_TAG}"), &[&server.host()]);
    assert!(
        line.len() < 2000,
        "the error line is {} bytes long",
        line.len()
    );
}

#[test]
fn malformed_challenge_headers() {
    // Each challenge with a word that the error must contain besides the registry.
    let challenges = [
        ("Bearer", "401"),
        ("Bearer realm=", "realm"),
        (r#"Bearer realm="http://127.0.0.1:9/token"#, "401"),
        (
            r#"Bearer realm="not a url",service="registry""#,
            "not a url",
        ),
        (
            r#"Bearer service="registry",scope="repository:x:pull""#,
            "401",
        ),
        ("Negotiate abcdef", "401"),
        ("garbage,,,===", "401"),
        // Control characters make the whole response invalid HTTP.
        ("\u{1}\u{2}garbage", "header"),
    ];
    for (challenge, needle) in challenges {
        let server = challenging_server(challenge.to_string());
        let case = BuildCase::new();
        case.assert_build_fails(&server, &format!(":{BASE_TAG}"), &[&server.host(), needle]);
    }
}

/// Serves the base, but responds to the manifest GET (not the HEAD that comes first) with
/// RESPONSE.
fn failing_manifest_server(response: Response) -> HostileServer {
    let base = base_image();
    HostileServer::start(move |request| {
        if request.is_manifest() && request.method == "GET" {
            return response.clone();
        }
        base.serve(request)
    })
}

#[test]
fn error_bodies_not_json() {
    let long_text = "Not Authorized ".repeat(10_000).into_bytes();
    let cases: [(&str, Response, &str); 5] = [
        (
            "ECR's plain-text 401",
            Response::status(401).body(b"Not Authorized\n".to_vec()),
            "Not Authorized",
        ),
        (
            "a truncated JSON error",
            Response::status(403)
                .header("Content-Type", "application/json")
                .body(br#"{"errors":[{"code":"DENIED","mess"#.to_vec()),
            "403",
        ),
        (
            "an HTML page",
            Response::status(404)
                .header("Content-Type", "text/html")
                .body(b"<html><body><h1>404 Not Found</h1></body></html>".to_vec()),
            "404",
        ),
        (
            "a body shorter than its Content-Length",
            Response::status(400).with_body(Body::Truncated {
                claimed: 1000,
                sent: b"Bad Req".to_vec(),
            }),
            "400",
        ),
        (
            "150 kB of plain text",
            Response::status(401).body(long_text),
            "401",
        ),
    ];
    for (name, response, needle) in cases {
        let server = failing_manifest_server(response);
        let case = BuildCase::new();
        let line =
            case.assert_build_fails(&server, &format!(":{BASE_TAG}"), &[&server.host(), needle]);
        assert!(
            line.len() < 2000,
            "{name}: the error line is {} bytes long",
            line.len()
        );
    }
}

/// Returns a manifest of more than 4 MiB (the limit ECR and most registries apply), padded with
/// an annotation so that it is valid JSON.
fn oversized_manifest() -> Vec<u8> {
    let base = base_image();
    let mut manifest = base.amd64_manifest();
    manifest["annotations"] = json!({ "padding": "x".repeat(5 * 1024 * 1024) });
    serde_json::to_vec(&manifest).unwrap()
}

#[test]
fn manifest_over_4_mib_with_content_length() {
    let bytes = oversized_manifest();
    let server = failing_manifest_server(
        Response::status(200)
            .header("Content-Type", OCI_MANIFEST)
            .body(bytes),
    );
    let case = BuildCase::new();
    case.assert_build_fails(
        &server,
        &format!(":{BASE_TAG}"),
        &[&server.host(), "manifest"],
    );
}

#[test]
fn manifest_over_4_mib_without_content_length() {
    let bytes = oversized_manifest();
    let server = failing_manifest_server(
        Response::status(200)
            .header("Content-Type", OCI_MANIFEST)
            .with_body(Body::UntilClose(bytes)),
    );
    let case = BuildCase::new();
    case.assert_build_fails(
        &server,
        &format!(":{BASE_TAG}"),
        &[&server.host(), "manifest"],
    );
}

#[test]
fn endless_chunked_manifest() {
    let chunk = b"{\"padding\":\""
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'x', 64 * 1024 - 12))
        .collect();
    let server = failing_manifest_server(
        Response::status(200)
            .header("Content-Type", OCI_MANIFEST)
            .with_body(Body::EndlessChunked(chunk)),
    );
    let case = BuildCase::new();
    case.assert_build_fails(
        &server,
        &format!(":{BASE_TAG}"),
        &[&server.host(), "manifest"],
    );
}

#[test]
fn index_without_matching_platform() {
    let base = base_image();
    let manifest = base.manifests[&base.amd64_manifest_digest()].clone();
    let entry = |os: &str, architecture: &str| {
        json!({
            "mediaType": OCI_MANIFEST,
            "digest": sha256_digest(&manifest),
            "size": manifest.len(),
            "platform": { "os": os, "architecture": architecture },
        })
    };
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [entry("linux", "s390x"), entry("linux", "ppc64le"), entry("unknown", "unknown")],
    }))
    .unwrap();
    let server = HostileServer::start(move |request| {
        if request.is_manifest() && request.path().ends_with(&format!("/{BASE_TAG}")) {
            return manifest_response(&index, OCI_INDEX);
        }
        base.serve(request)
    });

    let case = BuildCase::new();
    case.assert_build_fails(
        &server,
        &format!(":{BASE_TAG}"),
        &["linux/amd64", "linux/s390x"],
    );
}

#[test]
fn artifact_base_without_layers() {
    let base = base_image();
    let empty_config = b"{}".to_vec();
    let artifact = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": sha256_digest(&empty_config),
            "size": empty_config.len(),
        },
        "layers": [],
    }))
    .unwrap();
    let server = HostileServer::start(move |request| {
        if request.is_manifest() && request.path().ends_with("/sbom") {
            return manifest_response(&artifact, OCI_MANIFEST);
        }
        if request.is_blob() && request.path().ends_with(&sha256_digest(&empty_config)) {
            return Response::status(200).body(empty_config.clone());
        }
        base.serve(request)
    });

    let case = BuildCase::new();
    let reference = format!("{}/{BASE_REPOSITORY}:sbom", server.host());
    case.assert_build_fails(&server, ":sbom", &[&reference, "layers"]);
}

/// Serves the base behind bearer authentication whose token endpoint responds with
/// TOKEN_RESPONSE.
fn token_server(token_response: Response) -> HostileServer {
    let base = base_image();
    let realm = Arc::new(std::sync::OnceLock::<String>::new());
    let server = {
        let realm = realm.clone();
        HostileServer::start(move |request| {
            if request.path() == "/token" {
                return token_response.clone();
            }
            if request.header("authorization").is_none() {
                let challenge = format!(
                    r#"Bearer realm="{}",service="hostile""#,
                    realm.get().map(String::as_str).unwrap_or_default()
                );
                return Response::status(401).header("WWW-Authenticate", &challenge);
            }
            base.serve(request)
        })
    };
    realm
        .set(format!("http://{}/token", server.host()))
        .expect("the realm is set once");
    server
}

#[test]
fn token_endpoint_returns_html() {
    let server = token_server(
        Response::status(200)
            .header("Content-Type", "text/html")
            .body(b"<html><body>Sign in</body></html>".to_vec()),
    );
    let case = BuildCase::new();
    case.assert_build_fails(&server, &format!(":{BASE_TAG}"), &[&server.host(), "token"]);
}

#[test]
fn token_endpoint_returns_huge_body() {
    let token = "t".repeat(2 * 1024 * 1024);
    let body = serde_json::to_vec(&json!({ "token": token })).unwrap();
    let server = token_server(
        Response::status(200)
            .header("Content-Type", "application/json")
            .body(body),
    );
    let case = BuildCase::new();
    case.assert_build_fails(&server, &format!(":{BASE_TAG}"), &[&server.host(), "token"]);
}

#[test]
fn token_endpoint_returns_endless_body() {
    let chunk = b"{\"token\":\""
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b't', 64 * 1024))
        .collect();
    let server = token_server(
        Response::status(200)
            .header("Content-Type", "application/json")
            .with_body(Body::EndlessChunked(chunk)),
    );
    let case = BuildCase::new();
    case.assert_build_fails(&server, &format!(":{BASE_TAG}"), &[&server.host(), "token"]);
}
