//! Command-line flags, defined and documented once.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "lambda-image",
    version,
    about = "Build and push Node.js AWS Lambda container images without a Docker daemon"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log more to stderr: -v for steps, -vv for requests, -vvv for everything.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Print only errors to stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Seconds a registry request may wait for data before it fails.
    #[arg(long, default_value_t = 300, global = true, value_name = "SECONDS")]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the image from DIR and push it to IMAGE; prints IMAGE@sha256:<digest>.
    Push {
        /// The app directory: the folder that holds package.json.
        dir: PathBuf,
        /// Where to push: host[:port]/repository[:tag].
        image: String,
        #[command(flatten)]
        options: ImageOptions,
    },
    /// Build the image from DIR and write it as an OCI image layout; pushes nothing.
    Build {
        /// The app directory: the folder that holds package.json.
        dir: PathBuf,
        /// The folder to write the OCI image layout to (created, or replaced if it is a layout).
        #[arg(long, short)]
        output: PathBuf,
        /// The tag recorded in the layout's index.json.
        #[arg(long, default_value = "latest")]
        tag: String,
        #[command(flatten)]
        options: ImageOptions,
    },
}

/// Flags shared by `push` and `build`.
#[derive(Debug, Args)]
pub struct ImageOptions {
    /// Base image: a registry reference or oci:PATH[:TAG]. Default: public.ecr.aws/lambda/nodejs
    /// with the Node.js major that package.json's engines.node asks for.
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,

    /// Handler as MODULE.FUNCTION (e.g. lambda.handler). Default: detected from lambda.js,
    /// index.js, handler.js, app.js or package.json's main, whichever exports `handler`.
    #[arg(long, value_name = "MODULE.FUNCTION")]
    pub handler: Option<String>,

    /// Target platform, picked from the base image's index: linux/amd64 or linux/arm64.
    #[arg(long, default_value = "linux/amd64")]
    pub platform: String,

    /// gzip level for the app's layers, 0 (none) to 9 (smallest).
    #[arg(long, default_value_t = lambda_image::layer::DEFAULT_COMPRESSION_LEVEL,
          value_parser = clap::value_parser!(u32).range(0..=9))]
    pub compression_level: u32,
}
