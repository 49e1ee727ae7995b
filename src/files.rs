//! The app directory's file list: what `COPY . .` would copy, in a fixed order.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use crate::dockerignore::DockerIgnore;
use crate::error::{Error, Result};
use crate::handler::TaskFiles;

/// The folder under the app directory that goes into the dependency layer.
pub const NODE_MODULES: &str = "node_modules";

/// The kind of an entry of the app directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    /// A regular file (or a hard link, stored as its own regular file) of `size` bytes.
    File {
        size: u64,
    },
    /// A symbolic link whose target resolves inside the app directory, relative to the link.
    Symlink {
        target: String,
    },
}

/// One entry of the app directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The `/`-separated path relative to the app directory.
    pub path: String,
    /// The folder the path is relative to, shared by every entry of a list; holding it once
    /// instead of each entry's absolute path keeps a list of 250,000 files small.
    pub root: Arc<Path>,
    pub kind: EntryKind,
    /// Whether the owner execute bit is set; this alone decides between modes 0755 and 0644.
    pub executable: bool,
}

impl FileEntry {
    /// Returns the entry's location on disk.
    pub fn source(&self) -> PathBuf {
        self.root.join(&self.path)
    }

    /// Reports whether the entry belongs in the dependency layer.
    pub fn is_dependency(&self) -> bool {
        self.path == NODE_MODULES || self.path.starts_with("node_modules/")
    }
}

/// What identifies one version of a file on disk without reading it: the build cache trusts
/// an unchanged stamp to mean unchanged content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ChangeStamp {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub inode: u64,
    pub device: u64,
    pub mode: u32,
}

impl ChangeStamp {
    fn of(metadata: &fs::Metadata) -> ChangeStamp {
        let nanos = |seconds: i64, nanoseconds: i64| {
            i128::from(seconds) * 1_000_000_000 + i128::from(nanoseconds)
        };
        ChangeStamp {
            size: metadata.size(),
            mtime_ns: nanos(metadata.mtime(), metadata.mtime_nsec()),
            ctime_ns: nanos(metadata.ctime(), metadata.ctime_nsec()),
            inode: metadata.ino(),
            device: metadata.dev(),
            mode: metadata.mode(),
        }
    }
}

/// The entries of an app directory, sorted so that every directory precedes its contents.
#[derive(Debug, Clone)]
pub struct FileList {
    root: PathBuf,
    entries: Vec<FileEntry>,
    /// The change stamp of each entry, at the same position.
    stamps: Vec<ChangeStamp>,
}

impl FileList {
    /// Walks `app_dir`, leaving out `.git` folders and what `ignore` excludes.
    ///
    /// Names are sorted byte-wise within each directory, so the order is the same on every
    /// machine and file system.
    pub fn scan(app_dir: &Path, ignore: &DockerIgnore) -> Result<FileList> {
        let root = check_app_directory(app_dir)?;
        let shared_root: Arc<Path> = Arc::from(root.as_path());
        let mut entries = Vec::new();
        let mut stamps = Vec::new();
        let mut walk = walkdir::WalkDir::new(&root)
            .min_depth(1)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();

        while let Some(item) = walk.next() {
            let item = item.map_err(|e| walk_error(&root, e))?;
            let path = relative_path(&root, item.path())?;
            let file_type = item.file_type();

            if file_type.is_dir() && item.file_name() == ".git" {
                walk.skip_current_dir();
                continue;
            }
            if ignore.is_excluded(&path) {
                if file_type.is_dir() && !ignore.may_include_below(&path) {
                    walk.skip_current_dir();
                }
                continue;
            }
            if let Some((entry, stamp)) = scan_entry(&shared_root, item.path(), path, file_type)? {
                entries.push(entry);
                stamps.push(stamp);
            }
        }
        Ok(FileList {
            root,
            entries,
            stamps,
        })
    }

    /// Builds a list from entries made elsewhere (another folder's `node_modules`, say).
    pub fn from_parts(root: PathBuf, entries: Vec<(FileEntry, ChangeStamp)>) -> FileList {
        let (entries, stamps) = entries.into_iter().unzip();
        FileList {
            root,
            entries,
            stamps,
        }
    }

    /// Returns each entry with its change stamp.
    pub fn stamped(&self) -> impl Iterator<Item = (&FileEntry, &ChangeStamp)> {
        self.entries.iter().zip(&self.stamps)
    }

    /// Returns the canonical path of the app directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn entries(&self) -> &[FileEntry] {
        &self.entries
    }

    /// Reports whether an entry exists at `path` (relative, `/`-separated).
    pub fn contains(&self, path: &str) -> bool {
        self.find(path).is_some()
    }

    fn find(&self, path: &str) -> Option<&FileEntry> {
        self.entries.iter().find(|entry| entry.path == path)
    }
}

impl TaskFiles for FileList {
    fn read_file(&self, path: &str) -> Option<Vec<u8>> {
        let entry = self.find(path)?;
        match entry.kind {
            EntryKind::File { .. } => fs::read(entry.source()).ok(),
            EntryKind::Symlink { .. } => {
                let target = fs::canonicalize(entry.source()).ok()?;
                target.is_file().then(|| fs::read(target).ok()).flatten()
            }
            EntryKind::Directory => None,
        }
    }
}

fn check_app_directory(app_dir: &Path) -> Result<PathBuf> {
    let metadata = fs::metadata(app_dir).map_err(|e| Error::AppDirectory {
        path: app_dir.to_path_buf(),
        reason: match e.kind() {
            std::io::ErrorKind::NotFound => {
                "does not exist; pass the folder that holds your app's package.json".to_string()
            }
            _ => format!("cannot be read: {e}"),
        },
    })?;
    if !metadata.is_dir() {
        return Err(Error::AppDirectory {
            path: app_dir.to_path_buf(),
            reason: "is not a directory; pass the folder that holds your app's package.json"
                .to_string(),
        });
    }
    fs::canonicalize(app_dir).map_err(|e| Error::io("resolve", app_dir, e))
}

fn walk_error(root: &Path, error: walkdir::Error) -> Error {
    let path = error.path().unwrap_or(root).to_path_buf();
    match error.into_io_error() {
        Some(source) => Error::io("read", path, source),
        None => Error::AppFile {
            path,
            reason: "cannot be read".to_string(),
        },
    }
}

fn relative_path(root: &Path, path: &Path) -> Result<String> {
    let relative = path.strip_prefix(root).unwrap_or(path);
    match relative.to_str() {
        Some(text) => Ok(text.to_string()),
        None => Err(Error::AppFile {
            path: path.to_path_buf(),
            reason: "the name is not valid UTF-8; rename the file or exclude it in .dockerignore"
                .to_string(),
        }),
    }
}

fn scan_entry(
    root: &Arc<Path>,
    source: &Path,
    path: String,
    file_type: fs::FileType,
) -> Result<Option<(FileEntry, ChangeStamp)>> {
    let metadata = fs::symlink_metadata(source).map_err(|e| Error::io("read", source, e))?;
    let executable = metadata.permissions().mode() & 0o100 != 0;
    let kind = if file_type.is_dir() {
        EntryKind::Directory
    } else if file_type.is_file() {
        EntryKind::File {
            size: metadata.size(),
        }
    } else if file_type.is_symlink() {
        EntryKind::Symlink {
            target: symlink_target(root, source)?,
        }
    } else {
        let what = if file_type.is_socket() {
            "socket"
        } else if file_type.is_fifo() {
            "FIFO"
        } else {
            "device file"
        };
        warn!(path = %source.display(), "skipping {what}: images hold only files, directories and symlinks");
        return Ok(None);
    };
    let entry = FileEntry {
        path,
        root: Arc::clone(root),
        kind,
        executable,
    };
    Ok(Some((entry, ChangeStamp::of(&metadata))))
}

/// Returns the link's target as a path relative to the link, after checking that it resolves
/// inside `root`.
///
/// An absolute target inside the app directory is rewritten relative to the link, because in
/// the image the app lives at `/var/task` and the host's absolute path means nothing there.
fn symlink_target(root: &Path, link: &Path) -> Result<String> {
    let target = fs::read_link(link).map_err(|e| Error::io("read the symlink", link, e))?;
    let parent = link.parent().unwrap_or(root);
    let outside = || Error::AppFile {
        path: link.to_path_buf(),
        reason: format!(
            "symlink points outside the app directory, to `{}`; copy the target into the app \
             or exclude the link in .dockerignore",
            target.display()
        ),
    };

    let lexical = normalize(&parent.join(&target)).ok_or_else(outside)?;
    if !lexical.starts_with(root) {
        return Err(outside());
    }
    // The lexical check misses links that pass through another link; the canonical path does not.
    match fs::canonicalize(link) {
        Ok(resolved) if !resolved.starts_with(root) => return Err(outside()),
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(40) => {
            return Err(Error::AppFile {
                path: link.to_path_buf(),
                reason: "symlink loop; fix the links or exclude them in .dockerignore".to_string(),
            })
        }
        Err(_) => {
            warn!(path = %link.display(), target = %target.display(), "symlink target does not exist");
        }
    }

    let relative = if target.is_absolute() {
        relative_to(&lexical, parent)
    } else {
        target
    };
    relative
        .to_str()
        .map(str::to_string)
        .ok_or_else(|| Error::AppFile {
            path: link.to_path_buf(),
            reason: "the symlink target is not valid UTF-8".to_string(),
        })
}

/// Resolves `.` and `..` without touching the file system; `None` if `..` climbs above `/`.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// Returns `path` relative to the directory `base`; both are absolute and normalized.
fn relative_to(path: &Path, base: &Path) -> PathBuf {
    let path_parts: Vec<_> = path.components().collect();
    let base_parts: Vec<_> = base.components().collect();
    let common = path_parts
        .iter()
        .zip(&base_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = PathBuf::new();
    for _ in common..base_parts.len() {
        out.push("..");
    }
    for part in &path_parts[common..] {
        out.push(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scan(dir: &Path) -> Vec<String> {
        FileList::scan(dir, &DockerIgnore::empty())
            .unwrap()
            .entries()
            .iter()
            .map(|entry| entry.path.clone())
            .collect()
    }

    #[test]
    fn scan_orders_parents_first_and_skips_git() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::create_dir_all(dir.path().join(".git/objects")).unwrap();
        fs::write(dir.path().join("a/b/c.js"), "").unwrap();
        fs::write(dir.path().join("a-z.js"), "").unwrap();
        fs::write(dir.path().join("package.json"), "{}").unwrap();
        assert_eq!(
            scan(dir.path()),
            ["a", "a/b", "a/b/c.js", "a-z.js", "package.json"]
        );
    }

    #[test]
    fn symlink_inside_is_kept_relative() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("node_modules/.bin")).unwrap();
        fs::create_dir_all(dir.path().join("node_modules/tool")).unwrap();
        fs::write(dir.path().join("node_modules/tool/cli.js"), "").unwrap();
        symlink("../tool/cli.js", dir.path().join("node_modules/.bin/tool")).unwrap();
        let absolute = fs::canonicalize(dir.path())
            .unwrap()
            .join("node_modules/tool/cli.js");
        symlink(&absolute, dir.path().join("abs-link")).unwrap();

        let list = FileList::scan(dir.path(), &DockerIgnore::empty()).unwrap();
        let target = |path: &str| match &list.find(path).unwrap().kind {
            EntryKind::Symlink { target } => target.clone(),
            other => panic!("{path} is {other:?}"),
        };
        assert_eq!(target("node_modules/.bin/tool"), "../tool/cli.js");
        assert_eq!(target("abs-link"), "node_modules/tool/cli.js");
    }

    #[test]
    fn symlink_outside_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        symlink("../../etc/passwd", dir.path().join("escape")).unwrap();
        let error = FileList::scan(dir.path(), &DockerIgnore::empty()).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("escape"), "{message}");
        assert!(message.contains("outside the app directory"), "{message}");
    }

    #[test]
    fn missing_directory_is_reported() {
        let error =
            FileList::scan(Path::new("/nonexistent/app"), &DockerIgnore::empty()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "app directory `/nonexistent/app` does not exist; pass the folder that holds your app's package.json"
        );
    }

    #[test]
    fn dependency_entries_are_recognized() {
        let entry = |path: &str| FileEntry {
            path: path.to_string(),
            root: Arc::from(Path::new("/")),
            kind: EntryKind::Directory,
            executable: false,
        };
        assert!(entry("node_modules").is_dependency());
        assert!(entry("node_modules/x").is_dependency());
        assert!(!entry("node_modules_old/x").is_dependency());
        assert!(!entry("src/node_modules").is_dependency());
    }
}
