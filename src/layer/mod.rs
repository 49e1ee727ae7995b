//! Reproducible layers: a tar stream of app entries under `/var/task`, gzip-compressed, with
//! both its digest (compressed bytes) and its diff_id (uncompressed bytes).

mod gzip;
mod tar_writer;

use std::borrow::Borrow;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::files::FileEntry;

pub use gzip::{BlockGzipWriter, BLOCK_SIZE, DEFAULT_COMPRESSION_LEVEL};
pub use tar_writer::TarWriter;

/// Where Lambda's Node.js runtime looks for the function code (`LAMBDA_TASK_ROOT`).
pub const TASK_ROOT: &str = "var/task";

/// The timestamp written into every layer entry and the config when `SOURCE_DATE_EPOCH` is unset:
/// one second after the epoch, as Jib does, because some tools read a zero time as "unset".
pub const DEFAULT_EPOCH: i64 = 1;

/// Settings that decide a layer's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOptions {
    /// Modification time of every entry, in seconds since the epoch.
    pub mtime: i64,
    /// gzip level, 0 to 9.
    pub compression_level: u32,
    /// Threads that compress blocks; the output is the same for any number.
    pub threads: usize,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            mtime: DEFAULT_EPOCH,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            threads: default_threads(),
        }
    }
}

/// One compression thread per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A layer written to disk as a gzip blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// Digest of the compressed blob, as the manifest names it.
    pub digest: Digest,
    /// Digest of the uncompressed tar, as the config's `rootfs.diff_ids` names it.
    pub diff_id: Digest,
    /// Size of the compressed blob in bytes.
    pub size: u64,
    /// Size of the uncompressed tar in bytes.
    pub uncompressed_size: u64,
    /// Number of app entries in the layer, without the parent directories added for them.
    pub entry_count: usize,
    /// The blob's file.
    pub path: PathBuf,
}

/// Writes `entries` as one layer under [`TASK_ROOT`] into `blob_dir`, named by its digest.
pub fn write_layer(
    entries: impl IntoIterator<Item = impl Borrow<FileEntry>>,
    options: &LayerOptions,
    blob_dir: &Path,
) -> Result<LayerBlob> {
    let temporary = tempfile::NamedTempFile::new_in(blob_dir)
        .map_err(|e| Error::io("create a file in", blob_dir, e))?;
    let file = temporary
        .reopen()
        .map_err(|e| Error::io("open", temporary.path(), e))?;

    let compressed = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let gzip = BlockGzipWriter::new(compressed, options.compression_level, options.threads);
    let mut tar = TarWriter::new(HashingWriter::new(gzip), options.mtime, TASK_ROOT);

    let mut entry_count = 0;
    for entry in entries {
        tar.append(entry.borrow())?;
        entry_count += 1;
    }

    let write_error = |e| Error::io("write the layer to", blob_dir, e);
    let uncompressed = tar.finish().map_err(write_error)?;
    let (gzip, diff_id, uncompressed_size) = uncompressed.finish();
    let compressed = gzip.finish().map_err(write_error)?;
    let (mut file, digest, size) = compressed.finish();
    file.flush().map_err(write_error)?;

    let path = blob_dir.join(digest.hex());
    temporary
        .persist(&path)
        .map_err(|e| Error::io("save the layer as", &path, e.error))?;
    Ok(LayerBlob {
        digest,
        diff_id,
        size,
        uncompressed_size,
        entry_count,
        path,
    })
}

/// A writer that hashes what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// Returns the inner writer, the digest and the byte count of everything written.
    pub fn finish(self) -> (W, Digest, u64) {
        let length = self.hasher.length();
        (self.inner, self.hasher.finish(), length)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
