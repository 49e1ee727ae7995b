//! Blob readers for the image being checked: a registry, an OCI image layout, or the files
//! and base image of a build.

use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;
use futures_util::TryStreamExt;

use crate::base::BaseImage;
use crate::blob::{self, BlobStream};
use crate::error::{Error, Result};
use crate::image::{Image, LayerSource};
use crate::layout::Layout;
use crate::manifest::Descriptor;
use crate::reference::Reference;
use crate::registry::RegistryClient;

/// Opens the blobs of the image being checked.
pub trait BlobReader: Send + Sync {
    /// Names where the blob is read from, such as a file path or `registry/repository@digest`,
    /// for messages.
    fn location(&self, descriptor: &Descriptor) -> String;

    /// Opens the blob's bytes as stored. The check verifies their size and digest itself.
    ///
    /// Returns `None` when this reader does not provide the blob. The check then skips what
    /// needs the layer's contents and estimates its uncompressed size from the compressed one.
    fn open<'a>(&'a self, descriptor: &'a Descriptor) -> BoxFuture<'a, Result<Option<BlobStream>>>;
}

/// Reads blobs from a registry repository.
pub struct RegistryBlobs<'a> {
    client: &'a RegistryClient,
    reference: Reference,
}

impl<'a> RegistryBlobs<'a> {
    /// Reads blobs from the repository of `reference`.
    pub fn new(client: &'a RegistryClient, reference: &Reference) -> RegistryBlobs<'a> {
        RegistryBlobs {
            client,
            reference: reference.clone(),
        }
    }
}

impl BlobReader for RegistryBlobs<'_> {
    fn location(&self, descriptor: &Descriptor) -> String {
        format!(
            "{}/{}@{}",
            self.reference.registry(),
            self.reference.repository(),
            descriptor.digest
        )
    }

    fn open<'a>(&'a self, descriptor: &'a Descriptor) -> BoxFuture<'a, Result<Option<BlobStream>>> {
        Box::pin(async move {
            let response = self
                .client
                .get_blob(&self.reference, &descriptor.digest)
                .await?;
            let stream = response.bytes_stream().map_err(std::io::Error::other);
            Ok(Some(Box::pin(stream) as BlobStream))
        })
    }
}

/// Reads blobs from an OCI image layout's `blobs/` folder.
pub struct LayoutBlobs {
    root: PathBuf,
}

impl LayoutBlobs {
    /// Reads blobs from the layout at `root`.
    pub fn new(root: &Path) -> LayoutBlobs {
        LayoutBlobs {
            root: root.to_path_buf(),
        }
    }
}

impl BlobReader for LayoutBlobs {
    fn location(&self, descriptor: &Descriptor) -> String {
        Layout::blob_path(&self.root, &descriptor.digest)
            .display()
            .to_string()
    }

    fn open<'a>(&'a self, descriptor: &'a Descriptor) -> BoxFuture<'a, Result<Option<BlobStream>>> {
        Box::pin(async move {
            let path = Layout::blob_path(&self.root, &descriptor.digest);
            let stream = blob::file_stream(&path)
                .await
                .map_err(|error| Error::io("read the blob", &path, error))?;
            Ok(Some(stream))
        })
    }
}

/// Reads the layers of an image that was just built: the app's layers from their files, and
/// the base image's layers from the base's registry or layout.
pub struct BuiltImageBlobs<'a> {
    image: &'a Image,
    base: &'a BaseImage,
    client: &'a RegistryClient,
    read_base_layers: bool,
    read_built_layers: bool,
}

impl<'a> BuiltImageBlobs<'a> {
    /// Reads every layer of `image`, fetching the base image's layers through `client` when
    /// the base is in a registry.
    pub fn new(
        image: &'a Image,
        base: &'a BaseImage,
        client: &'a RegistryClient,
    ) -> BuiltImageBlobs<'a> {
        BuiltImageBlobs {
            image,
            base,
            client,
            read_base_layers: true,
            read_built_layers: true,
        }
    }

    /// Leaves every layer unread, so only the manifest and config are checked. For an image
    /// lambda-image just built: its own layers have parent entries and readable modes by
    /// construction, and its handler was resolved against the same files before they were packed.
    pub fn metadata_only(mut self) -> BuiltImageBlobs<'a> {
        self.read_base_layers = false;
        self.read_built_layers = false;
        self
    }

    /// Leaves the base image's layers unread, so a check before a push does not download a
    /// registry base. The check then covers only the app's layers, and the size limit counts
    /// the base layers' compressed sizes.
    pub fn skip_base_layers(mut self) -> BuiltImageBlobs<'a> {
        self.read_base_layers = false;
        self
    }

    fn source(&self, descriptor: &Descriptor) -> Option<&'a LayerSource> {
        self.image
            .layers
            .iter()
            .find(|layer| layer.descriptor.digest == descriptor.digest)
            .map(|layer| &layer.source)
    }
}

impl BlobReader for BuiltImageBlobs<'_> {
    fn location(&self, descriptor: &Descriptor) -> String {
        match self.source(descriptor) {
            Some(LayerSource::File(path)) => path.display().to_string(),
            _ => format!("base image {}", self.base.location),
        }
    }

    fn open<'a>(&'a self, descriptor: &'a Descriptor) -> BoxFuture<'a, Result<Option<BlobStream>>> {
        Box::pin(async move {
            match self.source(descriptor) {
                Some(LayerSource::File(_)) if !self.read_built_layers => Ok(None),
                Some(LayerSource::File(path)) => {
                    let stream = blob::file_stream(path)
                        .await
                        .map_err(|error| Error::io("read the layer", path, error))?;
                    Ok(Some(stream))
                }
                // The base verifies the stream too. Hashing a base layer twice costs little
                // next to decompressing it.
                Some(LayerSource::Base) if self.read_base_layers => {
                    Ok(Some(self.base.open_blob(self.client, descriptor).await?))
                }
                Some(LayerSource::Base) => Ok(None),
                None => Err(Error::BlobMismatch {
                    digest: descriptor.digest.clone(),
                    source_name: "the built image".to_string(),
                    reason: "is not one of the image's layers".to_string(),
                }),
            }
        })
    }
}
