//! Reproducibility: the same input gives the same image digest on every run and machine.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use common::{base_layout, copy_dir, inspect_layout, project_path, BASE_TAG};

/// The manifest digest of `testdata/golden-app` on `testdata/base`, for linux/amd64, without
/// SOURCE_DATE_EPOCH. A change that alters it changes every user's image digests: update it
/// only on purpose, and say why in the commit.
const GOLDEN_DIGEST: &str =
    "sha256:f452985f5601c55fe5fe4e68d606b9e44c9e82505bddbd522fe494764a758791";

fn build(app: &Path, output: &Path, epoch: Option<&str>) -> Output {
    build_with_cache(app, output, epoch, &output.with_extension("cache"))
}

fn build_with_cache(app: &Path, output: &Path, epoch: Option<&str>, cache: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lambda-image"));
    let base = format!("oci:{}:{BASE_TAG}", base_layout("base").display());
    command
        .args([
            "build",
            app.to_str().unwrap(),
            "--base",
            &base,
            "--output",
            output.to_str().unwrap(),
        ])
        // The fixture ships its node_modules and has no lockfile to install from.
        .args(["--node-modules", "local"])
        .env_remove("SOURCE_DATE_EPOCH")
        .env("XDG_CACHE_HOME", cache);
    if let Some(epoch) = epoch {
        command.env("SOURCE_DATE_EPOCH", epoch);
    }
    command.output().expect("cannot run lambda-image")
}

/// Builds `app` and returns the manifest digest from the layout.
fn digest_of(app: &Path, epoch: Option<&str>) -> String {
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("image");
    let output = build(app, &layout, epoch);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    inspect_layout(&layout)["manifest_digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Sets every entry's mtime to `seconds` after the epoch and loosens or tightens modes.
fn disturb(dir: &Path, seconds: u64, mode_bits: u32) {
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.unwrap();
        if entry.file_type().is_symlink() {
            continue;
        }
        let file = fs::File::open(entry.path()).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
            .unwrap();
        let mode = fs::metadata(entry.path()).unwrap().permissions().mode();
        let executable = mode & 0o100;
        let new_mode = if entry.file_type().is_dir() {
            0o700 | mode_bits
        } else {
            0o600 | executable | mode_bits
        };
        fs::set_permissions(entry.path(), fs::Permissions::from_mode(new_mode)).unwrap();
    }
}

#[test]
fn golden_app_digest_is_pinned() {
    assert_eq!(
        digest_of(&project_path("testdata/golden-app"), None),
        GOLDEN_DIGEST
    );
}

#[test]
fn copies_with_other_times_and_modes_match() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let second = dir.path().join("somewhere/else/second");
    copy_dir(&project_path("testdata/golden-app"), &first);
    copy_dir(&project_path("testdata/golden-app"), &second);
    disturb(&first, 1_000_000, 0);
    disturb(&second, 1_700_000_000, 0o066);

    let first_digest = digest_of(&first, None);
    assert_eq!(first_digest, digest_of(&second, None));
    assert_eq!(first_digest, GOLDEN_DIGEST);
}

#[test]
fn source_date_epoch_sets_every_timestamp() {
    let app = project_path("testdata/golden-app");
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("image");
    let output = build(&app, &layout, Some("1700000000"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let image = inspect_layout(&layout);
    assert_ne!(image["manifest_digest"], GOLDEN_DIGEST);
    assert_eq!(image["config"]["created"], "2023-11-14T22:13:20Z");
    for layer in &image["layers"].as_array().unwrap()[2..] {
        for entry in layer["entries"].as_array().unwrap() {
            assert_eq!(entry["mtime"], 1_700_000_000, "{}", entry["path"]);
        }
    }
}

#[test]
fn invalid_source_date_epoch_is_rejected() {
    let out = tempfile::tempdir().unwrap();
    let output = build(
        &project_path("testdata/golden-app"),
        &out.path().join("image"),
        Some("yesterday"),
    );
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("SOURCE_DATE_EPOCH=`yesterday` is invalid"),
        "{message}"
    );
    assert!(
        !out.path().join("image").exists(),
        "a failed build left output behind"
    );
}

#[test]
fn golden_app_layers_hold_links_and_long_names() {
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("image");
    assert!(build(&project_path("testdata/golden-app"), &layout, None)
        .status
        .success());
    let image = inspect_layout(&layout);
    let layers = image["layers"].as_array().unwrap();
    let find = |layer: &serde_json::Value, path: &str| {
        layer["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["path"].as_str().unwrap().trim_end_matches('/') == path)
            .cloned()
            .unwrap_or_else(|| panic!("{path} is not in the layer"))
    };
    let bin = find(&layers[2], "var/task/node_modules/.bin/left-pad");
    assert_eq!(bin["type"], "symlink");
    assert_eq!(bin["linkname"], "../left-pad/index.js");
    assert_eq!(
        find(&layers[2], "var/task/node_modules/left-pad/index.js")["mode"],
        0o755
    );

    let app = &layers[3];
    assert_eq!(find(app, "var/task/current")["linkname"], "lib");
    assert_eq!(find(app, "var/task/bin/run.sh")["mode"], 0o755);
    assert_eq!(find(app, "var/task/données/é.js")["type"], "file");
    let long = "var/task/deeply/nested/folder/structure/that/goes/on/for/quite/a/while/so/the/name/is/long/file-with-a-long-name.js";
    assert!(
        !find(app, long)["pax"].as_object().unwrap().is_empty(),
        "long names use PAX"
    );
    let paths: Vec<&str> = app["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        !paths.iter().any(|p| p.ends_with("debug.log")),
        ".dockerignore excludes *.log"
    );
}

/// Returns the inode of each layer blob of the layout at `layout`, in manifest order.
#[test]
fn unchanged_layers_come_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    copy_dir(&project_path("testdata/golden-app"), &app);
    let cache = dir.path().join("cache");
    // Builds into a new layout and returns it with the build's stderr.
    let build_into = |name: &str| {
        let layout = dir.path().join(name);
        let output = build_with_cache(&app, &layout, None, &cache);
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{log}");
        (layout, log)
    };

    let (first, first_log) = build_into("first");
    let (second, second_log) = build_into("second");
    assert!(
        first_log.contains("built dependencies layer"),
        "{first_log}"
    );
    assert!(first_log.contains("built app layer"), "{first_log}");
    assert!(
        second_log.contains("reused cached dependencies layer"),
        "{second_log}"
    );
    assert!(
        second_log.contains("reused cached app layer"),
        "{second_log}"
    );
    assert_eq!(inspect_layout(&first)["manifest_digest"], GOLDEN_DIGEST);
    assert_eq!(inspect_layout(&second)["manifest_digest"], GOLDEN_DIGEST);

    fs::write(
        app.join("lambda.js"),
        "exports.handler = async () => 'changed';\n",
    )
    .unwrap();
    let (third, third_log) = build_into("third");
    assert!(
        third_log.contains("reused cached dependencies layer"),
        "the dependency layer is reused: {third_log}"
    );
    assert!(
        third_log.contains("built app layer"),
        "the app layer is rebuilt: {third_log}"
    );
    assert_ne!(inspect_layout(&third)["manifest_digest"], GOLDEN_DIGEST);
}

#[test]
fn cache_prune_empties_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let layout = dir.path().join("image");
    assert!(
        build_with_cache(&project_path("testdata/golden-app"), &layout, None, &cache)
            .status
            .success()
    );
    let output = Command::new(env!("CARGO_BIN_EXE_lambda-image"))
        .args(["cache", "prune"])
        .env("XDG_CACHE_HOME", &cache)
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("removed 2 layer(s)"), "{text}");
    assert!(text.contains("the layer cache holds 0 bytes"), "{text}");
    let left: Vec<_> = fs::read_dir(cache.join("lambda-image"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        ["layers"],
        "emptying the cache leaves only the empty layer folders"
    );
}
