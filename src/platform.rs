//! Target platforms: `os/architecture[/variant]`, as `--platform` and image indexes name them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The platform of an image, as an index entry or a config describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Fields this tool does not interpret (`os.version`, `os.features`, ...), kept as they came.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The reason a `--platform` value is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform `{value}`: {reason}; use linux/amd64 or linux/arm64")]
pub struct PlatformError {
    pub value: String,
    pub reason: &'static str,
}

impl Platform {
    pub fn linux_amd64() -> Platform {
        Platform::new("linux", "amd64", None)
    }

    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: architecture.to_string(),
            os: os.to_string(),
            variant: variant.map(str::to_string),
            extra: BTreeMap::new(),
        }
    }

    /// Reports whether an index entry with platform `candidate` serves this platform.
    ///
    /// An absent variant on either side matches any variant, because indexes and users
    /// disagree on whether arm64 carries `v8` (Docker writes it, many registries omit it).
    pub fn matches(&self, candidate: &Platform) -> bool {
        if self.os != candidate.os || self.architecture != candidate.architecture {
            return false;
        }
        match (&self.variant, &candidate.variant) {
            (Some(wanted), Some(offered)) => wanted == offered,
            _ => true,
        }
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let error = |reason| PlatformError {
            value: value.to_string(),
            reason,
        };
        let parts: Vec<&str> = value.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return Err(error("expected os/architecture or os/architecture/variant"));
        }
        if parts.iter().any(|part| part.is_empty()) {
            return Err(error("empty component"));
        }
        let valid = |part: &str| {
            part.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        };
        if !parts.iter().all(|part| valid(part)) {
            return Err(error(
                "components use lowercase letters, digits, `_` and `.`",
            ));
        }
        if parts[0] != "linux" {
            return Err(error("Lambda runs linux images only"));
        }
        if !matches!(parts[1], "amd64" | "arm64") {
            return Err(error(
                "Lambda supports the amd64 and arm64 architectures only",
            ));
        }
        Ok(Platform::new(parts[0], parts[1], parts.get(2).copied()))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_lambda_platforms() {
        assert_eq!(
            "linux/amd64".parse::<Platform>().unwrap(),
            Platform::linux_amd64()
        );
        let arm = "linux/arm64/v8".parse::<Platform>().unwrap();
        assert_eq!(arm.variant.as_deref(), Some("v8"));
        assert_eq!(arm.to_string(), "linux/arm64/v8");
    }

    #[test]
    fn parse_rejects_other_values() {
        for value in [
            "",
            "linux",
            "linux/",
            "windows/amd64",
            "linux/s390x",
            "Linux/AMD64",
            "a/b/c/d",
        ] {
            assert!(value.parse::<Platform>().is_err(), "{value} parsed");
        }
    }

    #[test]
    fn missing_variant_matches_any() {
        let wanted: Platform = "linux/arm64".parse().unwrap();
        assert!(wanted.matches(&Platform::new("linux", "arm64", Some("v8"))));
        assert!(!wanted.matches(&Platform::linux_amd64()));
        let v8: Platform = "linux/arm64/v8".parse().unwrap();
        assert!(!v8.matches(&Platform::new("linux", "arm64", Some("v7"))));
    }
}
