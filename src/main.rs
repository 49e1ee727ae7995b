//! The `lambda-image` command: build a Node.js Lambda image and push it, or write it as an
//! OCI image layout. Stdout carries only the result; progress and logs go to stderr.

mod cli;
mod report;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command, ImageOptions};
use lambda_image::base::BaseLocation;
use lambda_image::build::{build, BuildRequest, Built};
use lambda_image::layout::write_layout;
use lambda_image::registry::{push_image, ClientOptions, RegistryClient};
use lambda_image::Reference;

fn main() -> ExitCode {
    let cli = Cli::parse();
    report::init_logging(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let progress = report::StderrProgress::new(cli.quiet);
    let client_options = ClientOptions {
        read_timeout: std::time::Duration::from_secs(cli.timeout),
        ..ClientOptions::default()
    };
    let client = Arc::new(RegistryClient::new(&client_options)?);

    match cli.command {
        Command::Push {
            dir,
            image,
            options,
        } => {
            let target: Reference = image.parse()?;
            let built = build_image(dir, &options, &client, &progress).await?;
            let base = Arc::new(built.base.clone());
            let digest = push_image(client.clone(), &target, &built.image, base, &progress).await?;
            print_result(&format!("{image}@{digest}"))
        }
        Command::Build {
            dir,
            output,
            tag,
            options,
        } => {
            let built = build_image(dir, &options, &client, &progress).await?;
            write_layout(&output, &tag, &built.image, &built.base, &client)
                .await
                .with_context(|| format!("writing the image to {}", output.display()))?;
            print_result(&format!(
                "oci:{}:{tag}@{}",
                output.display(),
                built.image.manifest_digest
            ))
        }
    }
}

async fn build_image(
    dir: std::path::PathBuf,
    options: &ImageOptions,
    client: &RegistryClient,
    progress: &report::StderrProgress,
) -> Result<Built> {
    let base = options
        .base
        .as_deref()
        .map(str::parse::<BaseLocation>)
        .transpose()?;
    let request = BuildRequest {
        app_dir: dir,
        base,
        handler: options.handler.clone(),
        platform: options.platform.parse()?,
        compression_level: options.compression_level,
        epoch: None,
    };
    Ok(build(&request, client, progress).await?)
}

/// Prints the one result line; a closed stdout (`| head`) is not an error.
fn print_result(line: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}
