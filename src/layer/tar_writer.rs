//! A tar writer with fixed metadata: every byte comes from the entry's path, kind, size,
//! execute bit and content, and from the chosen mtime.
//!
//! The `tar` crate's `Builder` copies the host's owner, times and modes and writes GNU long-name
//! records; here each header is filled in by hand and long or non-ASCII names go into PAX
//! records, which every OCI runtime reads.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};

use tar::{EntryType, Header};

use crate::error::{Error, Result};
use crate::files::{EntryKind, FileEntry};

const BLOCK: usize = 512;
const NAME_FIELD: usize = 100;

pub struct TarWriter<W: Write> {
    inner: W,
    mtime: u64,
    prefix: String,
    emitted_directories: HashSet<String>,
    copy_buffer: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    /// Creates a writer that puts every entry below `prefix` (such as `var/task`).
    pub fn new(inner: W, mtime: i64, prefix: &str) -> Self {
        TarWriter {
            inner,
            mtime: mtime.max(0) as u64,
            prefix: prefix.trim_matches('/').to_string(),
            emitted_directories: HashSet::new(),
            copy_buffer: vec![0; 256 * 1024],
        }
    }

    /// Appends `entry`, first writing any parent directory not yet in the archive: Lambda
    /// rejects layers whose entries lack their parents ("MissingParentDirectory").
    pub fn append(&mut self, entry: &FileEntry) -> Result<()> {
        let path = format!("{}/{}", self.prefix, entry.path);
        let write_error = |e| Error::io("write a layer entry for", entry.source(), e);
        self.write_parents(&path).map_err(write_error)?;

        match &entry.kind {
            EntryKind::Directory => self.write_directory(&path).map_err(write_error),
            EntryKind::Symlink { target } => {
                let mut header = self.header(EntryType::Symlink, 0o777, 0);
                self.write_header(&mut header, &path, Some(target))
                    .map_err(write_error)
            }
            EntryKind::File { size } => {
                let mode = if entry.executable { 0o755 } else { 0o644 };
                let mut header = self.header(EntryType::Regular, mode, *size);
                self.write_header(&mut header, &path, None)
                    .map_err(write_error)?;
                self.copy_content(entry, *size)
            }
        }
    }

    /// Writes the end-of-archive marker (and the prefix directories of an empty archive).
    pub fn finish(mut self) -> io::Result<W> {
        self.write_parents(&format!("{}/", self.prefix))?;
        self.inner.write_all(&[0; BLOCK * 2])?;
        Ok(self.inner)
    }

    fn write_parents(&mut self, path: &str) -> io::Result<()> {
        let path = path.trim_end_matches('/');
        for (index, _) in path.match_indices('/') {
            let parent = &path[..index];
            if !self.emitted_directories.contains(parent) {
                self.write_directory(parent)?;
            }
        }
        Ok(())
    }

    fn write_directory(&mut self, path: &str) -> io::Result<()> {
        if !self.emitted_directories.insert(path.to_string()) {
            return Ok(());
        }
        let mut header = self.header(EntryType::Directory, 0o755, 0);
        self.write_header(&mut header, &format!("{path}/"), None)
    }

    fn header(&self, entry_type: EntryType, mode: u32, size: u64) -> Header {
        let mut header = Header::new_ustar();
        header.set_entry_type(entry_type);
        header.set_mode(mode);
        header.set_size(size);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(self.mtime);
        header
    }

    /// Writes `header` for `path`, preceded by a PAX record when the path or link target does
    /// not fit the ustar fields as plain ASCII.
    fn write_header(
        &mut self,
        header: &mut Header,
        path: &str,
        link: Option<&str>,
    ) -> io::Result<()> {
        let needs_pax = |value: &str| value.len() > NAME_FIELD || !value.is_ascii();
        let mut records = Vec::new();
        if needs_pax(path) {
            records.extend(pax_record("path", path));
        }
        if let Some(link) = link.filter(|link| needs_pax(link)) {
            records.extend(pax_record("linkpath", link));
        }
        if !records.is_empty() {
            let mut pax = self.header(EntryType::XHeader, 0o644, records.len() as u64);
            set_field(&mut pax.as_old_mut().name, &pax_header_name(path));
            pax.set_cksum();
            self.inner.write_all(pax.as_bytes())?;
            self.inner.write_all(&records)?;
            self.pad(records.len() as u64)?;
        }

        let fields = header.as_old_mut();
        set_field(&mut fields.name, path);
        if let Some(link) = link {
            set_field(&mut fields.linkname, link);
        }
        header.set_cksum();
        self.inner.write_all(header.as_bytes())
    }

    /// Copies exactly `size` bytes of the file, failing if it grew or shrank since the scan.
    fn copy_content(&mut self, entry: &FileEntry, size: u64) -> Result<()> {
        let read_error = |e| Error::io("read", entry.source(), e);
        let changed = || Error::AppFile {
            path: entry.source(),
            reason: "the file changed size while it was being read; run the command again \
                     when nothing is writing to the app directory"
                .to_string(),
        };
        let mut file = File::open(entry.source()).map_err(read_error)?;
        let mut remaining = size;
        while remaining > 0 {
            let want = remaining.min(self.copy_buffer.len() as u64) as usize;
            let read = file
                .read(&mut self.copy_buffer[..want])
                .map_err(read_error)?;
            if read == 0 {
                return Err(changed());
            }
            self.inner
                .write_all(&self.copy_buffer[..read])
                .map_err(|e| Error::io("write a layer entry for", entry.source(), e))?;
            remaining -= read as u64;
        }
        if file.read(&mut self.copy_buffer[..1]).map_err(read_error)? != 0 {
            return Err(changed());
        }
        self.pad(size)
            .map_err(|e| Error::io("write a layer entry for", entry.source(), e))
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let remainder = (size % BLOCK as u64) as usize;
        if remainder != 0 {
            self.inner.write_all(&[0; BLOCK][..BLOCK - remainder])?;
        }
        Ok(())
    }
}

/// Fills a NUL-padded header field with as much of `value` as fits, as ASCII; the full value
/// is in a PAX record whenever it does not fit.
fn set_field(field: &mut [u8], value: &str) {
    field.fill(0);
    for (slot, byte) in field.iter_mut().zip(value.bytes()) {
        *slot = if byte.is_ascii() { byte } else { b'_' };
    }
}

/// Returns `"<length> <key>=<value>\n"`, where the length counts the whole record.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut length = body.len();
    loop {
        let total = length.to_string().len() + body.len();
        if total == length {
            break;
        }
        length = total;
    }
    format!("{length}{body}").into_bytes()
}

/// Names a PAX header `dir/PaxHeaders/file`, as Go's archive/tar does but without the process
/// id that GNU tar puts there, so the name is the same on every run.
fn pax_header_name(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    let (directory, file) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
    let name = if directory.is_empty() {
        format!("PaxHeaders/{file}")
    } else {
        format!("{directory}/PaxHeaders/{file}")
    };
    name.chars().take(NAME_FIELD).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::Arc;

    /// An entry at `path` below `root`; a file entry's content must be at `root/path`.
    fn entry(path: &str, kind: EntryKind, root: &Path) -> FileEntry {
        FileEntry {
            path: path.to_string(),
            root: Arc::from(root),
            kind,
            executable: false,
        }
    }

    fn write_file(root: &Path, path: &str, content: &str) {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }

    fn read_archive(bytes: &[u8]) -> Vec<(String, EntryType, u32, String)> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let header = entry.header();
                let link = entry
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (
                    entry.path().unwrap().to_string_lossy().into_owned(),
                    header.entry_type(),
                    header.mode().unwrap(),
                    link,
                )
            })
            .collect()
    }

    #[test]
    fn parents_come_before_entries() {
        let dir = tempfile::tempdir().unwrap();
        write_file(dir.path(), "a/b/f.js", "hello");
        let mut writer = TarWriter::new(Vec::new(), 1, "var/task");
        writer
            .append(&entry("a/b/f.js", EntryKind::File { size: 5 }, dir.path()))
            .unwrap();
        let entries = read_archive(&writer.finish().unwrap());
        let paths: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "var/",
                "var/task/",
                "var/task/a/",
                "var/task/a/b/",
                "var/task/a/b/f.js"
            ]
        );
        assert_eq!(entries[4].2, 0o644);
        assert_eq!(entries[0].2, 0o755);
    }

    #[test]
    fn long_and_non_ascii_names_use_pax() {
        let long = format!("{}/ünïcode-{}.js", "d".repeat(80), "x".repeat(40));
        let mut writer = TarWriter::new(Vec::new(), 1, "var/task");
        let target = "t".repeat(150);
        writer
            .append(&entry(
                &long,
                EntryKind::Symlink {
                    target: target.clone(),
                },
                Path::new("/"),
            ))
            .unwrap();
        let entries = read_archive(&writer.finish().unwrap());
        let last = entries.last().unwrap();
        assert_eq!(last.0, format!("var/task/{long}"));
        assert_eq!(last.1, EntryType::Symlink);
        assert_eq!(last.3, target);
    }

    #[test]
    fn changed_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write_file(dir.path(), "f", "hello");
        let mut writer = TarWriter::new(Vec::new(), 1, "var/task");
        let error = writer
            .append(&entry("f", EntryKind::File { size: 9 }, dir.path()))
            .unwrap_err();
        assert!(error.to_string().contains("changed size"), "{error}");
    }

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record("path", "a"), b"9 path=a\n");
        let record = pax_record("path", &"p".repeat(95));
        assert_eq!(record.len(), 105);
        assert!(record.starts_with(b"105 "));
    }
}
