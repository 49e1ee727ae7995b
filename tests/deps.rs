//! Tests of `lambda_image::deps::prepare`, the `node_modules` of the dependency layer, with real
//! npm installs of the apps in `testdata/deps` (packages come from npm's cache or the npm
//! registry). Each test works on its own copy of an app and its own cache folder. The
//! native-addon tests compile `epoll` with node-gyp, which needs make and a C++ compiler.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;

use lambda_image::deps::{
    prepare, DependencyRequest, DependencySource, DepsError, NodeModulesMode, PackageManager,
};
use tempfile::TempDir;

/// Set in the child process of `run_without_package_managers`.
const CHILD_VARIABLE: &str = "LAMBDA_IMAGE_DEPS_TEST_CHILD";

/// A token in the test app's `.npmrc`, which must not reach the installed tree or the cache.
const NPMRC_TOKEN: &str = "lambda-image-test-token-5f1c";

/// A copy of an app from `testdata/deps`, with an empty cache folder beside it.
struct Workspace {
    _dir: TempDir,
    app: PathBuf,
    cache: PathBuf,
}

impl Workspace {
    fn new(fixture: &str) -> Workspace {
        let dir = tempfile::Builder::new()
            .prefix("lambda-image-deps-test-")
            .tempdir()
            .expect("cannot create a temporary folder");
        let app = dir.path().join("app");
        copy_tree(&fixture_path(fixture), &app);
        let cache = dir.path().join("cache");
        Workspace {
            _dir: dir,
            app,
            cache,
        }
    }

    fn request(&self, mode: NodeModulesMode, target_arch: &'static str) -> DependencyRequest<'_> {
        DependencyRequest {
            app_dir: &self.app,
            mode,
            target_arch,
            node_major: 24,
            cache_dir: Some(self.cache.clone()),
            app_files: None,
        }
    }

    fn install_request(&self) -> DependencyRequest<'_> {
        self.request(NodeModulesMode::Install, host_arch())
    }

    /// Returns the names in the cache folder, staging folders included.
    fn cache_entries(&self) -> Vec<String> {
        match fs::read_dir(&self.cache) {
            Ok(entries) => entries
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/deps")
        .join(name)
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            fs::create_dir_all(&target).unwrap();
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// Returns the OCI name of this machine's architecture, so that installs are not cross-builds.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

fn other_arch() -> &'static str {
    match host_arch() {
        "arm64" => "amd64",
        _ => "arm64",
    }
}

/// Returns every entry below `root` with its kind, mode, and contents or link target.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut entries = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.unwrap();
        let metadata = entry.path().symlink_metadata().unwrap();
        let mode = metadata.permissions().mode();
        let description = if metadata.is_dir() {
            format!("dir {mode:o}")
        } else if metadata.is_symlink() {
            format!("link -> {}", fs::read_link(entry.path()).unwrap().display())
        } else {
            let bytes = fs::read(entry.path()).unwrap();
            format!("file {mode:o} {}", String::from_utf8_lossy(&bytes))
        };
        let relative = entry.path().strip_prefix(root).unwrap();
        entries.insert(relative.display().to_string(), description);
    }
    entries
}

/// Adds what a user's folder may contain and a clean install must ignore: a `node_modules` with a
/// devDependency and a stray package, and an `.npmrc` with a registry token.
fn add_user_files(app: &Path) {
    write(
        &app.join("node_modules/left-pad/package.json"),
        r#"{"name": "left-pad", "version": "1.3.0"}"#,
    );
    write(
        &app.join("node_modules/stray/package.json"),
        r#"{"name": "stray", "version": "0.0.1"}"#,
    );
    // The token is for a port where nothing listens, and the registry stays npm's default.
    write(
        &app.join(".npmrc"),
        &format!("//127.0.0.1:9/:_authToken={NPMRC_TOKEN}\nfund=false\n"),
    );
}

/// Returns the bytes of the regular files below `root`, counted without lambda-image's code.
fn regular_file_bytes(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| entry.metadata().unwrap().len())
        .sum()
}

fn contains_text(root: &Path, needle: &str) -> bool {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().is_file())
        .any(|entry| String::from_utf8_lossy(&fs::read(entry.path()).unwrap()).contains(needle))
}

fn expect_error(request: &DependencyRequest) -> DepsError {
    match prepare(request) {
        Ok(found) => panic!("expected an error, got {found:?}"),
        Err(error) => error,
    }
}

/// Runs the test NAME again in a child process whose PATH is an empty folder, so that no
/// package manager is found whatever this machine has installed.
fn run_without_package_managers(name: &str) {
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VARIABLE, "1")
        .env("PATH", empty.path())
        .output()
        .expect("cannot run the test binary again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "child test {name} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "child test {name} did not run:\n{stdout}"
    );
}

#[test]
fn install_ships_production_dependencies_only() {
    let workspace = Workspace::new("app");
    add_user_files(&workspace.app);
    let before = snapshot(&workspace.app);

    let dependencies = prepare(&workspace.install_request())
        .unwrap()
        .expect("the app has dependencies");

    let node_modules = dependencies.node_modules();
    assert!(node_modules.join("ms/package.json").is_file());
    assert!(
        !node_modules.join("left-pad").exists(),
        "devDependency installed"
    );
    assert!(
        !node_modules.join("stray").exists(),
        "the app's node_modules was used"
    );
    assert!(!dependencies.root.starts_with(&workspace.app));
    assert!(dependencies.root.starts_with(&workspace.cache));

    let summary = &dependencies.summary;
    assert_eq!(summary.source, DependencySource::Installed);
    assert_eq!(summary.package_manager, Some(PackageManager::Npm));
    assert_eq!(summary.package_count, 1);
    assert_eq!(summary.largest.len(), 1);
    assert_eq!(summary.largest[0].name, "ms");
    assert_eq!(summary.total_bytes, regular_file_bytes(&node_modules));

    assert_eq!(snapshot(&workspace.app), before, "the app folder changed");
}

#[test]
fn install_keeps_no_npmrc() {
    let workspace = Workspace::new("app");
    add_user_files(&workspace.app);

    let dependencies = prepare(&workspace.install_request()).unwrap().unwrap();

    let names: Vec<_> = fs::read_dir(&dependencies.root)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["node_modules"],
        "the cache entry holds more than node_modules"
    );
    assert!(
        !contains_text(&workspace.cache, NPMRC_TOKEN),
        "the .npmrc token reached the cache"
    );
}

#[test]
fn unchanged_lockfile_uses_cache() {
    let workspace = Workspace::new("app");
    let first = prepare(&workspace.install_request()).unwrap().unwrap();
    assert_eq!(first.summary.source, DependencySource::Installed);
    // An install would make a new tree, so a file added to the cached one shows reuse.
    let marker = first.node_modules().join("ms/reuse-marker");
    fs::write(&marker, "").unwrap();

    let second = prepare(&workspace.install_request()).unwrap().unwrap();

    assert_eq!(second.summary.source, DependencySource::Cached);
    assert_eq!(second.root, first.root);
    assert!(marker.is_file(), "the cached tree was replaced");
    assert_eq!(second.summary.package_count, first.summary.package_count);
    assert_eq!(workspace.cache_entries().len(), 1);
}

#[test]
fn changed_inputs_miss_cache() {
    let workspace = Workspace::new("app");
    let first = prepare(&workspace.install_request()).unwrap().unwrap();

    // ms is plain JavaScript, so a cross-architecture install succeeds on any machine.
    let other = workspace.request(NodeModulesMode::Install, other_arch());
    let cross = prepare(&other).unwrap().unwrap();
    assert_eq!(cross.summary.source, DependencySource::Installed);
    assert_ne!(cross.root, first.root);
    assert!(cross.node_modules().join("ms/package.json").is_file());

    let mut older_node = workspace.install_request();
    older_node.node_major = 22;
    let third = prepare(&older_node).unwrap().unwrap();
    assert_eq!(third.summary.source, DependencySource::Installed);
    assert_eq!(workspace.cache_entries().len(), 3);
}

#[test]
fn concurrent_installs_share_cache_entry() {
    let workspace = Arc::new(Workspace::new("app"));
    let barrier = Arc::new(Barrier::new(2));
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let workspace = workspace.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let dependencies = prepare(&workspace.install_request()).unwrap().unwrap();
                (
                    dependencies.root.clone(),
                    dependencies.summary.package_count,
                )
            })
        })
        .collect();
    let results: Vec<_> = runs.into_iter().map(|run| run.join().unwrap()).collect();

    assert_eq!(results[0].0, results[1].0);
    assert_eq!(results[0].1, 1);
    assert_eq!(results[1].1, 1);
    let entries = workspace.cache_entries();
    assert_eq!(entries.len(), 1, "leftover staging folders: {entries:?}");
    assert!(workspace
        .cache
        .join(&entries[0])
        .join("node_modules/ms")
        .is_dir());
}

#[test]
fn install_without_cache_uses_temporary_folder() {
    let workspace = Workspace::new("app");
    let mut request = workspace.install_request();
    request.cache_dir = None;

    let dependencies = prepare(&request).unwrap().unwrap();
    let root = dependencies.root.clone();
    assert!(root.join("node_modules/ms/package.json").is_file());
    assert_eq!(dependencies.summary.source, DependencySource::Installed);
    drop(dependencies);

    assert!(
        !root.exists(),
        "the temporary folder outlived its Dependencies"
    );
    assert!(workspace.cache_entries().is_empty());
}

#[test]
fn missing_lockfile_is_reported() {
    let workspace = Workspace::new("app");
    fs::remove_file(workspace.app.join("package-lock.json")).unwrap();

    let error = expect_error(&workspace.install_request());

    assert_eq!(
        error.to_string(),
        format!(
            "`{}` has no lockfile (package-lock.json, npm-shrinkwrap.json, pnpm-lock.yaml or \
             yarn.lock), which a clean install needs; run `npm install` there to create \
             package-lock.json, or use --node-modules local",
            workspace.app.display()
        )
    );
}

#[test]
fn stale_lockfile_shows_npm_error() {
    let workspace = Workspace::new("app");
    let package_json = workspace.app.join("package.json");
    let text = fs::read_to_string(&package_json).unwrap();
    fs::write(
        &package_json,
        text.replace("\"ms\": \"2.1.3\"", "\"ms\": \"2.1.2\""),
    )
    .unwrap();
    let before = snapshot(&workspace.app);

    let error = expect_error(&workspace.install_request());

    let message = error.to_string();
    assert!(
        matches!(error, DepsError::InstallFailed { .. }),
        "{message}"
    );
    let expected_start = format!(
        "`npm ci --omit=dev --no-audit --no-fund` failed (exit status: 1) on the package.json \
         and lockfile of `{}`; fix what it reports below, or use --node-modules local. Its \
         output:\nnpm error code EUSAGE",
        workspace.app.display()
    );
    assert!(message.starts_with(&expected_start), "{message}");
    assert!(
        message.contains("package.json and package-lock.json"),
        "{message}"
    );
    assert!(
        message.contains("ms@2.1.3 does not satisfy ms@2.1.2"),
        "{message}"
    );
    assert!(!message.contains("npm error Usage:"), "{message}");
    assert!(message.lines().count() <= 22, "{message}");
    assert_eq!(snapshot(&workspace.app), before, "the app folder changed");
    assert!(
        workspace.cache_entries().is_empty(),
        "a failed install left {:?}",
        workspace.cache_entries()
    );
}

#[test]
fn invalid_json_lockfile_is_reported() {
    let workspace = Workspace::new("app");
    fs::write(
        workspace.app.join("package-lock.json"),
        "{\n  \"lockfileVersion\": 3,\n",
    )
    .unwrap();

    let error = expect_error(&workspace.install_request());

    assert_eq!(
        error.to_string(),
        format!(
            "`{}` is not valid JSON (line 3, column 0); restore it from version control, or \
             recreate it with `npm install --package-lock-only`",
            workspace.app.join("package-lock.json").display()
        )
    );
}

#[test]
fn no_dependencies_means_no_layer() {
    let workspace = Workspace::new("app");
    write(
        &workspace.app.join("package.json"),
        r#"{"name": "dev-only", "devDependencies": {"left-pad": "1.3.0"}, "dependencies": {}}"#,
    );
    fs::remove_file(workspace.app.join("package-lock.json")).unwrap();

    let installed = prepare(&workspace.install_request()).unwrap();
    assert!(installed.is_none(), "{installed:?}");
    let local = prepare(&workspace.request(NodeModulesMode::Local, host_arch())).unwrap();
    assert!(local.is_none(), "{local:?}");

    write(
        &workspace.app.join("node_modules/left-pad/package.json"),
        "{}",
    );
    let local = prepare(&workspace.request(NodeModulesMode::Local, host_arch())).unwrap();
    assert_eq!(local.expect("node_modules exists").root, workspace.app);
    assert!(workspace.cache_entries().is_empty());
}

#[test]
fn local_mode_uses_app_node_modules() {
    let workspace = Workspace::new("app");
    add_user_files(&workspace.app);
    let before = snapshot(&workspace.app);

    let dependencies = prepare(&workspace.request(NodeModulesMode::Local, host_arch()))
        .unwrap()
        .expect("node_modules exists");

    assert_eq!(dependencies.root, workspace.app);
    assert_eq!(
        dependencies.node_modules(),
        workspace.app.join("node_modules")
    );
    let summary = &dependencies.summary;
    assert_eq!(summary.source, DependencySource::Local);
    assert_eq!(summary.package_manager, None);
    assert_eq!(
        summary.package_count, 2,
        "left-pad and stray, as the folder holds them"
    );
    assert_eq!(snapshot(&workspace.app), before, "the app folder changed");
    assert!(
        workspace.cache_entries().is_empty(),
        "Local mode ran an install"
    );
}

#[test]
fn local_mode_without_node_modules() {
    let workspace = Workspace::new("app");

    let error = expect_error(&workspace.request(NodeModulesMode::Local, host_arch()));

    assert_eq!(
        error.to_string(),
        format!(
            "`{}` has no node_modules folder, but package.json lists dependencies; run `npm ci` \
             there, or use --node-modules install",
            workspace.app.display()
        )
    );
}

#[test]
fn pnpm_lockfile_without_pnpm() {
    if std::env::var_os(CHILD_VARIABLE).is_none() {
        return run_without_package_managers("pnpm_lockfile_without_pnpm");
    }
    let workspace = Workspace::new("pnpm-app");
    let error = expect_error(&workspace.install_request());
    assert_eq!(
        error.to_string(),
        "pnpm is not installed (not found on PATH); install it or use --node-modules local"
    );
}

#[test]
fn yarn_lockfile_without_yarn() {
    if std::env::var_os(CHILD_VARIABLE).is_none() {
        return run_without_package_managers("yarn_lockfile_without_yarn");
    }
    let workspace = Workspace::new("yarn-app");
    let error = expect_error(&workspace.install_request());
    assert_eq!(
        error.to_string(),
        "yarn is not installed (not found on PATH); install it or use --node-modules local"
    );
}

#[test]
fn npm_lockfile_without_npm() {
    if std::env::var_os(CHILD_VARIABLE).is_none() {
        return run_without_package_managers("npm_lockfile_without_npm");
    }
    let workspace = Workspace::new("app");
    let error = expect_error(&workspace.install_request());
    assert_eq!(
        error.to_string(),
        "npm is not installed (not found on PATH); install it or use --node-modules local"
    );
}

#[test]
fn lockfiles_of_two_managers_are_reported() {
    let workspace = Workspace::new("app");
    fs::copy(
        fixture_path("yarn-app/yarn.lock"),
        workspace.app.join("yarn.lock"),
    )
    .unwrap();

    let error = expect_error(&workspace.install_request());

    assert!(
        matches!(error, DepsError::AmbiguousLockfiles { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("(package-lock.json, yarn.lock)"),
        "{error}"
    );
}

#[test]
fn bad_requests_are_reported() {
    let workspace = Workspace::new("app");

    let error = expect_error(&workspace.request(NodeModulesMode::Install, "x86_64"));
    assert_eq!(
        error.to_string(),
        "target architecture `x86_64` is not supported; expected amd64 or arm64"
    );

    fs::write(workspace.app.join("package.json"), "{\"dependencies\": ").unwrap();
    let error = expect_error(&workspace.install_request());
    assert_eq!(
        error.to_string(),
        format!(
            "`{}` is not valid JSON (line 1, column 17); fix the file so that `npm install` accepts it",
            workspace.app.join("package.json").display()
        )
    );

    fs::remove_file(workspace.app.join("package.json")).unwrap();
    let error = expect_error(&workspace.install_request());
    assert_eq!(
        error.to_string(),
        format!(
            "`{}` does not exist; pass the folder of a Node.js app, or create it with `npm init`",
            workspace.app.join("package.json").display()
        )
    );
}

#[test]
fn local_dependency_is_rejected() {
    let workspace = Workspace::new("app");
    write(
        &workspace.app.join("package.json"),
        r#"{"name": "app", "dependencies": {"shared": "file:../shared"}}"#,
    );

    let error = expect_error(&workspace.install_request());

    assert_eq!(
        error.to_string(),
        format!(
            "`{}` cannot be installed from package.json and its lockfile alone: dependency \
             `shared` is `file:../shared`, a local path; install it there and use \
             --node-modules local",
            workspace.app.display()
        )
    );
}

/// Returns how `BinaryFormat` describes an addon compiled on this machine.
fn host_binary_description() -> &'static str {
    match host_arch() {
        "arm64" => "an arm64 Linux binary",
        _ => "an x86-64 Linux binary",
    }
}

/// Writes an `.npmrc` into the app that points node-gyp at the Node.js headers installed with
/// this machine's `node`, because node-gyp otherwise downloads them from nodejs.org. The
/// install must read it from the app folder, as it reads a private registry's `.npmrc`.
fn use_local_node_headers(app: &Path) {
    let output = Command::new("node")
        .args(["-p", "path.dirname(path.dirname(process.execPath))"])
        .output()
        .expect("cannot run node");
    let prefix = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let header = prefix.join("include/node/node_api.h");
    assert!(
        header.is_file(),
        "node-gyp needs Node.js's headers, expected at {}; install them with Node.js",
        header.display()
    );
    write(
        &app.join(".npmrc"),
        &format!("nodedir={}\n", prefix.display()),
    );
}

#[test]
fn addon_compiled_on_same_arch_passes() {
    let workspace = Workspace::new("native-app");
    use_local_node_headers(&workspace.app);

    let dependencies = prepare(&workspace.install_request()).unwrap().unwrap();

    // epoll has no prebuilt binaries: its install script compiles it with node-gyp.
    let addon = dependencies
        .node_modules()
        .join("epoll/build/Release/epoll.node");
    assert!(addon.is_file(), "epoll was not compiled");
    assert_eq!(dependencies.summary.package_count, 4);
}

#[test]
fn addon_compiled_for_host_fails_cross_build() {
    let workspace = Workspace::new("native-app");
    use_local_node_headers(&workspace.app);

    let error = expect_error(&workspace.request(NodeModulesMode::Install, other_arch()));

    assert!(matches!(error, DepsError::Incompatible { .. }), "{error}");
    let target = format!("linux/{}", other_arch());
    assert_eq!(
        error.to_string(),
        format!(
            "node_modules will not load on {target}: `epoll` contains \
             build/Release/epoll.node, {}, which will not load on {target}; build on a \
             {target} machine, or pick packages that ship prebuilt binaries for {target}",
            host_binary_description()
        )
    );
    assert!(
        workspace.cache_entries().is_empty(),
        "the rejected tree was cached: {:?}",
        workspace.cache_entries()
    );
}
