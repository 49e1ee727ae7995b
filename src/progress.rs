//! Progress reporting: the library reports events, the command-line tool draws them.

use crate::digest::Digest;

/// Something that happened during a build or push.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// The app directory was scanned.
    Scanned { entries: usize },
    /// The production dependencies are ready: `source` is `installed`, `cached` or `local`.
    DependenciesReady {
        source: &'a str,
        packages: usize,
        bytes: u64,
    },
    /// A layer is ready: `name` is `dependencies` or `app`, and `reused` is set when the layer
    /// came from the build cache rather than being written.
    LayerWritten {
        name: &'a str,
        digest: &'a Digest,
        size: u64,
        entries: usize,
        reused: bool,
    },
    /// The registry already had the blob.
    BlobPresent { digest: &'a Digest, size: u64 },
    /// The registry linked the blob from another repository.
    BlobMounted { digest: &'a Digest, size: u64 },
    /// The blob was uploaded.
    BlobUploaded { digest: &'a Digest, size: u64 },
    /// The manifest was stored under a tag.
    ManifestPushed {
        reference: &'a str,
        digest: &'a Digest,
    },
    /// The tag already named the manifest, so nothing was sent.
    ManifestPresent {
        reference: &'a str,
        digest: &'a Digest,
    },
}

/// Receives progress events; implementations must not block for long.
pub trait Progress: Send + Sync {
    fn report(&self, event: Event<'_>);
}

/// Ignores every event.
pub struct NoProgress;

impl Progress for NoProgress {
    fn report(&self, _event: Event<'_>) {}
}
