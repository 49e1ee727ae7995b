//! Assembles an image from a base config, merging in the app layer and the handler.
//!
//! Input: 8 bytes of `created` seconds (little-endian i64), one settings byte, then the base
//! image's config JSON. The settings byte's bits 0-1 give the base layer count (0 to 3), bit 2
//! picks the Docker media-type family over OCI, and bit 3 picks linux/arm64/v8 over
//! linux/amd64.
//!
//! Checked for an assembled image:
//! - nothing panics, in `assemble` or `Image::check_limits`;
//! - the config is a JSON object whose `rootfs.diff_ids` pairs one to one with the manifest's
//!   layers and ends with the added layer's diff_id;
//! - the config keeps the handler as `Cmd` and the platform and `created` it was given;
//! - every other field of the base config, and of its `config` object, keeps its value, and
//!   the base's `history` array stays at the start of the history;
//! - the manifest names the config by its digest and size, and `manifest_digest` is the digest
//!   of `manifest_bytes`, which are the manifest's canonical JSON;
//! - every layer has the base's media-type family.

#![no_main]

use std::path::PathBuf;

use lambda_image::base::{BaseImage, BaseLocation};
use lambda_image::image::{assemble, format_timestamp, AddedLayer, ConfigChanges, Image};
use lambda_image::layer::LayerBlob;
use lambda_image::manifest::to_canonical_json;
use lambda_image::{Descriptor, Digest, Family, ImageManifest, MediaType, Platform};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const HANDLER: &str = "index.handler";

/// Top-level config fields that `assemble` sets, so the base's values may change.
const SET_FIELDS: [&str; 7] = [
    "config",
    "rootfs",
    "history",
    "architecture",
    "os",
    "variant",
    "created",
];

fuzz_target!(|data: &[u8]| {
    let Some((header, config)) = data.split_first_chunk::<9>() else {
        return;
    };
    let (created, settings) = header.split_at(8);
    let created = i64::from_le_bytes(created.try_into().expect("8 bytes"));
    let settings = settings[0];
    let base_layer_count = usize::from(settings & 0b11);
    let family = if settings & 0b100 == 0 {
        Family::Oci
    } else {
        Family::Docker
    };
    let platform = if settings & 0b1000 == 0 {
        Platform::linux_amd64()
    } else {
        Platform::new("linux", "arm64", Some("v8"))
    };

    let base = base_image(config, base_layer_count, family, &platform);
    let added = [added_layer()];
    let changes = ConfigChanges {
        handler: HANDLER,
        platform: &platform,
        created,
    };
    let Ok(image) = assemble(&base, &added, &changes) else {
        return;
    };
    let _ = image.check_limits();
    check_config(&image, &added[0], &platform, created);
    check_base_fields_kept(config, &image);
    check_manifest(&image, family);
});

fn base_image(config: &[u8], layer_count: usize, family: Family, platform: &Platform) -> BaseImage {
    let layers = (0..layer_count)
        .map(|index| {
            Descriptor::new(
                MediaType::gzip_layer_of(family),
                Digest::of(&[index as u8]),
                1,
            )
        })
        .collect();
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(MediaType::manifest_of(family)),
        config: Descriptor::new(
            MediaType::config_of(family),
            Digest::of(config),
            config.len() as u64,
        ),
        layers,
        annotations: None,
        extra: Default::default(),
    };
    BaseImage {
        location: BaseLocation::Registry(
            "localhost:5000/base:fuzz".parse().expect("valid reference"),
        ),
        manifest,
        manifest_media_type: MediaType::manifest_of(family),
        config: config.to_vec(),
        platform: platform.clone(),
    }
}

fn added_layer() -> AddedLayer {
    AddedLayer {
        blob: LayerBlob {
            digest: Digest::of(b"compressed"),
            diff_id: Digest::of(b"uncompressed"),
            size: 10,
            uncompressed_size: 12,
            entry_count: 1,
            path: PathBuf::from("/nonexistent/layer.tar.gz"),
        },
        created_by: "lambda-image fuzz: app files".to_string(),
        reused: false,
    }
}

fn check_config(image: &Image, added: &AddedLayer, platform: &Platform, created: i64) {
    let config: Value =
        serde_json::from_slice(&image.config).expect("the assembled config is JSON");
    assert!(
        config.is_object(),
        "the assembled config is not an object: {config}"
    );

    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("rootfs.diff_ids is not an array: {config}"));
    assert_eq!(
        diff_ids.len(),
        image.manifest.layers.len(),
        "diff_ids do not pair with the layers: {config}"
    );
    assert_eq!(
        diff_ids.last(),
        Some(&json!(added.blob.diff_id.to_string()))
    );

    assert_eq!(config["config"]["Cmd"], json!([HANDLER]));
    assert_eq!(config["architecture"], json!(platform.architecture));
    assert_eq!(config["os"], json!(platform.os));
    if let Some(variant) = &platform.variant {
        assert_eq!(config["variant"], json!(variant));
    }
    assert_eq!(config["created"], json!(format_timestamp(created)));
}

fn check_base_fields_kept(base_config: &[u8], image: &Image) {
    let base: Value =
        serde_json::from_slice(base_config).expect("assemble accepted the base config");
    let config: Value =
        serde_json::from_slice(&image.config).expect("the assembled config is JSON");
    let base = base.as_object().expect("assemble accepted only an object");

    for (field, value) in base
        .iter()
        .filter(|(field, _)| !SET_FIELDS.contains(&field.as_str()))
    {
        assert_eq!(
            config.get(field),
            Some(value),
            "base config field {field:?} changed: {config}"
        );
    }
    if let Some(Value::Object(container)) = base.get("config") {
        for (field, value) in container.iter().filter(|(field, _)| *field != "Cmd") {
            assert_eq!(
                config["config"].get(field),
                Some(value),
                "base config field config.{field} changed: {config}"
            );
        }
    }
    if let Some(Value::Array(history)) = base.get("history") {
        let assembled = config["history"].as_array().expect("history is an array");
        assert!(
            assembled.starts_with(history),
            "the base history is not kept at the start: {config}"
        );
    }
}

fn check_manifest(image: &Image, family: Family) {
    let config_descriptor = image.config_descriptor();
    assert_eq!(config_descriptor.digest, Digest::of(&image.config));
    assert_eq!(config_descriptor.size, image.config.len() as u64);
    assert_eq!(config_descriptor.media_type, MediaType::config_of(family));
    assert_eq!(image.manifest_bytes, to_canonical_json(&image.manifest));
    assert_eq!(image.manifest_digest, Digest::of(&image.manifest_bytes));
    assert_eq!(image.manifest_media_type(), MediaType::manifest_of(family));
    for layer in &image.layers {
        assert_eq!(
            layer.descriptor.media_type.family(),
            Some(family),
            "{layer:?}"
        );
    }
}
