//! The user's cache folder: compressed layers, found again by a fingerprint of their input
//! files' metadata, so that a rebuild of unchanged files reads and compresses nothing.
//!
//! Layout under `$XDG_CACHE_HOME/lambda-image/layers`: `blobs/<hex>` holds gzip blobs by
//! digest, `index/<key>.json` maps an input fingerprint to the blob it produced. Both are
//! written through a temporary file and a rename, so two runs sharing the cache never see a
//! half-written file, and the loser of a race overwrites the winner with identical bytes.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::files::{ChangeStamp, EntryKind, FileEntry};
use crate::layer::{LayerBlob, LayerOptions};

/// Bumped whenever the layer bytes for the same input change, so old cache entries stop matching.
const FORMAT_VERSION: &str = "lambda-image layer format 1";

/// Files modified this recently are hashed by content: a write within the file system's
/// timestamp granularity could leave size and mtime unchanged (git calls these "racy").
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Cache size above which `prune` removes the least recently used layers.
pub const DEFAULT_MAX_CACHE_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// `$XDG_CACHE_HOME/lambda-image`, else `~/.cache/lambda-image`; `None` without either variable.
pub fn cache_root() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|value| !value.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|value| !value.is_empty())?)
            .join(".cache"),
    };
    Some(base.join("lambda-image"))
}

/// A cache of compressed layers.
#[derive(Debug, Clone)]
pub struct LayerCache {
    root: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct IndexEntry {
    digest: Digest,
    diff_id: Digest,
    size: u64,
    uncompressed_size: u64,
    entry_count: usize,
}

/// The result of `prune`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub removed_blobs: usize,
    pub removed_bytes: u64,
    pub kept_bytes: u64,
}

impl LayerCache {
    /// Opens (creating) the cache at `root`.
    pub fn open(root: PathBuf) -> Result<LayerCache> {
        for folder in ["blobs", "index", "tmp"] {
            let path = root.join(folder);
            fs::create_dir_all(&path)
                .map_err(|e| Error::io("create the cache folder", &path, e))?;
        }
        Ok(LayerCache { root })
    }

    /// Opens the cache in the user's cache folder; `None` when there is no usable one.
    pub fn in_user_cache() -> Option<LayerCache> {
        let root = cache_root()?.join("layers");
        match LayerCache::open(root) {
            Ok(cache) => Some(cache),
            Err(error) => {
                tracing::warn!(%error, "building without the layer cache");
                None
            }
        }
    }

    /// Returns the folder for layers being written, on the cache's file system so that storing
    /// one is a rename.
    pub fn scratch_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Returns the cached layer for `key`, if its blob is still there.
    pub fn lookup(&self, key: &Digest) -> Option<LayerBlob> {
        let bytes = fs::read(self.index_path(key)).ok()?;
        let entry: IndexEntry = serde_json::from_slice(&bytes).ok()?;
        let path = self.blob_path(&entry.digest);
        let metadata = fs::metadata(&path).ok()?;
        if metadata.len() != entry.size {
            return None;
        }
        // The modification time records use, for least-recently-used pruning.
        let _ = fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|file| file.set_modified(SystemTime::now()));
        Some(LayerBlob {
            digest: entry.digest,
            diff_id: entry.diff_id,
            size: entry.size,
            uncompressed_size: entry.uncompressed_size,
            entry_count: entry.entry_count,
            path,
        })
    }

    /// Moves a freshly written layer into the cache under `key` and returns it at its new path.
    pub fn store(&self, key: &Digest, blob: LayerBlob) -> Result<LayerBlob> {
        let path = self.blob_path(&blob.digest);
        match fs::rename(&blob.path, &path) {
            Ok(()) => {}
            // Two runs that write the same layer use the same scratch name (its digest), so the
            // first to store it moves the other's file too. Its blob is then already in place.
            Err(error)
                if error.kind() == std::io::ErrorKind::NotFound
                    && fs::metadata(&path).is_ok_and(|metadata| metadata.len() == blob.size) => {}
            Err(error) => return Err(Error::io("store the layer in the cache at", &path, error)),
        }
        let blob = LayerBlob { path, ..blob };
        self.write_index(key, &blob)?;
        Ok(blob)
    }

    fn write_index(&self, key: &Digest, blob: &LayerBlob) -> Result<()> {
        let entry = IndexEntry {
            digest: blob.digest.clone(),
            diff_id: blob.diff_id.clone(),
            size: blob.size,
            uncompressed_size: blob.uncompressed_size,
            entry_count: blob.entry_count,
        };
        let index_path = self.index_path(key);
        let temporary =
            self.scratch_dir()
                .join(format!("{}.{}.json", key.hex(), std::process::id()));
        let bytes = serde_json::to_vec(&entry).expect("index entries serialize");
        fs::write(&temporary, bytes)
            .and_then(|()| fs::rename(&temporary, &index_path))
            .map_err(|e| Error::io("write the cache index", &index_path, e))
    }

    /// Records that `key` also produces `blob`, which is already in the cache.
    pub fn alias(&self, key: &Digest, blob: &LayerBlob) -> Result<()> {
        self.write_index(key, blob)
    }

    /// Removes the least recently used blobs until the cache holds at most `max_bytes`, and
    /// index entries whose blob is gone.
    pub fn prune(&self, max_bytes: u64) -> Result<PruneReport> {
        let blob_dir = self.root.join("blobs");
        let mut blobs = Vec::new();
        for item in fs::read_dir(&blob_dir).map_err(|e| Error::io("read", &blob_dir, e))? {
            let Ok(item) = item else { continue };
            let Ok(metadata) = item.metadata() else {
                continue;
            };
            let used = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            blobs.push((used, metadata.len(), item.path()));
        }
        blobs.sort();
        let mut report = PruneReport {
            kept_bytes: blobs.iter().map(|(_, size, _)| size).sum(),
            ..PruneReport::default()
        };
        for (_, size, path) in &blobs {
            if report.kept_bytes <= max_bytes {
                break;
            }
            if fs::remove_file(path).is_ok() {
                report.removed_blobs += 1;
                report.removed_bytes += size;
                report.kept_bytes -= size;
            }
        }
        self.remove_orphan_index_entries();
        Ok(report)
    }

    fn remove_orphan_index_entries(&self) {
        let Ok(items) = fs::read_dir(self.root.join("index")) else {
            return;
        };
        for item in items.flatten() {
            let orphan = fs::read(item.path())
                .ok()
                .and_then(|bytes| serde_json::from_slice::<IndexEntry>(&bytes).ok())
                .is_none_or(|entry| !self.blob_path(&entry.digest).exists());
            if orphan {
                let _ = fs::remove_file(item.path());
            }
        }
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join(digest.hex())
    }

    fn index_path(&self, key: &Digest) -> PathBuf {
        self.root.join("index").join(format!("{}.json", key.hex()))
    }
}

/// Fingerprints a layer's input by its files' change stamps: every entry's path, kind, mode bit
/// and stamp, plus the options that shape the bytes. Returns `None` when a file changed within
/// the racy window, whose stamp cannot be trusted to change with its content.
pub fn stamp_key(
    entries: impl IntoIterator<Item = (FileEntry, ChangeStamp)>,
    options: &LayerOptions,
) -> Option<Digest> {
    stamp_key_at(entries, options, SystemTime::now())
}

/// `stamp_key` as seen at time `now`.
fn stamp_key_at(
    entries: impl IntoIterator<Item = (FileEntry, ChangeStamp)>,
    options: &LayerOptions,
    now: SystemTime,
) -> Option<Digest> {
    let racy_after = now - RACY_WINDOW;
    let racy_after_ns = racy_after
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));

    let mut hasher = key_hasher("stamps", options);
    for (entry, stamp) in entries {
        let is_file = matches!(entry.kind, EntryKind::File { .. });
        if is_file && (stamp.mtime_ns >= racy_after_ns || stamp.ctime_ns >= racy_after_ns) {
            return None;
        }
        hash_entry(&mut hasher, &entry);
        let ChangeStamp {
            size,
            mtime_ns,
            ctime_ns,
            inode,
            device,
            mode,
        } = stamp;
        hasher.update(&size.to_le_bytes());
        hasher.update(&mtime_ns.to_le_bytes());
        hasher.update(&ctime_ns.to_le_bytes());
        hasher.update(&inode.to_le_bytes());
        hasher.update(&device.to_le_bytes());
        hasher.update(&mode.to_le_bytes());
    }
    Some(hasher.finish())
}

/// Fingerprints a layer's input by its files' contents, which it reads: the key that still
/// matches after a copy or a checkout has changed every stamp but no byte.
pub fn content_key(
    entries: impl IntoIterator<Item = (FileEntry, ChangeStamp)>,
    options: &LayerOptions,
) -> Result<Digest> {
    let mut hasher = key_hasher("contents", options);
    for (entry, _) in entries {
        hash_entry(&mut hasher, &entry);
        if matches!(entry.kind, EntryKind::File { .. }) {
            hasher.update(content_digest(&entry.source())?.hex().as_bytes());
        }
        hasher.update(b"\n");
    }
    Ok(hasher.finish())
}

fn key_hasher(kind: &str, options: &LayerOptions) -> Hasher {
    let mut hasher = Hasher::new();
    hasher.update(FORMAT_VERSION.as_bytes());
    let settings = format!(
        "\0{kind}\0{}\0{}\0{}\0{}\n",
        options.mtime,
        options.compression_level,
        crate::layer::TASK_ROOT,
        crate::layer::BLOCK_SIZE
    );
    hasher.update(settings.as_bytes());
    hasher
}

/// Adds an entry's path, kind and mode bit to a key. Paths and link targets contain no NUL
/// byte, so the NUL after each keeps two entries from hashing alike.
fn hash_entry(hasher: &mut Hasher, entry: &FileEntry) {
    hasher.update(entry.path.as_bytes());
    hasher.update(b"\0");
    match &entry.kind {
        EntryKind::Directory => hasher.update(b"d"),
        EntryKind::File { size } => {
            hasher.update(b"f");
            hasher.update(&size.to_le_bytes());
        }
        EntryKind::Symlink { target } => {
            hasher.update(b"l");
            hasher.update(target.as_bytes());
            hasher.update(b"\0");
        }
    }
    hasher.update(&[u8::from(entry.executable)]);
}

fn content_digest(path: &Path) -> Result<Digest> {
    let mut file = fs::File::open(path).map_err(|e| Error::io("read", path, e))?;
    let mut hasher = Hasher::new();
    let mut buffer = vec![0; 256 * 1024];
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(|e| Error::io("read", path, e))?;
        if read == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buffer[..read]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerignore::DockerIgnore;
    use crate::files::FileList;

    /// The stamp key as a build a few seconds from now would see it, when the files written by
    /// the test are no longer racy (their ctime cannot be set back).
    fn stamp_key_of(dir: &Path) -> Option<Digest> {
        let files = FileList::scan(dir, &DockerIgnore::empty()).unwrap();
        let later = SystemTime::now() + RACY_WINDOW + Duration::from_secs(1);
        stamp_key_at(files.stamped(), &LayerOptions::default(), later)
    }

    fn stamp_key_now(dir: &Path) -> Option<Digest> {
        let files = FileList::scan(dir, &DockerIgnore::empty()).unwrap();
        stamp_key(files.stamped(), &LayerOptions::default())
    }

    fn content_key_of(dir: &Path) -> Digest {
        let files = FileList::scan(dir, &DockerIgnore::empty()).unwrap();
        content_key(files.stamped(), &LayerOptions::default()).unwrap()
    }

    fn age(path: &Path) {
        let old = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }

    #[test]
    fn racy_files_have_no_stamp_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.js");
        fs::write(&file, "one").unwrap();
        assert_eq!(
            stamp_key_now(dir.path()),
            None,
            "a file written just now is racy"
        );
        assert!(stamp_key_of(dir.path()).is_some());
    }

    #[test]
    fn stamp_key_changes_with_a_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.js");
        fs::write(&file, "one").unwrap();
        let first = stamp_key_of(dir.path()).unwrap();
        assert_eq!(
            Some(&first),
            stamp_key_of(dir.path()).as_ref(),
            "the key is stable"
        );
        fs::write(&file, "two").unwrap();
        // Same size: the rewrite changed mtime and ctime, which the key includes.
        assert_ne!(Some(first), stamp_key_of(dir.path()));
    }

    #[test]
    fn content_key_follows_bytes_not_stamps() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.js");
        fs::write(&file, "one").unwrap();
        let first = content_key_of(dir.path());
        age(&file);
        assert_eq!(first, content_key_of(dir.path()));
        fs::write(&file, "two").unwrap();
        assert_ne!(first, content_key_of(dir.path()));
    }

    #[test]
    fn store_lookup_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path().join("cache")).unwrap();
        let scratch = cache.scratch_dir().join("blob");
        fs::write(&scratch, vec![7u8; 1000]).unwrap();
        let blob = LayerBlob {
            digest: Digest::of(&[7u8; 1000]),
            diff_id: Digest::of(b"tar"),
            size: 1000,
            uncompressed_size: 3,
            entry_count: 1,
            path: scratch,
        };
        let key = Digest::of(b"key");
        let stored = cache.store(&key, blob).unwrap();
        assert_eq!(cache.lookup(&key).unwrap(), stored);

        let report = cache.prune(10_000).unwrap();
        assert_eq!(report.removed_blobs, 0);
        let report = cache.prune(10).unwrap();
        assert_eq!(report.removed_blobs, 1);
        assert_eq!(report.removed_bytes, 1000);
        assert!(cache.lookup(&key).is_none());
    }

    #[test]
    fn store_after_another_run_moved_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path().join("cache")).unwrap();
        let bytes = [7u8; 1000];
        let digest = Digest::of(&bytes);
        let scratch = cache.scratch_dir().join(digest.hex());
        let blob = LayerBlob {
            digest: digest.clone(),
            diff_id: Digest::of(b"tar"),
            size: 1000,
            uncompressed_size: 3,
            entry_count: 1,
            path: scratch.clone(),
        };
        fs::write(&scratch, bytes).unwrap();
        cache
            .store(&Digest::of(b"first run"), blob.clone())
            .unwrap();

        // The second run's file went into the cache with the first run's rename.
        let key = Digest::of(b"second run");
        let stored = cache.store(&key, blob.clone()).unwrap();
        assert_eq!(cache.lookup(&key).unwrap(), stored);

        let truncated = LayerBlob { size: 999, ..blob };
        assert!(cache.store(&key, truncated).is_err());
    }
}
