//! Parses `WWW-Authenticate` headers as a registry sends them.
//!
//! Input: the header value, such as `Bearer realm="https://auth.example/token",service="x"`.
//!
//! Checked: nothing panics, and a parsed Bearer challenge, written back as a header with every
//! parameter quoted and escaped, parses to the same challenge.

#![no_main]

use lambda_image::registry::{parse_challenge, Challenge};
use libfuzzer_sys::fuzz_target;

/// Maximum header length that `parse_challenge` reads, copied from the private constant in
/// `src/registry/auth.rs`.
const MAX_CHALLENGE_LENGTH: usize = 8 * 1024;

fuzz_target!(|data: &[u8]| {
    let header = String::from_utf8_lossy(data);
    let Some(challenge) = parse_challenge(&header) else {
        return;
    };
    let Challenge::Bearer {
        realm,
        service,
        scope,
    } = &challenge
    else {
        return;
    };

    let mut written = format!("Bearer realm={}", quote(realm));
    if let Some(service) = service {
        written.push_str(&format!(", service={}", quote(service)));
    }
    if let Some(scope) = scope {
        written.push_str(&format!(", scope={}", quote(scope)));
    }
    // Quoting can push the header over the parser's length limit.
    if written.len() <= MAX_CHALLENGE_LENGTH {
        assert_eq!(
            parse_challenge(&written).as_ref(),
            Some(&challenge),
            "{header:?} parsed, but its rewritten form {written:?} parses differently"
        );
    }
});

/// Writes `value` as an HTTP quoted string.
fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for character in value.chars() {
        if matches!(character, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(character);
    }
    quoted.push('"');
    quoted
}
