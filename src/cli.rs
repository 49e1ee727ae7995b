//! Command-line flags, defined and documented once.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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

    /// Connect to ADDR when a registry is HOST:PORT, keeping HOST for TLS checks (as curl's
    /// --resolve); may be repeated.
    #[arg(long, global = true, value_name = "HOST:PORT:ADDR", value_parser = parse_resolve)]
    pub resolve: Vec<(String, std::net::IpAddr)>,

    /// Skip TLS certificate checks for this registry (host[:port], as in image references);
    /// may be repeated. Checks stay on for every other registry.
    #[arg(long, global = true, value_name = "REGISTRY")]
    pub insecure: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the image from DIR and push it to IMAGE; prints IMAGE@sha256:<digest>.
    Push {
        /// The app directory: the folder that holds package.json.
        dir: PathBuf,
        /// The image reference to push to: host[:port]/repository[:tag].
        image: String,
        /// Also push an image index of all platforms, as TAG-index, for users outside Lambda,
        /// which rejects indexes.
        #[arg(long)]
        index: bool,
        #[command(flatten)]
        options: ImageOptions,
        #[command(flatten)]
        ecr: EcrFlags,
    },
    /// Build the image from DIR and write it as an OCI image layout; pushes nothing.
    Build {
        /// The app directory: the folder that holds package.json.
        dir: PathBuf,
        /// The folder to write the OCI image layout to (created, or replaced if it is a layout).
        #[arg(long, short)]
        output: PathBuf,
        /// The tag recorded in the layout's index.json.
        #[arg(long, default_value = "latest", value_parser = parse_tag)]
        tag: String,
        /// Also write an image index of all platforms, as TAG-index, for users outside Lambda,
        /// which rejects indexes.
        #[arg(long)]
        index: bool,
        #[command(flatten)]
        options: ImageOptions,
    },
    /// Check an image (a registry reference, oci:PATH[:TAG], a layout folder) or an app folder
    /// against what Lambda accepts; prints one line per finding and exits 1 on any error.
    Check {
        /// The target: REF, oci:PATH[:TAG], a folder with an OCI image layout, or an app folder.
        target: String,
        /// Fail unless the image's architecture is this one: amd64 or arm64.
        #[arg(long, value_name = "ARCH")]
        expect_arch: Option<String>,
        #[command(flatten)]
        options: ImageOptions,
    },
    /// Run the handler of an image, or of an app folder built as push would build it, with this
    /// machine's node (not the Node.js runtime inside the image); prints the result as JSON.
    Invoke {
        /// An app folder, REF, oci:PATH[:TAG], or a folder holding an OCI image layout.
        target: String,
        /// The event: a JSON file, or - for stdin. Default: a Function URL GET / event.
        #[arg(long, value_name = "FILE")]
        event: Option<String>,
        /// Seconds the handler may run before it is stopped, as Lambda's function timeout.
        #[arg(long, default_value_t = 30, value_name = "SECONDS",
              value_parser = clap::value_parser!(u64).range(1..=900))]
        function_timeout: u64,
        /// The node program to run the handler with.
        #[arg(long, default_value = "node", value_name = "PATH")]
        node: PathBuf,
        #[command(flatten)]
        options: ImageOptions,
    },
    /// Manage the layer cache in $XDG_CACHE_HOME/lambda-image (or ~/.cache/lambda-image).
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
}

/// The subcommands of `lambda-image cache`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Remove the least recently used layers until the layer cache holds at most MAX_SIZE; with
    /// the default of 0, also remove installed dependencies and cached base manifests.
    Prune {
        /// The size to keep, in bytes or with a K, M or G suffix (powers of 1024); 0 empties it.
        #[arg(long, default_value = "0", value_parser = parse_size)]
        max_size: u64,
    },
}

/// Parses `123`, `500K`, `200M` or `2G` (powers of 1024).
fn parse_size(value: &str) -> Result<u64, String> {
    let trimmed = value.trim();
    let (digits, multiplier) = match trimmed.chars().last() {
        Some('K' | 'k') => (&trimmed[..trimmed.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&trimmed[..trimmed.len() - 1], 1 << 20),
        Some('G' | 'g') => (&trimmed[..trimmed.len() - 1], 1 << 30),
        _ => (trimmed, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(multiplier))
        .ok_or_else(|| format!("`{value}` is not a size such as 500M or 2G"))
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

    /// Target platforms, picked from the base image's index: linux/amd64, linux/arm64, or both
    /// separated by a comma. With two, `push` and `build` give TAG-amd64 and TAG-arm64, and TAG
    /// for the first, each a single-platform image as Lambda requires. `invoke` defaults to this
    /// machine's platform.
    #[arg(long, default_value = "linux/amd64", value_delimiter = ',', num_args = 1..)]
    pub platform: Vec<String>,

    /// Whether --platform was given (invoke defaults to this machine's platform otherwise).
    #[arg(skip)]
    pub platform_given: bool,

    /// Where node_modules comes from: `install` runs a clean production install (npm ci
    /// --omit=dev, or pnpm or yarn by lockfile) outside DIR; `local` packs DIR's node_modules
    /// as it is.
    #[arg(long, value_enum, default_value_t = NodeModules::Install)]
    pub node_modules: NodeModules,

    /// Let a file that looks like a secret (.env, a private key, an .npmrc with a token) into
    /// the image; PATH is relative to the app folder. May be repeated.
    #[arg(long, value_name = "PATH")]
    pub allow_secret: Vec<String>,

    /// Build every layer afresh, without reading or writing the layer cache.
    #[arg(long)]
    pub no_cache: bool,

    /// The `--index` of `push` and `build`, which the other commands do not take.
    #[arg(skip)]
    pub index: bool,

    /// gzip level for the app's layers, 0 (none) to 9 (smallest).
    #[arg(long, default_value_t = lambda_image::layer::DEFAULT_COMPRESSION_LEVEL,
          value_parser = clap::value_parser!(u32).range(0..=9))]
    pub compression_level: u32,
}

/// Flags for pushes to Amazon ECR; other registries ignore them.
#[derive(Debug, Args)]
pub struct EcrFlags {
    /// AWS profile for ECR (from ~/.aws/config and ~/.aws/credentials). Default: AWS_PROFILE,
    /// else the default profile.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

    /// Create the ECR repository if it does not exist.
    #[arg(long)]
    pub create_repository: bool,

    /// Tag mutability of a repository that --create-repository creates.
    #[arg(long, value_enum, default_value_t = TagMutability::Mutable, requires = "create_repository")]
    pub image_tag_mutability: TagMutability,

    /// Turn on scan on push for a repository that --create-repository creates.
    #[arg(long, requires = "create_repository")]
    pub scan_on_push: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NodeModules {
    Install,
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum TagMutability {
    Mutable,
    Immutable,
}

fn parse_tag(value: &str) -> Result<String, String> {
    lambda_image::reference::validate_tag(value)
        .map(|()| value.to_string())
        .map_err(|reason| format!("`{value}` is not a valid tag: {reason}"))
}

/// Parses `HOST:PORT:ADDR`, where ADDR may be an IPv6 address in brackets.
fn parse_resolve(value: &str) -> Result<(String, std::net::IpAddr), String> {
    let invalid =
        || format!("`{value}` is not HOST:PORT:ADDR, such as registry.example:443:127.0.0.1");
    let (host, rest) = value.split_once(':').ok_or_else(invalid)?;
    let (port, address) = rest.split_once(':').ok_or_else(invalid)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(invalid());
    }
    let address = address.trim_start_matches('[').trim_end_matches(']');
    let address = address.parse().map_err(|_| invalid())?;
    Ok((host.to_string(), address))
}
