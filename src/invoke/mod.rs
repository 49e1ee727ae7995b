//! Local invocation: runs a built image's handler with the host's `node`.
//!
//! The image's `/var/task` is unpacked into a temporary folder ([`unpack_task_root`]) and the
//! handler runs there in a `node` process on this machine ([`invoke`]). That is the host's
//! Node.js, not the Node.js runtime inside the image, so the Node.js version, native modules and
//! anything outside `/var/task` (Lambda layers in `/opt`, the AWS SDK that the Lambda runtime
//! bundles) can differ from Lambda. The handler is loaded and called by a runner script that
//! follows the Lambda Node.js runtime's rules, and errors come back in Lambda's error format.

mod event;
mod run;
mod unpack;

use std::path::{Path, PathBuf};

use crate::base::BaseLocation;
use crate::digest::Digest;
use crate::platform::Platform;

pub use event::{default_event, function_url_event, parse_event};
pub use run::{invoke, HandlerOutput, InvokeOutcome, InvokeRequest, DEFAULT_FUNCTION_TIMEOUT};
pub use unpack::{image_layers, unpack_task_root};

/// A failure to run an invocation. A handler that fails, times out or crashes is not an error
/// here but an [`InvokeOutcome`] with `success: false`.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error(
        "`{}` not found: install Node.js (https://nodejs.org) and put `node` on PATH, or pass \
         the path of a node binary; invoke runs the handler with the host's node, not with \
         the Node.js runtime inside the image",
        node.display()
    )]
    NodeNotFound { node: PathBuf },

    #[error("cannot start `{}`: {source}", node.display())]
    NodeStart {
        node: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "the event from {source_name} is not valid JSON ({reason}); pass a JSON document, \
         such as {{}}"
    )]
    InvalidEvent { source_name: String, reason: String },

    #[error(
        "the image config has no Cmd, so it names no handler; pass the handler as \
         MODULE.FUNCTION, for example `index.handler`"
    )]
    NoHandler,

    #[error(
        "handler `{handler}` is outside /var/task; invoke unpacks only /var/task, so pass a \
         handler relative to it, for example `index.handler`"
    )]
    HandlerOutsideTaskRoot { handler: String },

    #[error("handler `{handler}`: {reason}")]
    Unsupported { handler: String, reason: String },

    #[error("layer {digest} {reason}")]
    LayerFormat { digest: Digest, reason: String },

    #[error("cannot read layer {digest}: {source}")]
    LayerRead {
        digest: Digest,
        #[source]
        source: std::io::Error,
    },

    #[error("layer {digest} is rejected: entry `{entry}` {reason}")]
    UnsafeLayerEntry {
        digest: Digest,
        entry: String,
        reason: String,
    },

    #[error("`{value}` is not an app folder, an OCI image layout or an image reference: {reason}")]
    Target { value: String, reason: String },

    #[error("the invoke runner wrote an invalid result to `{}`: {reason}", path.display())]
    RunnerResult { path: PathBuf, reason: String },

    #[error(transparent)]
    Image(#[from] crate::error::Error),
}

/// The input of `invoke`: an app folder to build, or a built image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeTarget {
    AppDir(PathBuf),
    Image(BaseLocation),
}

impl InvokeTarget {
    /// Reads `DIR`, `oci:PATH[:TAG]`, a folder holding an OCI image layout (its only image), or
    /// a registry reference.
    pub fn parse(value: &str) -> Result<InvokeTarget, InvokeError> {
        if value.starts_with("oci:") {
            return Ok(InvokeTarget::Image(value.parse()?));
        }
        let path = Path::new(value);
        if path.is_dir() {
            if path.join("oci-layout").is_file() {
                return Ok(InvokeTarget::Image(BaseLocation::Layout {
                    path: path.to_path_buf(),
                    tag: None,
                }));
            }
            return Ok(InvokeTarget::AppDir(path.to_path_buf()));
        }
        value
            .parse::<crate::Reference>()
            .map(|reference| InvokeTarget::Image(BaseLocation::Registry(reference)))
            .map_err(|error| InvokeError::Target {
                value: value.to_string(),
                reason: format!("there is no folder by that name, and {error}"),
            })
    }
}

/// Returns the handler an image config names: the first element of `config.Cmd`, which Lambda
/// passes to the runtime as the handler.
pub fn image_handler(config: &[u8]) -> Result<String, InvokeError> {
    let config: serde_json::Value = serde_json::from_slice(config).map_err(|error| {
        crate::error::Error::InvalidImage(format!("the config is not valid JSON: {error}"))
    })?;
    config
        .get("config")
        .and_then(|container| container.get("Cmd"))
        .and_then(|cmd| cmd.get(0))
        .and_then(|handler| handler.as_str())
        .filter(|handler| !handler.is_empty())
        .map(str::to_string)
        .ok_or(InvokeError::NoHandler)
}

/// Returns the platform of this machine, `linux/amd64` or `linux/arm64` on the usual hosts, so
/// that native modules in the image match the node that runs them.
pub fn host_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    Platform::new("linux", architecture, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_handler_is_first_cmd_element() {
        let config = br#"{"config":{"Cmd":["lambda.handler","ignored"]}}"#;
        assert_eq!(image_handler(config).unwrap(), "lambda.handler");
    }

    #[test]
    fn image_without_cmd_has_no_handler() {
        for config in [
            &br#"{"config":{"Cmd":null}}"#[..],
            br#"{"config":{}}"#,
            br#"{}"#,
            br#"{"config":{"Cmd":[]}}"#,
        ] {
            assert!(matches!(image_handler(config), Err(InvokeError::NoHandler)));
        }
    }

    #[test]
    fn target_reads_layouts_folders_and_references() {
        let folder = tempfile::tempdir().unwrap();
        let app = folder.path().join("app");
        std::fs::create_dir(&app).unwrap();
        let layout = folder.path().join("image");
        std::fs::create_dir(&layout).unwrap();
        std::fs::write(layout.join("oci-layout"), "{}").unwrap();

        assert_eq!(
            InvokeTarget::parse(app.to_str().unwrap()).unwrap(),
            InvokeTarget::AppDir(app.clone())
        );
        assert_eq!(
            InvokeTarget::parse(layout.to_str().unwrap()).unwrap(),
            InvokeTarget::Image(BaseLocation::Layout {
                path: layout.clone(),
                tag: None
            })
        );
        assert!(matches!(
            InvokeTarget::parse("oci:image:v2").unwrap(),
            InvokeTarget::Image(BaseLocation::Layout { tag: Some(_), .. })
        ));
        assert!(matches!(
            InvokeTarget::parse("registry.example/app:v2").unwrap(),
            InvokeTarget::Image(BaseLocation::Registry(_))
        ));
        let error = InvokeTarget::parse("Not A Reference").unwrap_err();
        assert!(error.to_string().contains("there is no folder"), "{error}");
    }
}
