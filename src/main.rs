//! The `lambda-image` command: build a Node.js Lambda image and push it, or write it as an
//! OCI image layout. Stdout carries only the result; progress and logs go to stderr.

mod cli;
mod report;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command, EcrFlags, ImageOptions, TagMutability};
use lambda_image::base::BaseLocation;
use lambda_image::build::{build, BuildRequest, Built};
use lambda_image::ecr::{
    is_auth_rejection, EcrOptions, EcrSession, RepositorySettings, TagState, TokenCache,
};
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
        resolve: cli.resolve.clone(),
        ..ClientOptions::default()
    };
    let client = Arc::new(RegistryClient::new(&client_options)?);

    match cli.command {
        Command::Push {
            dir,
            image,
            options,
            ecr,
        } => push(dir, &image, &options, &ecr, client, &progress).await,
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

async fn push(
    dir: std::path::PathBuf,
    image: &str,
    options: &ImageOptions,
    ecr: &EcrFlags,
    client: Arc<RegistryClient>,
    progress: &report::StderrProgress,
) -> Result<()> {
    let target: Reference = image.parse()?;
    let create = ecr.create_repository.then_some(RepositorySettings {
        immutable_tags: ecr.image_tag_mutability == TagMutability::Immutable,
        scan_on_push: ecr.scan_on_push,
    });
    let ecr_options = EcrOptions {
        profile: ecr.profile.clone(),
    };
    // The ECR checks come first, so a missing repository fails before any work is done.
    let session = EcrSession::start(
        &target,
        &ecr_options,
        create,
        &client,
        TokenCache::in_user_cache(),
    )
    .await?;

    let built = build_image(dir, options, &client, progress).await?;
    built.image.check_limits()?;
    if let Some(session) = &session {
        if session.check_tag(&built.image.manifest_digest).await? == TagState::SameImage {
            eprintln!("the immutable tag already names this image; nothing to push");
            return print_result(&format!("{image}@{}", built.image.manifest_digest));
        }
    }

    let base = Arc::new(built.base.clone());
    let mut result = push_image(
        client.clone(),
        &target,
        &built.image,
        base.clone(),
        progress,
    )
    .await;
    if let (Err(error), Some(session)) = (&result, &session) {
        if is_auth_rejection(error) {
            // An ECR token can expire or be revoked mid-push; one fresh login and a rerun,
            // which skips the blobs already uploaded, finishes the job.
            tracing::warn!("the registry rejected the ECR token; logging in again");
            session.refresh_login(&client).await?;
            result = push_image(client.clone(), &target, &built.image, base, progress).await;
        }
    }
    print_result(&format!("{image}@{}", result?))
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
