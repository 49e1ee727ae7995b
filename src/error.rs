//! The library's error type. Every variant renders as one line that names the value involved
//! and, where there is one, the way out.

use std::path::PathBuf;

use crate::digest::{Digest, DigestError};
use crate::dockerignore::DockerIgnoreError;
use crate::handler::HandlerError;
use crate::platform::PlatformError;
use crate::reference::ReferenceError;
use crate::registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("app directory `{}` {reason}", path.display())]
    AppDirectory { path: PathBuf, reason: String },

    #[error("{}: {reason}", path.display())]
    AppFile { path: PathBuf, reason: String },

    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Reference(#[from] ReferenceError),

    #[error(transparent)]
    Platform(#[from] PlatformError),

    #[error(transparent)]
    Digest(#[from] DigestError),

    #[error(transparent)]
    DockerIgnore(#[from] DockerIgnoreError),

    #[error(transparent)]
    Handler(#[from] HandlerError),

    #[error(transparent)]
    Deps(#[from] crate::deps::DepsError),

    #[error(transparent)]
    Registry(#[from] RegistryError),

    #[error(transparent)]
    Ecr(#[from] crate::ecr::EcrError),

    #[error("OCI image layout `{}`: {reason}", path.display())]
    Layout { path: PathBuf, reason: String },

    #[error("base image `{base}`: {reason}")]
    Base { base: String, reason: String },

    #[error("blob {digest} from {source_name}: {reason}")]
    BlobMismatch {
        digest: Digest,
        source_name: String,
        reason: String,
    },

    #[error("environment variable {name}=`{value}` is invalid: {reason}")]
    Environment {
        name: &'static str,
        value: String,
        reason: String,
    },

    #[error("the image is not valid for Lambda: {0}")]
    InvalidImage(String),
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
