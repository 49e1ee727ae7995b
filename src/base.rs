//! The base image: where it lives (a registry or an OCI image layout), and its manifest and
//! config for the chosen platform.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::blob::{self, BlobStream};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::manifest::{Descriptor, ImageIndex, ImageManifest};
use crate::media_type::{Family, MediaType};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::{RegistryClient, MAX_MANIFEST_SIZE};

/// Largest image config read into memory; real ones are a few kilobytes.
const MAX_CONFIG_SIZE: u64 = 8 * 1024 * 1024;

/// Where the base image comes from: `--base REF` or `--base oci:PATH[:TAG]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseLocation {
    Registry(Reference),
    Layout { path: PathBuf, tag: Option<String> },
}

impl FromStr for BaseLocation {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self> {
        let Some(rest) = value.strip_prefix("oci:") else {
            return Ok(BaseLocation::Registry(value.parse()?));
        };
        // The tag follows the last `:` unless a `/` comes after it, which makes it part of the path.
        let (path, tag) = match rest.rsplit_once(':') {
            Some((path, tag)) if !tag.contains('/') && !path.is_empty() => (path, Some(tag)),
            _ => (rest, None),
        };
        if tag == Some("") {
            return Err(Error::Base {
                base: value.to_string(),
                reason: "the tag after the last `:` is empty; write oci:PATH or oci:PATH:TAG"
                    .to_string(),
            });
        }
        if path.is_empty() {
            return Err(Error::Base {
                base: value.to_string(),
                reason: "expected oci:PATH or oci:PATH:TAG".to_string(),
            });
        }
        Ok(BaseLocation::Layout {
            path: PathBuf::from(path),
            tag: tag.filter(|t| !t.is_empty()).map(str::to_string),
        })
    }
}

impl fmt::Display for BaseLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaseLocation::Registry(reference) => write!(f, "{reference}"),
            BaseLocation::Layout {
                path,
                tag: Some(tag),
            } => write!(f, "oci:{}:{tag}", path.display()),
            BaseLocation::Layout { path, tag: None } => write!(f, "oci:{}", path.display()),
        }
    }
}

/// The base image's manifest and config for one platform.
#[derive(Debug, Clone)]
pub struct BaseImage {
    pub location: BaseLocation,
    pub manifest: ImageManifest,
    pub manifest_media_type: MediaType,
    /// The config exactly as stored, so fields this tool does not know survive.
    pub config: Vec<u8>,
    /// The platform of the selected manifest, as its index entry names it.
    pub platform: Platform,
}

impl BaseImage {
    /// Resolves `location` to the manifest for `platform` and reads its config.
    pub async fn load(
        location: BaseLocation,
        platform: &Platform,
        client: &RegistryClient,
    ) -> Result<BaseImage> {
        let base = location.to_string();
        let cache = BaseCache::in_user_cache();
        let cache_key = match (&location, &cache) {
            (BaseLocation::Registry(reference), Some(_)) => client
                .head_manifest(reference)
                .await?
                .map(|digest| BaseCache::key(reference, &digest, platform)),
            _ => None,
        };
        if let (Some(cache), Some(key)) = (&cache, &cache_key) {
            if let Some(image) = cache.get(key, &location) {
                tracing::debug!(%base, "base image unchanged; using the cached manifest and config");
                return Ok(image);
            }
        }

        let (manifest_bytes, media_type, selected_platform) = match &location {
            BaseLocation::Registry(reference) => {
                load_registry_manifest(reference, platform, client).await?
            }
            BaseLocation::Layout { path, tag } => {
                load_layout_manifest(path, tag.as_deref(), platform, &base)?
            }
        };
        let manifest: ImageManifest =
            serde_json::from_slice(&manifest_bytes).map_err(|e| Error::Base {
                base: base.clone(),
                reason: format!("the manifest is not valid: {e}"),
            })?;
        check_manifest(&manifest, &base)?;

        let mut image = BaseImage {
            location,
            manifest,
            manifest_media_type: media_type,
            config: Vec::new(),
            platform: selected_platform.unwrap_or_else(|| platform.clone()),
        };
        image.config = image.read_config(client).await?;
        if let (Some(cache), Some(key)) = (&cache, &cache_key) {
            cache.put(key, &image, &manifest_bytes);
        }
        Ok(image)
    }

    /// The media-type family of the base manifest, which the built image keeps.
    pub fn family(&self) -> Family {
        self.manifest_media_type.family().unwrap_or(Family::Oci)
    }

    /// Opens a verified stream of one of the base image's blobs.
    pub async fn open_blob(
        &self,
        client: &RegistryClient,
        descriptor: &Descriptor,
    ) -> Result<BlobStream> {
        let source = self.location.to_string();
        let stream = match &self.location {
            BaseLocation::Registry(reference) => {
                let response = client.get_blob(reference, &descriptor.digest).await?;
                let stream = futures_util::TryStreamExt::map_err(
                    response.bytes_stream(),
                    std::io::Error::other,
                );
                Box::pin(stream) as BlobStream
            }
            BaseLocation::Layout { path, .. } => {
                let blob_path = Layout::blob_path(path, &descriptor.digest);
                blob::file_stream(&blob_path)
                    .await
                    .map_err(|e| Error::io("read the blob", &blob_path, e))?
            }
        };
        Ok(blob::verify(
            stream,
            descriptor.digest.clone(),
            descriptor.size,
            source,
        ))
    }

    async fn read_config(&self, client: &RegistryClient) -> Result<Vec<u8>> {
        let descriptor = &self.manifest.config;
        if descriptor.size > MAX_CONFIG_SIZE {
            return Err(Error::Base {
                base: self.location.to_string(),
                reason: format!(
                    "the config is {} bytes, more than the {MAX_CONFIG_SIZE} this tool reads",
                    descriptor.size
                ),
            });
        }
        let mut stream = self.open_blob(client, descriptor).await?;
        let mut bytes = Vec::with_capacity(descriptor.size as usize);
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            let chunk = chunk.map_err(|e| Error::Base {
                base: self.location.to_string(),
                reason: format!("cannot read the config: {e}"),
            })?;
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

/// Manifests and configs of registry base images, by the digest the registry reports for the
/// reference, so that a rebuild on an unchanged base costs one HEAD request.
struct BaseCache {
    dir: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedBase {
    manifest: String,
    media_type: MediaType,
    config: String,
    platform: Platform,
}

impl BaseCache {
    fn in_user_cache() -> Option<BaseCache> {
        let dir = crate::cache::cache_root()?.join("bases");
        std::fs::create_dir_all(&dir).ok()?;
        Some(BaseCache { dir })
    }

    fn key(reference: &Reference, digest: &crate::digest::Digest, platform: &Platform) -> String {
        let text = format!("{reference}\n{digest}\n{platform}");
        crate::digest::Digest::of(text.as_bytes()).hex().to_string()
    }

    fn get(&self, key: &str, location: &BaseLocation) -> Option<BaseImage> {
        let bytes = std::fs::read(self.dir.join(format!("{key}.json"))).ok()?;
        let cached: CachedBase = serde_json::from_slice(&bytes).ok()?;
        let manifest = serde_json::from_str(&cached.manifest).ok()?;
        Some(BaseImage {
            location: location.clone(),
            manifest,
            manifest_media_type: cached.media_type,
            config: cached.config.into_bytes(),
            platform: cached.platform,
        })
    }

    fn put(&self, key: &str, image: &BaseImage, manifest_bytes: &[u8]) {
        // Manifests and configs are JSON, so their exact bytes survive as strings.
        let (Ok(manifest), Ok(config)) = (
            std::str::from_utf8(manifest_bytes),
            std::str::from_utf8(&image.config),
        ) else {
            return;
        };
        let cached = CachedBase {
            manifest: manifest.to_string(),
            media_type: image.manifest_media_type.clone(),
            config: config.to_string(),
            platform: image.platform.clone(),
        };
        let path = self.dir.join(format!("{key}.json"));
        let temporary = self.dir.join(format!(".{key}.{}.tmp", std::process::id()));
        let written = std::fs::write(&temporary, serde_json::to_vec(&cached).expect("serializes"))
            .and_then(|()| std::fs::rename(&temporary, &path));
        if let Err(error) = written {
            tracing::debug!(%error, "cannot cache the base image");
        }
    }
}

async fn load_registry_manifest(
    reference: &Reference,
    platform: &Platform,
    client: &RegistryClient,
) -> Result<(Vec<u8>, MediaType, Option<Platform>)> {
    let fetched = client.get_manifest(reference).await?;
    if !fetched.media_type.is_index() {
        return Ok((fetched.bytes, fetched.media_type, None));
    }
    let index = parse_index(&fetched.bytes, &reference.to_string())?;
    let descriptor = select_platform(&index, platform, &reference.to_string())?;
    let fetched = client
        .get_manifest(&reference.with_digest(descriptor.digest.clone()))
        .await?;
    Ok((fetched.bytes, fetched.media_type, descriptor.platform))
}

fn load_layout_manifest(
    path: &std::path::Path,
    tag: Option<&str>,
    platform: &Platform,
    base: &str,
) -> Result<(Vec<u8>, MediaType, Option<Platform>)> {
    let layout = Layout::open(path)?;
    let mut descriptor = layout.find(tag)?.clone();
    let mut selected_platform = None;
    if descriptor.media_type.is_index() {
        let bytes = layout.read_blob(&descriptor, MAX_MANIFEST_SIZE as u64)?;
        let index = parse_index(&bytes, base)?;
        descriptor = select_platform(&index, platform, base)?;
        selected_platform = descriptor.platform.clone();
    }
    if !descriptor.media_type.is_manifest() {
        return Err(Error::Base {
            base: base.to_string(),
            reason: format!(
                "the layout entry is a `{}`, not an image manifest or index",
                descriptor.media_type
            ),
        });
    }
    let bytes = layout.read_blob(&descriptor, MAX_MANIFEST_SIZE as u64)?;
    Ok((bytes, descriptor.media_type, selected_platform))
}

fn parse_index(bytes: &[u8], base: &str) -> Result<ImageIndex> {
    serde_json::from_slice(bytes).map_err(|e| Error::Base {
        base: base.to_string(),
        reason: format!("the image index is not valid: {e}"),
    })
}

/// Picks the manifest for `platform` out of an index, skipping attestation manifests (which
/// buildx lists with platform `unknown/unknown`).
pub fn select_platform(index: &ImageIndex, platform: &Platform, base: &str) -> Result<Descriptor> {
    let candidates = index
        .manifests
        .iter()
        .filter(|descriptor| descriptor.media_type.is_manifest());
    for descriptor in candidates.clone() {
        if descriptor
            .platform
            .as_ref()
            .is_some_and(|offered| platform.matches(offered))
        {
            return Ok(descriptor.clone());
        }
    }
    let offered: Vec<String> = candidates
        .filter_map(|descriptor| descriptor.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(ToString::to_string)
        .collect();
    Err(Error::Base {
        base: base.to_string(),
        reason: format!(
            "has no image for platform {platform}; it offers {}; choose one with --platform",
            if offered.is_empty() {
                "none".to_string()
            } else {
                offered.join(", ")
            }
        ),
    })
}

/// Rejects base images that cannot carry a Lambda function: artifacts without layers, or
/// layers Lambda does not read.
fn check_manifest(manifest: &ImageManifest, base: &str) -> Result<()> {
    let error = |reason: String| Error::Base {
        base: base.to_string(),
        reason,
    };
    if manifest.layers.is_empty() {
        return Err(error(
            "has no layers; it is an artifact, not a container image".to_string(),
        ));
    }
    if !matches!(
        manifest.config.media_type,
        MediaType::OciConfig | MediaType::DockerConfig
    ) {
        return Err(error(format!(
            "has config media type `{}`, not an image config",
            manifest.config.media_type
        )));
    }
    if let Some(layer) = manifest
        .layers
        .iter()
        .find(|layer| !layer.media_type.is_gzip_layer())
    {
        return Err(error(format!(
            "layer {} has media type `{}`; Lambda accepts only gzip tar layers",
            layer.digest, layer.media_type
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    #[test]
    fn parse_layout_locations() {
        assert_eq!(
            "oci:testdata/base:24".parse::<BaseLocation>().unwrap(),
            BaseLocation::Layout {
                path: "testdata/base".into(),
                tag: Some("24".into())
            }
        );
        assert_eq!(
            "oci:./a:b/c".parse::<BaseLocation>().unwrap(),
            BaseLocation::Layout {
                path: "./a:b/c".into(),
                tag: None
            }
        );
        assert!("oci:".parse::<BaseLocation>().is_err());
        assert!("oci:a:b:".parse::<BaseLocation>().is_err());
        assert!(matches!(
            "public.ecr.aws/lambda/nodejs:22"
                .parse::<BaseLocation>()
                .unwrap(),
            BaseLocation::Registry(_)
        ));
    }

    #[test]
    fn select_platform_reports_what_is_offered() {
        let digest = Digest::of(b"m");
        let entry = |p: Platform| Descriptor {
            platform: Some(p),
            ..Descriptor::new(MediaType::OciManifest, digest.clone(), 1)
        };
        let index = ImageIndex {
            schema_version: 2,
            media_type: Some(MediaType::OciIndex),
            manifests: vec![
                entry(Platform::linux_amd64()),
                entry(Platform::new("unknown", "unknown", None)),
            ],
            annotations: None,
            extra: Default::default(),
        };
        let arm: Platform = "linux/arm64".parse().unwrap();
        let message = select_platform(&index, &arm, "b").unwrap_err().to_string();
        assert_eq!(message, "base image `b`: has no image for platform linux/arm64; it offers linux/amd64; choose one with --platform");
        assert!(select_platform(&index, &Platform::linux_amd64(), "b").is_ok());
    }
}
