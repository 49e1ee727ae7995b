//! Parses image manifests, image indexes and platforms.
//!
//! Input: a JSON document, such as a manifest a registry returns, or a `--platform` value.
//!
//! Checked:
//! - nothing panics;
//! - a parsed manifest or index, serialized with `to_canonical_json`, parses to an equal
//!   value and serializes to the same bytes again;
//! - `sniff_media_type` returns the `mediaType` of a document that parses as a manifest;
//! - the `Display` output of a parsed platform parses back to an equal platform.

#![no_main]

use std::fmt::Debug;

use lambda_image::manifest::{sniff_media_type, to_canonical_json};
use lambda_image::{ImageIndex, ImageManifest, Platform};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fuzz_target!(|data: &[u8]| {
    let sniffed = sniff_media_type(data);

    if let Ok(manifest) = serde_json::from_slice::<ImageManifest>(data) {
        check_canonical_round_trip(data, &manifest);
        if let Some(media_type) = &manifest.media_type {
            assert_eq!(
                sniffed.as_ref(),
                Some(media_type),
                "sniff_media_type disagrees with the parsed manifest {manifest:?}"
            );
        }
    }
    if let Ok(index) = serde_json::from_slice::<ImageIndex>(data) {
        check_canonical_round_trip(data, &index);
    }

    let text = String::from_utf8_lossy(data);
    if let Ok(platform) = text.parse::<Platform>() {
        let displayed = platform.to_string();
        let again: Platform = displayed.parse().unwrap_or_else(|error| {
            panic!("{text:?} parsed, but its display {displayed:?} does not parse: {error}")
        });
        assert_eq!(
            again, platform,
            "{text:?} displays as {displayed:?}, which parses to another platform"
        );
    }
});

fn check_canonical_round_trip<T>(input: &[u8], value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let input = String::from_utf8_lossy(input);
    let bytes = to_canonical_json(value);
    let json = String::from_utf8_lossy(&bytes);
    let again: T = serde_json::from_slice(&bytes).unwrap_or_else(|error| {
        panic!("{input:?} parsed, but its canonical JSON {json:?} does not: {error}")
    });
    assert_eq!(
        &again, value,
        "{input:?}: canonical JSON {json:?} parses to another value"
    );
    assert_eq!(
        to_canonical_json(&again),
        bytes,
        "{input:?}: canonical JSON changes when serialized again"
    );
}
