//! `lambda-image check`, and the same checks run on every image before it is pushed or written.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::ImageOptions;
use crate::report::StderrProgress;
use crate::{build_image, print_result};
use lambda_image::base::BaseLocation;
use lambda_image::build::Built;
use lambda_image::check::{
    check_built, check_layout, check_reference, has_errors, Architecture, BuiltImageBlobs,
    CheckOptions, Finding,
};
use lambda_image::registry::RegistryClient;
use lambda_image::Platform;

/// Checks `target` and prints one line per finding; exits 1 when any is an error.
pub async fn run(
    target: &str,
    expect_arch: Option<&str>,
    options: &ImageOptions,
    client: &RegistryClient,
    progress: &StderrProgress,
) -> Result<ExitCode> {
    let platform: Platform = match options.platform.as_slice() {
        [one] => one.parse()?,
        _ => bail!("check takes one --platform"),
    };
    let check_options = CheckOptions {
        expect_arch: expect_arch.map(str::parse::<Architecture>).transpose()?,
        platform: platform.clone(),
    };
    let path = Path::new(target);
    let findings = if path.join("package.json").is_file() {
        let built = build_image(path, options, platform, client, progress).await?;
        let blobs = BuiltImageBlobs::new(&built.image, &built.base, client);
        check_built(&built.image, &blobs, &check_options).await?
    } else if path.join("oci-layout").is_file() {
        check_layout(path, None, &check_options).await?
    } else {
        match target.parse::<BaseLocation>()? {
            BaseLocation::Layout { path, tag } => {
                check_layout(&path, tag.as_deref(), &check_options).await?
            }
            BaseLocation::Registry(reference) => {
                check_reference(&reference, client, &check_options).await?
            }
        }
    };
    for finding in &findings {
        print_result(&finding.to_string())?;
    }
    if findings.is_empty() {
        eprintln!("no findings: Lambda should accept this image");
    }
    Ok(if has_errors(&findings) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs the checks on an image just built, before anything is pushed or written; warnings are
/// printed, errors fail the command. Only the manifest and config are checked: reading the
/// layers back would double the cost of a build, and `lambda-image check` does that on demand.
pub async fn check_before_publishing(built: &Built, client: &RegistryClient) -> Result<()> {
    let blobs = BuiltImageBlobs::new(&built.image, &built.base, client).metadata_only();
    let options = CheckOptions {
        expect_arch: None,
        platform: built.base.platform.clone(),
    };
    let findings = check_built(&built.image, &blobs, &options).await?;
    for finding in &findings {
        eprintln!("{finding}");
    }
    let errors: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.severity == lambda_image::check::Severity::Error)
        .collect();
    if let Some(first) = errors.first() {
        bail!(
            "the image fails {} Lambda check{} (first: {}); nothing was pushed or written",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            first.code
        );
    }
    Ok(())
}
