//! Assembling the image: the base config with our changes merged in, and the manifest.

use serde_json::{json, Map, Value};

use crate::base::BaseImage;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layer::LayerBlob;
use crate::manifest::{to_canonical_json, Descriptor, ImageManifest};
use crate::media_type::MediaType;
use crate::platform::Platform;

/// Where a layer's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerSource {
    /// A layer of the base image, read from the base's registry or layout.
    Base,
    /// A layer this tool wrote, in this file.
    File(std::path::PathBuf),
}

/// A layer of the built image.
#[derive(Debug, Clone)]
pub struct Layer {
    pub descriptor: Descriptor,
    pub source: LayerSource,
}

/// A layer built from the app, with the history line that describes it.
#[derive(Debug, Clone)]
pub struct AddedLayer {
    pub blob: LayerBlob,
    pub created_by: String,
    /// Whether the layer came from the build cache rather than being written by this build.
    pub reused: bool,
}

/// A built image: config and manifest bytes, serialized once, and its layers.
#[derive(Debug, Clone)]
pub struct Image {
    pub config: Vec<u8>,
    pub manifest: ImageManifest,
    pub manifest_bytes: Vec<u8>,
    pub manifest_digest: Digest,
    pub layers: Vec<Layer>,
}

/// Most layers an image may have.
///
/// NOTE: 127 is the limit widely reported for ECR and Lambda (and Docker's overlay2 driver);
/// the ECR quota table does not list a layer count, so this number is not from AWS.
pub const MAX_LAYERS: usize = 127;

impl Image {
    /// Checks limits that ECR and Lambda enforce only at push or deploy time.
    pub fn check_limits(&self) -> Result<()> {
        if self.layers.len() > MAX_LAYERS {
            return Err(Error::InvalidImage(format!(
                "it has {} layers, more than the {MAX_LAYERS} ECR and Lambda accept; use a base image with fewer layers",
                self.layers.len()
            )));
        }
        if self.manifest_bytes.len() > crate::registry::MAX_MANIFEST_SIZE {
            return Err(Error::InvalidImage(format!(
                "its manifest is {} bytes, more than the 4 MiB registries accept",
                self.manifest_bytes.len()
            )));
        }
        Ok(())
    }

    pub fn config_descriptor(&self) -> &Descriptor {
        &self.manifest.config
    }

    pub fn manifest_media_type(&self) -> MediaType {
        self.manifest
            .media_type
            .clone()
            .unwrap_or(MediaType::OciManifest)
    }
}

/// An image index over single-platform images, serialized once.
#[derive(Debug, Clone)]
pub struct IndexBlob {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: MediaType,
}

/// Builds an index listing `images` with their platforms, in the family of the first image:
/// for registries and users outside Lambda, which does not accept indexes.
pub fn build_index(images: &[(&Image, &Platform)]) -> IndexBlob {
    let family = images
        .first()
        .and_then(|(image, _)| image.manifest_media_type().family())
        .unwrap_or(crate::media_type::Family::Oci);
    let media_type = match family {
        crate::media_type::Family::Oci => MediaType::OciIndex,
        crate::media_type::Family::Docker => MediaType::DockerManifestList,
    };
    let manifests = images
        .iter()
        .map(|(image, platform)| Descriptor {
            platform: Some((*platform).clone()),
            ..Descriptor::new(
                image.manifest_media_type(),
                image.manifest_digest.clone(),
                image.manifest_bytes.len() as u64,
            )
        })
        .collect();
    let index = crate::manifest::ImageIndex {
        schema_version: 2,
        media_type: Some(media_type.clone()),
        manifests,
        annotations: None,
        extra: Default::default(),
    };
    let bytes = to_canonical_json(&index);
    IndexBlob {
        digest: Digest::of(&bytes),
        bytes,
        media_type,
    }
}

/// What the image adds to the base config.
#[derive(Debug, Clone)]
pub struct ConfigChanges<'a> {
    pub handler: &'a str,
    pub platform: &'a Platform,
    /// Seconds since the epoch for `created` and the new history entries.
    pub created: i64,
}

/// Builds the image from `base` plus `added` layers, in the base's media-type family.
pub fn assemble(base: &BaseImage, added: &[AddedLayer], changes: &ConfigChanges) -> Result<Image> {
    let config = build_config(&base.config, base.manifest.layers.len(), added, changes)?;
    let family = base.family();

    let mut layers: Vec<Layer> = base
        .manifest
        .layers
        .iter()
        .map(|descriptor| Layer {
            // The bytes are the same gzip tar either way; relabelling keeps the manifest in one
            // family, which Lambda requires.
            descriptor: Descriptor {
                media_type: MediaType::gzip_layer_of(family),
                ..descriptor.clone()
            },
            source: LayerSource::Base,
        })
        .collect();
    for layer in added {
        layers.push(Layer {
            descriptor: Descriptor::new(
                MediaType::gzip_layer_of(family),
                layer.blob.digest.clone(),
                layer.blob.size,
            ),
            source: LayerSource::File(layer.blob.path.clone()),
        });
    }

    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(MediaType::manifest_of(family)),
        config: Descriptor::new(
            MediaType::config_of(family),
            Digest::of(&config),
            config.len() as u64,
        ),
        layers: layers
            .iter()
            .map(|layer| layer.descriptor.clone())
            .collect(),
        annotations: None,
        extra: Default::default(),
    };
    let manifest_bytes = to_canonical_json(&manifest);
    Ok(Image {
        config,
        manifest_digest: Digest::of(&manifest_bytes),
        manifest,
        manifest_bytes,
        layers,
    })
}

/// Merges our changes into the base config's JSON, keeping every field we do not set.
fn build_config(
    base_config: &[u8],
    base_layer_count: usize,
    added: &[AddedLayer],
    changes: &ConfigChanges,
) -> Result<Vec<u8>> {
    let invalid = |reason: String| Error::InvalidImage(format!("the base config {reason}"));
    let mut root: Map<String, Value> = match serde_json::from_slice(base_config) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(invalid("is not a JSON object".to_string())),
        Err(e) => return Err(invalid(format!("is not valid JSON: {e}"))),
    };
    let created = format_timestamp(changes.created);

    let container = object_entry(&mut root, "config");
    container.insert("Cmd".to_string(), json!([changes.handler]));

    let mut diff_ids = match root.get("rootfs").and_then(|rootfs| rootfs.get("diff_ids")) {
        Some(Value::Array(ids)) => ids.clone(),
        _ => Vec::new(),
    };
    if diff_ids.len() != base_layer_count {
        return Err(invalid(format!(
            "lists {} diff_ids for {base_layer_count} layers",
            diff_ids.len()
        )));
    }
    diff_ids.extend(
        added
            .iter()
            .map(|layer| json!(layer.blob.diff_id.to_string())),
    );
    root.insert(
        "rootfs".to_string(),
        json!({"type": "layers", "diff_ids": diff_ids}),
    );

    let mut history = match root.remove("history") {
        Some(Value::Array(entries)) => entries,
        // The Lambda base images ship `"history": null`. One entry per base layer keeps the
        // history aligned with the layers, as tools that pair them expect.
        _ => {
            let base_created = root.get("created").cloned().unwrap_or(Value::Null);
            (0..base_layer_count)
                .map(|_| json!({"created": base_created, "comment": "base image layer; the base image records no history"}))
                .collect()
        }
    };
    for layer in added {
        history.push(json!({"created": created, "created_by": layer.created_by}));
    }
    root.insert("history".to_string(), Value::Array(history));

    root.insert(
        "architecture".to_string(),
        json!(changes.platform.architecture),
    );
    root.insert("os".to_string(), json!(changes.platform.os));
    if let Some(variant) = &changes.platform.variant {
        root.insert("variant".to_string(), json!(variant));
    }
    root.insert("created".to_string(), json!(created));
    Ok(serde_json::to_vec(&Value::Object(root)).expect("a JSON value serializes"))
}

/// Returns `root[key]` as an object, replacing a missing or `null` value with `{}`.
fn object_entry<'a>(root: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = root.entry(key.to_string()).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("just made an object")
}

/// Formats seconds since the epoch as RFC 3339 in UTC, such as `1970-01-01T00:00:01Z`.
pub fn format_timestamp(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_timestamp(1), "1970-01-01T00:00:01Z");
        assert_eq!(format_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_timestamp(1_764_806_400), "2025-12-04T00:00:00Z");
    }

    fn added() -> Vec<AddedLayer> {
        vec![AddedLayer {
            blob: LayerBlob {
                digest: Digest::of(b"gz"),
                diff_id: Digest::of(b"tar"),
                size: 2,
                uncompressed_size: 3,
                entry_count: 1,
                path: PathBuf::from("/nonexistent"),
            },
            created_by: "lambda-image: app files".to_string(),
            reused: false,
        }]
    }

    #[test]
    fn config_keeps_base_fields_and_fills_history() {
        let base = br#"{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z","x-unknown":{"a":1},
            "config":{"Entrypoint":["/lambda-entrypoint.sh"],"Env":["LAMBDA_TASK_ROOT=/var/task"],"WorkingDir":"/var/task"},
            "history":null,"rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}}"#;
        let platform: Platform = "linux/arm64".parse().unwrap();
        let changes = ConfigChanges {
            handler: "lambda.handler",
            platform: &platform,
            created: 1,
        };
        let config: Value =
            serde_json::from_slice(&build_config(base, 1, &added(), &changes).unwrap()).unwrap();
        assert_eq!(config["x-unknown"], json!({"a": 1}));
        assert_eq!(
            config["config"]["Entrypoint"],
            json!(["/lambda-entrypoint.sh"])
        );
        assert_eq!(config["config"]["WorkingDir"], json!("/var/task"));
        assert_eq!(config["config"]["Cmd"], json!(["lambda.handler"]));
        assert_eq!(config["architecture"], json!("arm64"));
        assert_eq!(config["created"], json!("1970-01-01T00:00:01Z"));
        assert_eq!(config["history"].as_array().unwrap().len(), 2);
        assert_eq!(
            config["history"][1]["created_by"],
            json!("lambda-image: app files")
        );
        assert_eq!(
            config["rootfs"]["diff_ids"][1],
            json!(Digest::of(b"tar").to_string())
        );
    }

    #[test]
    fn config_with_mismatched_diff_ids_is_rejected() {
        let base = br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let platform = Platform::linux_amd64();
        let changes = ConfigChanges {
            handler: "a.b",
            platform: &platform,
            created: 1,
        };
        let error = build_config(base, 2, &added(), &changes).unwrap_err();
        assert!(
            error.to_string().contains("lists 0 diff_ids for 2 layers"),
            "{error}"
        );
    }
}
