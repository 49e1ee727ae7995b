//! Several product runs at once against one registry and one cache: pushes of different apps
//! on a shared base, pushes of one app under several tags, and builds that share a layer cache.
//! Afterwards every image must be valid, the shared blobs present, and the cache intact.

mod common;

#[path = "support/hostile_cli.rs"]
mod hostile_cli;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use common::{inspect_layout, inspect_registry, push_base, Registry, BASE_TAG};
use hostile_cli::{write_small_app, Run, Sandbox};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// How long one run may take while 16 others compete for two cores.
const RUN_TIME_LIMIT: Duration = Duration::from_secs(50);

const BASE_REPOSITORY: &str = "lambda/nodejs";

/// Writes a small app into DIR whose handler returns MESSAGE, with one dependency in
/// `node_modules` that is the same in every app, so their dependency layers are one blob.
fn write_app(dir: &Path, message: &str) {
    write_small_app(dir, message);
    let package = serde_json::json!({
        "name": "concurrent-app",
        "version": "1.0.0",
        "private": true,
        "main": "index.js",
        "dependencies": { "tiny-dependency": "1.0.0" },
    });
    fs::write(dir.join("package.json"), format!("{package:#}\n")).unwrap();
    let dependency = dir.join("node_modules/tiny-dependency");
    fs::create_dir_all(&dependency).unwrap();
    fs::write(
        dependency.join("package.json"),
        r#"{"name":"tiny-dependency","version":"1.0.0","main":"index.js"}"#,
    )
    .unwrap();
    fs::write(
        dependency.join("index.js"),
        "module.exports = (x) => x + 1;\n",
    )
    .unwrap();
}

/// Runs every argument list in ARGS_LIST at once, each in a sandbox that uses CACHE, and returns
/// the runs in the same order.
fn run_all_at_once(cache: &Path, args_list: Vec<Vec<OsString>>) -> Vec<Run> {
    thread::scope(|scope| {
        let runs: Vec<_> = args_list
            .into_iter()
            .map(|args| {
                scope.spawn(move || {
                    let sandbox = Sandbox::with_cache(cache);
                    sandbox.run(&args, RUN_TIME_LIMIT)
                })
            })
            .collect();
        runs.into_iter()
            .map(|run| run.join().expect("a run thread panicked"))
            .collect()
    })
}

fn push_args(app: &Path, image: &str, base: &str) -> Vec<OsString> {
    ["push".into(), app.into(), image.into()]
        .into_iter()
        .chain(["--base", base, "--node-modules", "local"].map(OsString::from))
        .collect()
}

fn build_args(app: &Path, output: &Path, base: &str) -> Vec<OsString> {
    ["build".into(), app.into(), "--output".into(), output.into()]
        .into_iter()
        .chain(["--base", base, "--node-modules", "local"].map(OsString::from))
        .collect()
}

/// Returns the digest from a push's one stdout line, `IMAGE@sha256:…`.
fn printed_digest(run: &Run, image: &str) -> String {
    let stdout = run.assert_success().trim();
    let digest = stdout
        .strip_prefix(&format!("{image}@"))
        .unwrap_or_else(|| panic!("push to {image} printed {stdout:?}"));
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "push to {image} printed the digest {digest:?}"
    );
    digest.to_string()
}

/// Returns the layer digests of an image as inspect_image.py reports them.
fn layer_digests(image: &Value) -> Vec<String> {
    image["layers"]
        .as_array()
        .expect("inspect_image.py lists layers")
        .iter()
        .map(|layer| {
            layer["digest"]
                .as_str()
                .expect("a layer has a digest")
                .to_string()
        })
        .collect()
}

/// Checks that the layer cache under CACHE is whole: every blob's content matches the digest
/// in its name, every index entry points at a blob, and no temporary file is left.
fn assert_cache_intact(cache: &Path) {
    let layers = cache.join("lambda-image/layers");
    let blobs = layers.join("blobs");
    for entry in fs::read_dir(&blobs).expect("the cache has a blobs folder") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let content = fs::read(&path).unwrap();
        let digest = hex::encode(Sha256::digest(&content));
        assert_eq!(digest, name, "cached blob {} is corrupt", path.display());
    }
    for entry in fs::read_dir(layers.join("index")).expect("the cache has an index folder") {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        let index: Value = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("{}: invalid JSON: {error}", path.display()));
        let digest = index["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("{} names no digest: {text}", path.display()));
        let blob = blobs.join(digest.trim_start_matches("sha256:"));
        assert!(
            blob.is_file(),
            "{} names {digest}, which the cache does not hold",
            path.display()
        );
    }
    let temporary: Vec<PathBuf> = fs::read_dir(layers.join("tmp"))
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        temporary.is_empty(),
        "the cache keeps temporary files: {temporary:?}"
    );
}

#[test]
fn sixteen_pushes_of_different_apps() {
    const APPS: usize = 16;
    let registry = Registry::start();
    push_base(&registry, "base", BASE_REPOSITORY, BASE_TAG);
    let base = format!("{}/{BASE_REPOSITORY}:{BASE_TAG}", registry.host());
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");

    let images: Vec<(String, String)> = (0..APPS)
        .map(|n| {
            (
                format!("app-{n:02}"),
                format!("{}/app-{n:02}:latest", registry.host()),
            )
        })
        .collect();
    let args_list = images
        .iter()
        .enumerate()
        .map(|(n, (repository, image))| {
            let app = work.path().join(repository);
            write_app(&app, &format!("app number {n}"));
            push_args(&app, image, &base)
        })
        .collect();
    let runs = run_all_at_once(&cache, args_list);

    let base_image = inspect_registry(&registry, BASE_REPOSITORY, BASE_TAG);
    let base_layers = layer_digests(&base_image);
    let mut app_layers = std::collections::BTreeSet::new();
    let mut dependency_layers = std::collections::BTreeSet::new();
    for ((repository, image), run) in images.iter().zip(&runs) {
        let digest = printed_digest(run, image);
        let pushed = inspect_registry(&registry, repository, "latest");
        assert_eq!(pushed["manifest_digest"], digest.as_str(), "{image}");
        let layers = layer_digests(&pushed);
        assert_eq!(
            layers.len(),
            base_layers.len() + 2,
            "{image}: expected the base layers, a dependency layer and an app layer"
        );
        assert_eq!(layers[..base_layers.len()], base_layers[..], "{image}");
        dependency_layers.insert(layers[base_layers.len()].clone());
        app_layers.insert(layers[base_layers.len() + 1].clone());
    }
    assert_eq!(
        dependency_layers.len(),
        1,
        "the apps share one dependency layer, but the images have {dependency_layers:?}"
    );
    assert_eq!(app_layers.len(), APPS, "each app has its own app layer");
    assert_cache_intact(&cache);
}

#[test]
fn four_pushes_of_one_app_to_different_tags() {
    const TAGS: usize = 4;
    let registry = Registry::start();
    push_base(&registry, "base", BASE_REPOSITORY, BASE_TAG);
    let base = format!("{}/{BASE_REPOSITORY}:{BASE_TAG}", registry.host());
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let app = work.path().join("app");
    write_app(&app, "one app, four tags");

    let images: Vec<(String, String)> = (0..TAGS)
        .map(|n| {
            (
                format!("tag-{n}"),
                format!("{}/same-app:tag-{n}", registry.host()),
            )
        })
        .collect();
    let args_list = images
        .iter()
        .map(|(_, image)| push_args(&app, image, &base))
        .collect();
    let runs = run_all_at_once(&cache, args_list);

    let digests: Vec<String> = images
        .iter()
        .zip(&runs)
        .map(|((_, image), run)| printed_digest(run, image))
        .collect();
    assert!(
        digests.iter().all(|digest| *digest == digests[0]),
        "one app pushed four times gave different digests: {digests:?}"
    );
    for (tag, _) in &images {
        let pushed = inspect_registry(&registry, "same-app", tag);
        assert_eq!(pushed["manifest_digest"], digests[0].as_str(), "tag {tag}");
    }
    inspect_registry(&registry, "same-app", &digests[0]);
    assert_cache_intact(&cache);
}

/// Two builds of one app that share a cold cache at once, then a third from the warm cache and
/// one without the cache: all four must give one digest.
#[test]
fn builds_sharing_one_cache() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let app = work.path().join("app");
    write_app(&app, "shared cache");
    let base = format!("oci:{}:{BASE_TAG}", common::base_layout("base").display());
    let layout = |name: &str| work.path().join(name);

    let runs = run_all_at_once(
        &cache,
        vec![
            build_args(&app, &layout("first"), &base),
            build_args(&app, &layout("second"), &base),
        ],
    );
    for run in &runs {
        run.assert_success();
    }
    assert_cache_intact(&cache);

    let third =
        Sandbox::with_cache(&cache).run(&build_args(&app, &layout("third"), &base), RUN_TIME_LIMIT);
    third.assert_success();
    let mut uncached_args = build_args(&app, &layout("uncached"), &base);
    uncached_args.push("--no-cache".into());
    let uncached = Sandbox::new().run(&uncached_args, RUN_TIME_LIMIT);
    uncached.assert_success();

    let reference = inspect_layout(&layout("uncached"))["manifest_digest"].clone();
    for name in ["first", "second", "third"] {
        let built = inspect_layout(&layout(name));
        assert_eq!(
            built["manifest_digest"], reference,
            "the {name} build differs from the build without the cache"
        );
    }
    assert_cache_intact(&cache);
}
