//! Chooses the Node.js major from package.json's `engines.node` range and base image tags.
//!
//! Input: an `engines.node` range such as `>=20 <23`, optionally followed by a NUL byte and a
//! base image tag such as `22-arm64`.
//!
//! Checked:
//! - nothing panics in `choose_major`, `range_admits_major` or `major_from_tag`;
//! - the chosen major is one that Lambda supports;
//! - a choice made without a warning is a major that the range admits.

#![no_main]

use lambda_image::node_version::{
    choose_major, major_from_tag, range_admits_major, LAMBDA_NODE_MAJORS,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let (range, tag) = input.split_once('\0').unwrap_or((&input, ""));

    let choice = choose_major(Some(range));
    assert!(
        LAMBDA_NODE_MAJORS.contains(&choice.major),
        "{range:?}: chose unsupported major {}",
        choice.major
    );
    if choice.warning.is_none() {
        assert_eq!(
            range_admits_major(range, choice.major),
            Some(true),
            "{range:?}: chose {} without a warning, but the range does not admit it",
            choice.major
        );
    }

    if let Some(major) = major_from_tag(tag) {
        let _ = range_admits_major(range, major);
    }
});
