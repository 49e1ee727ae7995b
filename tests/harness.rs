//! Tests of the test helpers themselves, without the lambda-image binary: the registry starts, the
//! base fixtures push and read back verified, the example app installs and answers.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

struct Family {
    layout: &'static str,
    index: &'static str,
    manifest: &'static str,
    config: &'static str,
    layer: &'static str,
}

const OCI: Family = Family {
    layout: "base",
    index: OCI_INDEX,
    manifest: OCI_MANIFEST,
    config: OCI_CONFIG,
    layer: OCI_LAYER,
};

const DOCKER: Family = Family {
    layout: "base-docker",
    index: DOCKER_LIST,
    manifest: DOCKER_MANIFEST,
    config: DOCKER_CONFIG,
    layer: DOCKER_LAYER,
};

fn platform_string(platform: &Value) -> String {
    let mut parts = vec![
        platform["os"].as_str().unwrap(),
        platform["architecture"].as_str().unwrap(),
    ];
    if let Some(variant) = platform["variant"].as_str() {
        parts.push(variant);
    }
    parts.join("/")
}

fn entry<'a>(image: &'a Value, layer: usize, path: &str) -> &'a Value {
    image["layers"][layer]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["path"] == path)
        .unwrap_or_else(|| panic!("layer {layer} has no entry {path}"))
}

/// Checks what make-base.py promises about one platform's image, as inspect_image.py read it.
fn check_base_image(image: &Value, family: &Family, architecture: &str) {
    assert_eq!(image["manifest_media_type"], family.manifest);
    assert_eq!(image["manifest"]["config"]["mediaType"], family.config);
    assert_eq!(image["index"]["media_type"], family.index);

    let config = &image["config"];
    assert_eq!(config["architecture"], architecture);
    assert_eq!(config["os"], "linux");
    assert_eq!(
        config.get("history"),
        Some(&Value::Null),
        "history must stay null"
    );
    assert_eq!(config["x-synthetic"], "made by testdata/make-base.py");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/lambda-entrypoint.sh"])
    );
    assert_eq!(config["config"]["WorkingDir"], "/var/task");
    assert!(
        config["config"].get("Cmd").is_none(),
        "base config has no Cmd"
    );

    let layers = image["layers"].as_array().unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(diff_ids.len(), 2);
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        assert_eq!(&layer["diff_id"], diff_id);
        assert_eq!(layer["media_type"], family.layer);
    }
    assert_eq!(entry(image, 0, "lambda-entrypoint.sh")["mode"], 0o755);
    assert_eq!(entry(image, 1, "var/task")["type"], "dir");
}

fn check_pushed_base(family: &Family) {
    let registry = Registry::start();
    push_base(&registry, family.layout, "lambda/nodejs", BASE_TAG);

    let index_digest = layout_top_digest(&base_layout(family.layout));
    let amd64 = inspect_registry_platform(&registry, "lambda/nodejs", BASE_TAG, "linux/amd64");
    let arm64 = inspect_registry_platform(&registry, "lambda/nodejs", BASE_TAG, "linux/arm64/v8");

    assert_eq!(amd64["index"]["digest"], index_digest.as_str());
    let platforms: Vec<String> = amd64["index"]["manifest"]["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|descriptor| platform_string(&descriptor["platform"]))
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);

    check_base_image(&amd64, family, "amd64");
    check_base_image(&arm64, family, "arm64");
    assert_eq!(arm64["config"]["variant"], "v8");
    assert_ne!(amd64["manifest_digest"], arm64["manifest_digest"]);
    // The two platforms share the task layer. Their OS layers differ only in etc/architecture.
    assert_eq!(amd64["layers"][1]["digest"], arm64["layers"][1]["digest"]);
    assert_ne!(amd64["layers"][0]["digest"], arm64["layers"][0]["digest"]);

    let by_digest = inspect_registry(
        &registry,
        "lambda/nodejs",
        amd64["manifest_digest"].as_str().unwrap(),
    );
    assert_eq!(by_digest["manifest"], amd64["manifest"]);
    assert_eq!(by_digest["index"], Value::Null);
}

#[test]
fn pushed_oci_base_reads_back() {
    check_pushed_base(&OCI);
}

#[test]
fn pushed_docker_base_reads_back() {
    check_pushed_base(&DOCKER);
}

#[test]
fn base_layout_reads_back() {
    let image = inspect_layout(&base_layout("base"));
    check_base_image(&image, &OCI, "amd64");

    let docker = inspect_layout_platform(&base_layout("base-docker"), "linux/arm64");
    check_base_image(&docker, &DOCKER, "arm64");
}

#[test]
fn base_layouts_share_configs_and_layers() {
    for platform in ["linux/amd64", "linux/arm64/v8"] {
        let oci = inspect_layout_platform(&base_layout("base"), platform);
        let docker = inspect_layout_platform(&base_layout("base-docker"), platform);
        assert_eq!(
            oci["manifest"]["config"]["digest"],
            docker["manifest"]["config"]["digest"]
        );
        assert_eq!(oci["config"], docker["config"]);
        for layer in 0..2 {
            assert_eq!(
                oci["layers"][layer]["digest"],
                docker["layers"][layer]["digest"]
            );
        }
    }
}

#[test]
fn unpack_keeps_modes_and_symlinks() {
    let unpacked = tempfile::tempdir().unwrap();
    inspect_layout_unpack(&base_layout("base"), "linux/arm64", unpacked.path());
    let root = unpacked.path();

    assert_eq!(
        fs::read_to_string(root.join("etc/architecture")).unwrap(),
        "arm64/v8\n"
    );
    let entrypoint = fs::metadata(root.join("lambda-entrypoint.sh")).unwrap();
    assert_eq!(entrypoint.permissions().mode() & 0o777, 0o755);
    let readme = fs::metadata(root.join("var/runtime/README")).unwrap();
    assert_eq!(readme.permissions().mode() & 0o777, 0o644);
    assert_eq!(
        fs::read_link(root.join("etc/localtime")).unwrap(),
        Path::new("/usr/share/zoneinfo/UTC")
    );
    assert!(root.join("var/task").is_dir());
}

#[test]
fn basic_auth_registry_needs_credentials() {
    let registry = Registry::start_with_basic_auth("tester", "correct horse");
    push_base(&registry, "base", "private/nodejs", BASE_TAG);

    let image = inspect_registry(&registry, "private/nodejs", BASE_TAG);
    assert_eq!(image["config"]["architecture"], "amd64");

    let url = registry.url();
    let anonymous = try_inspect(["registry", url.as_str(), "private/nodejs", BASE_TAG]);
    let error = anonymous.expect_err("anonymous read of a registry with auth must fail");
    assert!(error.contains("HTTP 401"), "unexpected error: {error}");

    let wrong = try_inspect([
        "registry",
        url.as_str(),
        "private/nodejs",
        BASE_TAG,
        "--user",
        "tester",
        "--password",
        "wrong",
    ]);
    assert!(wrong.is_err(), "a wrong password must fail");
}

#[test]
fn inspect_rejects_corrupted_layer() {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&base_layout("base"), copy.path());
    let image = inspect_layout(copy.path());
    let layer_digest = image["layers"][1]["digest"].as_str().unwrap();
    let blob = copy
        .path()
        .join("blobs/sha256")
        .join(layer_digest.trim_start_matches("sha256:"));

    let mut bytes = fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&blob, bytes).unwrap();

    let error = try_inspect(["layout", copy.path().to_str().unwrap()])
        .expect_err("a corrupted layer must fail");
    assert!(
        error.contains(layer_digest),
        "error does not name the blob: {error}"
    );
}

#[test]
fn inspect_rejects_unknown_platform() {
    let layout = base_layout("base");
    let result = try_inspect([
        "layout",
        layout.to_str().unwrap(),
        "--platform",
        "linux/s390x",
    ]);
    let error = result.expect_err("a platform the index lacks must fail");
    assert!(error.contains("linux/s390x"), "unexpected error: {error}");
}

#[test]
fn make_base_output_matches_testdata() {
    let output_dir = tempfile::tempdir().unwrap();
    let status = Command::new("python3")
        .arg(project_path("testdata/make-base.py"))
        .arg("--output-dir")
        .arg(output_dir.path())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("cannot run python3");
    assert!(status.success());

    for layout in ["base", "base-docker"] {
        let generated = output_dir.path().join(layout);
        let committed = base_layout(layout);
        let mut blobs: Vec<_> = fs::read_dir(generated.join("blobs/sha256"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        blobs.sort();
        let mut committed_blobs: Vec<_> = fs::read_dir(committed.join("blobs/sha256"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        committed_blobs.sort();
        assert_eq!(
            blobs, committed_blobs,
            "{layout}: blob set differs; rerun testdata/make-base.py"
        );

        let blob_paths = blobs
            .iter()
            .map(|name| Path::new("blobs/sha256").join(name));
        for file in blob_paths.chain(["oci-layout".into(), "index.json".into()]) {
            assert_eq!(
                fs::read(generated.join(&file)).unwrap(),
                fs::read(committed.join(&file)).unwrap(),
                "{layout}/{} differs; rerun testdata/make-base.py",
                file.display()
            );
        }
    }
}

#[test]
fn registry_stops_on_drop() {
    let registry = Registry::start();
    let address = ("127.0.0.1", registry.port);
    assert!(std::net::TcpStream::connect(address).is_ok());
    drop(registry);
    assert!(std::net::TcpStream::connect(address).is_err());
}

#[test]
fn example_app_answers_function_url() {
    let app = example_app();
    assert_eq!(example_app(), app, "the app is installed once per run");
    assert!(app.join("node_modules/express/package.json").is_file());
    assert!(app
        .join("node_modules/serverless-http/package.json")
        .is_file());

    let response = invoke_function_url(&app, "lambda.handler");
    assert_eq!(response["statusCode"], 200);
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["message"], "Hello from Lambda!");

    let health = invoke_function_url_path(&app, "lambda.handler", "/health");
    assert_eq!(health["statusCode"], 200);
    let body: Value = serde_json::from_str(health["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["status"], "ok");
}

#[test]
fn invoke_reports_missing_handler() {
    let app = example_app();
    let error = try_invoke_function_url(&app, "lambda.missing", "/")
        .expect_err("an unknown export must fail");
    assert!(error.contains("missing"), "unexpected error: {error}");
}

#[test]
fn copy_dir_keeps_symlinks() {
    let source = tempfile::tempdir().unwrap();
    fs::create_dir(source.path().join("bin")).unwrap();
    fs::write(source.path().join("bin/tool"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(
        source.path().join("bin/tool"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("bin/tool", source.path().join("tool")).unwrap();

    let destination = tempfile::tempdir().unwrap();
    copy_dir(source.path(), &destination.path().join("copy"));
    let copy = destination.path().join("copy");

    assert_eq!(
        fs::read_link(copy.join("tool")).unwrap(),
        Path::new("bin/tool")
    );
    let mode = fs::metadata(copy.join("bin/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
}
