//! Unpacking an image's `/var/task` into a local folder: every layer in order, with OCI
//! whiteouts applied, and nothing written outside the folder.

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::InvokeError;
use crate::base::BaseImage;
use crate::blob::{self, BlobStream};
use crate::digest::Digest;
use crate::error::Error;
use crate::image::{Layer, LayerSource};
use crate::layer::TASK_ROOT;
use crate::media_type::MediaType;
use crate::registry::RegistryClient;

/// OCI whiteout prefix: `.wh.NAME` deletes `NAME` from the layers below.
const WHITEOUT_PREFIX: &str = ".wh.";
/// OCI opaque whiteout: deletes everything the layers below put in its folder.
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// Chunks of a layer buffered between the download and the extraction.
const CHUNKS_IN_FLIGHT: usize = 16;

/// Returns the layers of an image loaded with [`BaseImage::load`], all read from its location.
pub fn image_layers(image: &BaseImage) -> Vec<Layer> {
    image
        .manifest
        .layers
        .iter()
        .map(|descriptor| Layer {
            descriptor: descriptor.clone(),
            source: LayerSource::Base,
        })
        .collect()
}

/// Extracts what `layers` put below `/var/task` into a new temporary folder, which becomes the
/// task root: layers apply in order, and whiteouts delete what earlier layers wrote.
///
/// Layers marked [`LayerSource::Base`] are read from `base` through `client`, and layers in
/// files are read from disk. Every layer is checked against its digest and size.
///
/// # Errors
///
/// Fails when a layer cannot be read or does not match its descriptor, when it is not a tar or
/// gzip tar, and when an entry's path leaves `/var/task` (through `..` or a symbolic link). A
/// symbolic link whose target is outside `/var/task` is skipped with a warning instead, because
/// the files it points to (Lambda layers in `/opt`, for example) are not unpacked.
pub async fn unpack_task_root(
    layers: &[Layer],
    base: &BaseImage,
    client: &RegistryClient,
) -> Result<tempfile::TempDir, InvokeError> {
    let folder = tempfile::Builder::new()
        .prefix("lambda-image-task-")
        .tempdir()
        .map_err(|e| Error::io("create a temporary folder in", std::env::temp_dir(), e))?;
    let root =
        fs::canonicalize(folder.path()).map_err(|e| Error::io("resolve", folder.path(), e))?;

    for layer in layers {
        check_media_type(&layer.descriptor.media_type, &layer.descriptor.digest)?;
        let stream = open_layer(layer, base, client).await?;
        let digest = layer.descriptor.digest.clone();
        apply_layer(stream, root.clone(), digest).await?;
    }
    tokio::task::spawn_blocking(move || remove_escaping_links(&root))
        .await
        .expect("the link check does not panic")?;
    Ok(folder)
}

/// Deletes symbolic links that resolve outside the task root. Each link's own target was
/// checked when it was written, but a chain of links can still lead out, for example a link
/// whose target climbs out of the folder that another link points to.
fn remove_escaping_links(root: &Path) -> Result<(), InvokeError> {
    for entry in walkdir::WalkDir::new(root).min_depth(1) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            Error::io("read", path, e.into())
        })?;
        if !entry.path_is_symlink() {
            continue;
        }
        // A link whose target does not exist resolves to nothing, so it is kept.
        let Ok(resolved) = fs::canonicalize(entry.path()) else {
            continue;
        };
        if !resolved.starts_with(root) {
            warn!(
                link = %entry.path().display(),
                "deleting a symbolic link that resolves outside /var/task"
            );
            remove_path(entry.path())?;
        }
    }
    Ok(())
}

fn check_media_type(media_type: &MediaType, digest: &Digest) -> Result<(), InvokeError> {
    if *media_type == MediaType::OciLayerZstd || media_type.as_str().ends_with("+zstd") {
        return Err(InvokeError::LayerFormat {
            digest: digest.clone(),
            reason: format!(
                "has media type `{media_type}`; invoke reads only tar and gzip tar layers"
            ),
        });
    }
    Ok(())
}

async fn open_layer(
    layer: &Layer,
    base: &BaseImage,
    client: &RegistryClient,
) -> Result<BlobStream, InvokeError> {
    let descriptor = &layer.descriptor;
    match &layer.source {
        LayerSource::Base => Ok(base.open_blob(client, descriptor).await?),
        LayerSource::File(path) => {
            let stream = blob::file_stream(path)
                .await
                .map_err(|e| Error::io("read the layer", path, e))?;
            Ok(blob::verify(
                stream,
                descriptor.digest.clone(),
                descriptor.size,
                path.display().to_string(),
            ))
        }
    }
}

/// Streams one layer into the extraction, which runs on a blocking thread.
async fn apply_layer(
    mut stream: BlobStream,
    root: PathBuf,
    digest: Digest,
) -> Result<(), InvokeError> {
    let (sender, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let layer_digest = digest.clone();
    let extraction = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            receiver,
            chunk: Bytes::new(),
        };
        LayerWriter::new(&root, layer_digest).apply(reader)
    });
    while let Some(chunk) = stream.next().await {
        let failed = chunk.is_err();
        // A send fails once the extraction has stopped, which reports its own error.
        if sender.send(chunk).await.is_err() || failed {
            break;
        }
    }
    drop(sender);
    extraction
        .await
        .expect("the layer extraction does not panic")
}

/// A blocking reader over the chunks that the download sends.
struct ChannelReader {
    receiver: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.receiver.blocking_recv() {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(error)) => return Err(error),
                None => return Ok(0),
            }
        }
        let count = buffer.len().min(self.chunk.len());
        buffer[..count].copy_from_slice(&self.chunk[..count]);
        self.chunk.advance(count);
        Ok(count)
    }
}

/// Applies one layer's entries to the task root.
struct LayerWriter<'a> {
    /// The task root, canonical, so that resolved paths compare with it.
    root: &'a Path,
    digest: Digest,
    /// Paths, relative to the task root, that this layer wrote. Whiteouts spare them, because a
    /// whiteout applies only to the layers below its own.
    written: HashSet<PathBuf>,
}

/// The place an entry's path names, relative to `/var/task`.
enum Target {
    /// Something below `/var/task`.
    Task(PathBuf),
    /// A whiteout that deletes `/var/task` or one of its parents, or an opaque whiteout in one of
    /// them, which empties the task root.
    ClearTaskRoot,
    /// Something elsewhere in the image.
    Outside,
}

impl<'a> LayerWriter<'a> {
    fn new(root: &'a Path, digest: Digest) -> Self {
        LayerWriter {
            root,
            digest,
            written: HashSet::new(),
        }
    }

    fn apply(mut self, reader: impl Read) -> Result<(), InvokeError> {
        let digest = self.digest.clone();
        let read_error = |source| InvokeError::LayerRead {
            digest: digest.clone(),
            source,
        };
        let mut input = BufReader::with_capacity(256 * 1024, reader);
        let is_gzip = input
            .fill_buf()
            .map_err(read_error)?
            .starts_with(&[0x1f, 0x8b]);
        if is_gzip {
            let mut decoder = flate2::bufread::MultiGzDecoder::new(input);
            self.apply_tar(&mut decoder)?;
            // Read to the end, so that the digest check on the last chunk runs.
            io::copy(&mut decoder, &mut io::sink()).map_err(read_error)?;
            io::copy(&mut decoder.into_inner(), &mut io::sink()).map_err(read_error)?;
        } else {
            self.apply_tar(&mut input)?;
            io::copy(&mut input, &mut io::sink()).map_err(read_error)?;
        }
        Ok(())
    }

    fn apply_tar(&mut self, input: &mut dyn Read) -> Result<(), InvokeError> {
        let mut archive = tar::Archive::new(input);
        let entries = archive
            .entries()
            .map_err(|source| self.read_error(source))?;
        for entry in entries {
            let mut entry = entry.map_err(|source| self.read_error(source))?;
            let path = entry
                .path()
                .map_err(|source| self.read_error(source))?
                .into_owned();
            match self.classify(&path)? {
                Target::Outside => {}
                Target::ClearTaskRoot => self.clear_folder(Path::new(""))?,
                Target::Task(relative) => self.apply_entry(&mut entry, &path, &relative)?,
            }
        }
        Ok(())
    }

    fn read_error(&self, source: io::Error) -> InvokeError {
        InvokeError::LayerRead {
            digest: self.digest.clone(),
            source,
        }
    }

    fn unsafe_entry(&self, entry: &Path, reason: impl Into<String>) -> InvokeError {
        InvokeError::UnsafeLayerEntry {
            digest: self.digest.clone(),
            entry: entry.display().to_string(),
            reason: reason.into(),
        }
    }

    /// Places an entry's path relative to `/var/task`, rejecting any that leaves the image root.
    fn classify(&self, path: &Path) -> Result<Target, InvokeError> {
        let components = normal_components(path)
            .ok_or_else(|| self.unsafe_entry(path, "leaves the image root through `..`"))?;
        let task_root: Vec<&str> = TASK_ROOT.split('/').collect();
        let matched = components
            .iter()
            .zip(&task_root)
            .take_while(|(component, expected)| component == expected)
            .count();
        if matched == task_root.len() {
            return Ok(Target::Task(components[matched..].iter().collect()));
        }
        // A whiteout among the parents of /var/task: `.wh.var` or `var/.wh.task` deletes it,
        // and `.wh..wh..opq` in `/` or `var/` deletes what lower layers put there.
        if components.len() == matched + 1 {
            let name = components[matched].as_str();
            let deletes_task_path = name
                .strip_prefix(WHITEOUT_PREFIX)
                .is_some_and(|deleted| deleted == task_root[matched]);
            if name == OPAQUE_WHITEOUT || deletes_task_path {
                return Ok(Target::ClearTaskRoot);
            }
        }
        Ok(Target::Outside)
    }

    fn apply_entry(
        &mut self,
        entry: &mut tar::Entry<'_, &mut dyn Read>,
        path: &Path,
        relative: &Path,
    ) -> Result<(), InvokeError> {
        let Some(name) = relative.file_name().and_then(|name| name.to_str()) else {
            // The entry for /var/task itself, which the folder already is.
            return Ok(());
        };
        let parent_relative = relative.parent().unwrap_or(Path::new(""));
        if name == OPAQUE_WHITEOUT {
            return self.clear_folder(parent_relative);
        }
        if let Some(deleted) = name.strip_prefix(WHITEOUT_PREFIX) {
            if deleted.is_empty() || deleted == "." || deleted == ".." {
                return Err(self.unsafe_entry(path, "is a whiteout that names no file"));
            }
            return self.delete_lower(&parent_relative.join(deleted));
        }

        let parent = self.make_parent(path, parent_relative)?;
        let destination = parent.join(name);
        let entry_type = entry.header().entry_type();
        match entry_type {
            tar::EntryType::Directory => self.write_directory(entry, &destination)?,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.write_file(entry, &destination)?
            }
            tar::EntryType::Symlink => self.write_symlink(entry, path, &destination)?,
            tar::EntryType::Link => self.write_hard_link(entry, path, &destination)?,
            other => {
                debug!(
                    entry = %path.display(),
                    kind = ?other,
                    "skipping a layer entry that is not a file, folder or link"
                );
                return Ok(());
            }
        }
        self.written.insert(relative.to_path_buf());
        Ok(())
    }

    /// Creates the folders above an entry and returns the resolved parent folder. A symbolic
    /// link among them is followed only when it resolves to a folder inside the task root.
    fn make_parent(&self, entry: &Path, parent_relative: &Path) -> Result<PathBuf, InvokeError> {
        let mut current = self.root.to_path_buf();
        for component in parent_relative.components() {
            let next = current.join(component);
            match fs::symlink_metadata(&next) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&next).map_err(|e| Error::io("create", &next, e))?;
                    current = next;
                }
                Err(error) => return Err(Error::io("read", &next, error).into()),
                Ok(metadata) if metadata.is_dir() => current = next,
                Ok(metadata) if metadata.file_type().is_symlink() => {
                    current = self.resolve_inside(&next).ok_or_else(|| {
                        self.unsafe_entry(
                            entry,
                            "is below a symbolic link that leads outside /var/task",
                        )
                    })?;
                }
                Ok(_) => {
                    // A file from a lower layer where this layer needs a folder: the folder wins.
                    remove_path(&next)?;
                    fs::create_dir(&next).map_err(|e| Error::io("create", &next, e))?;
                    current = next;
                }
            }
        }
        Ok(current)
    }

    /// Returns the canonical path of `link` when it resolves to a folder inside the task root.
    fn resolve_inside(&self, link: &Path) -> Option<PathBuf> {
        let resolved = fs::canonicalize(link).ok()?;
        (resolved.starts_with(self.root) && resolved.is_dir()).then_some(resolved)
    }

    fn write_directory(
        &self,
        entry: &tar::Entry<'_, &mut dyn Read>,
        destination: &Path,
    ) -> Result<(), InvokeError> {
        match fs::symlink_metadata(destination) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                remove_path(destination)?;
                fs::create_dir(destination).map_err(|e| Error::io("create", destination, e))?;
            }
            Err(_) => {
                fs::create_dir(destination).map_err(|e| Error::io("create", destination, e))?
            }
        }
        // The owner keeps full access, so that later layers can write here and the temporary
        // folder can be deleted.
        set_mode(destination, entry.header().mode().unwrap_or(0o755) | 0o700)
    }

    fn write_file(
        &self,
        entry: &mut tar::Entry<'_, &mut dyn Read>,
        destination: &Path,
    ) -> Result<(), InvokeError> {
        if fs::symlink_metadata(destination).is_ok() {
            remove_path(destination)?;
        }
        let mut file =
            fs::File::create(destination).map_err(|e| Error::io("create", destination, e))?;
        io::copy(entry, &mut file).map_err(|source| self.read_error(source))?;
        // The handler runs as the current user, who must be able to read every file.
        set_mode(destination, entry.header().mode().unwrap_or(0o644) | 0o600)
    }

    fn write_symlink(
        &self,
        entry: &tar::Entry<'_, &mut dyn Read>,
        path: &Path,
        destination: &Path,
    ) -> Result<(), InvokeError> {
        let target = entry
            .link_name()
            .map_err(|source| self.read_error(source))?
            .ok_or_else(|| self.unsafe_entry(path, "is a symbolic link without a target"))?;
        if fs::symlink_metadata(destination).is_ok() {
            remove_path(destination)?;
        }
        let parent_relative = destination
            .parent()
            .and_then(|parent| parent.strip_prefix(self.root).ok())
            .unwrap_or(Path::new(""));
        let Some(local_target) = link_target_inside(&target, parent_relative) else {
            warn!(
                entry = %path.display(),
                target = %target.display(),
                "skipping a symbolic link to a target outside /var/task, which is not unpacked"
            );
            return Ok(());
        };
        create_symlink(&local_target, destination)
    }

    fn write_hard_link(
        &self,
        entry: &tar::Entry<'_, &mut dyn Read>,
        path: &Path,
        destination: &Path,
    ) -> Result<(), InvokeError> {
        let target = entry
            .link_name()
            .map_err(|source| self.read_error(source))?
            .ok_or_else(|| self.unsafe_entry(path, "is a hard link without a target"))?;
        let source = match self.classify(&target)? {
            Target::Task(relative) if relative.file_name().is_some() => relative,
            _ => {
                warn!(
                    entry = %path.display(),
                    target = %target.display(),
                    "skipping a hard link to a file outside /var/task, which invoke does not unpack"
                );
                return Ok(());
            }
        };
        let missing_source =
            || self.unsafe_entry(path, "links to a file that no earlier entry wrote");
        let source_parent = source.parent().unwrap_or(Path::new(""));
        let source_folder = self
            .existing_folder(source_parent)
            .ok_or_else(missing_source)?;
        let source_file = source_folder.join(source.file_name().expect("checked above"));
        if fs::symlink_metadata(&source_file).is_err() {
            return Err(missing_source());
        }
        if fs::symlink_metadata(destination).is_ok() {
            remove_path(destination)?;
        }
        if fs::hard_link(&source_file, destination).is_err() {
            fs::copy(&source_file, destination).map_err(|e| Error::io("copy", &source_file, e))?;
        }
        Ok(())
    }

    /// Resolves an existing folder below the task root without leaving it.
    fn existing_folder(&self, relative: &Path) -> Option<PathBuf> {
        let mut current = self.root.to_path_buf();
        for component in relative.components() {
            let next = current.join(component);
            let metadata = fs::symlink_metadata(&next).ok()?;
            current = if metadata.file_type().is_symlink() {
                self.resolve_inside(&next)?
            } else if metadata.is_dir() {
                next
            } else {
                return None;
            };
        }
        Some(current)
    }

    /// Deletes `relative` unless this layer wrote it.
    fn delete_lower(&self, relative: &Path) -> Result<(), InvokeError> {
        if self.written.contains(relative) {
            return Ok(());
        }
        let parent = relative.parent().unwrap_or(Path::new(""));
        let (Some(folder), Some(name)) = (self.existing_folder(parent), relative.file_name())
        else {
            return Ok(());
        };
        let path = folder.join(name);
        if fs::symlink_metadata(&path).is_ok() {
            remove_path(&path)?;
        }
        Ok(())
    }

    /// Deletes what lower layers put in the folder `relative`, keeping what this layer wrote.
    fn clear_folder(&self, relative: &Path) -> Result<(), InvokeError> {
        let Some(folder) = self.existing_folder(relative) else {
            return Ok(());
        };
        let children = fs::read_dir(&folder).map_err(|e| Error::io("read", &folder, e))?;
        for child in children {
            let child = child.map_err(|e| Error::io("read", &folder, e))?;
            let child_relative = relative.join(child.file_name());
            if self.written.contains(&child_relative) {
                if child.file_type().is_ok_and(|kind| kind.is_dir()) {
                    self.clear_folder(&child_relative)?;
                }
                continue;
            }
            remove_path(&child.path())?;
        }
        Ok(())
    }
}

/// Returns the path's normal components, dropping `/` and `.`, or `None` when it has `..`.
fn normal_components(path: &Path) -> Option<Vec<String>> {
    let mut components = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => components.push(name.to_string_lossy().into_owned()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(components)
}

/// Returns the target to write for a symbolic link in the folder `parent_relative` (relative
/// to the task root) when the link's target stays inside `/var/task`. An absolute target under
/// `/var/task` becomes a relative one, so that it resolves inside the local task root.
fn link_target_inside(target: &Path, parent_relative: &Path) -> Option<PathBuf> {
    let mut resolved: Vec<String> = if target.is_absolute() {
        Vec::new()
    } else {
        let mut image_path: Vec<String> = TASK_ROOT.split('/').map(str::to_string).collect();
        image_path.extend(normal_components(parent_relative)?);
        image_path
    };
    for component in target.components() {
        match component {
            Component::Normal(name) => resolved.push(name.to_string_lossy().into_owned()),
            Component::ParentDir => {
                resolved.pop()?;
            }
            Component::RootDir | Component::CurDir => {}
            Component::Prefix(_) => return None,
        }
    }
    let task_root: Vec<&str> = TASK_ROOT.split('/').collect();
    let inside =
        resolved.len() >= task_root.len() && resolved.iter().zip(&task_root).all(|(a, b)| a == b);
    if !inside {
        return None;
    }
    if !target.is_absolute() {
        return Some(target.to_path_buf());
    }
    let depth = parent_relative.components().count();
    let mut relative: PathBuf = std::iter::repeat_n("..", depth).collect();
    relative.extend(&resolved[task_root.len()..]);
    if relative.as_os_str().is_empty() {
        relative.push(".");
    }
    Some(relative)
}

fn remove_path(path: &Path) -> Result<(), InvokeError> {
    let metadata = fs::symlink_metadata(path).map_err(|e| Error::io("read", path, e))?;
    let result = if metadata.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    result.map_err(|e| Error::io("delete", path, e).into())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), InvokeError> {
    use std::os::unix::fs::PermissionsExt;
    // Set-user-ID and similar bits are dropped: the files run as the current user.
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o777))
        .map_err(|e| Error::io("set the mode of", path, e).into())
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), InvokeError> {
    Ok(())
}

#[cfg(unix)]
fn create_symlink(target: &Path, link: &Path) -> Result<(), InvokeError> {
    std::os::unix::fs::symlink(target, link).map_err(|e| Error::io("create", link, e).into())
}

#[cfg(not(unix))]
fn create_symlink(target: &Path, link: &Path) -> Result<(), InvokeError> {
    warn!(
        link = %link.display(),
        target = %target.display(),
        "skipping a symbolic link, because links on this platform need privileges"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_link_targets_inside_are_kept() {
        let target = link_target_inside(Path::new("../lib/a.js"), Path::new("node_modules/x"));
        assert_eq!(target, Some(PathBuf::from("../lib/a.js")));
        let sibling = link_target_inside(Path::new("b.js"), Path::new(""));
        assert_eq!(sibling, Some(PathBuf::from("b.js")));
    }

    #[test]
    fn absolute_link_targets_become_relative() {
        let target = link_target_inside(Path::new("/var/task/lib/a.js"), Path::new("bin/tools"));
        assert_eq!(target, Some(PathBuf::from("../../lib/a.js")));
        let root = link_target_inside(Path::new("/var/task"), Path::new(""));
        assert_eq!(root, Some(PathBuf::from(".")));
    }

    #[test]
    fn link_targets_outside_are_dropped() {
        for (target, parent) in [
            ("../../etc/passwd", ""),
            ("..", ""),
            ("/opt/nodejs/node_modules", ""),
            ("/var", "a"),
            ("../../../../../../x", "a/b"),
            ("/var/taskforce/x", ""),
        ] {
            assert_eq!(
                link_target_inside(Path::new(target), Path::new(parent)),
                None,
                "{target} from {parent:?}"
            );
        }
    }

    #[test]
    fn normal_components_reject_parent_references() {
        assert_eq!(
            normal_components(Path::new("./var/task/a.js")),
            Some(vec!["var".into(), "task".into(), "a.js".into()])
        );
        assert_eq!(normal_components(Path::new("var/task/../../etc")), None);
    }
}
