//! The `node_modules` tree of the dependency layer: a clean production install from
//! package.json and its lockfile, as a Dockerfile's `RUN npm ci --omit=dev` stage makes it, or
//! the app directory's own `node_modules` with `--node-modules local`.
//!
//! The install runs in a staging folder outside the app directory, which is never modified.
//! Installed trees are cached under a key over every input of the install, so a rebuild with an
//! unchanged lockfile runs no install. Every tree is checked for packages that cannot load on
//! the target platform before it is used.
//!
//! [`prepare`] runs the package manager as a child process and blocks until it exits, so async
//! callers run it on a blocking thread.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tracing::{debug, info, warn};

use crate::dockerignore::DockerIgnore;
use crate::files::{EntryKind, FileList};

const NODE_MODULES: &str = "node_modules";
const PACKAGE_JSON: &str = "package.json";

/// How many packages [`DependencySummary::largest`] lists at most.
pub const LARGEST_PACKAGES: usize = 10;

/// How many lines of a failed install's output an [`DepsError::InstallFailed`] shows at most.
const OUTPUT_EXCERPT_LINES: usize = 20;

/// Changes whenever the layout of a cache entry or the meaning of the key changes, so that
/// entries written by an older lambda-image are not reused.
const CACHE_KEY_VERSION: &str = "lambda-image node_modules cache 1";

/// The package.json fields that decide what a clean install puts into `node_modules`.
/// `scripts`, `version` and `devDependencies` are left out: a production install of the
/// same lockfile does not depend on them.
const KEY_FIELDS: &[&str] = &[
    "dependencies",
    "optionalDependencies",
    "peerDependencies",
    "overrides",
    "resolutions",
    "pnpm",
    "allowScripts",
];

/// The package.json fields whose packages a production install puts into `node_modules`.
const PRODUCTION_FIELDS: &[&str] = &["dependencies", "optionalDependencies", "peerDependencies"];

/// The source of the dependency layer's `node_modules` (`--node-modules install|local`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NodeModulesMode {
    /// A clean production install from package.json and the lockfile.
    #[default]
    Install,
    /// The app directory's own `node_modules`, as it is.
    Local,
}

/// The input of [`prepare`].
#[derive(Debug, Clone)]
pub struct DependencyRequest<'a> {
    /// The folder that contains the app's package.json.
    pub app_dir: &'a Path,
    pub mode: NodeModulesMode,
    /// The image's architecture as OCI names it: `amd64` or `arm64`.
    pub target_arch: &'a str,
    /// The Node.js major of the base image, such as 24.
    pub node_major: u64,
    /// The folder for cached installs, such as `$XDG_CACHE_HOME/lambda-image/node-modules`;
    /// `None` installs into a temporary folder every time.
    pub cache_dir: Option<PathBuf>,
    /// The app's files as the build scanned them. Local mode reads the tree from them rather
    /// than walking it again; `None` scans the app directory.
    pub app_files: Option<&'a FileList>,
}

/// A `node_modules` tree ready to pack, and a summary of its contents.
#[derive(Debug)]
pub struct Dependencies {
    /// The folder whose `node_modules` subfolder is the tree to pack: a cache entry, a
    /// temporary folder, or in Local mode the app directory.
    pub root: PathBuf,
    pub summary: DependencySummary,
    /// The files of an installed tree, under `root`, scanned once for both the checks and the
    /// layer. `None` in Local mode, where the app's own files include the tree.
    pub files: Option<FileList>,
    /// The temporary folder of an install without a cache, deleted when this value is dropped.
    _staging: Option<tempfile::TempDir>,
}

impl Dependencies {
    /// Returns the path of the tree to pack: `root/node_modules`.
    pub fn node_modules(&self) -> PathBuf {
        self.root.join(NODE_MODULES)
    }
}

/// The size and origin of a `node_modules` tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencySummary {
    pub source: DependencySource,
    /// The package manager that installed the tree; `None` in Local mode.
    pub package_manager: Option<PackageManager>,
    /// Installed packages: real folders with a package.json directly inside a `node_modules`
    /// folder, or inside an `@scope` folder in one, nested `node_modules` included.
    pub package_count: usize,
    /// The bytes of all regular files in the tree.
    pub total_bytes: u64,
    /// The largest packages, largest first, at most [`LARGEST_PACKAGES`] of them.
    pub largest: Vec<PackageSize>,
}

/// The origin of a `node_modules` tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencySource {
    /// A package manager installed it in this run.
    Installed,
    /// An earlier run installed it with the same inputs, and the cache kept it.
    Cached,
    /// The app directory's own `node_modules`.
    Local,
}

/// One package's name and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageSize {
    /// The name that `require` uses, such as `ms` or `@img/sharp-linux-arm64`.
    pub name: String,
    /// The bytes of the package's files, without its nested `node_modules`.
    pub bytes: u64,
}

/// A Node.js package manager that can install from a lockfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PackageManager {
    Npm,
    Pnpm,
    Yarn,
}

impl PackageManager {
    /// Returns the name of the manager's program, which is also its name in `packageManager`.
    pub fn program(self) -> &'static str {
        match self {
            PackageManager::Npm => "npm",
            PackageManager::Pnpm => "pnpm",
            PackageManager::Yarn => "yarn",
        }
    }

    /// Returns the files besides package.json and the lockfile that the install reads from the
    /// app directory when they exist. `.npmrc` and `.yarnrc` may name private registries and
    /// hold their tokens; pnpm checks `.pnpmfile.cjs` against the lockfile.
    fn config_files(self) -> &'static [&'static str] {
        match self {
            PackageManager::Npm => &[".npmrc"],
            PackageManager::Pnpm => &[".npmrc", "pnpm-workspace.yaml", ".pnpmfile.cjs"],
            PackageManager::Yarn => &[".npmrc", ".yarnrc"],
        }
    }
}

impl fmt::Display for PackageManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.program())
    }
}

/// A lockfile name and the package manager that reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockfile {
    pub manager: PackageManager,
    pub file_name: &'static str,
}

/// The lockfiles [`detect_lockfile`] looks for. npm reads npm-shrinkwrap.json in preference to
/// package-lock.json, so it comes first.
const LOCKFILES: &[Lockfile] = &[
    Lockfile {
        manager: PackageManager::Npm,
        file_name: "npm-shrinkwrap.json",
    },
    Lockfile {
        manager: PackageManager::Npm,
        file_name: "package-lock.json",
    },
    Lockfile {
        manager: PackageManager::Pnpm,
        file_name: "pnpm-lock.yaml",
    },
    Lockfile {
        manager: PackageManager::Yarn,
        file_name: "yarn.lock",
    },
];

/// A package that will not load on the target platform, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// The package's path below `node_modules`, such as `bcrypt` or `a/node_modules/bcrypt`.
    pub package: String,
    pub reason: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.package, self.reason)
    }
}

/// An error that stops [`prepare`].
#[derive(Debug, thiserror::Error)]
pub enum DepsError {
    #[error("`{}` {reason}", path.display())]
    PackageJson { path: PathBuf, reason: String },

    #[error(
        "`{}` has no lockfile (package-lock.json, npm-shrinkwrap.json, pnpm-lock.yaml or yarn.lock), \
         which a clean install needs; run `npm install` there to create package-lock.json, \
         or use --node-modules local",
        app_dir.display()
    )]
    MissingLockfile { app_dir: PathBuf },

    #[error(
        "`{}` has lockfiles of several package managers ({}); delete the stale ones, or name \
         the package manager in package.json's `packageManager` field, such as \"pnpm@9.15.0\"",
        app_dir.display(),
        lockfiles.join(", ")
    )]
    AmbiguousLockfiles {
        app_dir: PathBuf,
        lockfiles: Vec<&'static str>,
    },

    #[error("`{}` {reason}", path.display())]
    InvalidLockfile { path: PathBuf, reason: String },

    #[error(
        "`{}` cannot be installed from package.json and its lockfile alone: {reason}; \
         install it there and use --node-modules local",
        app_dir.display()
    )]
    Unsupported { app_dir: PathBuf, reason: String },

    #[error(
        "{program} is not installed (not found on PATH); install it or use --node-modules local"
    )]
    ToolMissing { program: &'static str },

    /// The install ran in a staging folder (deleted by now) on copies of the app's files.
    #[error(
        "`{command}` failed ({status}) on the package.json and lockfile of `{}`; fix what it \
         reports below, or use --node-modules local. Its output:\n{output}",
        app_dir.display()
    )]
    InstallFailed {
        command: String,
        app_dir: PathBuf,
        status: String,
        output: String,
    },

    #[error("target architecture `{0}` is not supported; expected amd64 or arm64")]
    UnsupportedArchitecture(String),

    #[error(
        "node_modules will not load on {target}: {}; build on a {target} machine, or pick \
         packages that ship prebuilt binaries for {target}",
        problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Incompatible {
        target: String,
        problems: Vec<Incompatibility>,
    },

    #[error(
        "`{}` has no node_modules folder, but package.json lists dependencies; run `npm ci` \
         there, or use --node-modules install",
        app_dir.display()
    )]
    MissingNodeModules { app_dir: PathBuf },

    /// A failed scan of the tree's files.
    #[error(transparent)]
    Files(Box<crate::error::Error>),

    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl DepsError {
    fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> DepsError {
        DepsError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Prepares the `node_modules` tree of the dependency layer, or returns `None` when the image
/// needs no dependency layer.
///
/// In Install mode the tree comes from a clean production install of package.json and the
/// lockfile, without devDependencies. The install runs outside `app_dir`, or its result comes
/// from the cache, and the app's own `node_modules` is never read. Without production
/// dependencies there is no layer. In Local mode the tree is `app_dir/node_modules` as it is,
/// and `None` when there is none.
pub fn prepare(request: &DependencyRequest) -> Result<Option<Dependencies>, DepsError> {
    let target = Target::new(Arch::parse(request.target_arch)?);
    let package_path = request.app_dir.join(PACKAGE_JSON);
    let package = read_package_json(&package_path)?;
    let dependencies = production_dependencies(&package, &package_path)?;

    match request.mode {
        NodeModulesMode::Local => prepare_local(request, &package, &dependencies, target),
        NodeModulesMode::Install if dependencies.is_empty() => {
            info!(app_dir = %request.app_dir.display(), "package.json lists no production dependencies; the image gets no dependency layer");
            Ok(None)
        }
        NodeModulesMode::Install => {
            let plan = InstallPlan::new(request, &package, &dependencies, target)?;
            let dependencies = match &request.cache_dir {
                Some(cache_dir) => install_cached(&plan, cache_dir)?,
                None => install_temporary(&plan)?,
            };
            Ok(Some(dependencies))
        }
    }
}

// --- package.json ------------------------------------------------------------------------------

fn read_package_json(path: &Path) -> Result<Value, DepsError> {
    let bytes = fs::read(path).map_err(|e| DepsError::PackageJson {
        path: path.to_path_buf(),
        reason: match e.kind() {
            io::ErrorKind::NotFound => {
                "does not exist; pass the folder of a Node.js app, or create it with `npm init`"
                    .to_string()
            }
            _ => format!("cannot be read: {e}"),
        },
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(value) if value.is_object() => Ok(value),
        Ok(_) => Err(DepsError::PackageJson {
            path: path.to_path_buf(),
            reason: "is not a JSON object; fix the file so that `npm install` accepts it"
                .to_string(),
        }),
        Err(e) => Err(DepsError::PackageJson {
            path: path.to_path_buf(),
            reason: format!(
                "is not valid JSON (line {}, column {}); fix the file so that `npm install` accepts it",
                e.line(),
                e.column()
            ),
        }),
    }
}

/// Returns the packages that a production install puts into `node_modules`, by name, with
/// the version range or other specifier that package.json gives.
fn production_dependencies(
    package: &Value,
    path: &Path,
) -> Result<BTreeMap<String, String>, DepsError> {
    let mut dependencies = BTreeMap::new();
    for field in PRODUCTION_FIELDS {
        let Some(value) = package.get(field) else {
            continue;
        };
        let invalid = |what: String| DepsError::PackageJson {
            path: path.to_path_buf(),
            reason: format!("{what}; fix the file so that `npm install` accepts it"),
        };
        let Some(entries) = value.as_object() else {
            return Err(invalid(format!(
                "has a `{field}` field that is not an object"
            )));
        };
        for (name, specifier) in entries {
            let Some(specifier) = specifier.as_str() else {
                return Err(invalid(format!(
                    "has `{field}.{name}` that is not a string"
                )));
            };
            dependencies.insert(name.clone(), specifier.to_string());
        }
    }
    Ok(dependencies)
}

/// Rejects what an install from package.json and the lockfile alone cannot reproduce: local
/// folders and tarballs, and workspaces, whose packages live in other folders.
fn check_installable(
    app_dir: &Path,
    package: &Value,
    dependencies: &BTreeMap<String, String>,
) -> Result<(), DepsError> {
    let unsupported = |reason: String| DepsError::Unsupported {
        app_dir: app_dir.to_path_buf(),
        reason,
    };
    if package.get("workspaces").is_some() {
        return Err(unsupported(
            "package.json declares `workspaces`, whose packages live in other folders".to_string(),
        ));
    }
    for (name, specifier) in dependencies {
        if is_local_specifier(specifier) {
            return Err(unsupported(format!(
                "dependency `{name}` is `{specifier}`, a local path"
            )));
        }
    }
    Ok(())
}

fn is_local_specifier(specifier: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "file:",
        "link:",
        "portal:",
        "workspace:",
        "./",
        "../",
        "/",
        "~/",
    ];
    PREFIXES.iter().any(|prefix| specifier.starts_with(prefix)) || specifier == "."
}

// --- Lockfiles ---------------------------------------------------------------------------------

/// Finds the lockfile in `app_dir` that decides the package manager. When lockfiles of several
/// managers exist, package.json's `packageManager` field (such as `pnpm@9.15.0`) picks one.
pub fn detect_lockfile(app_dir: &Path, package: &Value) -> Result<Lockfile, DepsError> {
    let mut found: Vec<Lockfile> = Vec::new();
    for lockfile in LOCKFILES {
        let present = app_dir.join(lockfile.file_name).is_file();
        let shadowed = found.iter().any(|seen| seen.manager == lockfile.manager);
        if present && !shadowed {
            found.push(*lockfile);
        }
    }
    match found.as_slice() {
        [] => Err(DepsError::MissingLockfile {
            app_dir: app_dir.to_path_buf(),
        }),
        [only] => Ok(*only),
        several => {
            let declared = package
                .get("packageManager")
                .and_then(Value::as_str)
                .map(|text| text.split('@').next().unwrap_or(text));
            several
                .iter()
                .find(|lockfile| Some(lockfile.manager.program()) == declared)
                .copied()
                .ok_or_else(|| DepsError::AmbiguousLockfiles {
                    app_dir: app_dir.to_path_buf(),
                    lockfiles: several.iter().map(|lockfile| lockfile.file_name).collect(),
                })
        }
    }
}

/// Rejects lockfiles whose problem the package manager would report in misleading words.
/// npm reports an unparsable package-lock.json as missing. Yarn 2 and later need another
/// command and make no `node_modules` by default.
fn check_lockfile(lockfile: Lockfile, path: &Path, bytes: &[u8]) -> Result<(), DepsError> {
    let invalid = |reason: String| DepsError::InvalidLockfile {
        path: path.to_path_buf(),
        reason,
    };
    match lockfile.manager {
        PackageManager::Npm => match serde_json::from_slice::<Value>(bytes) {
            Ok(value) if value.is_object() => Ok(()),
            Ok(_) => Err(invalid("is not a JSON object; restore it from version control, or recreate it with `npm install --package-lock-only`".to_string())),
            Err(e) => Err(invalid(format!(
                "is not valid JSON (line {}, column {}); restore it from version control, or recreate it with `npm install --package-lock-only`",
                e.line(),
                e.column()
            ))),
        },
        PackageManager::Yarn if is_yarn_berry_lockfile(bytes) => Err(DepsError::Unsupported {
            app_dir: path.parent().unwrap_or(path).to_path_buf(),
            reason: "yarn.lock is from Yarn 2 or later, and lambda-image runs only Yarn 1 (`yarn install --production`)".to_string(),
        }),
        PackageManager::Pnpm | PackageManager::Yarn => Ok(()),
    }
}

/// Reports whether a yarn.lock is in the YAML format of Yarn 2 and later, which starts with a
/// `__metadata:` entry, rather than Yarn 1's format.
fn is_yarn_berry_lockfile(bytes: &[u8]) -> bool {
    String::from_utf8_lossy(bytes)
        .lines()
        .any(|line| line.trim_end() == "__metadata:")
}

// --- Platforms ---------------------------------------------------------------------------------

/// An image architecture that Lambda runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    fn parse(oci_name: &str) -> Result<Arch, DepsError> {
        match oci_name {
            "amd64" => Ok(Arch::Amd64),
            "arm64" => Ok(Arch::Arm64),
            other => Err(DepsError::UnsupportedArchitecture(other.to_string())),
        }
    }

    /// Returns the architecture of this machine, `None` when Lambda runs no such machine.
    fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::Amd64),
            "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }

    fn oci_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// Returns Node.js's name (`process.arch`), which package.json's `cpu` field uses.
    fn node_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "x64",
            Arch::Arm64 => "arm64",
        }
    }

    /// Returns the ELF `e_machine` value of the architecture's binaries.
    fn elf_machine(self) -> u16 {
        match self {
            Arch::Amd64 => ELF_MACHINE_X86_64,
            Arch::Arm64 => ELF_MACHINE_AARCH64,
        }
    }
}

const ELF_MACHINE_X86_64: u16 = 62;
const ELF_MACHINE_AARCH64: u16 = 183;

/// The platform the image runs on: Linux with glibc (as Lambda's base images are) on `arch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target {
    arch: Arch,
    /// Whether this machine is another platform, so that what an install compiles or
    /// downloads for this machine will not load in the image.
    cross: bool,
}

impl Target {
    fn new(arch: Arch) -> Target {
        Target {
            arch,
            cross: std::env::consts::OS != "linux" || Arch::host() != Some(arch),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "linux/{}", self.arch.oci_name())
    }
}

// --- Install -----------------------------------------------------------------------------------

/// A package manager command line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InstallCommand {
    program: &'static str,
    args: Vec<String>,
}

impl fmt::Display for InstallCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.program, self.args.join(" "))
    }
}

/// Returns the clean production install command of `manager`.
///
/// Lifecycle scripts stay on, as in a Dockerfile's `npm ci`, because packages with native
/// addons build or download them in their install scripts. Cross-platform installs select
/// the target's optional platform packages (such as `@img/sharp-linux-arm64`) with `--cpu`,
/// `--os` and `--libc`, which npm 10 and later and pnpm 10.14 and later accept.
fn install_command(manager: PackageManager, target: Target) -> InstallCommand {
    let mut args: Vec<String> = match manager {
        PackageManager::Npm => ["ci", "--omit=dev", "--no-audit", "--no-fund"]
            .map(String::from)
            .to_vec(),
        PackageManager::Pnpm => ["install", "--prod", "--frozen-lockfile"]
            .map(String::from)
            .to_vec(),
        PackageManager::Yarn => [
            "install",
            "--production",
            "--frozen-lockfile",
            "--non-interactive",
        ]
        .map(String::from)
        .to_vec(),
    };
    // NOTE: Yarn 1 has no option to select another platform's optional packages. A
    // cross-platform Yarn install gets this machine's, which the platform check then rejects.
    if target.cross && manager != PackageManager::Yarn {
        args.push(format!("--cpu={}", target.arch.node_name()));
        args.push("--os=linux".to_string());
        args.push("--libc=glibc".to_string());
    }
    InstallCommand {
        program: manager.program(),
        args,
    }
}

/// Everything an install needs, read and checked before anything is written.
struct InstallPlan {
    app_dir: PathBuf,
    manager: PackageManager,
    program: PathBuf,
    command: InstallCommand,
    /// The files to copy into the staging folder, by name: package.json, the lockfile and the
    /// configuration files that exist.
    files: Vec<(&'static str, Vec<u8>)>,
    target: Target,
    cache_key: String,
}

impl InstallPlan {
    fn new(
        request: &DependencyRequest,
        package: &Value,
        dependencies: &BTreeMap<String, String>,
        target: Target,
    ) -> Result<InstallPlan, DepsError> {
        let app_dir = request.app_dir;
        check_installable(app_dir, package, dependencies)?;
        let lockfile = detect_lockfile(app_dir, package)?;
        let lockfile_path = app_dir.join(lockfile.file_name);
        let lockfile_bytes =
            fs::read(&lockfile_path).map_err(|e| DepsError::io("read", &lockfile_path, e))?;
        check_lockfile(lockfile, &lockfile_path, &lockfile_bytes)?;

        let manager = lockfile.manager;
        let path_variable = std::env::var_os("PATH");
        let program = find_program(manager.program(), path_variable.as_deref()).ok_or(
            DepsError::ToolMissing {
                program: manager.program(),
            },
        )?;
        let host_node = host_node_version(path_variable.as_deref())?;

        let package_bytes = fs::read(app_dir.join(PACKAGE_JSON))
            .map_err(|e| DepsError::io("read", app_dir.join(PACKAGE_JSON), e))?;
        let mut files = vec![
            (PACKAGE_JSON, package_bytes),
            (lockfile.file_name, lockfile_bytes),
        ];
        for name in manager.config_files() {
            let path = app_dir.join(name);
            match fs::read(&path) {
                Ok(bytes) => files.push((name, bytes)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(DepsError::io("read", path, e)),
            }
        }

        let cache_key = cache_key(&CacheKeyInputs {
            manager,
            package,
            files: &files,
            arch: target.arch,
            node_major: request.node_major,
            host_node: &host_node,
        });
        Ok(InstallPlan {
            app_dir: app_dir.to_path_buf(),
            manager,
            program,
            command: install_command(manager, target),
            files,
            target,
            cache_key,
        })
    }
}

/// Looks for an executable file named `name` in the folders of `path_variable` (a `PATH`).
fn find_program(name: &str, path_variable: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_variable?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .map(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Returns `node --version`, such as `v20.20.2`. It is part of the cache key because addons
/// compiled from source at install time are built for this Node.js, not the image's.
fn host_node_version(path_variable: Option<&OsStr>) -> Result<String, DepsError> {
    let node =
        find_program("node", path_variable).ok_or(DepsError::ToolMissing { program: "node" })?;
    let output = Command::new(&node)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| DepsError::io("run", &node, e))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Installs into a new cache entry, or reuses the entry that an earlier run made.
///
/// The install runs in a staging folder inside `cache_dir`, which a rename turns into the
/// entry, so an entry is either complete or absent. When two runs race, the second rename
/// fails because the entry exists, and the loser uses the winner's tree.
fn install_cached(plan: &InstallPlan, cache_dir: &Path) -> Result<Dependencies, DepsError> {
    let entry = cache_dir.join(&plan.cache_key);
    if entry.join(NODE_MODULES).is_dir() {
        info!(entry = %entry.display(), "using cached node_modules");
        return finish_install(plan, entry, DependencySource::Cached, None);
    }
    if entry.exists() {
        warn!(entry = %entry.display(), "cache entry has no node_modules; removing it");
        fs::remove_dir_all(&entry).map_err(|e| DepsError::io("remove", &entry, e))?;
    }
    if let Err(e) = fs::create_dir_all(cache_dir) {
        warn!(cache_dir = %cache_dir.display(), error = %e, "cannot create the cache folder; installing without a cache");
        return install_temporary(plan);
    }

    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(cache_dir)
        .map_err(|e| DepsError::io("create a staging folder in", cache_dir, e))?;
    install_into(plan, staging.path())?;
    // Checked before the rename, so a tree that cannot load on the target is never cached.
    let (tree, _) = inspect_installed(plan, staging.path())?;

    match fs::rename(staging.path(), &entry) {
        Ok(()) => {
            let _ = staging.keep();
        }
        Err(e) if entry.join(NODE_MODULES).is_dir() => {
            debug!(entry = %entry.display(), error = %e, "another run cached the same install first; using its tree");
        }
        Err(e) => return Err(DepsError::io("move the installed tree to", &entry, e)),
    }
    // The files are scanned again at their new place, which every entry's path refers to.
    let files = scan_files(&entry, &DockerIgnore::empty(), true)?;
    Ok(Dependencies {
        root: entry,
        summary: summarize(&tree, DependencySource::Installed, Some(plan.manager)),
        files: Some(files),
        _staging: None,
    })
}

/// Installs into a temporary folder that lives as long as the returned value.
fn install_temporary(plan: &InstallPlan) -> Result<Dependencies, DepsError> {
    let staging = tempfile::Builder::new()
        .prefix("lambda-image-deps-")
        .tempdir()
        .map_err(|e| DepsError::io("create a temporary folder in", std::env::temp_dir(), e))?;
    install_into(plan, staging.path())?;
    let root = staging.path().to_path_buf();
    finish_install(plan, root, DependencySource::Installed, Some(staging))
}

fn finish_install(
    plan: &InstallPlan,
    root: PathBuf,
    source: DependencySource,
    staging: Option<tempfile::TempDir>,
) -> Result<Dependencies, DepsError> {
    let (tree, files) = inspect_installed(plan, &root)?;
    Ok(Dependencies {
        summary: summarize(&tree, source, Some(plan.manager)),
        root,
        files: Some(files),
        _staging: staging,
    })
}

/// Scans an installed tree in `root` and rejects it when a package will not load on the target.
fn inspect_installed(plan: &InstallPlan, root: &Path) -> Result<(Tree, FileList), DepsError> {
    let files = scan_files(root, &DockerIgnore::empty(), true)?;
    let tree = tree_of(&files)?;
    let problems = find_incompatibilities(&tree, plan.target);
    if problems.is_empty() {
        Ok((tree, files))
    } else {
        Err(DepsError::Incompatible {
            target: plan.target.to_string(),
            problems,
        })
    }
}

/// Runs the install in `staging`, which receives the plan's files first. The files are removed
/// afterwards, so that no `.npmrc` and its tokens stay beside the tree.
fn install_into(plan: &InstallPlan, staging: &Path) -> Result<(), DepsError> {
    for (name, bytes) in &plan.files {
        let path = staging.join(name);
        fs::write(&path, bytes).map_err(|e| DepsError::io("write", &path, e))?;
    }

    info!(command = %plan.command, dir = %staging.display(), "installing dependencies");
    let started = Instant::now();
    let output = Command::new(&plan.program)
        .args(&plan.command.args)
        .current_dir(staging)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| DepsError::io("run", &plan.program, e))?;
    if !output.status.success() {
        return Err(DepsError::InstallFailed {
            command: plan.command.to_string(),
            app_dir: plan.app_dir.clone(),
            status: output.status.to_string(),
            output: output_excerpt(&output.stdout, &output.stderr),
        });
    }
    info!(command = %plan.command, seconds = started.elapsed().as_secs_f64(), "installed dependencies");

    for (name, _) in &plan.files {
        let path = staging.join(name);
        fs::remove_file(&path).map_err(|e| DepsError::io("remove", &path, e))?;
    }
    // A tree whose only packages are skipped optional ones may have no node_modules at all.
    let node_modules = staging.join(NODE_MODULES);
    fs::create_dir_all(&node_modules).map_err(|e| DepsError::io("create", &node_modules, e))
}

/// Returns the part of a failed install's output that explains the failure: stderr (or stdout,
/// where pnpm writes its errors) without npm's usage text, shortened to its first and last
/// lines when longer than [`OUTPUT_EXCERPT_LINES`].
fn output_excerpt(stdout: &[u8], stderr: &[u8]) -> String {
    let stderr = String::from_utf8_lossy(stderr);
    let text = if stderr.trim().is_empty() {
        String::from_utf8_lossy(stdout).into_owned()
    } else {
        stderr.into_owned()
    };
    let lines = drop_npm_usage(text.lines().collect());
    if lines.len() <= OUTPUT_EXCERPT_LINES {
        return lines.join("\n");
    }
    let head = OUTPUT_EXCERPT_LINES / 2;
    let tail = OUTPUT_EXCERPT_LINES - head;
    let omitted = lines.len() - head - tail;
    let mut excerpt = lines[..head].to_vec();
    let marker = format!("[… {omitted} lines left out …]");
    excerpt.push(&marker);
    excerpt.extend_from_slice(&lines[lines.len() - tail..]);
    excerpt.join("\n")
}

/// Removes the usage text that npm appends to a usage error (`EUSAGE`): from the command's
/// description above `npm error Usage:` through `npm error Run "npm help …"`.
fn drop_npm_usage(lines: Vec<&str>) -> Vec<&str> {
    let Some(usage) = lines
        .iter()
        .position(|line| line.trim_end() == "npm error Usage:")
    else {
        return lines;
    };
    let is_blank = |line: &str| line.trim_end() == "npm error";
    let mut start = usage;
    if start > 0 && is_blank(lines[start - 1]) {
        start -= 1;
    }
    if start > 0 && !is_blank(lines[start - 1]) {
        start -= 1;
    }
    let end = lines[usage..]
        .iter()
        .position(|line| line.starts_with("npm error Run \"npm help"))
        .map_or(usage, |offset| usage + offset);
    lines[..start]
        .iter()
        .chain(&lines[end + 1..])
        .copied()
        .collect()
}

// --- Cache key ---------------------------------------------------------------------------------

struct CacheKeyInputs<'a> {
    manager: PackageManager,
    package: &'a Value,
    /// The files copied into the staging folder, by name.
    files: &'a [(&'static str, Vec<u8>)],
    arch: Arch,
    node_major: u64,
    host_node: &'a str,
}

/// Returns the hex SHA-256 of everything that decides an installed tree: the lockfile and
/// configuration files, package.json's [`KEY_FIELDS`] as canonical JSON, the target
/// architecture, the image's Node.js major, this machine's Node.js, and the package manager.
///
/// package.json itself is left out, so a change of its version or scripts keeps the key, and
/// so are `.npmrc` and `.yarnrc`, which may hold registry tokens.
fn cache_key(inputs: &CacheKeyInputs) -> String {
    let mut hasher = Sha256::new();
    let mut add = |label: &str, bytes: &[u8]| {
        // Length prefixes keep one input's bytes from passing as another's.
        for part in [label.as_bytes(), bytes] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    };
    add("version", CACHE_KEY_VERSION.as_bytes());
    add("manager", inputs.manager.program().as_bytes());
    add("arch", inputs.arch.oci_name().as_bytes());
    add("node major", inputs.node_major.to_string().as_bytes());
    add("host node", inputs.host_node.as_bytes());
    for field in KEY_FIELDS {
        let value = inputs.package.get(field).unwrap_or(&Value::Null);
        add(field, canonical_json(value).as_bytes());
    }
    for (name, bytes) in inputs.files {
        if *name != PACKAGE_JSON && *name != ".npmrc" && *name != ".yarnrc" {
            add(name, bytes);
        }
    }
    hex::encode(hasher.finalize())
}

/// Serializes `value` with the keys of every object sorted, so equal values give equal text
/// whatever order package.json lists them in.
fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let fields: Vec<String> = entries
                .into_iter()
                .map(|(key, value)| {
                    format!("{}:{}", Value::String(key.clone()), canonical_json(value))
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

// --- Local mode --------------------------------------------------------------------------------

fn prepare_local(
    request: &DependencyRequest,
    package: &Value,
    dependencies: &BTreeMap<String, String>,
    target: Target,
) -> Result<Option<Dependencies>, DepsError> {
    let app_dir = request.app_dir;
    let node_modules = app_dir.join(NODE_MODULES);
    if !node_modules.is_dir() {
        if dependencies.is_empty() {
            return Ok(None);
        }
        return Err(DepsError::MissingNodeModules {
            app_dir: app_dir.to_path_buf(),
        });
    }

    let tree = match request.app_files {
        Some(files) => tree_of(files)?,
        None => {
            let ignore =
                DockerIgnore::load(app_dir).map_err(|e| DepsError::Files(Box::new(e.into())))?;
            tree_of(&scan_files(app_dir, &ignore, true)?)?
        }
    };
    // The user chose this tree, so problems are reported without stopping the build.
    for problem in find_incompatibilities(&tree, target) {
        warn!(target = %target, "node_modules may not load in the image: {problem}");
    }
    warn_dev_dependencies(&tree, package, dependencies);
    Ok(Some(Dependencies {
        root: app_dir.to_path_buf(),
        summary: summarize(&tree, DependencySource::Local, None),
        files: None,
        _staging: None,
    }))
}

/// Logs a warning when the local tree contains devDependencies, which will ship in the image.
fn warn_dev_dependencies(tree: &Tree, package: &Value, dependencies: &BTreeMap<String, String>) {
    let Some(dev) = package.get("devDependencies").and_then(Value::as_object) else {
        return;
    };
    let installed: HashSet<&str> = tree.packages.iter().map(|p| p.path.as_str()).collect();
    let shipped: Vec<&str> = dev
        .keys()
        .filter(|name| !dependencies.contains_key(*name) && installed.contains(name.as_str()))
        .map(String::as_str)
        .collect();
    if !shipped.is_empty() {
        warn!(
            packages = %shipped.join(", "),
            "node_modules contains devDependencies, which the image will include; run `npm prune --omit=dev` first, or use --node-modules install"
        );
    }
}

// --- Tree scan ---------------------------------------------------------------------------------

/// An installed `node_modules` tree.
#[derive(Debug, Default)]
struct Tree {
    packages: Vec<InstalledPackage>,
    total_bytes: u64,
}

#[derive(Debug, Default)]
struct InstalledPackage {
    /// The name that `require` uses: the folder's path below its `node_modules`.
    name: String,
    /// The path below the tree's top `node_modules`, such as `a/node_modules/@s/b`.
    path: String,
    /// The bytes of the package's files, without nested packages.
    bytes: u64,
    manifest: Manifest,
    has_binding_gyp: bool,
    /// The names of the folders in `prebuilds/`, such as `linux-arm64` (prebuildify's layout).
    prebuild_platforms: Vec<String>,
    /// The native addons (`*.node` files) outside `prebuilds/`.
    addons: Vec<Addon>,
}

/// The fields of a package's package.json that the platform checks read.
#[derive(Debug, Default)]
struct Manifest {
    os: Vec<String>,
    cpu: Vec<String>,
    libc: Vec<String>,
    optional_dependencies: Vec<String>,
}

#[derive(Debug, Clone)]
struct Addon {
    /// The path below the package folder, such as `build/Release/bcrypt_lib.node`.
    path: String,
    format: BinaryFormat,
}

/// The executable format of an addon, read from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinaryFormat {
    /// A 64-bit little-endian ELF file for the `e_machine` architecture.
    Elf64 {
        machine: u16,
    },
    /// Another ELF file: 32-bit or big-endian.
    OtherElf,
    MachO,
    Windows,
    Unknown,
}

impl BinaryFormat {
    fn read(path: &Path) -> BinaryFormat {
        let mut start = Vec::with_capacity(20);
        let read = fs::File::open(path).and_then(|file| file.take(20).read_to_end(&mut start));
        if read.is_err() {
            return BinaryFormat::Unknown;
        }
        // A file shorter than the header is padded with zeros, which match no magic number.
        let mut header = [0u8; 20];
        header[..start.len()].copy_from_slice(&start);
        BinaryFormat::parse(&header)
    }

    fn parse(header: &[u8; 20]) -> BinaryFormat {
        match header {
            [0x7f, b'E', b'L', b'F', 2, 1, ..] => BinaryFormat::Elf64 {
                machine: u16::from_le_bytes([header[18], header[19]]),
            },
            [0x7f, b'E', b'L', b'F', ..] => BinaryFormat::OtherElf,
            [0xcf, 0xfa, 0xed, 0xfe, ..]
            | [0xce, 0xfa, 0xed, 0xfe, ..]
            | [0xca, 0xfe, 0xba, 0xbe, ..] => BinaryFormat::MachO,
            [b'M', b'Z', ..] => BinaryFormat::Windows,
            _ => BinaryFormat::Unknown,
        }
    }

    fn describe(self) -> String {
        match self {
            BinaryFormat::Elf64 {
                machine: ELF_MACHINE_X86_64,
            } => "an x86-64 Linux binary".to_string(),
            BinaryFormat::Elf64 {
                machine: ELF_MACHINE_AARCH64,
            } => "an arm64 Linux binary".to_string(),
            BinaryFormat::Elf64 { machine } => format!("an ELF binary for machine type {machine}"),
            BinaryFormat::OtherElf => "a 32-bit or big-endian ELF binary".to_string(),
            BinaryFormat::MachO => "a macOS binary".to_string(),
            BinaryFormat::Windows => "a Windows binary".to_string(),
            BinaryFormat::Unknown => "not a binary that Linux can load".to_string(),
        }
    }
}

fn scan_files(
    root: &Path,
    ignore: &DockerIgnore,
    dependencies: bool,
) -> Result<FileList, DepsError> {
    FileList::scan_with(root, ignore, dependencies).map_err(|e| DepsError::Files(Box::new(e)))
}

/// Reads the packages of the `node_modules` tree among `files`. Symlinks are not followed, so
/// pnpm's links to its virtual store count once, where the real folders are.
fn tree_of(files: &FileList) -> Result<Tree, DepsError> {
    const PREFIX: &str = "node_modules/";
    let node_modules = files.root().join(NODE_MODULES);
    let entries = || files.entries_matching(|path| path.starts_with(PREFIX));
    // The folders that contain a package.json, collected in a first pass because the list
    // puts a folder before its package.json.
    let manifest_folders: HashSet<String> = entries()
        .filter(|entry| matches!(entry.kind, EntryKind::File { .. }))
        .filter_map(|entry| match entry.path[PREFIX.len()..].rsplit_once('/') {
            Some((folder, PACKAGE_JSON)) => Some(folder.to_string()),
            _ => None,
        })
        .collect();

    let mut tree = Tree::default();
    // The packages that enclose the current entry, innermost last, with their depths.
    let mut enclosing: Vec<(usize, usize)> = Vec::new();
    for entry in entries() {
        let (relative, kind) = (&entry.path[PREFIX.len()..], &entry.kind);
        let parts: Vec<&str> = relative.split('/').collect();
        let depth = parts.len();
        while enclosing.last().is_some_and(|(outer, _)| *outer >= depth) {
            enclosing.pop();
        }

        if matches!(kind, EntryKind::Directory)
            && is_package_folder(&parts)
            && manifest_folders.contains(relative)
        {
            let package = read_package(&node_modules.join(relative), relative.to_string())?;
            tree.packages.push(package);
            enclosing.push((depth, tree.packages.len() - 1));
            continue;
        }
        let Some(&(package_depth, index)) = enclosing.last() else {
            if let EntryKind::File { size } = kind {
                tree.total_bytes += size;
            }
            continue;
        };
        let package = &mut tree.packages[index];
        let inside = &parts[package_depth..];
        match kind {
            EntryKind::Directory if inside.len() == 2 && inside[0] == "prebuilds" => {
                package.prebuild_platforms.push(inside[1].to_string());
            }
            EntryKind::File { size } => {
                tree.total_bytes += size;
                package.bytes += size;
                note_package_file(package, inside, &node_modules.join(relative));
            }
            _ => {}
        }
    }
    Ok(tree)
}

/// Records a package's file that the platform checks need: binding.gyp and native addons.
fn note_package_file(package: &mut InstalledPackage, inside: &[&str], path: &Path) {
    if inside == ["binding.gyp"] {
        package.has_binding_gyp = true;
    } else if path.extension() == Some(OsStr::new("node")) && inside.first() != Some(&"prebuilds") {
        package.addons.push(Addon {
            path: inside.join("/"),
            format: BinaryFormat::read(path),
        });
    }
}

/// Reports whether the folder at `parts` (its path below the top `node_modules`) may be a
/// package: directly inside a `node_modules` folder, or inside an `@scope` folder in one. It
/// is one when it also contains a package.json.
fn is_package_folder(parts: &[&str]) -> bool {
    let Some((name, parents)) = parts.split_last() else {
        return false;
    };
    if name.starts_with('.') || name.starts_with('@') {
        return false;
    }
    // The top `node_modules` is above every part.
    let ancestor = |up: usize| match parents.len().checked_sub(up) {
        Some(index) => parents[index],
        None if parents.len() + 1 == up => NODE_MODULES,
        None => "",
    };
    let parent = ancestor(1);
    parent == NODE_MODULES || (parent.starts_with('@') && ancestor(2) == NODE_MODULES)
}

fn read_package(dir: &Path, path: String) -> Result<InstalledPackage, DepsError> {
    let manifest_path = dir.join(PACKAGE_JSON);
    let bytes = fs::read(&manifest_path).map_err(|e| DepsError::io("read", &manifest_path, e))?;
    let manifest = match serde_json::from_slice::<Value>(&bytes) {
        Ok(value) => Manifest {
            os: string_list(&value, "os"),
            cpu: string_list(&value, "cpu"),
            libc: string_list(&value, "libc"),
            optional_dependencies: value
                .get("optionalDependencies")
                .and_then(Value::as_object)
                .map(|entries| entries.keys().cloned().collect())
                .unwrap_or_default(),
        },
        Err(e) => {
            debug!(path = %manifest_path.display(), error = %e, "package.json is not valid JSON; skipping its platform fields");
            Manifest::default()
        }
    };
    let name = match path.rfind("/node_modules/") {
        Some(index) => path[index + "/node_modules/".len()..].to_string(),
        None => path.clone(),
    };
    Ok(InstalledPackage {
        name,
        path,
        manifest,
        ..InstalledPackage::default()
    })
}

/// Reads a package.json field that is a string or a list of strings, as `os`, `cpu` and `libc` are.
fn string_list(value: &Value, field: &str) -> Vec<String> {
    match value.get(field) {
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

fn summarize(
    tree: &Tree,
    source: DependencySource,
    package_manager: Option<PackageManager>,
) -> DependencySummary {
    let mut largest: Vec<PackageSize> = tree
        .packages
        .iter()
        .map(|package| PackageSize {
            name: package.name.clone(),
            bytes: package.bytes,
        })
        .collect();
    largest.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    largest.truncate(LARGEST_PACKAGES);
    DependencySummary {
        source,
        package_manager,
        package_count: tree.packages.len(),
        total_bytes: tree.total_bytes,
        largest,
    }
}

// --- Platform checks ---------------------------------------------------------------------------

/// Finds the packages that will not load on `target`: packages whose package.json restricts
/// them to another platform, and native addons built for another platform or not built at all.
fn find_incompatibilities(tree: &Tree, target: Target) -> Vec<Incompatibility> {
    // Packages such as `@parcel/watcher` ship their addon in an optional platform package
    // (`@parcel/watcher-linux-arm64-glibc`) rather than in their own folder.
    let platform_packages: HashSet<&str> = tree
        .packages
        .iter()
        .filter(|package| {
            !package.manifest.cpu.is_empty()
                && platform_mismatch(&package.manifest, target).is_none()
        })
        .map(|package| package.name.as_str())
        .collect();

    let mut problems = Vec::new();
    for package in &tree.packages {
        let reason = platform_mismatch(&package.manifest, target)
            .or_else(|| addon_problem(package, target, &platform_packages));
        if let Some(reason) = reason {
            problems.push(Incompatibility {
                package: package.path.clone(),
                reason,
            });
        }
    }
    problems
}

/// Checks package.json's `os`, `cpu` and `libc` lists against `target`, with npm's rules: a
/// `!value` entry excludes a value, and a list with plain entries admits only those.
fn platform_mismatch(manifest: &Manifest, target: Target) -> Option<String> {
    let checks = [
        ("os", &manifest.os, "linux"),
        ("cpu", &manifest.cpu, target.arch.node_name()),
        ("libc", &manifest.libc, "glibc"),
    ];
    for (field, list, value) in checks {
        if !admits(list, value) {
            return Some(format!(
                "is for {field} {} (its package.json `{field}` field), and the image is {target} with glibc",
                list.join(", ")
            ));
        }
    }
    None
}

fn admits(list: &[String], value: &str) -> bool {
    if list
        .iter()
        .any(|entry| entry.strip_prefix('!') == Some(value))
    {
        return false;
    }
    let mut plain = list
        .iter()
        .filter(|entry| !entry.starts_with('!'))
        .peekable();
    plain.peek().is_none() || plain.any(|entry| entry == value || entry == "any")
}

/// Checks the native addon of a package that has one.
///
/// An addon for another platform (compiled or downloaded for this machine) is a problem on any
/// build. A package with binding.gyp and no addon for the target is a problem when building for
/// another platform, because the install could only compile it for this machine.
fn addon_problem(
    package: &InstalledPackage,
    target: Target,
    platform_packages: &HashSet<&str>,
) -> Option<String> {
    let target_format = BinaryFormat::Elf64 {
        machine: target.arch.elf_machine(),
    };
    // NOTE: only packages with binding.gyp are checked, because other packages may ship
    // addons for several platforms in folders of their own naming.
    if !package.has_binding_gyp {
        return None;
    }
    if let Some(wrong) = package
        .addons
        .iter()
        .find(|addon| addon.format != target_format)
    {
        return Some(format!(
            "contains {}, {}, which will not load on {target}",
            wrong.path,
            wrong.format.describe()
        ));
    }
    let prebuilt = format!("linux-{}", target.arch.node_name());
    let has_target_binary = !package.addons.is_empty()
        || package.prebuild_platforms.contains(&prebuilt)
        || package
            .manifest
            .optional_dependencies
            .iter()
            .any(|name| platform_packages.contains(name.as_str()));
    if target.cross && !has_target_binary {
        return Some(format!(
            "compiles a native addon from source (binding.gyp) and has no prebuilt binary for {target}"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::symlink;

    const AMD64_ON_AMD64: Target = Target {
        arch: Arch::Amd64,
        cross: false,
    };
    const ARM64_FROM_AMD64: Target = Target {
        arch: Arch::Arm64,
        cross: true,
    };

    /// Reads the tree at `node_modules` as a build does: from the scan of its parent folder.
    fn scan_tree(node_modules: &Path) -> Result<Tree, DepsError> {
        let root = node_modules.parent().unwrap();
        tree_of(&scan_files(root, &DockerIgnore::empty(), true)?)
    }

    fn write(path: &Path, bytes: impl AsRef<[u8]>) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    /// Returns the first bytes of a 64-bit little-endian ELF shared object for `machine`.
    fn elf_header(machine: u16) -> Vec<u8> {
        let mut header = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
        header.resize(16, 0);
        header.extend_from_slice(&3u16.to_le_bytes());
        header.extend_from_slice(&machine.to_le_bytes());
        header.resize(64, 0);
        header
    }

    // --- Cache key ---

    struct KeyCase {
        manager: PackageManager,
        package: Value,
        files: Vec<(&'static str, Vec<u8>)>,
        arch: Arch,
        node_major: u64,
        host_node: &'static str,
    }

    /// A named change to one input of the cache key.
    type KeyChange = (&'static str, fn(&mut KeyCase));

    impl KeyCase {
        fn new() -> KeyCase {
            KeyCase {
                manager: PackageManager::Npm,
                package: json!({
                    "name": "app",
                    "version": "1.0.0",
                    "scripts": {"start": "node index.js"},
                    "dependencies": {"ms": "2.1.3", "express": "^4.21.2"},
                    "devDependencies": {"left-pad": "1.3.0"}
                }),
                files: vec![
                    (PACKAGE_JSON, b"{}".to_vec()),
                    ("package-lock.json", b"{\"lockfileVersion\": 3}".to_vec()),
                ],
                arch: Arch::Amd64,
                node_major: 24,
                host_node: "v20.20.2",
            }
        }

        fn key(&self) -> String {
            cache_key(&CacheKeyInputs {
                manager: self.manager,
                package: &self.package,
                files: &self.files,
                arch: self.arch,
                node_major: self.node_major,
                host_node: self.host_node,
            })
        }
    }

    #[test]
    fn cache_key_is_stable() {
        let key = KeyCase::new().key();
        assert_eq!(key, KeyCase::new().key());
        assert_eq!(key.len(), 64);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn cache_key_changes_with_each_input() {
        let base = KeyCase::new().key();
        let changes: Vec<KeyChange> = vec![
            ("lockfile bytes", |c| c.files[1].1.push(b' ')),
            ("lockfile name", |c| c.files[1].0 = "npm-shrinkwrap.json"),
            ("dependencies", |c| {
                c.package["dependencies"]["ms"] = json!("2.1.2")
            }),
            ("optionalDependencies", |c| {
                c.package["optionalDependencies"] = json!({"fsevents": "2"})
            }),
            ("peerDependencies", |c| {
                c.package["peerDependencies"] = json!({"react": "18"})
            }),
            ("overrides", |c| {
                c.package["overrides"] = json!({"ms": "2.1.2"})
            }),
            ("resolutions", |c| {
                c.package["resolutions"] = json!({"ms": "2.1.2"})
            }),
            ("pnpm", |c| {
                c.package["pnpm"] = json!({"overrides": {"ms": "2.1.2"}})
            }),
            ("allowScripts", |c| {
                c.package["allowScripts"] = json!({"bcrypt": true})
            }),
            ("arch", |c| c.arch = Arch::Arm64),
            ("node major", |c| c.node_major = 22),
            ("host node", |c| c.host_node = "v22.1.0"),
            ("manager", |c| c.manager = PackageManager::Pnpm),
            ("config file", |c| {
                c.files
                    .push(("pnpm-workspace.yaml", b"onlyBuiltDependencies: []".to_vec()))
            }),
        ];
        for (input, change) in changes {
            let mut case = KeyCase::new();
            change(&mut case);
            assert_ne!(case.key(), base, "changing the {input} kept the key");
        }
    }

    #[test]
    fn cache_key_ignores_unrelated_changes() {
        let base = KeyCase::new().key();
        let changes: Vec<KeyChange> = vec![
            ("version", |c| c.package["version"] = json!("2.0.0")),
            ("scripts", |c| c.package["scripts"] = json!({})),
            ("devDependencies", |c| {
                c.package["devDependencies"] = json!({"jest": "29"})
            }),
            ("package.json bytes", |c| c.files[0].1 = b"{ }".to_vec()),
            ("key order", |c| {
                c.package["dependencies"] = json!({"express": "^4.21.2", "ms": "2.1.3"})
            }),
            (".npmrc", |c| {
                c.files
                    .push((".npmrc", b"//registry.example/:_authToken=x".to_vec()))
            }),
        ];
        for (input, change) in changes {
            let mut case = KeyCase::new();
            change(&mut case);
            assert_eq!(case.key(), base, "changing the {input} changed the key");
        }
    }

    #[test]
    fn canonical_json_sorts_nested_keys() {
        let value = json!({"b": [{"y": 1, "x": null}], "a": "s\"q"});
        assert_eq!(
            canonical_json(&value),
            r#"{"a":"s\"q","b":[{"x":null,"y":1}]}"#
        );
    }

    // --- package.json and lockfiles ---

    #[test]
    fn production_dependencies_merges_fields() {
        let package = json!({
            "dependencies": {"ms": "2.1.3"},
            "optionalDependencies": {"fsevents": "^2"},
            "peerDependencies": {"react": "18"},
            "devDependencies": {"left-pad": "1.3.0"}
        });
        let names: Vec<String> = production_dependencies(&package, Path::new("package.json"))
            .unwrap()
            .into_keys()
            .collect();
        assert_eq!(names, ["fsevents", "ms", "react"]);
    }

    #[test]
    fn production_dependencies_empty_or_missing() {
        for package in [
            json!({}),
            json!({"dependencies": {}}),
            json!({"devDependencies": {"a": "1"}}),
        ] {
            let found = production_dependencies(&package, Path::new("package.json")).unwrap();
            assert!(found.is_empty(), "{package}");
        }
    }

    #[test]
    fn production_dependencies_rejects_non_objects() {
        let package = json!({"dependencies": ["ms"]});
        let error = production_dependencies(&package, Path::new("/app/package.json")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`/app/package.json` has a `dependencies` field that is not an object; fix the file so that `npm install` accepts it"
        );
        let package = json!({"dependencies": {"ms": 2}});
        let error = production_dependencies(&package, Path::new("/app/package.json")).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("`dependencies.ms` that is not a string"),
            "{error}"
        );
    }

    #[test]
    fn local_specifiers_are_rejected() {
        for specifier in [
            "file:../lib",
            "link:../lib",
            "./vendor/x.tgz",
            "../lib",
            "/opt/lib",
            "workspace:*",
        ] {
            let dependencies = BTreeMap::from([("lib".to_string(), specifier.to_string())]);
            let error =
                check_installable(Path::new("/app"), &json!({}), &dependencies).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("`/app` cannot be installed from package.json and its lockfile alone: dependency `lib` is `{specifier}`, a local path; install it there and use --node-modules local")
            );
        }
        for specifier in [
            "^1.2.3",
            "latest",
            "npm:ms@2",
            "github:user/repo",
            "https://example.invalid/x.tgz",
        ] {
            let dependencies = BTreeMap::from([("lib".to_string(), specifier.to_string())]);
            assert!(
                check_installable(Path::new("/app"), &json!({}), &dependencies).is_ok(),
                "{specifier}"
            );
        }
    }

    #[test]
    fn workspaces_are_rejected() {
        let error = check_installable(
            Path::new("/app"),
            &json!({"workspaces": ["packages/*"]}),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("declares `workspaces`"),
            "{error}"
        );
    }

    fn app_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            write(&dir.path().join(file), "{}");
        }
        dir
    }

    #[test]
    fn lockfile_detection_by_file() {
        let cases = [
            ("package-lock.json", PackageManager::Npm),
            ("npm-shrinkwrap.json", PackageManager::Npm),
            ("pnpm-lock.yaml", PackageManager::Pnpm),
            ("yarn.lock", PackageManager::Yarn),
        ];
        for (file, manager) in cases {
            let dir = app_with(&[file]);
            let lockfile = detect_lockfile(dir.path(), &json!({})).unwrap();
            assert_eq!(
                lockfile,
                Lockfile {
                    manager,
                    file_name: file
                }
            );
        }
    }

    #[test]
    fn lockfile_detection_prefers_shrinkwrap() {
        let dir = app_with(&["package-lock.json", "npm-shrinkwrap.json"]);
        let lockfile = detect_lockfile(dir.path(), &json!({})).unwrap();
        assert_eq!(lockfile.file_name, "npm-shrinkwrap.json");
    }

    #[test]
    fn lockfile_detection_missing() {
        let dir = app_with(&[]);
        let error = detect_lockfile(dir.path(), &json!({})).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "`{}` has no lockfile (package-lock.json, npm-shrinkwrap.json, pnpm-lock.yaml or yarn.lock), which a clean install needs; run `npm install` there to create package-lock.json, or use --node-modules local",
                dir.path().display()
            )
        );
    }

    #[test]
    fn lockfile_detection_several_managers() {
        let dir = app_with(&["package-lock.json", "yarn.lock"]);
        let error = detect_lockfile(dir.path(), &json!({})).unwrap_err();
        assert!(
            error.to_string().contains("(package-lock.json, yarn.lock)"),
            "{error}"
        );
        assert!(error.to_string().contains("`packageManager`"), "{error}");

        let lockfile =
            detect_lockfile(dir.path(), &json!({"packageManager": "yarn@1.22.22"})).unwrap();
        assert_eq!(lockfile.manager, PackageManager::Yarn);
        let error =
            detect_lockfile(dir.path(), &json!({"packageManager": "pnpm@9.15.0"})).unwrap_err();
        assert!(
            matches!(error, DepsError::AmbiguousLockfiles { .. }),
            "{error}"
        );
    }

    #[test]
    fn npm_lockfile_must_be_json() {
        let lockfile = Lockfile {
            manager: PackageManager::Npm,
            file_name: "package-lock.json",
        };
        let path = Path::new("/app/package-lock.json");
        let error = check_lockfile(lockfile, path, b"{\"lockfileVersion\": 3,").unwrap_err();
        assert_eq!(
            error.to_string(),
            "`/app/package-lock.json` is not valid JSON (line 1, column 22); restore it from version control, or recreate it with `npm install --package-lock-only`"
        );
        assert!(check_lockfile(lockfile, path, b"[]").is_err());
        assert!(check_lockfile(lockfile, path, b"{\"lockfileVersion\": 3}").is_ok());
    }

    #[test]
    fn yarn_berry_lockfile_is_rejected() {
        let lockfile = Lockfile {
            manager: PackageManager::Yarn,
            file_name: "yarn.lock",
        };
        let path = Path::new("/app/yarn.lock");
        let berry = "# This file is generated by running \"yarn install\"\n\n__metadata:\n  version: 8\n  cacheKey: 10c0\n";
        let error = check_lockfile(lockfile, path, berry.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("Yarn 2 or later"), "{error}");
        let classic = "# yarn lockfile v1\n\n\nms@2.1.3:\n  version \"2.1.3\"\n";
        assert!(check_lockfile(lockfile, path, classic.as_bytes()).is_ok());
    }

    // --- Commands and output ---

    #[test]
    fn install_commands() {
        let cases = [
            (
                PackageManager::Npm,
                AMD64_ON_AMD64,
                "npm ci --omit=dev --no-audit --no-fund",
            ),
            (
                PackageManager::Npm,
                ARM64_FROM_AMD64,
                "npm ci --omit=dev --no-audit --no-fund --cpu=arm64 --os=linux --libc=glibc",
            ),
            (
                PackageManager::Pnpm,
                AMD64_ON_AMD64,
                "pnpm install --prod --frozen-lockfile",
            ),
            (
                PackageManager::Pnpm,
                Target {
                    arch: Arch::Amd64,
                    cross: true,
                },
                "pnpm install --prod --frozen-lockfile --cpu=x64 --os=linux --libc=glibc",
            ),
            (
                PackageManager::Yarn,
                AMD64_ON_AMD64,
                "yarn install --production --frozen-lockfile --non-interactive",
            ),
            (
                PackageManager::Yarn,
                ARM64_FROM_AMD64,
                "yarn install --production --frozen-lockfile --non-interactive",
            ),
        ];
        for (manager, target, expected) in cases {
            assert_eq!(install_command(manager, target).to_string(), expected);
        }
    }

    #[test]
    fn unsupported_architecture() {
        let error = Arch::parse("x86_64").unwrap_err();
        assert_eq!(
            error.to_string(),
            "target architecture `x86_64` is not supported; expected amd64 or arm64"
        );
        assert_eq!(Arch::parse("arm64").unwrap(), Arch::Arm64);
    }

    #[test]
    fn find_program_searches_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        write(&bin.join("pnpm"), "#!/bin/sh\n");
        write(&bin.join("yarn"), "not executable");
        fs::set_permissions(bin.join("pnpm"), fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([dir.path().join("missing"), bin.clone()]).unwrap();

        assert_eq!(find_program("pnpm", Some(&path)), Some(bin.join("pnpm")));
        assert_eq!(find_program("yarn", Some(&path)), None);
        assert_eq!(find_program("pnpm", None), None);
    }

    #[test]
    fn tool_missing_message() {
        let error = DepsError::ToolMissing { program: "pnpm" };
        assert_eq!(
            error.to_string(),
            "pnpm is not installed (not found on PATH); install it or use --node-modules local"
        );
    }

    #[test]
    fn output_excerpt_drops_npm_usage() {
        let stderr = "npm error code EUSAGE\nnpm error\nnpm error `npm ci` can only install packages when in sync.\nnpm error\nnpm error Clean install a project\nnpm error\nnpm error Usage:\nnpm error npm ci\nnpm error   --omit\nnpm error\nnpm error Run \"npm help ci\" for more info\nnpm error A complete log of this run can be found in: /root/.npm/_logs/x.log";
        assert_eq!(
            output_excerpt(b"", stderr.as_bytes()),
            "npm error code EUSAGE\nnpm error\nnpm error `npm ci` can only install packages when in sync.\nnpm error\nnpm error A complete log of this run can be found in: /root/.npm/_logs/x.log"
        );
    }

    #[test]
    fn output_excerpt_keeps_head_and_tail() {
        let stderr: String = (1..=50).map(|n| format!("line {n}\n")).collect();
        let excerpt = output_excerpt(b"", stderr.as_bytes());
        let lines: Vec<&str> = excerpt.lines().collect();
        assert_eq!(lines.len(), OUTPUT_EXCERPT_LINES + 1);
        assert_eq!(lines[0], "line 1");
        assert_eq!(lines[10], "[… 30 lines left out …]");
        assert_eq!(lines.last(), Some(&"line 50"));
    }

    #[test]
    fn output_excerpt_falls_back_to_stdout() {
        let excerpt = output_excerpt(b" ERR_PNPM_OUTDATED_LOCKFILE  Cannot install\n", b"\n");
        assert_eq!(excerpt, " ERR_PNPM_OUTDATED_LOCKFILE  Cannot install");
    }

    // --- Tree scan and summary ---

    /// Writes a package folder with a package.json (`manifest`) and a file of `bytes` bytes.
    fn package(node_modules: &Path, path: &str, manifest: Value, bytes: usize) {
        let dir = node_modules.join(path);
        write(&dir.join(PACKAGE_JSON), manifest.to_string());
        write(&dir.join("index.js"), vec![b'x'; bytes]);
    }

    fn manifest_size(manifest: &Value) -> u64 {
        manifest.to_string().len() as u64
    }

    #[test]
    fn summary_of_synthetic_tree() {
        let dir = tempfile::tempdir().unwrap();
        let node_modules = dir.path().join(NODE_MODULES);
        let small = json!({"name": "small"});
        let scoped = json!({"name": "@s/big"});
        let outer = json!({"name": "outer"});
        let nested = json!({"name": "nested"});
        package(&node_modules, "small", small.clone(), 10);
        package(&node_modules, "@s/big", scoped.clone(), 5000);
        package(&node_modules, "outer", outer.clone(), 100);
        package(
            &node_modules,
            "outer/node_modules/nested",
            nested.clone(),
            3000,
        );
        write(&node_modules.join(".package-lock.json"), vec![b'{'; 7]);
        fs::create_dir_all(node_modules.join(".bin")).unwrap();
        symlink("../small/index.js", node_modules.join(".bin/small")).unwrap();
        // A folder without package.json is no package, and a symlinked package counts once.
        write(&node_modules.join("not-a-package/readme.txt"), "abc");
        symlink("small", node_modules.join("linked")).unwrap();

        let tree = scan_tree(&node_modules).unwrap();
        let summary = summarize(
            &tree,
            DependencySource::Installed,
            Some(PackageManager::Npm),
        );

        assert_eq!(summary.package_count, 4);
        let expected_total = 7
            + 3
            + manifest_size(&small)
            + 10
            + manifest_size(&scoped)
            + 5000
            + manifest_size(&outer)
            + 100
            + manifest_size(&nested)
            + 3000;
        assert_eq!(summary.total_bytes, expected_total);
        let names: Vec<&str> = summary.largest.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["@s/big", "nested", "outer", "small"]);
        assert_eq!(summary.largest[0].bytes, manifest_size(&scoped) + 5000);
        assert_eq!(
            summary.largest[2].bytes,
            manifest_size(&outer) + 100,
            "nested packages are not counted in their parent"
        );
    }

    #[test]
    fn summary_lists_ten_largest() {
        let dir = tempfile::tempdir().unwrap();
        let node_modules = dir.path().join(NODE_MODULES);
        for n in 0..12 {
            package(&node_modules, &format!("p{n:02}"), json!({}), 100 * (n + 1));
        }
        let summary = summarize(
            &scan_tree(&node_modules).unwrap(),
            DependencySource::Local,
            None,
        );
        assert_eq!(summary.package_count, 12);
        assert_eq!(summary.largest.len(), LARGEST_PACKAGES);
        assert_eq!(summary.largest[0].name, "p11");
        assert_eq!(summary.largest[9].name, "p02");
    }

    #[test]
    fn summary_counts_pnpm_store_once() {
        let dir = tempfile::tempdir().unwrap();
        let node_modules = dir.path().join(NODE_MODULES);
        package(
            &node_modules,
            ".pnpm/ms@2.1.3/node_modules/ms",
            json!({"name": "ms"}),
            2000,
        );
        symlink(".pnpm/ms@2.1.3/node_modules/ms", node_modules.join("ms")).unwrap();
        let summary = summarize(
            &scan_tree(&node_modules).unwrap(),
            DependencySource::Installed,
            Some(PackageManager::Pnpm),
        );
        assert_eq!(summary.package_count, 1);
        assert_eq!(summary.largest[0].name, "ms");
    }

    // --- Platform checks ---

    fn problems(node_modules: &Path, target: Target) -> Vec<String> {
        find_incompatibilities(&scan_tree(node_modules).unwrap(), target)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn addon_from_source_fails_cross_build() {
        let dir = tempfile::tempdir().unwrap();
        let node_modules = dir.path().join(NODE_MODULES);
        package(&node_modules, "bcrypt", json!({"name": "bcrypt"}), 10);
        write(&node_modules.join("bcrypt/binding.gyp"), "{}");

        assert_eq!(
            problems(&node_modules, ARM64_FROM_AMD64),
            ["`bcrypt` compiles a native addon from source (binding.gyp) and has no prebuilt binary for linux/arm64"]
        );
        assert!(problems(&node_modules, AMD64_ON_AMD64).is_empty());
    }

    #[test]
    fn addon_compiled_for_host_fails_cross_build() {
        let dir = tempfile::tempdir().unwrap();
        let node_modules = dir.path().join(NODE_MODULES);
        package(&node_modules, "bcrypt", json!({"name": "bcrypt"}), 10);
        write(&node_modules.join("bcrypt/binding.gyp"), "{}");
        write(
            &node_modules.join("bcrypt/build/Release/bcrypt_lib.node"),
            elf_header(ELF_MACHINE_X86_64),
        );

        assert_eq!(
            problems(&node_modules, ARM64_FROM_AMD64),
            ["`bcrypt` contains build/Release/bcrypt_lib.node, an x86-64 Linux binary, which will not load on linux/arm64"]
        );
        assert!(
            problems(&node_modules, AMD64_ON_AMD64).is_empty(),
            "a same-arch compiled addon is fine"
        );
    }

    #[test]
    fn addon_with_target_binary_passes() {
        let dir = tempfile::tempdir().unwrap();
        let node_modules = dir.path().join(NODE_MODULES);
        // prebuildify's layout, loaded by node-gyp-build.
        package(&node_modules, "prebuilt", json!({}), 10);
        write(&node_modules.join("prebuilt/binding.gyp"), "{}");
        write(
            &node_modules.join("prebuilt/prebuilds/linux-arm64/node.napi.node"),
            elf_header(ELF_MACHINE_AARCH64),
        );
        write(
            &node_modules.join("prebuilt/prebuilds/darwin-x64/node.napi.node"),
            [0xcf, 0xfa, 0xed, 0xfe],
        );
        // node-pre-gyp's layout: a binary downloaded for the target.
        package(&node_modules, "downloaded", json!({}), 10);
        write(&node_modules.join("downloaded/binding.gyp"), "{}");
        write(
            &node_modules.join("downloaded/lib/binding/napi-v3/x.node"),
            elf_header(ELF_MACHINE_AARCH64),
        );
        // The addon lives in an optional platform package.
        package(
            &node_modules,
            "@parcel/watcher",
            json!({"optionalDependencies": {"@parcel/watcher-linux-arm64-glibc": "2.5.1"}}),
            10,
        );
        write(&node_modules.join("@parcel/watcher/binding.gyp"), "{}");
        package(
            &node_modules,
            "@parcel/watcher-linux-arm64-glibc",
            json!({"os": ["linux"], "cpu": ["arm64"], "libc": ["glibc"]}),
            10,
        );

        assert_eq!(
            problems(&node_modules, ARM64_FROM_AMD64),
            Vec::<String>::new()
        );
    }

    #[test]
    fn addon_for_another_platform_fails() {
        let dir = tempfile::tempdir().unwrap();
        let node_modules = dir.path().join(NODE_MODULES);
        package(&node_modules, "mac-built", json!({}), 10);
        write(&node_modules.join("mac-built/binding.gyp"), "{}");
        write(
            &node_modules.join("mac-built/build/Release/addon.node"),
            [0xcf, 0xfa, 0xed, 0xfe, 0, 0, 0, 0],
        );

        assert_eq!(
            problems(&node_modules, AMD64_ON_AMD64),
            ["`mac-built` contains build/Release/addon.node, a macOS binary, which will not load on linux/amd64"]
        );
    }

    #[test]
    fn platform_fields_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let node_modules = dir.path().join(NODE_MODULES);
        package(
            &node_modules,
            "@img/sharp-linux-x64",
            json!({"os": ["linux"], "cpu": ["x64"], "libc": ["glibc"]}),
            10,
        );
        package(&node_modules, "fsevents", json!({"os": ["darwin"]}), 10);
        package(
            &node_modules,
            "@img/sharp-linuxmusl-arm64",
            json!({"os": ["linux"], "cpu": ["arm64"], "libc": ["musl"]}),
            10,
        );
        package(&node_modules, "not-arm", json!({"cpu": ["!arm64"]}), 10);
        package(
            &node_modules,
            "anywhere",
            json!({"os": ["!win32"], "cpu": "any"}),
            10,
        );

        assert_eq!(
            problems(&node_modules, ARM64_FROM_AMD64),
            [
                "`@img/sharp-linux-x64` is for cpu x64 (its package.json `cpu` field), and the image is linux/arm64 with glibc",
                "`@img/sharp-linuxmusl-arm64` is for libc musl (its package.json `libc` field), and the image is linux/arm64 with glibc",
                "`fsevents` is for os darwin (its package.json `os` field), and the image is linux/arm64 with glibc",
                "`not-arm` is for cpu !arm64 (its package.json `cpu` field), and the image is linux/arm64 with glibc",
            ]
        );
    }

    #[test]
    fn incompatible_error_message() {
        let error = DepsError::Incompatible {
            target: "linux/arm64".to_string(),
            problems: vec![Incompatibility {
                package: "bcrypt".to_string(),
                reason: "compiles a native addon from source (binding.gyp) and has no prebuilt binary for linux/arm64".to_string(),
            }],
        };
        assert_eq!(
            error.to_string(),
            "node_modules will not load on linux/arm64: `bcrypt` compiles a native addon from source (binding.gyp) and has no prebuilt binary for linux/arm64; build on a linux/arm64 machine, or pick packages that ship prebuilt binaries for linux/arm64"
        );
    }

    #[test]
    fn binary_format_parse() {
        let header = |bytes: &[u8]| {
            let mut header = [0u8; 20];
            header[..bytes.len().min(20)].copy_from_slice(&bytes[..bytes.len().min(20)]);
            BinaryFormat::parse(&header)
        };
        assert_eq!(
            header(&elf_header(ELF_MACHINE_AARCH64)),
            BinaryFormat::Elf64 {
                machine: ELF_MACHINE_AARCH64
            }
        );
        assert_eq!(
            header(&[0x7f, b'E', b'L', b'F', 1, 1]),
            BinaryFormat::OtherElf
        );
        assert_eq!(header(&[0xca, 0xfe, 0xba, 0xbe]), BinaryFormat::MachO);
        assert_eq!(header(b"MZ\x90\x00"), BinaryFormat::Windows);
        assert_eq!(header(b"#!/bin/sh"), BinaryFormat::Unknown);
    }
}
