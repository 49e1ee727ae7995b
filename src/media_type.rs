//! Media types of manifests, indexes, configs and layers, in the OCI and Docker families.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which specification a media type comes from. A manifest never mixes the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Oci,
    Docker,
}

/// A media type this tool reads or writes; anything else is kept as [`MediaType::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MediaType {
    OciIndex,
    OciManifest,
    OciConfig,
    OciLayerGzip,
    OciLayerTar,
    OciLayerZstd,
    DockerManifestList,
    DockerManifest,
    DockerConfig,
    DockerLayerGzip,
    DockerForeignLayerGzip,
    Other(String),
}

const NAMES: &[(MediaType, &str)] = &[
    (
        MediaType::OciIndex,
        "application/vnd.oci.image.index.v1+json",
    ),
    (
        MediaType::OciManifest,
        "application/vnd.oci.image.manifest.v1+json",
    ),
    (
        MediaType::OciConfig,
        "application/vnd.oci.image.config.v1+json",
    ),
    (
        MediaType::OciLayerGzip,
        "application/vnd.oci.image.layer.v1.tar+gzip",
    ),
    (
        MediaType::OciLayerTar,
        "application/vnd.oci.image.layer.v1.tar",
    ),
    (
        MediaType::OciLayerZstd,
        "application/vnd.oci.image.layer.v1.tar+zstd",
    ),
    (
        MediaType::DockerManifestList,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ),
    (
        MediaType::DockerManifest,
        "application/vnd.docker.distribution.manifest.v2+json",
    ),
    (
        MediaType::DockerConfig,
        "application/vnd.docker.container.image.v1+json",
    ),
    (
        MediaType::DockerLayerGzip,
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ),
    (
        MediaType::DockerForeignLayerGzip,
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ),
];

impl MediaType {
    pub fn parse(value: &str) -> MediaType {
        NAMES
            .iter()
            .find(|(_, name)| *name == value)
            .map(|(media_type, _)| media_type.clone())
            .unwrap_or_else(|| MediaType::Other(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            MediaType::Other(value) => value,
            known => NAMES
                .iter()
                .find(|(media_type, _)| media_type == known)
                .map(|(_, name)| *name)
                .unwrap_or_default(),
        }
    }

    /// The family, or `None` for a media type of neither specification.
    pub fn family(&self) -> Option<Family> {
        use MediaType::*;
        match self {
            OciIndex | OciManifest | OciConfig | OciLayerGzip | OciLayerTar | OciLayerZstd => {
                Some(Family::Oci)
            }
            DockerManifestList
            | DockerManifest
            | DockerConfig
            | DockerLayerGzip
            | DockerForeignLayerGzip => Some(Family::Docker),
            Other(_) => None,
        }
    }

    /// True for an OCI image index or a Docker manifest list.
    pub fn is_index(&self) -> bool {
        matches!(self, MediaType::OciIndex | MediaType::DockerManifestList)
    }

    /// True for a single-platform image manifest of either family.
    pub fn is_manifest(&self) -> bool {
        matches!(self, MediaType::OciManifest | MediaType::DockerManifest)
    }

    /// True for a gzip-compressed tar layer of either family.
    pub fn is_gzip_layer(&self) -> bool {
        matches!(
            self,
            MediaType::OciLayerGzip
                | MediaType::DockerLayerGzip
                | MediaType::DockerForeignLayerGzip
        )
    }

    /// The manifest, config and gzip layer media types of a family.
    pub fn manifest_of(family: Family) -> MediaType {
        match family {
            Family::Oci => MediaType::OciManifest,
            Family::Docker => MediaType::DockerManifest,
        }
    }

    pub fn config_of(family: Family) -> MediaType {
        match family {
            Family::Oci => MediaType::OciConfig,
            Family::Docker => MediaType::DockerConfig,
        }
    }

    pub fn gzip_layer_of(family: Family) -> MediaType {
        match family {
            Family::Oci => MediaType::OciLayerGzip,
            Family::Docker => MediaType::DockerLayerGzip,
        }
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MediaType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MediaType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(MediaType::parse(&String::deserialize(deserializer)?))
    }
}

/// The `Accept` header value for fetching a manifest or an index of either family.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_round_trip() {
        for (media_type, name) in NAMES {
            assert_eq!(MediaType::parse(name), *media_type);
            assert_eq!(media_type.as_str(), *name);
        }
    }

    #[test]
    fn unknown_name_is_kept() {
        let media_type = MediaType::parse("application/vnd.in-toto+json");
        assert_eq!(media_type.as_str(), "application/vnd.in-toto+json");
        assert_eq!(media_type.family(), None);
    }

    #[test]
    fn family_helpers_agree() {
        for family in [Family::Oci, Family::Docker] {
            assert_eq!(MediaType::manifest_of(family).family(), Some(family));
            assert_eq!(MediaType::config_of(family).family(), Some(family));
            assert_eq!(MediaType::gzip_layer_of(family).family(), Some(family));
        }
    }
}
