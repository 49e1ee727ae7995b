//! `.dockerignore` matching with Docker's semantics. STUB: being written.

use std::path::{Path, PathBuf};

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {}

/// A `.dockerignore` that cannot be read or has an invalid pattern.
#[derive(Debug, thiserror::Error)]
pub enum DockerIgnoreError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: line {line}: invalid pattern `{pattern}`: {reason}; fix or remove the line", path.display())]
    Pattern {
        path: PathBuf,
        line: usize,
        pattern: String,
        reason: String,
    },
}

impl DockerIgnore {
    pub fn empty() -> DockerIgnore {
        DockerIgnore::default()
    }

    pub fn load(_app_dir: &Path) -> Result<DockerIgnore, DockerIgnoreError> {
        Ok(DockerIgnore::default())
    }

    pub fn parse(_text: &str, _source: &Path) -> Result<DockerIgnore, DockerIgnoreError> {
        Ok(DockerIgnore::default())
    }

    pub fn is_excluded(&self, _relative_path: &str) -> bool {
        false
    }

    pub fn may_include_below(&self, _relative_dir: &str) -> bool {
        true
    }
}
