//! Descriptors, image manifests and image indexes.
//!
//! These are small serde types rather than `oci-spec`'s: oci-spec serializes through HashMaps,
//! so its JSON, and with it the manifest digest, changes from run to run, and it drops fields it
//! does not know. Here maps are `BTreeMap`s and unknown fields are kept in `extra`.
//!
//! NOTE: an integer beyond the range of i64 and u64 in an unknown field is read as an f64 and
//! written back rounded. serde_json's `arbitrary_precision` feature would keep it, but serde
//! issue 1183 reports that feature breaking `#[serde(flatten)]`, which `extra` relies on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_type::MediaType;
use crate::platform::Platform;

/// The OCI annotation that names a manifest's tag inside an image layout's `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// A pointer to a blob or manifest: its media type, digest and size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: MediaType,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Descriptor {
    pub fn new(media_type: MediaType, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type,
            digest,
            size,
            platform: None,
            annotations: None,
            extra: BTreeMap::new(),
        }
    }
}

/// A single-platform image manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// An OCI image index or a Docker manifest list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Serializes `value` to the exact bytes that are hashed, written and pushed.
pub fn to_canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these types cannot fail: every map has string keys.
    serde_json::to_vec(value).expect("manifest types serialize to JSON")
}

/// Reads the `mediaType` field of a manifest or index, if the document has one.
pub fn sniff_media_type(bytes: &[u8]) -> Option<MediaType> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<MediaType>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    let probe: Probe = serde_json::from_slice(bytes).ok()?;
    match (probe.media_type, probe.manifests) {
        (Some(media_type), _) => Some(media_type),
        // An OCI index may omit mediaType; only an index has `manifests`.
        (None, Some(_)) => Some(MediaType::OciIndex),
        (None, None) => Some(MediaType::OciManifest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_keeps_unknown_fields() {
        let json = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0,"x-extra":1},"layers":[],"subject":{"a":1}}"#;
        let manifest: ImageManifest = serde_json::from_str(json).unwrap();
        assert_eq!(manifest.extra["subject"], serde_json::json!({"a": 1}));
        let again = String::from_utf8(to_canonical_json(&manifest)).unwrap();
        assert!(again.contains(r#""subject":{"a":1}"#), "{again}");
        assert!(again.contains(r#""x-extra":1"#), "{again}");
    }

    #[test]
    fn sniff_index_without_media_type() {
        let json = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(sniff_media_type(json), Some(MediaType::OciIndex));
    }
}
