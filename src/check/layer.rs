//! Reading a layer once, as a stream: its uncompressed size and diff_id, entries that come
//! before their parent directory, and the entries and whiteouts under `/var/task`.
//!
//! The blob stream is async and the gzip and tar readers are blocking, so a bounded channel
//! carries the chunks to a blocking task. At most [`CHANNEL_CHUNKS`] chunks wait in memory.

use std::collections::{BTreeSet, HashSet};
use std::io::{self, Read};

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use futures_util::StreamExt;
use tar::EntryType;
use tokio::sync::mpsc;

use crate::blob::BlobStream;
use crate::digest::{Digest, Hasher};
use crate::layer::TASK_ROOT;
use crate::manifest::Descriptor;
use crate::media_type::MediaType;

use super::index::plural;
use super::metadata::layer_label;
use super::Finding;

/// Chunks of a blob that may wait between the download and the tar reader.
const CHANNEL_CHUNKS: usize = 16;

/// Largest handler module or package.json kept in memory for the handler check. A larger
/// module counts as present, but whether it exports the handler is not checked.
const MAX_KEPT_FILE_SIZE: u64 = 32 * 1024 * 1024;

/// The compression of a layer's tar in its blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    Gzip,
    Uncompressed,
}

impl Compression {
    /// Returns how to read a layer of `media_type`, or `None` for one this check does not read:
    /// zstd (no decoder among the dependencies), foreign layers (registries do not store them)
    /// and unknown media types.
    pub(super) fn of(media_type: &MediaType) -> Option<Compression> {
        match media_type {
            MediaType::OciLayerGzip | MediaType::DockerLayerGzip => Some(Compression::Gzip),
            MediaType::OciLayerTar => Some(Compression::Uncompressed),
            _ => None,
        }
    }
}

/// The result of reading a layer.
#[derive(Debug)]
pub(super) enum ScanOutcome {
    Scanned(LayerScan),
    /// The blob matched its digest but is not a valid gzip or tar stream.
    Invalid(String),
}

/// The facts about one layer that the checks need.
#[derive(Debug)]
pub(super) struct LayerScan {
    /// Length of the uncompressed tar in bytes.
    pub uncompressed_size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    pub missing_parent: Option<MissingParent>,
    /// Entries under `/var/task`, in archive order.
    pub entries: Vec<ScannedEntry>,
    /// Whiteouts that remove something under `/var/task` from lower layers.
    pub whiteouts: Vec<Whiteout>,
}

/// The first entry whose parent directory had no entry before it, and how many such there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MissingParent {
    pub entry: String,
    pub parent: String,
    pub count: usize,
}

/// An entry under `/var/task`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ScannedEntry {
    /// The path relative to `/var/task`, empty for `/var/task` itself.
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits, such as `0o644`.
    pub mode: u32,
    /// The contents, kept only for files the handler check reads.
    pub content: Option<Content>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum EntryKind {
    File,
    Directory,
    Symlink,
    /// A hard link, with its target's path relative to `/var/task` when it is under it.
    HardLink {
        target: Option<String>,
    },
    /// A device or FIFO.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Content {
    Kept(Vec<u8>),
    /// Larger than [`MAX_KEPT_FILE_SIZE`], so not read.
    TooLarge,
}

/// A removal of lower layers' entries, with paths relative to `/var/task`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Whiteout {
    /// `.wh.NAME`: the path and everything below it. An empty path removes `/var/task` itself.
    Delete(String),
    /// `.wh..wh..opq`: everything below the directory, which itself stays.
    Opaque(String),
}

/// Reads the verified blob `stream` as a layer, keeping the contents of the `needed` files.
///
/// # Errors
///
/// The stream's own errors: a failed download, or content that does not match the digest.
/// A blob that is intact but not a valid layer is [`ScanOutcome::Invalid`].
pub(super) async fn scan_stream(
    mut stream: BlobStream,
    compression: Compression,
    needed: BTreeSet<String>,
) -> io::Result<ScanOutcome> {
    let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
    let scanner = tokio::task::spawn_blocking(move || {
        scan_layer(ChannelReader::new(receiver), compression, &needed)
    });
    let source_error = forward(&mut stream, sender).await;
    let scanned = scanner.await;
    if let Some(error) = source_error {
        return Err(error);
    }
    Ok(match scanned {
        Ok(Ok(scan)) => ScanOutcome::Scanned(scan),
        Ok(Err(error)) => ScanOutcome::Invalid(error.to_string()),
        Err(error) => ScanOutcome::Invalid(format!("the tar reader failed: {error}")),
    })
}

/// Sends the stream's chunks to the scanner and returns the stream's error, if any.
///
/// When the scanner stops early, at an invalid layer, the rest of the stream is still read:
/// a digest mismatch found at its end explains the damage better than the tar reader can.
async fn forward(
    stream: &mut BlobStream,
    sender: mpsc::Sender<io::Result<Bytes>>,
) -> Option<io::Error> {
    let mut sender = Some(sender);
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => {
                if let Some(open) = &sender {
                    if open.send(Ok(chunk)).await.is_err() {
                        sender = None;
                    }
                }
            }
            Err(error) => {
                if let Some(open) = &sender {
                    let copy = io::Error::new(error.kind(), error.to_string());
                    let _ = open.send(Err(copy)).await;
                }
                return Some(error);
            }
        }
    }
    None
}

/// A blocking reader over the chunks that [`forward`] sends.
struct ChannelReader {
    receiver: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
}

impl ChannelReader {
    fn new(receiver: mpsc::Receiver<io::Result<Bytes>>) -> ChannelReader {
        ChannelReader {
            receiver,
            chunk: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if buffer.is_empty() {
            return Ok(0);
        }
        while self.chunk.is_empty() {
            match self.receiver.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(error)) => return Err(error),
            }
        }
        let length = buffer.len().min(self.chunk.len());
        buffer[..length].copy_from_slice(&self.chunk.split_to(length));
        Ok(length)
    }
}

/// Reads a layer blob from `raw`, blocking.
pub(super) fn scan_layer(
    raw: impl Read,
    compression: Compression,
    needed: &BTreeSet<String>,
) -> io::Result<LayerScan> {
    match compression {
        // Multi-member gzip streams are valid layers, as Go's and containerd's readers accept them.
        Compression::Gzip => scan_tar(MultiGzDecoder::new(raw), needed),
        Compression::Uncompressed => scan_tar(raw, needed),
    }
}

fn scan_tar(tar_stream: impl Read, needed: &BTreeSet<String>) -> io::Result<LayerScan> {
    let mut tar_stream = DigestingReader::new(tar_stream);
    let mut scanner = Scanner::new(needed);
    {
        let mut archive = tar::Archive::new(&mut tar_stream);
        for entry in archive.entries()? {
            scanner.add(entry?)?;
        }
    }
    // The end-of-archive blocks and any padding after them belong to the diff_id too.
    io::copy(&mut tar_stream, &mut io::sink())?;
    let (diff_id, uncompressed_size) = tar_stream.finish();
    Ok(LayerScan {
        uncompressed_size,
        diff_id,
        missing_parent: scanner.missing_parent,
        entries: scanner.entries,
        whiteouts: scanner.whiteouts,
    })
}

/// A reader that hashes and counts what passes through it.
struct DigestingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> DigestingReader<R> {
    fn new(inner: R) -> Self {
        DigestingReader {
            inner,
            hasher: Hasher::new(),
        }
    }

    fn finish(self) -> (Digest, u64) {
        let length = self.hasher.length();
        (self.hasher.finish(), length)
    }
}

impl<R: Read> Read for DigestingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let length = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..length]);
        Ok(length)
    }
}

/// Collects what the checks need from a layer's entries, in archive order.
struct Scanner<'a> {
    needed: &'a BTreeSet<String>,
    /// Directories that had an entry so far in this layer.
    directories: HashSet<String>,
    missing_parent: Option<MissingParent>,
    entries: Vec<ScannedEntry>,
    whiteouts: Vec<Whiteout>,
}

impl<'a> Scanner<'a> {
    fn new(needed: &'a BTreeSet<String>) -> Scanner<'a> {
        Scanner {
            needed,
            directories: HashSet::new(),
            missing_parent: None,
            entries: Vec::new(),
            whiteouts: Vec::new(),
        }
    }

    fn add<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> io::Result<()> {
        let entry_type = entry.header().entry_type();
        if matches!(
            entry_type,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let path = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
        if path.is_empty() {
            // `./`, the root of the file system.
            return Ok(());
        }
        self.check_parent(&path, entry_type == EntryType::Directory);

        if let Some((directory, name)) = parse_whiteout(&path) {
            self.whiteouts.extend(task_whiteout(directory, name));
            return Ok(());
        }
        let Some(relative) = task_relative(&path) else {
            return Ok(());
        };
        let kind = match entry_type {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => EntryKind::File,
            EntryType::Directory => EntryKind::Directory,
            EntryType::Symlink => EntryKind::Symlink,
            EntryType::Link => EntryKind::HardLink {
                target: entry.link_name_bytes().and_then(|target| {
                    task_relative(&normalize(&String::from_utf8_lossy(&target))).map(str::to_string)
                }),
            },
            _ => EntryKind::Other,
        };
        let mode = entry.header().mode()? & 0o7777;
        let content = if kind == EntryKind::File && self.needed.contains(relative) {
            Some(read_content(&mut entry)?)
        } else {
            None
        };
        self.entries.push(ScannedEntry {
            path: relative.to_string(),
            kind,
            mode,
            content,
        });
        Ok(())
    }

    /// Records `path` when its parent directory has had no entry yet in this layer.
    fn check_parent(&mut self, path: &str, is_directory: bool) {
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !self.directories.contains(parent) {
                match &mut self.missing_parent {
                    Some(missing) => missing.count += 1,
                    None => {
                        self.missing_parent = Some(MissingParent {
                            entry: path.to_string(),
                            parent: parent.to_string(),
                            count: 1,
                        })
                    }
                }
            }
        }
        if is_directory {
            self.directories.insert(path.to_string());
        }
    }
}

fn read_content(entry: &mut impl Read) -> io::Result<Content> {
    let mut bytes = Vec::new();
    entry.take(MAX_KEPT_FILE_SIZE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_KEPT_FILE_SIZE {
        return Ok(Content::TooLarge);
    }
    Ok(Content::Kept(bytes))
}

/// Drops empty and `.` segments and the slashes around them: `./var/task/` is `var/task`.
pub(super) fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|segment| !segment.is_empty() && *segment != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Returns the path relative to `/var/task`, or `None` for a path outside it.
fn task_relative(path: &str) -> Option<&str> {
    if path == TASK_ROOT {
        return Some("");
    }
    path.strip_prefix(TASK_ROOT)?.strip_prefix('/')
}

/// Splits a whiteout entry's path into its directory and the name it removes; the name is
/// `None` for an opaque whiteout. Returns `None` for other entries.
fn parse_whiteout(path: &str) -> Option<(&str, Option<&str>)> {
    let (directory, file_name) = path.rsplit_once('/').unwrap_or(("", path));
    if file_name == ".wh..wh..opq" {
        return Some((directory, None));
    }
    let name = file_name.strip_prefix(".wh.")?;
    Some((directory, Some(name)))
}

/// Translates a whiteout into its effect on `/var/task`, if it has one.
fn task_whiteout(directory: &str, name: Option<&str>) -> Option<Whiteout> {
    let is_ancestor_of_task_root =
        |path: &str| path.is_empty() || TASK_ROOT.starts_with(&format!("{path}/"));
    match name {
        Some(name) => {
            let target = if directory.is_empty() {
                name.to_string()
            } else {
                format!("{directory}/{name}")
            };
            if is_ancestor_of_task_root(&target) {
                return Some(Whiteout::Delete(String::new()));
            }
            task_relative(&target).map(|relative| Whiteout::Delete(relative.to_string()))
        }
        None if is_ancestor_of_task_root(directory) => Some(Whiteout::Delete(String::new())),
        None => task_relative(directory).map(|relative| Whiteout::Opaque(relative.to_string())),
    }
}

pub(super) fn missing_parent_finding(
    index: usize,
    descriptor: &Descriptor,
    missing: &MissingParent,
) -> Finding {
    let others = missing.count - 1;
    let more = if others > 0 {
        format!(
            ", and {others} more {} one",
            plural(others, "entry lacks", "entries lack")
        )
    } else {
        String::new()
    };
    Finding::error(
        "layer-missing-parent-directory",
        format!(
            "{} has `{}` without an entry for its parent directory `{}` before it{more}; Lambda \
             rejects such a layer (MissingParentDirectory); rebuild the layer so that every \
             directory has its own entry ahead of the entries inside it",
            layer_label(index, descriptor),
            missing.entry,
            missing.parent
        ),
    )
}

pub(super) fn diff_id_finding(
    index: usize,
    descriptor: &Descriptor,
    expected: &str,
    actual: &Digest,
) -> Option<Finding> {
    (actual.to_string() != expected).then(|| {
        Finding::error(
            "diff-id-mismatch",
            format!(
                "{} uncompresses to a tar with digest {actual}, but the config's rootfs.diff_ids \
                 lists {expected} for it; Lambda cannot unpack such an image; rebuild the image \
                 so that its config matches its layers",
                layer_label(index, descriptor)
            ),
        )
    })
}

pub(super) fn invalid_layer(index: usize, descriptor: &Descriptor, reason: &str) -> Finding {
    Finding::error(
        "layer-invalid",
        format!(
            "{} cannot be unpacked: {reason}; Lambda would fail to extract it; rebuild the layer",
            layer_label(index, descriptor)
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;

    use super::*;

    /// A tar entry for [`tar_bytes`]: a path, and contents for a file or `None` for a
    /// directory. Modes are 0644 and 0755.
    type TestEntry<'a> = (&'a str, Option<&'a [u8]>);

    fn tar_bytes(entries: &[TestEntry]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut header = tar::Header::new_ustar();
            match content {
                Some(content) => {
                    header.set_entry_type(EntryType::Regular);
                    header.set_mode(0o644);
                    header.set_size(content.len() as u64);
                    builder.append_data(&mut header, path, *content).unwrap();
                }
                None => {
                    header.set_entry_type(EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    builder.append_data(&mut header, path, &[][..]).unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn scan(entries: &[TestEntry], needed: &[&str]) -> LayerScan {
        let needed = needed.iter().map(|path| path.to_string()).collect();
        let blob = gzip(&tar_bytes(entries));
        scan_layer(&blob[..], Compression::Gzip, &needed).unwrap()
    }

    #[test]
    fn scan_measures_the_tar() {
        let tar = tar_bytes(&[("var/", None), ("var/task/", None)]);
        let needed = BTreeSet::new();
        let scanned = scan_layer(&gzip(&tar)[..], Compression::Gzip, &needed).unwrap();
        assert_eq!(scanned.uncompressed_size, tar.len() as u64);
        assert_eq!(scanned.diff_id, Digest::of(&tar));
        let plain = scan_layer(&tar[..], Compression::Uncompressed, &needed).unwrap();
        assert_eq!(plain.diff_id, Digest::of(&tar));
    }

    #[test]
    fn scan_reads_concatenated_gzip_members() {
        // Two members whose concatenation is the tar: its first block, then the rest.
        let tar = tar_bytes(&[("var/", None), ("var/task/", None)]);
        let split = 512;
        let mut blob = gzip(&tar[..split]);
        blob.extend(gzip(&tar[split..]));
        let scanned = scan_layer(&blob[..], Compression::Gzip, &BTreeSet::new()).unwrap();
        assert_eq!(scanned.diff_id, Digest::of(&tar));
        assert_eq!(scanned.entries.len(), 1);
    }

    #[test]
    fn scan_finds_entries_before_their_parent() {
        let scanned = scan(
            &[
                ("var/task/a.js", Some(b"")),
                ("var/", None),
                ("var/task/", None),
                ("var/task/lib/b.js", Some(b"")),
                ("var/task/c.js", Some(b"")),
            ],
            &[],
        );
        assert_eq!(
            scanned.missing_parent,
            Some(MissingParent {
                entry: "var/task/a.js".to_string(),
                parent: "var/task".to_string(),
                count: 2,
            })
        );
    }

    #[test]
    fn scan_accepts_dot_slash_paths() {
        let scanned = scan(
            &[
                ("./", None),
                ("./var/", None),
                ("./var/task/", None),
                ("./var/task/a.js", Some(b"x")),
            ],
            &["a.js"],
        );
        assert_eq!(scanned.missing_parent, None);
        let paths: Vec<&str> = scanned
            .entries
            .iter()
            .map(|entry| entry.path.as_str())
            .collect();
        assert_eq!(paths, ["", "a.js"]);
        assert_eq!(
            scanned.entries[1].content,
            Some(Content::Kept(b"x".to_vec()))
        );
    }

    #[test]
    fn scan_keeps_only_needed_contents() {
        let scanned = scan(
            &[
                ("var/", None),
                ("var/task/", None),
                ("var/task/lambda.js", Some(b"exports.handler = 1")),
                ("var/task/other.js", Some(b"secret")),
                ("etc/", None),
                ("etc/lambda.js", Some(b"not the task")),
            ],
            &["lambda.js"],
        );
        let contents: Vec<(&str, Option<&Content>)> = scanned
            .entries
            .iter()
            .map(|entry| (entry.path.as_str(), entry.content.as_ref()))
            .collect();
        let kept = Content::Kept(b"exports.handler = 1".to_vec());
        assert_eq!(
            contents,
            [("", None), ("lambda.js", Some(&kept)), ("other.js", None)]
        );
    }

    #[test]
    fn whiteouts_translate_to_task_paths() {
        assert_eq!(
            parse_whiteout("var/task/.wh.a.js"),
            Some(("var/task", Some("a.js")))
        );
        assert_eq!(
            parse_whiteout("var/task/lib/.wh..wh..opq"),
            Some(("var/task/lib", None))
        );
        assert_eq!(parse_whiteout(".wh.var"), Some(("", Some("var"))));
        assert_eq!(parse_whiteout("var/task/a.js"), None);

        let delete = |path: &str| Some(Whiteout::Delete(path.to_string()));
        assert_eq!(task_whiteout("var/task", Some("a.js")), delete("a.js"));
        assert_eq!(task_whiteout("var", Some("task")), delete(""));
        assert_eq!(task_whiteout("", Some("var")), delete(""));
        assert_eq!(task_whiteout("var", Some("tasks")), None);
        assert_eq!(task_whiteout("etc", Some("passwd")), None);
        assert_eq!(
            task_whiteout("var/task/lib", None),
            Some(Whiteout::Opaque("lib".to_string()))
        );
        assert_eq!(
            task_whiteout("var/task", None),
            Some(Whiteout::Opaque(String::new()))
        );
        assert_eq!(task_whiteout("var", None), delete(""));
        assert_eq!(task_whiteout("", None), delete(""));
        assert_eq!(task_whiteout("var/runtime", None), None);
    }

    #[test]
    fn scan_collects_whiteouts_apart_from_entries() {
        let scanned = scan(
            &[
                ("var/", None),
                ("var/task/", None),
                ("var/task/.wh.old.js", Some(b"")),
            ],
            &[],
        );
        assert_eq!(scanned.whiteouts, [Whiteout::Delete("old.js".to_string())]);
        assert_eq!(scanned.entries.len(), 1);
    }

    #[test]
    fn scan_rejects_a_blob_that_is_not_gzip() {
        let blob = b"plain text where a gzip header belongs";
        let error = scan_layer(&blob[..], Compression::Gzip, &BTreeSet::new()).unwrap_err();
        assert_eq!(error.to_string(), "invalid gzip header");
    }

    fn stream_of(bytes: Vec<u8>) -> BlobStream {
        let chunks: Vec<io::Result<Bytes>> = bytes
            .chunks(100)
            .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
            .collect();
        Box::pin(futures_util::stream::iter(chunks))
    }

    #[tokio::test]
    async fn stream_scan_matches_the_blocking_scan() {
        let tar = tar_bytes(&[
            ("var/", None),
            ("var/task/", None),
            ("var/task/a.js", Some(b"x")),
        ]);
        let outcome = scan_stream(stream_of(gzip(&tar)), Compression::Gzip, BTreeSet::new())
            .await
            .unwrap();
        let ScanOutcome::Scanned(scanned) = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(scanned.diff_id, Digest::of(&tar));
        assert_eq!(scanned.entries.len(), 2);
    }

    #[tokio::test]
    async fn stream_error_wins_over_invalid_layer() {
        let blob = b"garbage that is not gzip".to_vec();
        let verified = crate::blob::verify(
            stream_of(blob.clone()),
            Digest::of(b"other content"),
            blob.len() as u64,
            "test".to_string(),
        );
        let error = scan_stream(verified, Compression::Gzip, BTreeSet::new())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("content has digest"), "{error}");
    }

    #[tokio::test]
    async fn intact_garbage_is_an_invalid_layer() {
        let outcome = scan_stream(
            stream_of(b"garbage that is not gzip".to_vec()),
            Compression::Gzip,
            BTreeSet::new(),
        )
        .await
        .unwrap();
        assert!(matches!(outcome, ScanOutcome::Invalid(_)), "{outcome:?}");
    }
}
