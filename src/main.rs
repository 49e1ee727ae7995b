//! The `lambda-image` command: build a Node.js Lambda image and push it, or write it as an
//! OCI image layout. Stdout carries only the result; progress and logs go to stderr.

mod check_command;
mod cli;
mod invoke_command;
mod report;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use cli::{CacheCommand, Cli, Command, EcrFlags, ImageOptions, NodeModules, TagMutability};
use lambda_image::base::BaseImage;
use lambda_image::base::BaseLocation;
use lambda_image::build::{build, BuildRequest, Built};
use lambda_image::cache::{LayerCache, DEFAULT_MAX_CACHE_BYTES};
use lambda_image::deps::NodeModulesMode;
use lambda_image::ecr::{
    is_auth_rejection, EcrOptions, EcrSession, RepositorySettings, TagState, TokenCache,
};
use lambda_image::image::build_index;
use lambda_image::layout::{write_layout, LayoutEntry};
use lambda_image::progress::Progress;
use lambda_image::registry::{push_base_layers, push_image, ClientOptions, RegistryClient};
use lambda_image::{Digest, Platform, Reference};

fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches)
        .unwrap_or_else(|error| error.exit());
    if let (Command::Invoke { options, .. }, Some((_, arguments))) =
        (&mut cli.command, matches.subcommand())
    {
        options.platform_given =
            arguments.value_source("platform") == Some(clap::parser::ValueSource::CommandLine);
    }
    report::init_logging(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = run(cli) => Some(result),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    // Layers may still be compressing on blocking threads; they are abandoned, not awaited.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match outcome {
        Some(Ok(code)) => code,
        Some(Err(error)) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
        // Dropping `run` cancelled every request in flight. The manifest goes last, so a
        // registry never holds one for an interrupted push, and layouts are written to a
        // temporary folder that is removed.
        None => {
            eprintln!("error: interrupted before the command finished");
            ExitCode::from(130)
        }
    }
}

/// Joins an error and its causes with `: `, leaving out a cause whose text the message already
/// contains (the library's messages name their cause themselves).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let progress = report::StderrProgress::new(cli.quiet);
    let client_options = ClientOptions {
        read_timeout: std::time::Duration::from_secs(cli.timeout),
        resolve: cli.resolve.clone(),
        insecure_registries: cli.insecure.clone(),
        ..ClientOptions::default()
    };
    let client = Arc::new(RegistryClient::new(&client_options)?);

    match cli.command {
        Command::Push {
            dir,
            image,
            index,
            mut options,
            ecr,
        } => {
            options.index = index;
            push(&dir, &image, &options, &ecr, client, &progress).await?;
            prune_to_cap();
            Ok(ExitCode::SUCCESS)
        }
        Command::Build {
            dir,
            output,
            tag,
            index,
            mut options,
        } => {
            options.index = index;
            build_layout(&dir, &output, &tag, &options, &client, &progress).await?;
            prune_to_cap();
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            target,
            expect_arch,
            options,
        } => {
            check_command::run(
                &target,
                expect_arch.as_deref(),
                &options,
                &client,
                &progress,
            )
            .await
        }
        Command::Invoke {
            target,
            event,
            function_timeout,
            node,
            options,
        } => {
            let request = invoke_command::Request {
                target: &target,
                event: event.as_deref(),
                function_timeout,
                node,
            };
            invoke_command::run(request, &options, &client, &progress).await
        }
        Command::Cache {
            command: CacheCommand::Prune { max_size },
        } => prune_cache(max_size).map(|()| ExitCode::SUCCESS),
    }
}

fn prune_cache(max_size: u64) -> Result<()> {
    let Some(cache) = LayerCache::in_user_cache() else {
        bail!("no cache folder: neither XDG_CACHE_HOME nor HOME is set");
    };
    let report = cache.prune(max_size)?;
    let mut line = format!(
        "removed {} layer(s) ({} bytes); the layer cache holds {} bytes",
        report.removed_blobs, report.removed_bytes, report.kept_bytes
    );
    if max_size == 0 {
        // Emptying the cache also drops installed dependencies and base image manifests.
        if let Some(root) = lambda_image::cache::cache_root() {
            for folder in ["node-modules", "bases"] {
                let path = root.join(folder);
                if path.exists() {
                    std::fs::remove_dir_all(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                    line.push_str(&format!("; removed {}", path.display()));
                }
            }
        }
    }
    print_result(&line)
}

/// One platform's image and the tags it goes under.
struct PlatformBuild {
    built: Built,
    tags: Vec<String>,
}

/// Builds the image for each platform that `options` names.
async fn build_all(
    dir: &Path,
    tag: &str,
    options: &ImageOptions,
    bases: &[BaseImage],
    client: &RegistryClient,
    progress: &report::StderrProgress,
) -> Result<Vec<PlatformBuild>> {
    let platforms = parse_platforms(&options.platform, options.index)?;
    let mut builds = Vec::new();
    for (position, platform) in platforms.iter().enumerate() {
        let base = bases.get(position).cloned();
        let built = build_on(dir, options, platform.clone(), base, client, progress).await?;
        built.image.check_limits()?;
        check_command::check_before_publishing(&built, client).await?;
        let tags = if platforms.len() == 1 {
            vec![tag.to_string()]
        } else if position == 0 {
            vec![format!("{tag}-{}", platform.architecture), tag.to_string()]
        } else {
            vec![format!("{tag}-{}", platform.architecture)]
        };
        builds.push(PlatformBuild { built, tags });
    }
    Ok(builds)
}

/// Parses `--platform`, checking that `--index` has two platforms to list.
fn parse_platforms(values: &[String], index: bool) -> Result<Vec<Platform>> {
    let mut platforms: Vec<Platform> = Vec::new();
    for value in values {
        let platform: Platform = value.trim().parse()?;
        if platforms
            .iter()
            .any(|p| p.architecture == platform.architecture)
        {
            bail!(
                "--platform names {} twice; give each architecture once",
                platform.architecture
            );
        }
        platforms.push(platform);
    }
    if index && platforms.len() < 2 {
        bail!("--index needs two platforms, such as --platform linux/amd64,linux/arm64");
    }
    Ok(platforms)
}

async fn push(
    dir: &Path,
    image: &str,
    options: &ImageOptions,
    ecr: &EcrFlags,
    client: Arc<RegistryClient>,
    progress: &report::StderrProgress,
) -> Result<()> {
    let target: Reference = image.parse()?;
    parse_platforms(&options.platform, options.index)?;
    if target.digest().is_some() {
        bail!(
            "push target `{image}` names a digest; name a tag instead, such as {}:latest",
            target.repository()
        );
    }
    let tag = target.tag().unwrap_or("latest").to_string();
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

    // A missing or broken app folder fails here, before any byte goes to the registry.
    lambda_image::build::base_location(&build_request(dir, options, Platform::linux_amd64())?)?;
    // The base may live in the same ECR registry, read with a cached token that has since been
    // revoked, so each step that reads it gets one more try after a fresh login.
    let session = session.as_ref();
    let mut base_transfers = start_base_transfers(dir, options, &target, &client, progress).await;
    if log_in_again_if(rejected_token(&base_transfers), session, &client).await? {
        base_transfers = start_base_transfers(dir, options, &target, &client, progress).await;
    }
    let base_transfers = base_transfers?;
    let bases = &base_transfers.bases;
    let mut builds = build_all(dir, &tag, options, bases, &client, progress).await;
    if log_in_again_if(rejected_token(&builds), session, &client).await? {
        builds = build_all(dir, &tag, options, bases, &client, progress).await;
    }
    let builds = builds?;
    let mut pending = Vec::new();
    for build in &builds {
        for tag in &build.tags {
            let digest = &build.built.image.manifest_digest;
            if let Some(session) = session {
                if session.check_tag(tag, digest).await? == TagState::SameImage {
                    eprintln!("immutable tag {tag} already names this image; nothing to push");
                    continue;
                }
            }
            pending.push((build, tag.clone()));
        }
    }

    // The blobs that the early transfers found or put in the target need no second check.
    let mut present = HashSet::new();
    for transfer in base_transfers.tasks {
        match transfer.await {
            Ok(Ok(digests)) => present.extend(digests),
            // A failed early transfer is not final: push_pending checks its blobs again.
            Ok(Err(error)) => tracing::debug!(%error, "early base layer transfer failed"),
            Err(error) => tracing::debug!(%error, "early base layer transfer stopped"),
        }
    }
    let mut result = push_pending(&client, &target, &pending, &present, progress).await;
    // An ECR token can expire or be revoked mid-push. One fresh login and a rerun, which skips
    // the blobs already uploaded, finishes the job.
    let rejected = result.as_ref().is_err_and(is_auth_rejection);
    if log_in_again_if(rejected, session, &client).await? {
        result = push_pending(&client, &target, &pending, &HashSet::new(), progress).await;
    }
    result?;

    for build in &builds {
        for tag in &build.tags {
            let name = if builds.len() == 1 {
                image.to_string()
            } else {
                target.with_tag(tag).to_string()
            };
            print_result(&format!("{name}@{}", build.built.image.manifest_digest))?;
        }
    }
    if options.index {
        let images: Vec<_> = builds
            .iter()
            .map(|b| (&b.built.image, &b.built.base.platform))
            .collect();
        let index = build_index(&images);
        let reference = target.with_tag(&format!("{tag}-index"));
        client
            .put_manifest(&reference, &index.bytes, &index.media_type)
            .await?;
        print_result(&format!("{reference}@{}", index.digest))?;
    }
    Ok(())
}

/// Reports whether `result` failed because a registry rejected the ECR token.
fn rejected_token<T>(result: &Result<T>) -> bool {
    result
        .as_ref()
        .is_err_and(|error| error.downcast_ref().is_some_and(is_auth_rejection))
}

/// Logs in to ECR again when `rejected` is set and the push goes to ECR. Returns whether it
/// did, so that the caller tries the failed step once more.
async fn log_in_again_if(
    rejected: bool,
    session: Option<&EcrSession>,
    client: &RegistryClient,
) -> Result<bool> {
    let Some(session) = session.filter(|_| rejected) else {
        return Ok(false);
    };
    tracing::warn!("the registry rejected the ECR token; logging in again");
    session.refresh_login(client).await?;
    Ok(true)
}

/// The base images of a push, one for each platform in order, and the tasks that copy their
/// layers to the target.
struct BaseTransfers {
    bases: Vec<BaseImage>,
    tasks: Vec<AbortOnDrop>,
}

/// Starts copying each platform's base layers to the target while the app is being built.
/// A base that cannot be loaded fails the push here, once, and the builds reuse the loaded
/// bases rather than asking the registry again.
async fn start_base_transfers(
    dir: &Path,
    options: &ImageOptions,
    target: &Reference,
    client: &Arc<RegistryClient>,
    progress: &report::StderrProgress,
) -> Result<BaseTransfers> {
    let mut transfers = BaseTransfers {
        bases: Vec::new(),
        tasks: Vec::new(),
    };
    // A layer that two platforms' bases share is sent by the first transfer only.
    let mut claimed: HashSet<Digest> = HashSet::new();
    for platform in parse_platforms(&options.platform, options.index)? {
        let request = build_request(dir, options, platform.clone())?;
        let location = lambda_image::build::base_location(&request)?;
        let base = BaseImage::load(location, &platform, client).await?;
        let progress: Arc<dyn Progress> = Arc::new(progress.clone());
        let task = push_base_layers(
            client.clone(),
            target.clone(),
            Arc::new(base.clone()),
            claimed.clone(),
            progress,
        );
        claimed.extend(
            base.manifest
                .layers
                .iter()
                .map(|layer| layer.digest.clone()),
        );
        transfers.tasks.push(AbortOnDrop(tokio::spawn(task)));
        transfers.bases.push(base);
    }
    Ok(transfers)
}

/// A background task that stops when its handle is dropped, as when the build fails first.
struct AbortOnDrop(tokio::task::JoinHandle<lambda_image::error::Result<Vec<Digest>>>);

impl std::future::Future for AbortOnDrop {
    type Output = Result<lambda_image::error::Result<Vec<Digest>>, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(context)
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Pushes each image under its tags: blobs and manifest for the first tag, the manifest alone
/// for the others.
async fn push_pending(
    client: &Arc<RegistryClient>,
    target: &Reference,
    pending: &[(&PlatformBuild, String)],
    present: &HashSet<Digest>,
    progress: &report::StderrProgress,
) -> lambda_image::error::Result<()> {
    let mut pushed: Vec<&Digest> = Vec::new();
    for (build, tag) in pending {
        let image = &build.built.image;
        let reference = target.with_tag(tag);
        if pushed.contains(&&image.manifest_digest) {
            client
                .put_manifest(
                    &reference,
                    &image.manifest_bytes,
                    &image.manifest_media_type(),
                )
                .await?;
            continue;
        }
        let base = Arc::new(build.built.base.clone());
        push_image(client.clone(), &reference, image, base, present, progress).await?;
        pushed.push(&image.manifest_digest);
    }
    Ok(())
}

async fn build_layout(
    dir: &Path,
    output: &Path,
    tag: &str,
    options: &ImageOptions,
    client: &RegistryClient,
    progress: &report::StderrProgress,
) -> Result<()> {
    let builds = build_all(dir, tag, options, &[], client, progress).await?;
    let entries: Vec<LayoutEntry> = builds
        .iter()
        .flat_map(|build| {
            build.tags.iter().map(|tag| LayoutEntry {
                tag: tag.clone(),
                image: &build.built.image,
                base: &build.built.base,
            })
        })
        .collect();
    let index = options.index.then(|| {
        let images: Vec<_> = builds
            .iter()
            .map(|b| (&b.built.image, &b.built.base.platform))
            .collect();
        build_index(&images)
    });
    let index_tag = format!("{tag}-index");
    write_layout(
        output,
        &entries,
        index.as_ref().map(|index| (index_tag.as_str(), index)),
        client,
    )
    .await
    .with_context(|| format!("writing the image to {}", output.display()))?;
    if let Some(index) = &index {
        print_result(&format!(
            "oci:{}:{index_tag}@{}",
            output.display(),
            index.digest
        ))?;
    }
    for entry in &entries {
        print_result(&format!(
            "oci:{}:{}@{}",
            output.display(),
            entry.tag,
            entry.image.manifest_digest
        ))?;
    }
    Ok(())
}

pub(crate) async fn build_image(
    dir: &Path,
    options: &ImageOptions,
    platform: Platform,
    client: &RegistryClient,
    progress: &report::StderrProgress,
) -> Result<Built> {
    build_on(dir, options, platform, None, client, progress).await
}

/// Builds the image for `platform`, on `base` when the caller loaded it already.
async fn build_on(
    dir: &Path,
    options: &ImageOptions,
    platform: Platform,
    base: Option<BaseImage>,
    client: &RegistryClient,
    progress: &report::StderrProgress,
) -> Result<Built> {
    let mut request = build_request(dir, options, platform)?;
    request.loaded_base = base;
    Ok(build(&request, client, progress).await?)
}

fn build_request(dir: &Path, options: &ImageOptions, platform: Platform) -> Result<BuildRequest> {
    let base = options
        .base
        .as_deref()
        .map(str::parse::<BaseLocation>)
        .transpose()?;
    Ok(BuildRequest {
        app_dir: PathBuf::from(dir),
        base,
        handler: options.handler.clone(),
        platform,
        compression_level: options.compression_level,
        epoch: None,
        use_cache: !options.no_cache,
        allow_secrets: options.allow_secret.clone(),
        node_modules: match options.node_modules {
            NodeModules::Install => NodeModulesMode::Install,
            NodeModules::Local => NodeModulesMode::Local,
        },
        loaded_base: None,
    })
}

/// Keeps the layer cache under its cap once a command no longer needs its layers; failing to
/// prune never fails the command.
fn prune_to_cap() {
    if let Some(cache) = LayerCache::in_user_cache() {
        if let Err(error) = cache.prune(DEFAULT_MAX_CACHE_BYTES) {
            tracing::warn!(%error, "cannot prune the layer cache");
        }
    }
}

/// Prints one result line; a closed stdout (`| head`) is not an error.
pub(crate) fn print_result(line: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}
