//! Tests of the Lambda image check: one fixture per failure class from
//! `testdata/check/make-fixtures.py`, each asserting the exact finding; a clean image built by
//! the product binary; freshly built images; and images in a real registry (Debian's
//! `docker-registry`) pushed with `tests/tools/push_layout.py`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    base_layout, copy_dir, example_app, project_path, try_push_layout, Registry, BASE_TAG,
};
use lambda_image::base::BaseLocation;
use lambda_image::build::{build, BuildRequest};
use lambda_image::check::{
    check_built, check_layout, check_reference, Architecture, BuiltImageBlobs, CheckOptions,
    Finding, Severity,
};
use lambda_image::deps::NodeModulesMode;
use lambda_image::progress::NoProgress;
use lambda_image::registry::{ClientOptions, RegistryClient};
use lambda_image::{Platform, Reference};
use serde_json::Value;

fn fixtures() -> PathBuf {
    project_path("testdata/check/images")
}

async fn check(tag: &str) -> Vec<Finding> {
    check_with(tag, &CheckOptions::default()).await
}

async fn check_with(tag: &str, options: &CheckOptions) -> Vec<Finding> {
    check_layout(&fixtures(), Some(tag), options)
        .await
        .unwrap_or_else(|error| panic!("checking fixture {tag} failed: {error}"))
}

fn error(code: &'static str, message: String) -> Finding {
    Finding {
        severity: Severity::Error,
        code,
        message,
    }
}

/// Reads a JSON blob of the fixture layout by digest.
fn blob_json(digest: &str) -> Value {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let path = fixtures().join("blobs/sha256").join(hex);
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

/// Returns the digest of the manifest or index that `tag` names in the fixture layout.
fn tagged_digest(tag: &str) -> String {
    let index: Value =
        serde_json::from_slice(&fs::read(fixtures().join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no fixture tagged {tag}; rerun make-fixtures.py"));
    entry["digest"].as_str().unwrap().to_string()
}

/// Returns the digest of a fixture manifest's layer, numbered from 0.
fn layer_digest(tag: &str, layer: usize) -> String {
    blob_json(&tagged_digest(tag))["layers"][layer]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Returns the diff_id that a fixture's config lists for a layer, numbered from 0.
fn diff_id(tag: &str, layer: usize) -> String {
    let manifest = blob_json(&tagged_digest(tag));
    let config = blob_json(manifest["config"]["digest"].as_str().unwrap());
    config["rootfs"]["diff_ids"][layer]
        .as_str()
        .unwrap()
        .to_string()
}

// --- Images Lambda accepts ---------------------------------------------------------------------

#[tokio::test]
async fn clean_images_have_no_findings() {
    for tag in ["clean", "clean-docker", "arm64"] {
        assert_eq!(check(tag).await, [], "{tag}");
    }
    let arm64 = CheckOptions {
        expect_arch: Some(Architecture::Arm64),
        platform: "linux/arm64".parse().unwrap(),
    };
    assert_eq!(check_with("arm64", &arm64).await, []);
}

fn lambda_image(args: &[&str]) -> std::process::Output {
    let docker_config = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_lambda-image"))
        .args(args)
        .env("DOCKER_CONFIG", docker_config.path())
        .env("XDG_CACHE_HOME", docker_config.path())
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("cannot run lambda-image")
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

#[tokio::test]
async fn cli_built_example_has_no_findings() {
    let app = example_app();
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("image");
    let base = format!("oci:{}:{BASE_TAG}", base_layout("base").display());
    let output = lambda_image(&[
        "build",
        path_arg(&app),
        "--base",
        &base,
        "--output",
        path_arg(&layout),
        "--node-modules",
        "local",
    ]);
    assert!(
        output.status.success(),
        "lambda-image build failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let findings = check_layout(&layout, None, &CheckOptions::default())
        .await
        .unwrap();
    assert_eq!(findings, []);
    let arm64 = CheckOptions {
        expect_arch: Some(Architecture::Arm64),
        ..CheckOptions::default()
    };
    let findings = check_layout(&layout, Some("latest"), &arm64).await.unwrap();
    let codes: Vec<&str> = findings.iter().map(|finding| finding.code).collect();
    assert_eq!(codes, ["architecture-mismatch"]);
}

fn client() -> RegistryClient {
    RegistryClient::new(&ClientOptions::default()).unwrap()
}

async fn build_example(platform: &str, client: &RegistryClient) -> lambda_image::build::Built {
    let request = BuildRequest {
        app_dir: example_app(),
        base: Some(BaseLocation::Layout {
            path: base_layout("base"),
            tag: Some(BASE_TAG.to_string()),
        }),
        handler: None,
        platform: platform.parse().unwrap(),
        compression_level: 1,
        epoch: Some(1),
        use_cache: false,
        // The example app's node_modules is installed already, and a test needs no network.
        node_modules: NodeModulesMode::Local,
        ..BuildRequest::new(example_app())
    };
    build(&request, client, &NoProgress).await.unwrap()
}

#[tokio::test]
async fn built_image_has_no_findings() {
    let client = client();
    let built = build_example("linux/amd64", &client).await;
    let blobs = BuiltImageBlobs::new(&built.image, &built.base, &client);
    let options = CheckOptions::default();
    assert_eq!(
        check_built(&built.image, &blobs, &options).await.unwrap(),
        []
    );

    let app_only = BuiltImageBlobs::new(&built.image, &built.base, &client).skip_base_layers();
    assert_eq!(
        check_built(&built.image, &app_only, &options)
            .await
            .unwrap(),
        []
    );
}

#[tokio::test]
async fn built_image_for_wrong_architecture_is_reported() {
    let client = client();
    let built = build_example("linux/arm64", &client).await;
    let blobs = BuiltImageBlobs::new(&built.image, &built.base, &client);
    let options = CheckOptions {
        expect_arch: Some(Architecture::Amd64),
        platform: Platform::linux_amd64(),
    };
    let findings = check_built(&built.image, &blobs, &options).await.unwrap();
    assert_eq!(
        findings,
        [error(
            "architecture-mismatch",
            "the config's architecture is arm64, but amd64 is expected; build the image for \
             linux/amd64, or give the function the arm64 architecture"
                .to_string()
        )]
    );
}

// --- Indexes -----------------------------------------------------------------------------------

fn buildx_finding(platform_manifest: Option<&str>) -> Finding {
    let by_digest = platform_manifest
        .map(|digest| {
            format!(
                ", or deploy the linux/amd64 manifest by digest (`@{digest}`), on which the \
                 other checks ran"
            )
        })
        .unwrap_or_default();
    let platform = if platform_manifest.is_some() {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    error(
        "index-not-supported",
        format!(
            "the image is an OCI image index (`application/vnd.oci.image.index.v1+json`) with \
             manifests for linux/amd64 and 1 buildx attestation manifest (platform \
             unknown/unknown); Lambda rejects indexes and manifest lists (\"image manifest, \
             config or layer media type ... is not supported\"); push a single-platform \
             manifest, for example with `docker buildx build --provenance=false --platform \
             {platform}`{by_digest}"
        ),
    )
}

#[tokio::test]
async fn buildx_index_is_reported() {
    let amd64 = tagged_digest("clean");
    assert_eq!(check("buildx").await, [buildx_finding(Some(&amd64))]);
}

#[tokio::test]
async fn index_without_the_platform_is_reported() {
    let options = CheckOptions {
        expect_arch: None,
        platform: "linux/arm64".parse().unwrap(),
    };
    assert_eq!(
        check_with("buildx", &options).await,
        [
            buildx_finding(None),
            error(
                "platform-not-found",
                "the index has no manifest for linux/arm64; it offers linux/amd64; check one of \
                 those with --platform, or build the image for linux/arm64"
                    .to_string()
            ),
        ]
    );
}

#[tokio::test]
async fn index_findings_include_the_platform_manifest() {
    let findings = check("index-with-defect").await;
    let codes: Vec<&str> = findings.iter().map(|finding| finding.code).collect();
    assert_eq!(codes, ["index-not-supported", "entrypoint-not-absolute"]);
    let manifest = tagged_digest("relative-entrypoint");
    assert!(
        findings[0].message.contains(&format!("(`@{manifest}`)")),
        "{}",
        findings[0].message
    );
}

// --- Media types -------------------------------------------------------------------------------

const GZIP_FIX: &str = "rebuild it with gzip, for example `docker buildx build --output \
                        type=registry,compression=gzip,force-compression=true`";

#[tokio::test]
async fn zstd_layer_is_reported() {
    let layer = layer_digest("zstd-layer", 1);
    assert_eq!(
        check("zstd-layer").await,
        [error(
            "layer-media-type-unsupported",
            format!(
                "layer 2 ({layer}) is zstd-compressed \
                 (`application/vnd.oci.image.layer.v1.tar+zstd`), but Lambda accepts only gzip \
                 tar layers; {GZIP_FIX}"
            )
        )]
    );
}

#[tokio::test]
async fn uncompressed_layer_is_reported() {
    let layer = layer_digest("uncompressed-layer", 1);
    assert_eq!(
        check("uncompressed-layer").await,
        [error(
            "layer-media-type-unsupported",
            format!(
                "layer 2 ({layer}) is an uncompressed tar \
                 (`application/vnd.oci.image.layer.v1.tar`), but Lambda accepts only gzip tar \
                 layers; {GZIP_FIX}"
            )
        )]
    );
}

#[tokio::test]
async fn mixed_media_type_families_are_reported() {
    assert_eq!(
        check("mixed-families").await,
        [error(
            "media-type-family-mixed",
            "the media types mix the OCI and Docker families: the manifest is Docker \
             (`application/vnd.docker.distribution.manifest.v2+json`), but layer 2 has OCI \
             media types; Lambda rejects a manifest whose parts do not all use one family; push \
             the image with one family throughout (`docker buildx build --output \
             type=registry,oci-mediatypes=true` writes only OCI media types)"
                .to_string()
        )]
    );
}

#[tokio::test]
async fn missing_manifest_media_type_is_reported() {
    assert_eq!(
        check("missing-media-type").await,
        [error(
            "manifest-media-type-missing",
            "the manifest has no top-level mediaType; Lambda rejects it (\"image manifest media \
             type ... is not supported\"); push it again with mediaType set to \
             `application/vnd.oci.image.manifest.v1+json`"
                .to_string()
        )]
    );
}

// --- Layer contents ----------------------------------------------------------------------------

#[tokio::test]
async fn missing_parent_directories_are_reported() {
    let layer = layer_digest("missing-parents", 1);
    assert_eq!(
        check("missing-parents").await,
        [error(
            "layer-missing-parent-directory",
            format!(
                "layer 2 ({layer}) has `var/task/lambda.js` without an entry for its parent \
                 directory `var/task` before it, and 1 more entry lacks one; Lambda rejects such \
                 a layer (MissingParentDirectory); rebuild the layer so that every directory has \
                 its own entry ahead of the entries inside it"
            )
        )]
    );
}

#[tokio::test]
async fn unreadable_task_file_is_reported() {
    assert_eq!(
        check("unreadable-file").await,
        [error(
            "task-file-not-readable",
            "`/var/task/config.json` (mode 0600) is not readable by others; Lambda runs the \
             function as a non-root user, which cannot read it; make it world-readable (`chmod \
             o+r`, mode 0644) and rebuild the image"
                .to_string()
        )]
    );
}

#[tokio::test]
async fn unsearchable_task_directory_is_reported() {
    assert_eq!(
        check("unsearchable-directory").await,
        [error(
            "task-directory-not-searchable",
            "the directory `/var/task/lib` (mode 0750) is not searchable by others; Lambda runs \
             the function as a non-root user, which cannot open anything inside it; make it \
             world-searchable (`chmod o+x`, mode 0755) and rebuild the image"
                .to_string()
        )]
    );
}

#[tokio::test]
async fn wrong_diff_id_is_reported() {
    // The fixture's config lists the first layer's diff_id for the second layer too.
    let listed = diff_id("diff-id-mismatch", 1);
    let actual = diff_id("clean", 1);
    let layer = layer_digest("diff-id-mismatch", 1);
    assert_eq!(
        check("diff-id-mismatch").await,
        [error(
            "diff-id-mismatch",
            format!(
                "layer 2 ({layer}) uncompresses to a tar with digest {actual}, but the config's \
                 rootfs.diff_ids lists {listed} for it; Lambda cannot unpack such an image; \
                 rebuild the image so that its config matches its layers"
            )
        )]
    );
}

// --- Entrypoint, command and handler -----------------------------------------------------------

#[tokio::test]
async fn missing_entrypoint_is_reported() {
    assert_eq!(
        check("no-entrypoint").await,
        [error(
            "entrypoint-missing",
            "the config has no Entrypoint, so Lambda has no program to start; build FROM a \
             Lambda base image such as public.ecr.aws/lambda/nodejs, whose Entrypoint is \
             `/lambda-entrypoint.sh`, or set ENTRYPOINT [\"/lambda-entrypoint.sh\"]"
                .to_string()
        )]
    );
}

#[tokio::test]
async fn relative_entrypoint_is_reported() {
    assert_eq!(
        check("relative-entrypoint").await,
        [error(
            "entrypoint-not-absolute",
            "the Entrypoint `lambda-entrypoint.sh` is not an absolute path, which Lambda \
             requires; set ENTRYPOINT [\"/lambda-entrypoint.sh\"] or another absolute path"
                .to_string()
        )]
    );
}

#[tokio::test]
async fn cmd_with_two_elements_is_reported() {
    assert_eq!(
        check("two-element-cmd").await,
        [error(
            "cmd-not-single",
            "the Cmd [\"lambda.handler\",\"--verbose\"] has 2 elements, but the Lambda base \
             images' /lambda-entrypoint.sh exits unless it gets exactly one argument, the \
             handler; set CMD [\"lambda.handler\"]"
                .to_string()
        )]
    );
}

#[tokio::test]
async fn wrong_architecture_is_reported() {
    let options = CheckOptions {
        expect_arch: Some(Architecture::Amd64),
        ..CheckOptions::default()
    };
    assert_eq!(
        check_with("arm64", &options).await,
        [error(
            "architecture-mismatch",
            "the config's architecture is arm64, but amd64 is expected; build the image for \
             linux/amd64, or give the function the arm64 architecture"
                .to_string()
        )]
    );
}

fn module_not_found(handler: &str, module: &str) -> Finding {
    error(
        "handler-module-not-found",
        format!(
            "the handler `{handler}` in Cmd names the module `{module}`, but none of `{module}`, \
             `{module}.js`, `{module}.mjs`, `{module}.cjs` exists under /var/task; Lambda would \
             fail with Runtime.ImportModuleError; add the module to the image or set Cmd to a \
             MODULE.FUNCTION whose module exists"
        ),
    )
}

#[tokio::test]
async fn missing_handler_module_is_reported() {
    assert_eq!(
        check("handler-module-missing").await,
        [module_not_found("missing.handler", "missing")]
    );
}

#[tokio::test]
async fn handler_deleted_by_whiteout_is_reported() {
    assert_eq!(
        check("deleted-handler").await,
        [module_not_found("lambda.handler", "lambda")]
    );
}

#[tokio::test]
async fn unexported_handler_is_reported() {
    assert_eq!(
        check("handler-not-exported").await,
        [error(
            "handler-not-exported",
            "the handler `lambda.main` in Cmd names the function `main`, but \
             `/var/task/lambda.js` does not export it; Lambda would fail with \
             Runtime.HandlerNotFound; export it (`exports.main = ...` or `export const main = \
             ...`) or set Cmd to a function the module exports"
                .to_string()
        )]
    );
}

#[tokio::test]
async fn history_mismatch_is_a_warning() {
    assert_eq!(
        check("history-mismatch").await,
        [Finding {
            severity: Severity::Warning,
            code: "history-mismatch",
            message: "the config's history has 3 entries that add a layer (without \
                      empty_layer), but the manifest has 2 layers; `docker history` and image \
                      scanners pair them and misreport the image; rebuild it, or give the \
                      history one entry per layer"
                .to_string(),
        }]
    );
}

// --- Input the check cannot read -----------------------------------------------------------------

#[tokio::test]
async fn missing_layout_is_an_error() {
    let error = check_layout(
        Path::new("/nonexistent/layout"),
        None,
        &CheckOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "OCI image layout `/nonexistent/layout`: is not an OCI image layout: there is no \
         oci-layout file; pass the folder that holds index.json"
    );
}

#[tokio::test]
async fn unknown_tag_is_an_error() {
    let error = check_layout(&fixtures(), Some("no-such-tag"), &CheckOptions::default())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("has no tag `no-such-tag`"), "{message}");
}

/// Copies the fixture layout, so a test can damage it.
fn fixture_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    copy_dir(&fixtures(), &layout);
    (dir, layout)
}

#[tokio::test]
async fn corrupt_layer_is_an_error() {
    let (_dir, layout) = fixture_copy();
    let layer = layer_digest("clean", 1);
    let path = layout.join("blobs/sha256").join(&layer["sha256:".len()..]);
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    let error = check_layout(&layout, Some("clean"), &CheckOptions::default())
        .await
        .unwrap_err();
    let message = error.to_string();
    let prefix = format!(
        "blob {layer} from {}: content has digest sha256:",
        path.display()
    );
    assert!(message.starts_with(&prefix), "{message}");
}

#[tokio::test]
async fn missing_layer_blob_is_an_error() {
    let (_dir, layout) = fixture_copy();
    let layer = layer_digest("clean", 1);
    let path = layout.join("blobs/sha256").join(&layer["sha256:".len()..]);
    fs::remove_file(&path).unwrap();

    let error = check_layout(&layout, Some("clean"), &CheckOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "cannot read the blob `{}`: No such file or directory (os error 2)",
            path.display()
        )
    );
}

#[tokio::test]
async fn truncated_gzip_layer_is_reported() {
    // A layer cut short and relabelled with a matching digest: intact as a blob, invalid as
    // a layer. The manifest is rewritten to point at it.
    let (_dir, layout) = fixture_copy();
    let layer = layer_digest("clean", 1);
    let blobs = layout.join("blobs/sha256");
    let bytes = fs::read(blobs.join(&layer["sha256:".len()..])).unwrap();
    let truncated = &bytes[..bytes.len() / 2];
    let truncated_digest = format!("sha256:{}", sha256_hex(truncated));
    fs::write(blobs.join(&truncated_digest["sha256:".len()..]), truncated).unwrap();

    let mut manifest = blob_json(&tagged_digest("clean"));
    manifest["layers"][1]["digest"] = Value::from(truncated_digest.clone());
    manifest["layers"][1]["size"] = Value::from(truncated.len());
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_hex = sha256_hex(&manifest_bytes);
    fs::write(blobs.join(&manifest_hex), &manifest_bytes).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_hex}"),
            "size": manifest_bytes.len(),
        }],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();

    let findings = check_layout(&layout, None, &CheckOptions::default())
        .await
        .unwrap();
    let codes: Vec<&str> = findings.iter().map(|finding| finding.code).collect();
    // The app layer's files are unknown, so the handler is not judged.
    assert_eq!(codes, ["layer-invalid"], "{findings:?}");
    // The reason after the colon is the gzip decoder's own words.
    let message = &findings[0].message;
    let prefix = format!("layer 2 ({truncated_digest}) cannot be unpacked: ");
    assert!(message.starts_with(&prefix), "{message}");
    assert!(
        message.ends_with("; Lambda would fail to extract it; rebuild the layer"),
        "{message}"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    lambda_image::Digest::of(bytes).hex().to_string()
}

// --- Registry ----------------------------------------------------------------------------------

/// Pushes the fixture tagged `tag` to `registry` as `check:tag` and returns its reference.
fn push_fixture(registry: &Registry, tag: &str) -> Reference {
    let fixtures = fixtures();
    let url = registry.url();
    try_push_layout([path_arg(&fixtures), &url, "check", tag])
        .unwrap_or_else(|stderr| panic!("push_layout.py {tag} failed:\n{stderr}"));
    format!("{}/check:{tag}", registry.host()).parse().unwrap()
}

#[tokio::test]
async fn registry_buildx_index_is_reported() {
    let registry = Registry::start();
    let reference = push_fixture(&registry, "buildx");
    let findings = check_reference(&reference, &client(), &CheckOptions::default())
        .await
        .unwrap();
    assert_eq!(findings, [buildx_finding(Some(&tagged_digest("clean")))]);
}

#[tokio::test]
async fn registry_images_are_checked_like_layouts() {
    let registry = Registry::start();
    let client = client();
    let options = CheckOptions::default();
    for tag in [
        "clean",
        "clean-docker",
        "unreadable-file",
        "deleted-handler",
    ] {
        let reference = push_fixture(&registry, tag);
        let from_registry = check_reference(&reference, &client, &options)
            .await
            .unwrap_or_else(|error| panic!("{tag}: {error}"));
        assert_eq!(from_registry, check(tag).await, "{tag}");
    }
}

#[tokio::test]
async fn registry_missing_tag_is_an_error() {
    let registry = Registry::start();
    let reference: Reference = format!("{}/check:absent", registry.host()).parse().unwrap();
    let error = check_reference(&reference, &client(), &CheckOptions::default())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("check:absent"), "{message}");
}
