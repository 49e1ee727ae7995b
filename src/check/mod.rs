//! Checks whether AWS Lambda accepts an image, before a deploy finds out: media types, the
//! entrypoint and command, size limits, layer contents under `/var/task`, and whether the
//! handler in `Cmd` resolves to an exported function.
//!
//! The image can be in a registry ([`check_reference`]), in an OCI image layout
//! ([`check_layout`]) or freshly built ([`check_built`]). Each check returns [`Finding`]s;
//! an `Err` means the image could not be read at all.
//!
//! Layers are streamed once each, never held in memory whole, and every layer's digest is
//! verified while it is read.

mod index;
mod layer;
mod metadata;
mod source;
mod task;

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use futures_util::StreamExt;
use tracing::debug;

use crate::blob;
use crate::error::{Error, Result};
use crate::image::Image;
use crate::layout::Layout;
use crate::manifest::{Descriptor, ImageIndex, ImageManifest};
use crate::media_type::MediaType;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::{RegistryClient, MAX_MANIFEST_SIZE};

use layer::{Compression, ScanOutcome};
use metadata::LayerSize;
use task::TaskTree;

pub use source::{BlobReader, BuiltImageBlobs, LayoutBlobs, RegistryBlobs};

/// Largest image config read into memory. Real ones are a few kilobytes.
const MAX_CONFIG_SIZE: u64 = 8 * 1024 * 1024;

/// The severity of a finding: whether Lambda rejects the image or only runs it badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Lambda rejects the image, or the function fails when it starts.
    Error,
    /// Lambda runs the image, but something is likely wrong or misleads other tools.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// A stable, kebab-case name for the kind of problem, such as `index-not-supported`.
    pub code: &'static str,
    /// One line: what is wrong, on which value, and how to fix it.
    pub message: String,
}

impl Finding {
    pub(crate) fn error(code: &'static str, message: String) -> Finding {
        Finding {
            severity: Severity::Error,
            code,
            message,
        }
    }

    pub(crate) fn warning(code: &'static str, message: String) -> Finding {
        Finding {
            severity: Severity::Warning,
            code,
            message,
        }
    }
}

impl fmt::Display for Finding {
    /// Formats as `error[code]: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]: {}", self.severity, self.code, self.message)
    }
}

/// Reports whether any finding is an error, which means Lambda would not run the image.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings
        .iter()
        .any(|finding| finding.severity == Severity::Error)
}

/// A CPU architecture that Lambda runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Amd64,
    Arm64,
}

/// The reason a string is not an architecture Lambda runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid architecture `{0}`: expected amd64 (x86_64) or arm64")]
pub struct ArchitectureError(pub String);

impl Architecture {
    /// Returns the name that image configs and platforms use: `amd64` or `arm64`.
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Amd64 => "amd64",
            Architecture::Arm64 => "arm64",
        }
    }

    /// Returns the name that the Lambda API uses: `x86_64` or `arm64`.
    pub fn lambda_name(self) -> &'static str {
        match self {
            Architecture::Amd64 => "x86_64",
            Architecture::Arm64 => "arm64",
        }
    }
}

impl FromStr for Architecture {
    type Err = ArchitectureError;

    /// Accepts the image names (`amd64`, `arm64`) and the Lambda and kernel names
    /// (`x86_64`, `aarch64`).
    fn from_str(value: &str) -> std::result::Result<Self, Self::Err> {
        match value {
            "amd64" | "x86_64" => Ok(Architecture::Amd64),
            "arm64" | "aarch64" => Ok(Architecture::Arm64),
            _ => Err(ArchitectureError(value.to_string())),
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings of a check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The architecture the Lambda function is configured for. `None` accepts either.
    pub expect_arch: Option<Architecture>,
    /// The manifest to inspect when the image is an index or manifest list.
    pub platform: Platform,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            expect_arch: None,
            platform: Platform::linux_amd64(),
        }
    }
}

/// Checks the image that `reference` names in its registry.
///
/// # Errors
///
/// A registry request that fails, or a blob whose content does not match its digest.
pub async fn check_reference(
    reference: &Reference,
    client: &RegistryClient,
    options: &CheckOptions,
) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    let fetched = client.get_manifest(reference).await?;
    let (bytes, media_type) = if fetched.media_type.is_index() {
        let Some(index) = parse_index(&fetched.bytes, &mut findings) else {
            return Ok(findings);
        };
        let Some(descriptor) =
            index::choose_manifest(&index, &fetched.media_type, options, &mut findings)
        else {
            return Ok(findings);
        };
        let child = client
            .get_manifest(&reference.with_digest(descriptor.digest.clone()))
            .await?;
        (child.bytes, descriptor.media_type)
    } else {
        (fetched.bytes, fetched.media_type)
    };

    let blobs = RegistryBlobs::new(client, reference);
    inspect_stored(&bytes, &media_type, &blobs, options, findings).await
}

/// Checks the image that `tag` names in the OCI image layout at `path`; without a tag, the
/// layout's only image.
///
/// # Errors
///
/// A layout that cannot be read or has no such tag, a missing blob, or a blob whose content
/// does not match its digest.
pub async fn check_layout(
    path: &Path,
    tag: Option<&str>,
    options: &CheckOptions,
) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    let layout = Layout::open(path)?;
    let mut descriptor = layout.find(tag)?.clone();
    if descriptor.media_type.is_index() {
        let bytes = layout.read_blob(&descriptor, MAX_MANIFEST_SIZE as u64)?;
        let Some(index) = parse_index(&bytes, &mut findings) else {
            return Ok(findings);
        };
        let Some(chosen) =
            index::choose_manifest(&index, &descriptor.media_type, options, &mut findings)
        else {
            return Ok(findings);
        };
        descriptor = chosen;
    }
    if !descriptor.media_type.is_manifest() {
        findings.push(metadata::unsupported_manifest(&descriptor.media_type));
        return Ok(findings);
    }
    let bytes = layout.read_blob(&descriptor, MAX_MANIFEST_SIZE as u64)?;

    let blobs = LayoutBlobs::new(path);
    inspect_stored(&bytes, &descriptor.media_type, &blobs, options, findings).await
}

/// Checks an image that was just built: its manifest and config are in `image`, and `blobs`
/// reads its layers, usually a [`BuiltImageBlobs`].
///
/// # Errors
///
/// A layer that cannot be read, or whose content does not match its digest.
pub async fn check_built(
    image: &Image,
    blobs: &dyn BlobReader,
    options: &CheckOptions,
) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    inspect_image(
        &image.manifest,
        Some(&image.config),
        blobs,
        options,
        &mut findings,
    )
    .await?;
    Ok(findings)
}

fn parse_index(bytes: &[u8], findings: &mut Vec<Finding>) -> Option<ImageIndex> {
    match serde_json::from_slice(bytes) {
        Ok(index) => Some(index),
        Err(error) => {
            findings.push(metadata::invalid_manifest("image index", &error));
            None
        }
    }
}

/// Checks a manifest read from a registry or layout, reading its config through `blobs`.
async fn inspect_stored(
    bytes: &[u8],
    media_type: &MediaType,
    blobs: &dyn BlobReader,
    options: &CheckOptions,
    mut findings: Vec<Finding>,
) -> Result<Vec<Finding>> {
    if !media_type.is_manifest() {
        findings.push(metadata::unsupported_manifest(media_type));
        return Ok(findings);
    }
    let manifest: ImageManifest = match serde_json::from_slice(bytes) {
        Ok(manifest) => manifest,
        Err(error) => {
            findings.push(metadata::invalid_manifest("image manifest", &error));
            return Ok(findings);
        }
    };
    let config = if metadata::is_image_config(&manifest.config.media_type) {
        Some(read_config(blobs, &manifest.config).await?)
    } else {
        None
    };
    inspect_image(&manifest, config.as_deref(), blobs, options, &mut findings).await?;
    Ok(findings)
}

/// Reads and verifies the config blob, refusing one larger than [`MAX_CONFIG_SIZE`].
async fn read_config(blobs: &dyn BlobReader, descriptor: &Descriptor) -> Result<Vec<u8>> {
    let location = blobs.location(descriptor);
    let mismatch = |reason: String| Error::BlobMismatch {
        digest: descriptor.digest.clone(),
        source_name: location.clone(),
        reason,
    };
    if descriptor.size > MAX_CONFIG_SIZE {
        return Err(mismatch(format!(
            "the config is {} bytes, more than the {MAX_CONFIG_SIZE} this check reads",
            descriptor.size
        )));
    }
    let Some(stream) = blobs.open(descriptor).await? else {
        return Err(mismatch(
            "the reader does not provide the config".to_string(),
        ));
    };
    let mut stream = blob::verify(
        stream,
        descriptor.digest.clone(),
        descriptor.size,
        location.clone(),
    );
    let mut bytes = Vec::with_capacity(descriptor.size as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| read_error(descriptor, &location, &error))?;
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Runs every check on one image manifest, its config (when it is an image config) and its
/// layers, appending to `findings`.
async fn inspect_image(
    manifest: &ImageManifest,
    config_bytes: Option<&[u8]>,
    blobs: &dyn BlobReader,
    options: &CheckOptions,
    findings: &mut Vec<Finding>,
) -> Result<()> {
    findings.extend(metadata::manifest_findings(manifest));
    let config = config_bytes.and_then(|bytes| metadata::parse_config(bytes, findings));
    let mut handler = None;
    if let Some(config) = &config {
        findings.extend(metadata::config_findings(
            config,
            manifest.layers.len(),
            options,
        ));
        handler = metadata::handler(config, findings);
    }

    let needed = handler.as_ref().map(task::needed_files).unwrap_or_default();
    let diff_ids = config
        .as_ref()
        .map(|config| config.diff_ids())
        .filter(|ids| ids.len() == manifest.layers.len());
    let mut tree = TaskTree::default();
    let mut sizes = Vec::with_capacity(manifest.layers.len());
    let mut last_unread = None;

    for (index, descriptor) in manifest.layers.iter().enumerate() {
        let outcome = read_layer(blobs, descriptor, &needed).await?;
        let scan = match outcome {
            None => {
                last_unread = Some(index);
                sizes.push(LayerSize::Unknown {
                    compressed: descriptor.size,
                });
                continue;
            }
            Some(ScanOutcome::Invalid(reason)) => {
                findings.push(layer::invalid_layer(index, descriptor, &reason));
                last_unread = Some(index);
                sizes.push(LayerSize::Unknown {
                    compressed: descriptor.size,
                });
                continue;
            }
            Some(ScanOutcome::Scanned(scan)) => scan,
        };
        if let Some(missing) = &scan.missing_parent {
            findings.push(layer::missing_parent_finding(index, descriptor, missing));
        }
        if let Some(expected) = diff_ids.as_ref().and_then(|ids| ids.get(index)) {
            findings.extend(layer::diff_id_finding(
                index,
                descriptor,
                expected,
                &scan.diff_id,
            ));
        }
        sizes.push(LayerSize::Uncompressed(scan.uncompressed_size));
        tree.apply_layer(index, scan.whiteouts, scan.entries);
    }

    findings.extend(metadata::size_finding(&sizes));
    findings.extend(tree.permission_findings());
    if let Some(handler) = &handler {
        findings.extend(tree.handler_finding(handler, last_unread));
    }
    Ok(())
}

/// Streams one layer through the tar scanner. Returns `None` for a layer that is not read:
/// one whose media type this check cannot decompress, or one `blobs` does not provide.
async fn read_layer(
    blobs: &dyn BlobReader,
    descriptor: &Descriptor,
    needed: &BTreeSet<String>,
) -> Result<Option<ScanOutcome>> {
    let Some(compression) = Compression::of(&descriptor.media_type) else {
        debug!(digest = %descriptor.digest, media_type = %descriptor.media_type, "not reading a layer of this media type");
        return Ok(None);
    };
    let Some(stream) = blobs.open(descriptor).await? else {
        debug!(digest = %descriptor.digest, "the blob reader skips this layer");
        return Ok(None);
    };
    let location = blobs.location(descriptor);
    let stream = blob::verify(
        stream,
        descriptor.digest.clone(),
        descriptor.size,
        location.clone(),
    );
    layer::scan_stream(stream, compression, needed.clone())
        .await
        .map(Some)
        .map_err(|error| read_error(descriptor, &location, &error))
}

/// Describes a blob that could not be read or did not match its descriptor.
fn read_error(descriptor: &Descriptor, location: &str, error: &std::io::Error) -> Error {
    // The verifying stream's messages already start with this prefix.
    let prefix = format!("blob {} from {location}: ", descriptor.digest);
    let message = error.to_string();
    Error::BlobMismatch {
        digest: descriptor.digest.clone(),
        source_name: location.to_string(),
        reason: message
            .strip_prefix(&prefix)
            .unwrap_or(&message)
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architecture_accepts_image_and_lambda_names() {
        assert_eq!("amd64".parse(), Ok(Architecture::Amd64));
        assert_eq!("x86_64".parse(), Ok(Architecture::Amd64));
        assert_eq!("arm64".parse(), Ok(Architecture::Arm64));
        assert_eq!("aarch64".parse(), Ok(Architecture::Arm64));
        assert_eq!(
            "s390x".parse::<Architecture>().unwrap_err().to_string(),
            "invalid architecture `s390x`: expected amd64 (x86_64) or arm64"
        );
    }

    #[test]
    fn finding_displays_severity_and_code() {
        let finding = Finding::error("too-many-layers", "the manifest has 128 layers".into());
        assert_eq!(
            finding.to_string(),
            "error[too-many-layers]: the manifest has 128 layers"
        );
        assert!(has_errors(&[finding]));
        assert!(!has_errors(&[Finding::warning("x", String::new())]));
    }
}
