//! Image references: `[registry[:port]/]repository[:tag][@digest]`, with Docker's grammar.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// The registry a reference without a registry part points to, as Docker resolves it.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's API host, which differs from the name users write.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

const MAX_NAME_LENGTH: usize = 255;
const MAX_TAG_LENGTH: usize = 128;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// The reason a string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference `{value}`: {reason}")]
pub struct ReferenceError {
    pub value: String,
    pub reason: String,
}

impl Reference {
    /// The registry as written, with its port: `localhost:5000`, `123456789012.dkr.ecr.us-east-1.amazonaws.com`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host and port to send API requests to (Docker Hub's API lives on another host).
    pub fn registry_api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The registry host without a port or IPv6 brackets.
    pub fn registry_host(&self) -> &str {
        split_host_port(&self.registry).0
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The digest if there is one, else the tag, else `latest`: what a manifest request names.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// Returns a copy that names `digest` in place of any digest this one had.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// Returns a copy with `tag` and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// Reports whether registry requests go over plain HTTP.
    ///
    /// Docker and go-containerregistry treat loopback registries as insecure by default, so a
    /// local `registry:2` works without TLS; every other registry is HTTPS with certificate checks.
    pub fn is_loopback(&self) -> bool {
        let host = self.registry_host();
        host == "localhost"
            || host == "::1"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|address| address.is_loopback())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let error = |reason: &str| ReferenceError {
            value: value.to_string(),
            reason: reason.to_string(),
        };
        if value.is_empty() {
            return Err(error("the reference is empty"));
        }

        let (rest, digest) = match value.split_once('@') {
            Some((rest, digest)) => {
                let digest = digest.parse::<Digest>().map_err(|e| {
                    error(&format!(
                        "`{digest}` after `@` is not a digest: {} (a tag cannot contain `@`)",
                        e.reason
                    ))
                })?;
                (rest, Some(digest))
            }
            None => (value, None),
        };

        // A tag follows the last `:` that comes after the last `/`, so `host:5000/repo` has none.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(error)?;
        }

        let (registry, repository) = split_registry(name);
        validate_registry(&registry).map_err(error)?;
        validate_repository(&repository).map_err(error)?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LENGTH {
            return Err(error("the name is longer than 255 characters"));
        }

        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Splits `name` into registry and repository the way Docker does: the first component is a
/// registry when it contains `.` or `:`, or is `localhost`; otherwise the registry is Docker Hub.
fn split_registry(name: &str) -> (String, String) {
    if let Some((first, rest)) = name.split_once('/') {
        if first.contains('.') || first.contains(':') || first == "localhost" {
            return (first.to_string(), rest.to_string());
        }
    }
    if name.contains('/') {
        (DOCKER_HUB.to_string(), name.to_string())
    } else {
        (DOCKER_HUB.to_string(), format!("library/{name}"))
    }
}

/// Splits `host:port` or `[v6]:port` into the host (without brackets) and the optional port.
pub fn split_host_port(registry: &str) -> (&str, Option<&str>) {
    if let Some(rest) = registry.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            return (host, after.strip_prefix(':'));
        }
    }
    match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    }
}

fn validate_registry(registry: &str) -> Result<(), &'static str> {
    let (host, port) = split_host_port(registry);
    if host.is_empty() {
        return Err("the registry host is empty");
    }
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return Err("the registry port is not a number from 0 to 65535");
        }
    }
    if let Some((_, after)) = registry.split_once(']') {
        if !after.is_empty() && !after.starts_with(':') {
            return Err("only `:port` may follow an IPv6 address in brackets");
        }
    }
    if registry.starts_with('[') {
        return host
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| "the registry's IPv6 address is not valid");
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.split('.').all(valid_label) {
        Ok(())
    } else {
        Err("the registry host may contain only letters, digits, `-` and `.`")
    }
}

fn validate_repository(repository: &str) -> Result<(), &'static str> {
    if repository.is_empty() {
        return Err("the repository name is empty");
    }
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(
            "repository names must be lowercase; write the repository in lowercase letters",
        );
    }
    for component in repository.split('/') {
        if !valid_path_component(component) {
            return Err(
                "each repository path component is lowercase letters and digits, \
                        separated by `.`, `_`, `__` or dashes",
            );
        }
    }
    Ok(())
}

/// Checks `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alphanumeric = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alphanumeric(bytes[0]) || !alphanumeric(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alphanumeric(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alphanumeric(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let dashes = separator.bytes().all(|b| b == b'-');
        if !(dashes || separator == "." || separator == "_" || separator == "__") {
            return false;
        }
    }
    true
}

/// Checks a tag against Docker's grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), &'static str> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match tag.as_bytes() {
        [] => Err("the tag after `:` is empty"),
        _ if tag.len() > MAX_TAG_LENGTH => Err("the tag is longer than 128 characters"),
        [first, ..] if !word(*first) => Err("a tag starts with a letter, digit or `_`"),
        bytes if bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') => Ok(()),
        _ => Err("a tag may contain only letters, digits, `_`, `.` and `-`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Reference {
        value.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parse_ecr_reference() {
        let reference = parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/my-app:latest");
        assert_eq!(
            reference.registry(),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
        assert_eq!(reference.repository(), "my-app");
        assert_eq!(reference.tag(), Some("latest"));
        assert!(!reference.is_loopback());
    }

    #[test]
    fn parse_registry_with_port_and_no_tag() {
        let reference = parse("localhost:5000/team/app");
        assert_eq!(reference.registry(), "localhost:5000");
        assert_eq!(reference.repository(), "team/app");
        assert_eq!(reference.tag(), None);
        assert_eq!(reference.manifest_reference(), "latest");
        assert!(reference.is_loopback());
    }

    #[test]
    fn parse_ipv6_loopback() {
        let reference = parse("[::1]:5000/app:v1");
        assert_eq!(reference.registry_host(), "::1");
        assert!(reference.is_loopback());
        assert!(parse("127.0.0.1:5000/app").is_loopback());
    }

    #[test]
    fn parse_docker_hub_short_names() {
        let reference = parse("node:22");
        assert_eq!(reference.registry(), DOCKER_HUB);
        assert_eq!(reference.repository(), "library/node");
        assert_eq!(reference.registry_api_host(), DOCKER_HUB_API);
    }

    #[test]
    fn parse_digest_reference() {
        let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let reference = parse(&format!("public.ecr.aws/lambda/nodejs:22@{digest}"));
        assert_eq!(reference.manifest_reference(), digest);
        assert_eq!(
            reference.to_string(),
            format!("public.ecr.aws/lambda/nodejs:22@{digest}")
        );
    }

    #[test]
    fn parse_rejects_invalid_references() {
        for value in [
            "",
            "localhost:5000/My-App",
            "localhost:5000/app:",
            "localhost:5000/app:-tag",
            "localhost:5000/app@sha256:abc",
            "localhost:5000/app/",
            "localhost:5000//app",
            "localhost:99999/app",
            "local_host.example/app",
            "localhost:5000/app name",
            "localhost:5000/app--",
            "[::1/app",
            "[::1]x/app",
        ] {
            assert!(value.parse::<Reference>().is_err(), "{value} parsed");
        }
    }

    #[test]
    fn parse_names_the_part_after_at() {
        let error = "localhost:5000/app:v@1".parse::<Reference>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid image reference `localhost:5000/app:v@1`: `1` after `@` is not a digest: \
             expected `sha256:` followed by 64 hex characters (a tag cannot contain `@`)"
        );
    }

    #[test]
    fn with_digest_keeps_tag() {
        let digest = Digest::of(b"x");
        let reference = parse("localhost:5000/app:v1").with_digest(digest.clone());
        assert_eq!(
            reference.to_string(),
            format!("localhost:5000/app:v1@{digest}")
        );
    }
}
