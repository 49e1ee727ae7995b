//! Pushing a built image: every blob checked and, if missing, mounted or uploaded, then the
//! manifest last, so a registry never holds a manifest that names a missing blob.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::{stream, StreamExt, TryStreamExt};
use tracing::{debug, warn};

use super::client::{Access, RegistryClient};
use crate::base::{BaseImage, BaseLocation};
use crate::blob;
use crate::digest::Digest;
use crate::error::Result;
use crate::image::{Image, LayerSource};
use crate::manifest::Descriptor;
use crate::progress::{Event, Progress};
use crate::reference::Reference;

/// How many blobs are transferred at once.
const PARALLEL_UPLOADS: usize = 4;

/// How many times a blob upload (POST and PUT) is started before its failure is final.
const BLOB_ATTEMPTS: u32 = 3;

/// How many times a manifest the registry rejects for a missing blob is sent, each after
/// checking its blobs again.
const MANIFEST_ATTEMPTS: u32 = 3;

/// A blob to make present in the target repository.
#[derive(Clone)]
enum Blob {
    Config(Arc<Vec<u8>>),
    File(std::path::PathBuf),
    Base(Descriptor),
}

/// Pushes `image` to `target` and returns the manifest digest. The blobs in `present` were
/// found or put in `target`'s repository earlier in this run, so they are not checked again.
pub async fn push_image(
    client: Arc<RegistryClient>,
    target: &Reference,
    image: &Image,
    base: Arc<BaseImage>,
    present: &HashSet<Digest>,
    progress: &dyn Progress,
) -> Result<Digest> {
    // A registry accepts a manifest only when every blob it names is present, so a tag that
    // names this very manifest already needs nothing more. The check only saves requests: when
    // it fails, the push goes on and meets any real problem in its own requests.
    match client.pushed_manifest_digest(target).await {
        Ok(Some(digest)) if digest == image.manifest_digest => {
            debug!(%target, "the tag already names this manifest");
            progress.report(Event::ManifestPresent {
                reference: &target.to_string(),
                digest: &digest,
            });
            return Ok(digest);
        }
        Ok(_) => {}
        Err(error) => debug!(%error, "cannot check the tag's manifest; pushing it"),
    }

    let config = image.config_descriptor();
    let mut blobs = vec![(
        config.digest.clone(),
        config.size,
        Blob::Config(Arc::new(image.config.clone())),
    )];
    for layer in &image.layers {
        let blob = match &layer.source {
            LayerSource::File(path) => Blob::File(path.clone()),
            LayerSource::Base => Blob::Base(layer.descriptor.clone()),
        };
        blobs.push((layer.descriptor.digest.clone(), layer.descriptor.size, blob));
    }
    // The same blob twice (an app that equals a base layer, say) is pushed once.
    blobs.sort_by(|a, b| a.0.cmp(&b.0));
    blobs.dedup_by(|a, b| a.0 == b.0);

    let mut attempt = 1;
    let digest = loop {
        // After a rejected manifest, every blob is checked again.
        let unchecked = blobs
            .iter()
            .filter(|(digest, _, _)| attempt > 1 || !present.contains(digest))
            .cloned();
        stream::iter(unchecked)
            .map(|(digest, size, blob)| {
                let client = client.clone();
                let base = base.clone();
                async move {
                    push_blob(&client, target, &digest, size, blob, &base, progress).await
                }
            })
            .buffer_unordered(PARALLEL_UPLOADS)
            .try_collect::<Vec<()>>()
            .await?;

        match client
            .put_manifest(target, &image.manifest_bytes, &image.manifest_media_type())
            .await
        {
            Ok(digest) => break digest,
            // Every blob was present a moment ago, yet the registry could not find one.
            // docker-registry 2.8 (Debian's package) rewrites a blob link in place when another
            // push commits or mounts the same blob. A manifest checked meanwhile reads an empty
            // link. (Newer releases write a temporary file and rename it.) Checking the blobs
            // again, pushing any that is really gone, and resending the manifest cures it.
            Err(error)
                if error.has_code("MANIFEST_BLOB_UNKNOWN") && attempt < MANIFEST_ATTEMPTS =>
            {
                warn!(
                    attempt,
                    "{error}; checking the blobs and sending the manifest again"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)))
                    .await;
                attempt += 1;
            }
            Err(error) => return Err(error.into()),
        }
    };
    progress.report(Event::ManifestPushed {
        reference: &target.to_string(),
        digest: &digest,
    });
    Ok(digest)
}

/// Makes the base image's layers present in `target`, mounting or streaming each that is
/// missing, except those in `skip`, and returns the digests of the layers it handled. Run
/// while the app's layers are still being built, it takes the base's transfer, often the
/// largest, off the critical path.
pub async fn push_base_layers(
    client: Arc<RegistryClient>,
    target: Reference,
    base: Arc<BaseImage>,
    skip: HashSet<Digest>,
    progress: Arc<dyn Progress>,
) -> Result<Vec<Digest>> {
    let layers: Vec<Descriptor> = base
        .manifest
        .layers
        .iter()
        .filter(|layer| !skip.contains(&layer.digest))
        .cloned()
        .collect();
    let digests = layers.iter().map(|layer| layer.digest.clone()).collect();
    stream::iter(layers)
        .map(|descriptor| {
            let client = client.clone();
            let base = base.clone();
            let target = &target;
            let progress = progress.as_ref();
            async move {
                let (digest, size) = (descriptor.digest.clone(), descriptor.size);
                push_blob(
                    &client,
                    target,
                    &digest,
                    size,
                    Blob::Base(descriptor),
                    &base,
                    progress,
                )
                .await
            }
        })
        .buffer_unordered(PARALLEL_UPLOADS)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(digests)
}

async fn push_blob(
    client: &Arc<RegistryClient>,
    target: &Reference,
    digest: &Digest,
    size: u64,
    blob: Blob,
    base: &Arc<BaseImage>,
    progress: &dyn Progress,
) -> Result<()> {
    if client.blob_exists(target, digest, Access::Push).await? {
        debug!(%digest, "blob already present");
        progress.report(Event::BlobPresent { digest, size });
        return Ok(());
    }
    if let (Blob::Base(_), BaseLocation::Registry(source)) = (&blob, &base.location) {
        let same_registry =
            source.registry() == target.registry() && source.repository() != target.repository();
        if same_registry
            && client
                .mount_blob(target, digest, source.repository())
                .await?
        {
            progress.report(Event::BlobMounted { digest, size });
            return Ok(());
        }
    }

    let body = || -> reqwest::Body {
        match &blob {
            Blob::Config(bytes) => reqwest::Body::from(bytes.as_ref().clone()),
            Blob::File(path) => {
                let path = path.clone();
                let expected = digest.clone();
                // The file is opened when the upload starts reading, so each attempt starts afresh.
                let opened = stream::once(async move {
                    let file = blob::file_stream(&path).await?;
                    Ok::<_, std::io::Error>(blob::verify(
                        file,
                        expected,
                        size,
                        path.display().to_string(),
                    ))
                });
                reqwest::Body::wrap_stream(opened.try_flatten())
            }
            Blob::Base(descriptor) => {
                let client = client.clone();
                let base = base.clone();
                let descriptor = descriptor.clone();
                let opened = stream::once(async move {
                    base.open_blob(&client, &descriptor)
                        .await
                        .map_err(std::io::Error::other)
                });
                reqwest::Body::wrap_stream(opened.try_flatten())
            }
        }
    };
    let mut attempt = 1;
    loop {
        let error = match client.upload_blob(target, digest, size, &body).await {
            Ok(()) => break,
            Err(error) => error,
        };
        let session_lost =
            error.has_code("BLOB_UPLOAD_UNKNOWN") || error.has_code("BLOB_UPLOAD_INVALID");
        if attempt >= BLOB_ATTEMPTS || !(error.is_retryable() || session_lost) {
            return Err(error.into());
        }
        // The commit may have reached the registry before the connection failed.
        if client.blob_exists(target, digest, Access::Push).await? {
            break;
        }
        warn!(%digest, attempt, %error, "upload failed; starting it again");
        attempt += 1;
    }
    progress.report(Event::BlobUploaded { digest, size });
    Ok(())
}
