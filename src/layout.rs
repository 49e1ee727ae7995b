//! OCI image layouts on disk: reading one as a base image, and writing a built image as one.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::base::BaseImage;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{Image, IndexBlob, LayerSource};
use crate::manifest::{to_canonical_json, Descriptor, ImageIndex, REF_NAME_ANNOTATION};
use crate::media_type::MediaType;
use crate::registry::RegistryClient;

const OCI_LAYOUT_FILE: &str = "oci-layout";
const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const INDEX_FILE: &str = "index.json";

/// An OCI image layout opened for reading.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    index: ImageIndex,
}

impl Layout {
    /// Opens the layout at `root`, checking its `oci-layout` marker and reading `index.json`.
    pub fn open(root: &Path) -> Result<Layout> {
        let error = |reason: String| Error::Layout {
            path: root.to_path_buf(),
            reason,
        };
        if !root.join(OCI_LAYOUT_FILE).is_file() {
            return Err(error(
                "is not an OCI image layout: there is no oci-layout file; pass the folder that holds index.json".to_string(),
            ));
        }
        let index_path = root.join(INDEX_FILE);
        let bytes = fs::read(&index_path).map_err(|e| Error::io("read", &index_path, e))?;
        let index = serde_json::from_slice(&bytes)
            .map_err(|e| error(format!("index.json is not valid: {e}")))?;
        Ok(Layout {
            root: root.to_path_buf(),
            index,
        })
    }

    /// Finds the `index.json` entry whose ref name is `tag`; without a tag, the only entry.
    pub fn find(&self, tag: Option<&str>) -> Result<&Descriptor> {
        let ref_name = |descriptor: &Descriptor| {
            descriptor
                .annotations
                .as_ref()
                .and_then(|annotations| annotations.get(REF_NAME_ANNOTATION))
                .cloned()
        };
        let found = match tag {
            Some(tag) => self
                .index
                .manifests
                .iter()
                .find(|descriptor| ref_name(descriptor).as_deref() == Some(tag)),
            None if self.index.manifests.len() == 1 => self.index.manifests.first(),
            None => None,
        };
        found.ok_or_else(|| {
            let names: Vec<String> = self.index.manifests.iter().filter_map(ref_name).collect();
            let wanted = tag.map_or("an image".to_string(), |tag| format!("tag `{tag}`"));
            Error::Layout {
                path: self.root.clone(),
                reason: format!(
                    "has no {wanted}; its tags are {}; name one as oci:PATH:TAG",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            }
        })
    }

    /// The file of the blob with `digest` in the layout at `root`.
    pub fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
        root.join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    /// Reads a small blob (a manifest, index or config), checking its size and digest.
    pub fn read_blob(&self, descriptor: &Descriptor, limit: u64) -> Result<Vec<u8>> {
        let path = Layout::blob_path(&self.root, &descriptor.digest);
        let mismatch = |reason: String| Error::BlobMismatch {
            digest: descriptor.digest.clone(),
            source_name: self.root.display().to_string(),
            reason,
        };
        if descriptor.size > limit {
            return Err(mismatch(format!(
                "{} bytes is more than the {limit} allowed",
                descriptor.size
            )));
        }
        let file = fs::File::open(&path).map_err(|e| Error::io("read the blob", &path, e))?;
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("read the blob", &path, e))?;
        if bytes.len() as u64 != descriptor.size {
            return Err(mismatch(format!(
                "{} bytes, expected {}",
                bytes.len(),
                descriptor.size
            )));
        }
        let digest = Digest::of(&bytes);
        if digest != descriptor.digest {
            return Err(mismatch(format!("content has digest {digest}")));
        }
        Ok(bytes)
    }
}

/// An image to write into a layout, under a tag.
pub struct LayoutEntry<'a> {
    pub tag: String,
    pub image: &'a Image,
    pub base: &'a BaseImage,
}

/// Writes the images of `entries` (and `index`, when given, under its tag) to `output` as one
/// OCI image layout whose `index.json` names each by tag.
///
/// The layout is assembled in a temporary folder beside `output` and renamed into place, so a
/// failed or interrupted build leaves no partial layout. An existing layout at `output` is
/// replaced; any other existing non-empty folder is an error.
pub async fn write_layout(
    output: &Path,
    entries: &[LayoutEntry<'_>],
    index: Option<(&str, &IndexBlob)>,
    client: &RegistryClient,
) -> Result<()> {
    check_output(output)?;
    let parent = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| Error::io("create", &parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".lambda-image-")
        .tempdir_in(&parent)
        .map_err(|e| Error::io("create a folder in", &parent, e))?;
    let root = staging.path();
    let blob_dir = root.join("blobs").join("sha256");
    fs::create_dir_all(&blob_dir).map_err(|e| Error::io("create", &blob_dir, e))?;
    write_file(&root.join(OCI_LAYOUT_FILE), OCI_LAYOUT_CONTENT)?;

    let mut descriptors = Vec::new();
    for entry in entries {
        write_image_blobs(root, entry.image, entry.base, client).await?;
        let descriptor = Descriptor::new(
            entry.image.manifest_media_type(),
            entry.image.manifest_digest.clone(),
            entry.image.manifest_bytes.len() as u64,
        );
        descriptors.push(tagged(descriptor, &entry.tag));
    }
    if let Some((tag, index)) = index {
        write_file(&Layout::blob_path(root, &index.digest), &index.bytes)?;
        let descriptor = Descriptor::new(
            index.media_type.clone(),
            index.digest.clone(),
            index.bytes.len() as u64,
        );
        descriptors.push(tagged(descriptor, tag));
    }

    let index = ImageIndex {
        schema_version: 2,
        media_type: Some(MediaType::OciIndex),
        manifests: descriptors,
        annotations: None,
        extra: BTreeMap::new(),
    };
    write_file(&root.join(INDEX_FILE), &to_canonical_json(&index))?;
    replace_output(staging, output)
}

fn tagged(mut descriptor: Descriptor, tag: &str) -> Descriptor {
    descriptor.annotations = Some(BTreeMap::from([(
        REF_NAME_ANNOTATION.to_string(),
        tag.to_string(),
    )]));
    descriptor
}

/// Writes the config, layers and manifest of `image`; blobs already written are skipped.
async fn write_image_blobs(
    root: &Path,
    image: &Image,
    base: &BaseImage,
    client: &RegistryClient,
) -> Result<()> {
    write_file(
        &Layout::blob_path(root, &image.config_descriptor().digest),
        &image.config,
    )?;
    for layer in &image.layers {
        let destination = Layout::blob_path(root, &layer.descriptor.digest);
        if destination.exists() {
            continue;
        }
        match &layer.source {
            LayerSource::File(path) => copy_file(path, &destination)?,
            LayerSource::Base => {
                copy_base_blob(base, client, &layer.descriptor, &destination).await?
            }
        }
    }
    write_file(
        &Layout::blob_path(root, &image.manifest_digest),
        &image.manifest_bytes,
    )
}

/// Accepts a missing path, an empty folder or an existing layout as the output.
fn check_output(output: &Path) -> Result<()> {
    let error = |reason: &str| Error::Layout {
        path: output.to_path_buf(),
        reason: reason.to_string(),
    };
    match fs::symlink_metadata(output) {
        Err(_) => Ok(()),
        Ok(metadata) if !metadata.is_dir() => Err(error(
            "exists and is not a folder; choose another --output path",
        )),
        Ok(_) => {
            let empty = fs::read_dir(output)
                .map_err(|e| Error::io("read", output, e))?
                .next()
                .is_none();
            if empty || output.join(OCI_LAYOUT_FILE).is_file() {
                Ok(())
            } else {
                Err(error("is a folder that is neither empty nor an OCI image layout; choose an empty or new --output path"))
            }
        }
    }
}

fn replace_output(staging: tempfile::TempDir, output: &Path) -> Result<()> {
    let staged = staging.keep();
    if output.exists() {
        // Move the old layout aside first: rename cannot replace a non-empty folder.
        let old = staged.with_extension("old");
        fs::rename(output, &old).map_err(|e| Error::io("replace", output, e))?;
        let result = fs::rename(&staged, output);
        let _ = fs::remove_dir_all(&old);
        result.map_err(|e| Error::io("write", output, e))?;
    } else {
        fs::rename(&staged, output).map_err(|e| Error::io("write", output, e))?;
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).map_err(|e| Error::io("write", path, e))
}

/// Copies a layer blob into the layout as a new file with the umask's mode. A hard link would
/// share the cache's private (0600) file, and an edit of the layout would change the cache.
/// `io::copy` between two files uses `copy_file_range`, so the kernel copies the data, or
/// shares it on file systems that support that.
fn copy_file(from: &Path, to: &Path) -> Result<()> {
    let mut source = fs::File::open(from).map_err(|e| Error::io("read", from, e))?;
    let mut destination = fs::File::create(to).map_err(|e| Error::io("write", to, e))?;
    std::io::copy(&mut source, &mut destination).map_err(|e| Error::io("copy", from, e))?;
    Ok(())
}

async fn copy_base_blob(
    base: &BaseImage,
    client: &RegistryClient,
    descriptor: &Descriptor,
    destination: &Path,
) -> Result<()> {
    let mut stream = base.open_blob(client, descriptor).await?;
    let write_error = |e| Error::io("write", destination, e);
    let mut file = tokio::fs::File::create(destination)
        .await
        .map_err(write_error)?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::Base {
            base: base.location.to_string(),
            reason: e.to_string(),
        })?;
        file.write_all(&chunk).await.map_err(write_error)?;
    }
    file.flush().await.map_err(write_error)
}
