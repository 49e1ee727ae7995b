//! `lambda-image invoke`: run a built image's handler with this machine's node.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::ImageOptions;
use crate::report::StderrProgress;
use crate::{build_image, print_result};
use lambda_image::base::BaseImage;
use lambda_image::invoke::{
    default_event, host_platform, image_handler, image_layers, invoke, parse_event,
    unpack_task_root, InvokeRequest, InvokeTarget,
};
use lambda_image::registry::RegistryClient;

pub struct Request<'a> {
    pub target: &'a str,
    pub event: Option<&'a str>,
    pub function_timeout: u64,
    pub node: PathBuf,
}

/// Unpacks the target's `/var/task`, calls the handler and prints its result (or Lambda's error
/// object) as JSON; exits 1 when the handler failed.
pub async fn run(
    request: Request<'_>,
    options: &ImageOptions,
    client: &RegistryClient,
    progress: &StderrProgress,
) -> Result<ExitCode> {
    let event = read_event(request.event)?;
    // Native modules must match the node that runs them, so the host's platform is the default.
    let platform = match options.platform.as_slice() {
        [one] if options.platform_given => one.parse()?,
        _ => host_platform(),
    };
    let (task_root, image_handler_name) = match InvokeTarget::parse(request.target)? {
        InvokeTarget::AppDir(dir) => {
            let built = build_image(&dir, options, platform, client, progress).await?;
            let root = unpack_task_root(&built.image.layers, &built.base, client).await?;
            (root, built.handler.handler.to_string())
        }
        InvokeTarget::Image(location) => {
            let image = BaseImage::load(location, &platform, client).await?;
            let root = unpack_task_root(&image_layers(&image), &image, client).await?;
            let name = match &options.handler {
                Some(handler) => handler.clone(),
                None => image_handler(&image.config)?,
            };
            (root, name)
        }
    };
    let handler = options.handler.clone().unwrap_or(image_handler_name);

    let mut invocation = InvokeRequest::new(task_root.path(), handler);
    invocation.event = event;
    invocation.function_timeout = Duration::from_secs(request.function_timeout);
    invocation.node = request.node;
    let outcome = invoke(&invocation).await?;
    print_result(&serde_json::to_string(&outcome.output)?)?;
    Ok(if outcome.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn read_event(source: Option<&str>) -> Result<serde_json::Value> {
    Ok(match source {
        None => default_event(),
        Some("-") => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading the event from stdin")?;
            parse_event(&bytes, "stdin")?
        }
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading the event file {path}"))?;
            parse_event(&bytes, path)?
        }
    })
}
