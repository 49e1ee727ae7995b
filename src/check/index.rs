//! Image indexes and manifest lists, which Lambda rejects, and the choice of the manifest
//! inspected in their place.

use crate::manifest::{Descriptor, ImageIndex};
use crate::media_type::MediaType;
use crate::platform::Platform;

use super::{CheckOptions, Finding};

/// The annotation buildx puts on the index entries of its attestation manifests.
const REFERENCE_TYPE_ANNOTATION: &str = "vnd.docker.reference.type";
const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// Reports the index as unsupported and returns the manifest for `options.platform`, which the
/// caller inspects so that its problems show too. Returns `None`, with a finding, when the
/// index has no such manifest.
pub(super) fn choose_manifest(
    index: &ImageIndex,
    media_type: &MediaType,
    options: &CheckOptions,
    findings: &mut Vec<Finding>,
) -> Option<Descriptor> {
    let chosen = index
        .manifests
        .iter()
        .filter(|descriptor| !is_attestation(descriptor))
        .find(|descriptor| {
            descriptor
                .platform
                .as_ref()
                .is_some_and(|offered| options.platform.matches(offered))
        });
    findings.push(index_finding(index, media_type, &options.platform, chosen));
    if chosen.is_none() {
        findings.push(platform_not_found(index, &options.platform));
    }
    chosen.cloned()
}

/// Reports whether an index entry is a buildx attestation manifest (provenance or SBOM).
fn is_attestation(descriptor: &Descriptor) -> bool {
    descriptor
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(REFERENCE_TYPE_ANNOTATION))
        .is_some_and(|value| value == ATTESTATION_MANIFEST)
}

fn index_finding(
    index: &ImageIndex,
    media_type: &MediaType,
    platform: &Platform,
    chosen: Option<&Descriptor>,
) -> Finding {
    let kind = match media_type {
        MediaType::DockerManifestList => "a Docker manifest list",
        _ => "an OCI image index",
    };
    let platforms = offered_platforms(index);
    let attestations = index
        .manifests
        .iter()
        .filter(|descriptor| is_attestation(descriptor))
        .count();
    let mut contents = format!(
        "manifests for {}",
        if platforms.is_empty() {
            "no platform".to_string()
        } else {
            platforms.join(", ")
        }
    );
    if attestations > 0 {
        contents.push_str(&format!(
            " and {attestations} buildx attestation {} (platform unknown/unknown)",
            plural(attestations, "manifest", "manifests")
        ));
    }
    let by_digest = chosen
        .map(|descriptor| {
            format!(
                ", or deploy the {platform} manifest by digest (`@{}`), on which the other checks ran",
                descriptor.digest
            )
        })
        .unwrap_or_default();
    Finding::error(
        "index-not-supported",
        format!(
            "the image is {kind} (`{media_type}`) with {contents}; Lambda rejects indexes and \
             manifest lists (\"image manifest, config or layer media type ... is not \
             supported\"); push a single-platform manifest, for example with `docker buildx \
             build --provenance=false --platform {platform}`{by_digest}"
        ),
    )
}

fn platform_not_found(index: &ImageIndex, platform: &Platform) -> Finding {
    let platforms = offered_platforms(index);
    Finding::error(
        "platform-not-found",
        format!(
            "the index has no manifest for {platform}; it offers {}; check one of those with \
             --platform, or build the image for {platform}",
            if platforms.is_empty() {
                "none".to_string()
            } else {
                platforms.join(", ")
            }
        ),
    )
}

/// Lists the platforms of the index's entries, leaving out attestation manifests.
fn offered_platforms(index: &ImageIndex) -> Vec<String> {
    index
        .manifests
        .iter()
        .filter(|descriptor| !is_attestation(descriptor))
        .map(|descriptor| match &descriptor.platform {
            Some(platform) => platform.to_string(),
            None => "an entry without a platform".to_string(),
        })
        .collect()
}

pub(super) fn plural<'a>(count: usize, one: &'a str, many: &'a str) -> &'a str {
    if count == 1 {
        one
    } else {
        many
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::digest::Digest;

    fn entry(platform: Platform, attestation: bool) -> Descriptor {
        let mut descriptor = Descriptor::new(
            MediaType::OciManifest,
            Digest::of(platform.to_string().as_bytes()),
            100,
        );
        descriptor.platform = Some(platform);
        if attestation {
            descriptor.annotations = Some(BTreeMap::from([(
                REFERENCE_TYPE_ANNOTATION.to_string(),
                ATTESTATION_MANIFEST.to_string(),
            )]));
        }
        descriptor
    }

    fn index(manifests: Vec<Descriptor>) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: Some(MediaType::DockerManifestList),
            manifests,
            annotations: None,
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn manifest_list_without_platform_reports_offers() {
        let list = index(vec![
            entry(Platform::new("linux", "arm64", Some("v8")), false),
            entry(Platform::new("unknown", "unknown", None), true),
        ]);
        let mut findings = Vec::new();
        let chosen = choose_manifest(
            &list,
            &MediaType::DockerManifestList,
            &CheckOptions::default(),
            &mut findings,
        );
        assert_eq!(chosen, None);
        assert_eq!(findings.len(), 2);
        assert_eq!(
            findings[0].message,
            "the image is a Docker manifest list \
             (`application/vnd.docker.distribution.manifest.list.v2+json`) with manifests for \
             linux/arm64/v8 and 1 buildx attestation manifest (platform unknown/unknown); Lambda \
             rejects indexes and manifest lists (\"image manifest, config or layer media type \
             ... is not supported\"); push a single-platform manifest, for example with `docker \
             buildx build --provenance=false --platform linux/amd64`"
        );
        assert_eq!(findings[1].code, "platform-not-found");
        assert_eq!(
            findings[1].message,
            "the index has no manifest for linux/amd64; it offers linux/arm64/v8; check one of \
             those with --platform, or build the image for linux/amd64"
        );
    }

    #[test]
    fn attestation_is_never_chosen() {
        // An attestation entry that claims a real platform still is not an image.
        let list = index(vec![entry(Platform::linux_amd64(), true)]);
        let mut findings = Vec::new();
        let chosen = choose_manifest(
            &list,
            &MediaType::OciIndex,
            &CheckOptions::default(),
            &mut findings,
        );
        assert_eq!(chosen, None);
        assert_eq!(findings[1].code, "platform-not-found");
        assert!(
            findings[1].message.contains("it offers none"),
            "{}",
            findings[1].message
        );
    }
}
