//! The app directory's file list: what `COPY . .` would copy, in a fixed order.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
        is_dependency_path(&self.path)
    }
}

/// Reports whether the entry at `path` (relative, `/`-separated) belongs in the dependency layer.
pub fn is_dependency_path(path: &str) -> bool {
    path == NODE_MODULES || path.starts_with("node_modules/")
}

/// What identifies one version of a file on disk without reading it: the build cache trusts
/// an unchanged stamp to mean unchanged content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ChangeStamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub device: u64,
    pub mode: u32,
}

impl ChangeStamp {
    fn of(metadata: &fs::Metadata) -> ChangeStamp {
        // Nanoseconds since 1970 fit an i64 until the year 2262; later times saturate.
        let nanos = |seconds: i64, nanoseconds: i64| {
            seconds
                .saturating_mul(1_000_000_000)
                .saturating_add(nanoseconds)
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
///
/// The list of a large app contains several hundred thousand entries for the whole build, so
/// it keeps them packed (see [`Packed`]) and hands out each [`FileEntry`] as it is read.
#[derive(Debug, Clone)]
pub struct FileList {
    root: Arc<Path>,
    packed: Packed,
}

impl FileList {
    /// Walks `app_dir`, leaving out `.git` folders and what `ignore` excludes.
    ///
    /// Names are sorted byte-wise within each directory, so the order is the same on every
    /// machine and file system.
    pub fn scan(app_dir: &Path, ignore: &DockerIgnore) -> Result<FileList> {
        FileList::scan_with(app_dir, ignore, true)
    }

    /// Walks `app_dir` as `scan` does, but leaves out its `node_modules` folder unless
    /// `include_dependencies` is set: a build that installs the dependencies elsewhere never
    /// reads the app's own.
    pub fn scan_with(
        app_dir: &Path,
        ignore: &DockerIgnore,
        include_dependencies: bool,
    ) -> Result<FileList> {
        let root: Arc<Path> = Arc::from(check_app_directory(app_dir)?);
        let mut walk = Walk::new(&root, ignore, include_dependencies, true);
        walk.directory(&root, "")?;

        // The walk above left the packages' folders to these threads, which take them in order.
        // This thread puts each result in the place the walk kept for it as soon as the
        // results before it are in, so that few walked folders wait in memory at once.
        let deferred = std::mem::take(&mut walk.deferred);
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let threads = crate::layer::default_threads().clamp(1, MAX_SCAN_THREADS);
        let (sender, receiver) = std::sync::mpsc::channel();
        let packed = std::thread::scope(|scope| {
            for _ in 0..threads {
                let sender = sender.clone();
                let (deferred, next, stop, root) = (&deferred, &next, &stop, &root);
                scope.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(folder) = deferred.get(index) else {
                            return;
                        };
                        let mut part = Walk::new(root, ignore, true, false);
                        let result = part.directory(&folder.source, &folder.path);
                        if sender.send((index, result.map(|()| part.entries))).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(sender);

            let mut packed = Packed::default();
            let mut walked = walk.entries.iter();
            let mut waiting = BTreeMap::new();
            let mut merged = 0;
            let mut moved = 0;
            for (index, result) in receiver {
                waiting.insert(index, result);
                while let Some(result) = waiting.remove(&merged) {
                    let part = match result {
                        Ok(part) => part,
                        Err(error) => {
                            stop.store(true, Ordering::Relaxed);
                            return Err(error);
                        }
                    };
                    let position = deferred[merged].position;
                    for (path, kind, executable, stamp) in walked.by_ref().take(position - moved) {
                        packed.push(&path, kind, executable, stamp);
                    }
                    moved = position;
                    packed.append(part);
                    merged += 1;
                }
            }
            for (path, kind, executable, stamp) in walked {
                packed.push(&path, kind, executable, stamp);
            }
            Ok(packed)
        })?;
        Ok(FileList { root, packed })
    }

    /// Returns each entry with its change stamp, in order.
    pub fn stamped(&self) -> impl Iterator<Item = (FileEntry, ChangeStamp)> + '_ {
        self.stamped_matching(|_| true)
    }

    /// Returns each entry whose path `keep` accepts, with its change stamp, in order.
    pub fn stamped_matching<'a>(
        &'a self,
        keep: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = (FileEntry, ChangeStamp)> + 'a {
        let mut records = self.packed.iter();
        std::iter::from_fn(move || {
            let (path, kind, executable, stamp) = records.next_matching(&keep)?;
            let entry = FileEntry {
                path,
                root: Arc::clone(&self.root),
                kind,
                executable,
            };
            Some((entry, stamp))
        })
    }

    /// Returns the entries in order.
    pub fn entries(&self) -> impl Iterator<Item = FileEntry> + '_ {
        self.stamped().map(|(entry, _)| entry)
    }

    /// Returns the entries whose path `keep` accepts, in order.
    pub fn entries_matching<'a>(
        &'a self,
        keep: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = FileEntry> + 'a {
        self.stamped_matching(keep).map(|(entry, _)| entry)
    }

    /// Returns the total size of the regular files, without building any entry.
    pub fn file_bytes(&self) -> u64 {
        self.packed.records.iter().map(|record| record.size).sum()
    }

    /// Returns the canonical path of the app directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Returns the number of entries.
    pub fn len(&self) -> usize {
        self.packed.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packed.records.is_empty()
    }

    /// Reports whether an entry exists at `path` (relative, `/`-separated).
    pub fn contains(&self, path: &str) -> bool {
        self.find(path).is_some()
    }

    fn find(&self, path: &str) -> Option<FileEntry> {
        self.entries_matching(|candidate| candidate == path).next()
    }
}

/// Entries stored one after another with their paths front-coded: each record keeps how many
/// leading bytes its path shares with the path before it, and `text` only the rest. Walk
/// order puts a folder's contents right after it, so the rest is mostly the entry's own name.
///
/// On an app of 303,652 entries whose paths average 78 bytes, the suffixes take 3.9 MB, where
/// the paths took 24 MB in allocations of their own. With its records and stamps the list is
/// 26 MB instead of about 65 MB, and the peak RSS of a push fell from 94 MB to 49 MB.
#[derive(Debug, Clone, Default)]
struct Packed {
    records: Vec<Record>,
    /// Each record's path suffix, followed by its symlink target when it has one.
    text: String,
    /// The change stamp of each record, at the same position.
    stamps: Vec<ChangeStamp>,
    /// The path of the last record.
    last: String,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    /// The file size; zero for folders and symlinks.
    size: u64,
    /// Leading bytes of the path shared with the previous record's path.
    shared: u32,
    /// Bytes of the path after those, in `text`.
    suffix: u32,
    /// Bytes of the symlink target after the suffix in `text`.
    target: u32,
    kind: RecordKind,
    executable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordKind {
    Directory,
    File,
    Symlink,
}

impl Packed {
    fn push(&mut self, path: &str, kind: EntryKind, executable: bool, stamp: ChangeStamp) {
        let mut shared = self
            .last
            .bytes()
            .zip(path.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        while !path.is_char_boundary(shared) {
            shared -= 1;
        }
        let suffix = &path[shared..];
        self.text.push_str(suffix);
        let (kind, size, target) = match kind {
            EntryKind::Directory => (RecordKind::Directory, 0, 0),
            EntryKind::File { size } => (RecordKind::File, size, 0),
            EntryKind::Symlink { target } => {
                self.text.push_str(&target);
                (RecordKind::Symlink, 0, target.len())
            }
        };
        self.records.push(Record {
            size,
            shared: length(shared),
            suffix: length(suffix.len()),
            target: length(target),
            kind,
            executable,
        });
        self.stamps.push(stamp);
        self.last.truncate(shared);
        self.last.push_str(suffix);
    }

    /// Adds the records of `other` after these. `other` started empty, so its first record
    /// stores its whole path and decodes the same after these records as it did there.
    fn append(&mut self, mut other: Packed) {
        self.records.append(&mut other.records);
        self.text.push_str(&other.text);
        self.stamps.append(&mut other.stamps);
        if !other.last.is_empty() {
            self.last = other.last;
        }
    }

    fn iter(&self) -> PackedIter<'_> {
        PackedIter {
            packed: self,
            index: 0,
            offset: 0,
            path: String::new(),
        }
    }
}

/// Converts a path's length for a [`Record`]. Linux limits paths and link targets to 4,096
/// bytes (PATH_MAX), so a length past `u32::MAX` is a bug.
fn length(bytes: usize) -> u32 {
    u32::try_from(bytes).expect("a path or link target is shorter than 4 GiB")
}

struct PackedIter<'a> {
    packed: &'a Packed,
    index: usize,
    offset: usize,
    /// The path of the record read last.
    path: String,
}

impl<'a> PackedIter<'a> {
    /// Moves to the next record and returns it with its target; `self.path` is then its path.
    fn advance(&mut self) -> Option<(Record, &'a str)> {
        let record = *self.packed.records.get(self.index)?;
        let text = &self.packed.text;
        let suffix_end = self.offset + record.suffix as usize;
        let target_end = suffix_end + record.target as usize;
        self.path.truncate(record.shared as usize);
        self.path.push_str(&text[self.offset..suffix_end]);
        self.offset = target_end;
        self.index += 1;
        Some((record, &text[suffix_end..target_end]))
    }

    /// Returns the next record whose path `keep` accepts. Paths are built in place, so the
    /// records skipped cost no allocation.
    fn next_matching(
        &mut self,
        keep: impl Fn(&str) -> bool,
    ) -> Option<(String, EntryKind, bool, ChangeStamp)> {
        let (record, target) = loop {
            let (record, target) = self.advance()?;
            if keep(&self.path) {
                break (record, target);
            }
        };
        let kind = match record.kind {
            RecordKind::Directory => EntryKind::Directory,
            RecordKind::File => EntryKind::File { size: record.size },
            RecordKind::Symlink => EntryKind::Symlink {
                target: target.to_string(),
            },
        };
        let stamp = self.packed.stamps[self.index - 1];
        Some((self.path.clone(), kind, record.executable, stamp))
    }
}

impl<'a> Iterator for PackedIter<'a> {
    type Item = (String, EntryKind, bool, ChangeStamp);

    fn next(&mut self) -> Option<Self::Item> {
        self.next_matching(|_| true)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.packed.records.len() - self.index;
        (left, Some(left))
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

/// A walk of an app directory in progress.
///
/// It reads each directory with `std::fs::read_dir` and takes each entry's metadata from
/// `DirEntry::metadata`, which on Linux stats the name relative to the open directory. The
/// `walkdir` crate stats the full path instead, and resolving every component of it again made
/// up most of a warm build's time on a 6,600-file app.
struct Walk<'a> {
    root: Arc<Path>,
    ignore: &'a DockerIgnore,
    include_dependencies: bool,
    entries: Packed,
    /// Whether package folders are left for other threads, in `deferred`.
    defer: bool,
    deferred: Vec<DeferredFolder>,
}

/// A folder whose contents another thread walks.
struct DeferredFolder {
    source: PathBuf,
    path: String,
    /// The position of its contents: the number of entries before them in the parent walk.
    position: usize,
}

/// The maximum number of threads that scan an app directory. Stat calls on cached metadata
/// gain little beyond one thread a core.
const MAX_SCAN_THREADS: usize = 8;

/// Reports whether the folder at `path` is a unit of work for the scan threads: a folder
/// two levels down (a package in `node_modules`, say), or three when the middle one is an
/// npm scope (`node_modules/@aws-sdk/client-s3`).
fn is_deferred_folder(path: &str) -> bool {
    let mut parts = path.split('/');
    let (Some(_), Some(second)) = (parts.next(), parts.next()) else {
        return false;
    };
    match (parts.next(), parts.next()) {
        (None, _) => !second.starts_with('@'),
        (Some(_), None) => second.starts_with('@'),
        _ => false,
    }
}

impl<'a> Walk<'a> {
    fn new(
        root: &Arc<Path>,
        ignore: &'a DockerIgnore,
        include_dependencies: bool,
        defer: bool,
    ) -> Walk<'a> {
        Walk {
            root: Arc::clone(root),
            ignore,
            include_dependencies,
            entries: Packed::default(),
            defer,
            deferred: Vec::new(),
        }
    }

    /// Adds the contents of `dir`, whose path relative to the root is `prefix` (empty for the
    /// root itself), each directory before its own contents.
    fn directory(&mut self, dir: &Path, prefix: &str) -> Result<()> {
        let read_error = |e| Error::io("read", dir, e);
        let mut children = Vec::new();
        for child in fs::read_dir(dir).map_err(read_error)? {
            let child = child.map_err(read_error)?;
            children.push((child.file_name(), child));
        }
        children.sort_unstable_by(|a, b| a.0.cmp(&b.0));

        for (name, child) in children {
            let source = child.path();
            let Some(name) = name.to_str() else {
                return Err(Error::AppFile {
                    path: source,
                    reason: "the name is not valid UTF-8; rename the file or exclude it in \
                             .dockerignore"
                        .to_string(),
                });
            };
            // Built at its exact length, as `format!` would leave spare capacity in each of
            // several hundred thousand paths.
            let mut path = String::with_capacity(prefix.len() + 1 + name.len());
            if !prefix.is_empty() {
                path.push_str(prefix);
                path.push('/');
            }
            path.push_str(name);
            let file_type = child
                .file_type()
                .map_err(|e| Error::io("read", &source, e))?;
            let is_dir = file_type.is_dir();

            if is_dir && name == ".git" {
                continue;
            }
            if is_dir && prefix.is_empty() && name == NODE_MODULES && !self.include_dependencies {
                continue;
            }
            if self.ignore.is_excluded(&path) {
                if is_dir && self.ignore.may_include_below(&path) {
                    self.descend(source, path)?;
                }
                continue;
            }
            let metadata = child
                .metadata()
                .map_err(|e| Error::io("read", &source, e))?;
            if let Some((kind, executable)) = scan_entry(&self.root, &source, file_type, &metadata)?
            {
                let stamp = ChangeStamp::of(&metadata);
                self.entries.push(&path, kind, executable, stamp);
                if is_dir {
                    self.descend(source, path)?;
                }
            }
        }
        Ok(())
    }

    /// Walks the folder `source` at `path` now, or leaves it for a scan thread.
    fn descend(&mut self, source: PathBuf, path: String) -> Result<()> {
        if self.defer && is_deferred_folder(&path) {
            self.deferred.push(DeferredFolder {
                source,
                path,
                position: self.entries.records.len(),
            });
            return Ok(());
        }
        self.directory(&source, &path)
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

/// Returns the kind of the entry at `source` and whether it is executable, or `None` for a
/// kind that an image cannot hold.
fn scan_entry(
    root: &Path,
    source: &Path,
    file_type: fs::FileType,
    metadata: &fs::Metadata,
) -> Result<Option<(EntryKind, bool)>> {
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
    Ok(Some((kind, executable)))
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
            .map(|entry| entry.path)
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
    fn scan_threads_keep_walk_order() {
        let dir = tempfile::tempdir().unwrap();
        for path in [
            "node_modules/@scope/b/index.js",
            "node_modules/@scope/a/lib/x.js",
            "node_modules/@scope/a/lib/deep/y.js",
            "node_modules/a/package.json",
            "node_modules/a/node_modules/c/i.js",
            "node_modules/z/z.js",
            "src/lib/one.js",
            "src/two.js",
            "app.js",
        ] {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, "").unwrap();
        }
        let root = fs::canonicalize(dir.path()).unwrap();
        let expected: Vec<String> = walkdir::WalkDir::new(&root)
            .min_depth(1)
            .sort_by_file_name()
            .into_iter()
            .map(|item| {
                let item = item.unwrap();
                let relative = item.path().strip_prefix(&root).unwrap();
                relative.to_str().unwrap().to_string()
            })
            .collect();

        let list = FileList::scan(dir.path(), &DockerIgnore::empty()).unwrap();

        let paths: Vec<String> = list.entries().map(|e| e.path).collect();
        assert_eq!(paths, expected);
        assert_eq!(list.stamped().count(), expected.len());
        for (entry, stamp) in list.stamped() {
            let metadata = fs::symlink_metadata(entry.source()).unwrap();
            assert_eq!(stamp.inode, metadata.ino(), "{}", entry.path);
        }
    }

    #[test]
    fn scan_without_dependencies_skips_node_modules() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("node_modules/a")).unwrap();
        fs::create_dir_all(dir.path().join("src/node_modules")).unwrap();
        fs::write(dir.path().join("node_modules/a/i.js"), "").unwrap();
        fs::write(dir.path().join("app.js"), "").unwrap();

        let list = FileList::scan_with(dir.path(), &DockerIgnore::empty(), false).unwrap();

        let paths: Vec<String> = list.entries().map(|e| e.path).collect();
        assert_eq!(paths, ["app.js", "src", "src/node_modules"]);
    }

    #[test]
    fn packed_entries_read_back_as_written() {
        let written = [
            ("a", EntryKind::Directory),
            ("a/b.js", EntryKind::File { size: 7 }),
            // é and è share their first UTF-8 byte, so the shared prefix must stop before it.
            ("a/\u{e9}t\u{e9}.js", EntryKind::File { size: 0 }),
            ("a/\u{e8}.js", EntryKind::File { size: u64::MAX }),
            (
                "a/link",
                EntryKind::Symlink {
                    target: "\u{e8}.js".to_string(),
                },
            ),
            ("ab", EntryKind::Directory),
            ("b", EntryKind::File { size: 1 }),
        ];
        let mut packed = Packed::default();
        for (index, (path, kind)) in written.iter().enumerate() {
            let stamp = ChangeStamp {
                inode: index as u64,
                ..ChangeStamp::default()
            };
            packed.push(path, kind.clone(), index % 2 == 0, stamp);
        }
        // A part that another thread walked is appended after them.
        let mut part = Packed::default();
        part.push("b/c", EntryKind::Directory, true, ChangeStamp::default());
        packed.append(part);

        let read: Vec<_> = packed.iter().collect();
        assert_eq!(read.len(), written.len() + 1);
        for (index, ((path, kind), (read_path, read_kind, executable, stamp))) in
            written.iter().zip(&read).enumerate()
        {
            assert_eq!(read_path, path);
            assert_eq!(read_kind, kind);
            assert_eq!(*executable, index % 2 == 0);
            assert_eq!(stamp.inode, index as u64);
        }
        assert_eq!(read[written.len()].0, "b/c");
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
        let target = |path: &str| match list.find(path).unwrap().kind {
            EntryKind::Symlink { target } => target,
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
