//! The build: app directory to layers, base image to config and manifest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{debug, info, warn};

use crate::base::{BaseImage, BaseLocation};
use crate::cache::{content_key, stamp_key, LayerCache};
use crate::deps::{
    prepare, Dependencies, DependencyRequest, DependencySource, DependencySummary, NodeModulesMode,
};
use crate::dockerignore::DockerIgnore;
use crate::error::{Error, Result};
use crate::files::{is_dependency_path, ChangeStamp, FileEntry, FileList};
use crate::handler::{self, Handler, ResolvedHandler};
use crate::image::{assemble, AddedLayer, ConfigChanges, Image};
use crate::layer::{write_layer, LayerBlob, LayerOptions, DEFAULT_EPOCH};
use crate::node_version::{choose_major, major_from_tag, range_admits_major, LAMBDA_NODE_BASE};
use crate::platform::Platform;
use crate::progress::{Event, Progress};
use crate::registry::RegistryClient;
use crate::secrets::{find_secrets, secrets_error};

/// The inputs of a build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub app_dir: PathBuf,
    /// The base image; `None` picks the Lambda Node.js image matching `engines.node`.
    pub base: Option<BaseLocation>,
    /// The handler as `MODULE.FUNCTION`; `None` detects it.
    pub handler: Option<String>,
    pub platform: Platform,
    pub compression_level: u32,
    /// Seconds since the epoch for every timestamp; `None` reads `SOURCE_DATE_EPOCH`.
    pub epoch: Option<i64>,
    /// Whether to reuse and store layers and installed dependencies in the user's cache folder.
    pub use_cache: bool,
    /// The source of the dependency layer's `node_modules`.
    pub node_modules: NodeModulesMode,
    /// Paths, relative to the app directory, that the secret guard lets through.
    pub allow_secrets: Vec<String>,
    /// The base image for `platform`, already loaded by a caller that copies its layers while
    /// the app is built; `None` loads it.
    pub loaded_base: Option<BaseImage>,
}

impl BuildRequest {
    /// A request with the defaults of the command line: the Lambda base for `engines.node`,
    /// a detected handler, linux/amd64, level 4, `SOURCE_DATE_EPOCH`, the cache, and a clean
    /// dependency install.
    pub fn new(app_dir: impl Into<std::path::PathBuf>) -> BuildRequest {
        BuildRequest {
            app_dir: app_dir.into(),
            base: None,
            handler: None,
            platform: Platform::linux_amd64(),
            compression_level: crate::layer::DEFAULT_COMPRESSION_LEVEL,
            epoch: None,
            use_cache: true,
            node_modules: NodeModulesMode::Install,
            allow_secrets: Vec::new(),
            loaded_base: None,
        }
    }
}

/// A built image with its base; the layer files live as long as this value.
pub struct Built {
    pub image: Image,
    pub base: BaseImage,
    pub handler: ResolvedHandler,
    _work_dir: tempfile::TempDir,
}

/// Builds the image that `request` describes. Nothing in the app directory is modified.
pub async fn build(
    request: &BuildRequest,
    client: &RegistryClient,
    progress: &dyn Progress,
) -> Result<Built> {
    let epoch = match request.epoch {
        Some(epoch) => epoch,
        None => source_date_epoch()?,
    };
    let app_dir = request.app_dir.clone();
    let package = read_package_json(&app_dir)?;

    let ignore = DockerIgnore::load(&app_dir)?;
    let scan_dir = app_dir.clone();
    // An install puts the dependencies in a folder of its own, so the app's node_modules is
    // never packed and need not be read.
    let local_dependencies = request.node_modules == NodeModulesMode::Local;
    let files = tokio::task::spawn_blocking(move || {
        FileList::scan_with(&scan_dir, &ignore, local_dependencies)
    })
    .await
    .expect("the scan task does not panic")?;
    progress.report(Event::Scanned {
        entries: files.len(),
    });
    check_total_size(&files)?;
    let secrets = find_secrets(&files, &request.allow_secrets);
    if !secrets.is_empty() {
        return Err(secrets_error(files.root(), &secrets));
    }

    let resolved = match &request.handler {
        Some(text) => handler::resolve(&text.parse::<Handler>()?, &files)?,
        None => handler::detect(&files)?,
    };
    info!(handler = %resolved.handler, module = %resolved.module_file, "handler");

    let base_location = match &request.base {
        Some(location) => {
            warn_on_node_mismatch(&package, location);
            location.clone()
        }
        None => default_base(&package)?,
    };
    let base = match &request.loaded_base {
        Some(base) => base.clone(),
        None => BaseImage::load(base_location, &request.platform, client).await?,
    };

    let files = Arc::new(files);
    let mut dependencies = prepare_dependencies(request, &package, &base, &files).await?;
    if let Some(dependencies) = &dependencies {
        report_dependencies(&dependencies.summary, progress);
    }
    // An installed tree lives outside the app folder, and its files were scanned without
    // .dockerignore, as `COPY --from=builder` in a Dockerfile copies them.
    let installed_files = dependencies.as_mut().and_then(|d| d.files.take());

    let options = LayerOptions {
        mtime: epoch,
        compression_level: request.compression_level,
        threads: crate::layer::default_threads(),
    };
    let work_dir = tempfile::Builder::new()
        .prefix("lambda-image-")
        .tempdir()
        .map_err(|e| Error::io("create a temporary folder in", std::env::temp_dir(), e))?;
    let blob_dir = work_dir.path().to_path_buf();
    let cache = request.use_cache.then(LayerCache::in_user_cache).flatten();
    let added = tokio::task::spawn_blocking(move || {
        let app = LayerFiles {
            files: &files,
            dependencies: false,
        };
        let dependency_entries = match (&installed_files, local_dependencies) {
            (Some(installed), _) => Some(installed),
            (None, true) => Some(&*files),
            (None, false) => None,
        }
        .map(|files| LayerFiles {
            files,
            dependencies: true,
        })
        .filter(|layer| layer.stamped().next().is_some());
        let added = write_app_layers(dependency_entries, app, &options, cache.as_ref(), &blob_dir);
        // The installed tree may be a temporary folder: it must outlive the layer writing.
        drop(dependencies);
        added
    })
    .await
    .expect("the layer task does not panic")?;
    for layer in &added {
        progress.report(Event::LayerWritten {
            name: if layer.created_by.contains("node_modules") {
                "dependencies"
            } else {
                "app"
            },
            digest: &layer.blob.digest,
            size: layer.blob.size,
            entries: layer.blob.entry_count,
            reused: layer.reused,
        });
    }

    let handler_text = resolved.handler.to_string();
    let changes = ConfigChanges {
        handler: &handler_text,
        platform: &base.platform,
        created: epoch,
    };
    let image = assemble(&base, &added, &changes)?;
    Ok(Built {
        image,
        base,
        handler: resolved,
        _work_dir: work_dir,
    })
}

/// Lambda's limit on an image's uncompressed size: 10 GB (10,737,418,240 bytes).
pub const MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024 * 1024;

/// Fails before anything is read when the app's files alone exceed what Lambda accepts.
fn check_total_size(files: &FileList) -> Result<()> {
    let total = files.file_bytes();
    if total > MAX_IMAGE_BYTES {
        return Err(Error::AppDirectory {
            path: files.root().to_path_buf(),
            reason: format!(
                "holds {total} bytes of files, more than the {MAX_IMAGE_BYTES} bytes (10 GiB) Lambda accepts \
                 for an image; exclude what the function does not need in .dockerignore"
            ),
        });
    }
    Ok(())
}

/// Returns the base image `request` builds on: its `--base`, or the Lambda Node.js image for
/// the Node.js major package.json's `engines.node` asks for.
pub fn base_location(request: &BuildRequest) -> Result<BaseLocation> {
    // The app folder is checked first even with --base, so that nothing is sent anywhere
    // for a command that is about to fail.
    let package = read_package_json(&request.app_dir)?;
    if request.base.is_none() {
        return default_base(&package);
    }
    Ok(request.base.clone().expect("checked above"))
}

/// Writes the dependency layer (when there is a `node_modules`) and the app layer, so an app
/// change leaves the dependency layer's digest, and its upload, untouched. Layers whose input
/// files are unchanged since an earlier build come from `cache` without being read.
fn write_app_layers(
    dependencies: Option<LayerFiles>,
    app: LayerFiles,
    options: &LayerOptions,
    cache: Option<&LayerCache>,
    work_dir: &Path,
) -> Result<Vec<AddedLayer>> {
    let mut added = Vec::new();
    if let Some(dependencies) = dependencies {
        let (blob, reused) = cached_layer(dependencies, options, cache, work_dir)?;
        added.push(AddedLayer {
            blob,
            created_by: "lambda-image: COPY node_modules /var/task/node_modules".to_string(),
            reused,
        });
    }
    let (blob, reused) = cached_layer(app, options, cache, work_dir)?;
    added.push(AddedLayer {
        blob,
        created_by: "lambda-image: COPY app files /var/task".to_string(),
        reused,
    });
    Ok(added)
}

/// Installs the production dependencies (or takes the app's own `node_modules` with
/// `--node-modules local`) for the base image's architecture and Node.js major.
async fn prepare_dependencies(
    request: &BuildRequest,
    package: &serde_json::Value,
    base: &BaseImage,
    files: &Arc<FileList>,
) -> Result<Option<Dependencies>> {
    let node_major = match &base.location {
        BaseLocation::Registry(reference) => reference.tag().and_then(major_from_tag),
        BaseLocation::Layout { tag, .. } => tag.as_deref().and_then(major_from_tag),
    }
    .unwrap_or_else(|| choose_major(engines_node(package)).major);
    let app_dir = request.app_dir.clone();
    let architecture = base.platform.architecture.clone();
    let mode = request.node_modules;
    let cache_dir = if request.use_cache {
        crate::cache::cache_root().map(|root| root.join("node-modules"))
    } else {
        None
    };
    let files = Arc::clone(files);
    let prepared = tokio::task::spawn_blocking(move || {
        prepare(&DependencyRequest {
            app_dir: &app_dir,
            mode,
            target_arch: &architecture,
            node_major,
            cache_dir,
            app_files: Some(&files),
        })
    })
    .await
    .expect("the dependency task does not panic")?;
    Ok(prepared)
}

fn report_dependencies(summary: &DependencySummary, progress: &dyn Progress) {
    let source = match summary.source {
        DependencySource::Installed => "installed",
        DependencySource::Cached => "cached",
        DependencySource::Local => "local",
    };
    progress.report(Event::DependenciesReady {
        source,
        packages: summary.package_count,
        bytes: summary.total_bytes,
    });
    for package in &summary.largest {
        info!(package = %package.name, bytes = package.bytes, "large dependency");
    }
}

/// One layer's share of a file list: its `node_modules` entries, or all the others.
#[derive(Clone, Copy)]
struct LayerFiles<'a> {
    files: &'a FileList,
    dependencies: bool,
}

impl<'a> LayerFiles<'a> {
    fn stamped(self) -> impl Iterator<Item = (FileEntry, ChangeStamp)> + 'a {
        self.files
            .stamped_matching(move |path| is_dependency_path(path) == self.dependencies)
    }

    fn entries(self) -> impl Iterator<Item = FileEntry> + 'a {
        self.stamped().map(|(entry, _)| entry)
    }
}

/// Returns the layer of `entries`, and whether it came from `cache` rather than being written.
fn cached_layer(
    entries: LayerFiles,
    options: &LayerOptions,
    cache: Option<&LayerCache>,
    work_dir: &Path,
) -> Result<(LayerBlob, bool)> {
    let Some(cache) = cache else {
        return Ok((write_layer(entries.entries(), options, work_dir)?, false));
    };
    // Unchanged stamps find the layer without reading a file. Failing that, the files' bytes
    // may still match a cached layer (after a fresh checkout, say), which costs a read but no
    // compression; the stamps are then recorded for next time.
    let stamp_key = stamp_key(entries.stamped(), options);
    if let Some(blob) = stamp_key.as_ref().and_then(|key| cache.lookup(key)) {
        debug!(digest = %blob.digest, "layer unchanged; reusing it from the cache");
        return Ok((blob, true));
    }
    let content_key = content_key(entries.stamped(), options)?;
    let (blob, reused) = match cache.lookup(&content_key) {
        Some(blob) => {
            debug!(digest = %blob.digest, "layer content unchanged; reusing it from the cache");
            (blob, true)
        }
        None => {
            let written = write_layer(entries.entries(), options, &cache.scratch_dir())?;
            (cache.store(&content_key, written)?, false)
        }
    };
    if let Some(key) = &stamp_key {
        cache.alias(key, &blob)?;
    }
    Ok((blob, reused))
}

/// Reads `SOURCE_DATE_EPOCH`, the reproducible-builds convention for a fixed timestamp.
pub fn source_date_epoch() -> Result<i64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Err(_) => Ok(DEFAULT_EPOCH),
        Ok(value) if value.trim().is_empty() => Ok(DEFAULT_EPOCH),
        Ok(value) => match value.trim().parse::<i64>() {
            Ok(seconds) if seconds >= 0 => Ok(seconds),
            _ => Err(Error::Environment {
                name: "SOURCE_DATE_EPOCH",
                value,
                reason: "expected a whole number of seconds since 1970-01-01 UTC, such as `git log -1 --format=%ct`".to_string(),
            }),
        },
    }
}

/// Reads and parses `package.json`, which every Node.js app has.
fn read_package_json(app_dir: &Path) -> Result<serde_json::Value> {
    let path = app_dir.join("package.json");
    if !app_dir.is_dir() {
        // Let the scan report a missing or non-directory app folder in its own words.
        return FileList::scan(app_dir, &DockerIgnore::empty()).map(|_| serde_json::Value::Null);
    }
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::AppDirectory {
                path: app_dir.to_path_buf(),
                reason: "has no package.json; pass the folder of a Node.js app, or create one with `npm init`".to_string(),
            })
        }
        Err(e) => return Err(Error::io("read", path, e)),
    };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(value) if value.is_object() => Ok(value),
        Ok(_) => Err(Error::AppFile {
            path,
            reason: "is not a JSON object; fix the file so that `npm install` accepts it".to_string(),
        }),
        Err(e) => Err(Error::AppFile {
            path,
            reason: format!("is not valid JSON (line {}, column {}); fix the file so that `npm install` accepts it", e.line(), e.column()),
        }),
    }
}

/// Warns when `engines.node` rules out the Node.js major of an explicit Lambda Node.js base,
/// such as package.json wanting 22 on `nodejs:20`.
fn warn_on_node_mismatch(package: &serde_json::Value, base: &BaseLocation) {
    let Some(range) = engines_node(package) else {
        return;
    };
    let tag = match base {
        BaseLocation::Registry(reference) if reference.repository().ends_with("lambda/nodejs") => {
            reference.tag()
        }
        BaseLocation::Layout { tag, .. } => tag.as_deref(),
        BaseLocation::Registry(_) => None,
    };
    let Some(major) = tag.and_then(major_from_tag) else {
        return;
    };
    if range_admits_major(range, major) == Some(false) {
        warn!("package.json's engines.node `{range}` does not admit Node.js {major}, the major of base image `{base}`");
    }
}

fn engines_node(package: &serde_json::Value) -> Option<&str> {
    package.get("engines")?.get("node")?.as_str()
}

/// `public.ecr.aws/lambda/nodejs:<major>` for the major `engines.node` asks for.
fn default_base(package: &serde_json::Value) -> Result<BaseLocation> {
    let engines = package
        .get("engines")
        .and_then(|e| e.get("node"))
        .and_then(|n| n.as_str());
    let choice = choose_major(engines);
    if let Some(warning) = &choice.warning {
        warn!("{warning}");
    }
    format!("{LAMBDA_NODE_BASE}:{}", choice.major).parse()
}
