//! Drawing progress and logs on stderr.

use std::io::IsTerminal;

use lambda_image::progress::{Event, Progress};
use tracing_subscriber::EnvFilter;

/// Sends logs to stderr: warnings by default, more with each -v, errors only with -q.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    // Dependencies log at debug and trace with request details; they get one level less.
    let filter = match level {
        "trace" => "lambda_image=trace,debug".to_string(),
        "debug" => "lambda_image=debug,info".to_string(),
        other => other.to_string(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Prints one line per step to stderr.
#[derive(Clone)]
pub struct StderrProgress {
    quiet: bool,
}

impl StderrProgress {
    pub fn new(quiet: bool) -> StderrProgress {
        StderrProgress { quiet }
    }
}

impl Progress for StderrProgress {
    fn report(&self, event: Event<'_>) {
        if self.quiet {
            return;
        }
        let line = match event {
            Event::Scanned { entries } => format!("scanned {entries} files and folders"),
            Event::DependenciesReady {
                source,
                packages,
                bytes,
            } => {
                format!(
                    "dependencies {source}: {packages} packages, {}",
                    megabytes(bytes)
                )
            }
            Event::LayerWritten {
                name,
                digest,
                size,
                entries,
                reused,
            } => {
                format!(
                    "{} {name} layer {} ({}, {entries} entries)",
                    if reused { "reused cached" } else { "built" },
                    short(digest),
                    megabytes(size)
                )
            }
            Event::BlobPresent { digest, size } => {
                format!("exists   {} ({})", short(digest), megabytes(size))
            }
            Event::BlobMounted { digest, size } => {
                format!("mounted  {} ({})", short(digest), megabytes(size))
            }
            Event::BlobUploaded { digest, size } => {
                format!("uploaded {} ({})", short(digest), megabytes(size))
            }
            Event::ManifestPushed { reference, digest } => {
                format!("pushed   {reference} {}", short(digest))
            }
            Event::ManifestPresent { reference, digest } => {
                format!("unchanged {reference} {}", short(digest))
            }
        };
        eprintln!("{line}");
    }
}

fn short(digest: &lambda_image::Digest) -> String {
    format!("sha256:{}", &digest.hex()[..12])
}

fn megabytes(bytes: u64) -> String {
    if bytes < 1_000_000 {
        format!("{:.1} kB", bytes as f64 / 1000.0)
    } else {
        format!("{:.1} MB", bytes as f64 / 1_000_000.0)
    }
}
