//! Lambda Node.js handler strings and their resolution. STUB: being written.

use std::fmt;
use std::str::FromStr;

/// Read access to the files that end up under `/var/task`, by path relative to it.
pub trait TaskFiles {
    /// Returns the contents of the regular file at `path` (`/`-separated, relative to
    /// `/var/task`), or `None` when there is no regular file there.
    fn read_file(&self, path: &str) -> Option<Vec<u8>>;
}

/// A parsed handler string such as `lambda.handler` or `src/api/index.routes.get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    pub module_path: String,
    pub function: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleFormat {
    CommonJs,
    EsModule,
}

/// A handler whose module file was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedHandler {
    pub handler: Handler,
    pub module_file: String,
    pub module_format: ModuleFormat,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    #[error("invalid handler `{handler}`: {reason}")]
    Invalid { handler: String, reason: String },
}

impl FromStr for Handler {
    type Err = HandlerError;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (module_path, function) = value.split_once('.').ok_or(HandlerError::Invalid {
            handler: value.to_string(),
            reason: "expected MODULE.FUNCTION".to_string(),
        })?;
        Ok(Handler {
            module_path: module_path.to_string(),
            function: function.to_string(),
        })
    }
}

impl fmt::Display for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module_path, self.function)
    }
}

pub fn resolve(handler: &Handler, _files: &dyn TaskFiles) -> Result<ResolvedHandler, HandlerError> {
    Ok(ResolvedHandler {
        handler: handler.clone(),
        module_file: format!("{}.js", handler.module_path),
        module_format: ModuleFormat::CommonJs,
    })
}

pub fn detect(_files: &dyn TaskFiles) -> Result<ResolvedHandler, HandlerError> {
    resolve(&"lambda.handler".parse()?, _files)
}
