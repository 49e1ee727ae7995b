//! Parses image references and `--base` locations.
//!
//! Input: the text of one reference, such as `localhost:5000/app:v1`.
//!
//! Checked: nothing panics, and the `Display` output of a parsed [`Reference`] or
//! [`BaseLocation`] parses back to an equal value and displays the same way again.

#![no_main]

use std::fmt::{Debug, Display};
use std::str::FromStr;

use lambda_image::base::BaseLocation;
use lambda_image::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(reference) = text.parse::<Reference>() {
        check_display_round_trip(&text, &reference);
        let _ = reference.registry_api_host();
        let _ = reference.registry_host();
        let _ = reference.manifest_reference();
        let _ = reference.is_loopback();
    }
    if let Ok(location) = text.parse::<BaseLocation>() {
        check_display_round_trip(&text, &location);
    }
});

fn check_display_round_trip<T>(input: &str, value: &T)
where
    T: FromStr + Display + Debug + PartialEq,
    T::Err: Display,
{
    let displayed = value.to_string();
    let again: T = displayed.parse().unwrap_or_else(|error| {
        panic!(
            "{input:?} parsed as {value:?}, but its display {displayed:?} does not parse: {error}"
        )
    });
    assert_eq!(
        &again, value,
        "{input:?} displays as {displayed:?}, which parses to another value"
    );
    assert_eq!(
        again.to_string(),
        displayed,
        "{input:?}: display is not stable"
    );
}
