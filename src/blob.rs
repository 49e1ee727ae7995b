//! Blob byte streams, verified against their descriptor while they flow.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

use crate::digest::{Digest, Hasher};

/// A stream of a blob's bytes.
pub type BlobStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Wraps `inner` so that it fails unless it yields exactly `size` bytes hashing to `digest`.
///
/// The check on the last chunk makes a consumer such as an upload fail before it completes, so
/// a corrupt or truncated blob never reaches a registry or a layout.
pub fn verify(inner: BlobStream, digest: Digest, size: u64, source: String) -> BlobStream {
    Box::pin(VerifyingStream {
        inner,
        expected_digest: digest,
        expected_size: size,
        hasher: Some(Hasher::new()),
        verified: false,
        source,
    })
}

struct VerifyingStream {
    inner: BlobStream,
    expected_digest: Digest,
    expected_size: u64,
    hasher: Option<Hasher>,
    /// Set once exactly the expected bytes have arrived and matched the digest.
    verified: bool,
    source: String,
}

impl VerifyingStream {
    fn mismatch(&self, reason: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "blob {} from {}: {reason}",
                self.expected_digest, self.source
            ),
        )
    }
}

impl Stream for VerifyingStream {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.verified {
            // Anything after the verified content is more than the descriptor allows.
            return match self.inner.as_mut().poll_next(context) {
                Poll::Ready(Some(Ok(chunk))) if !chunk.is_empty() => {
                    self.verified = false;
                    let reason = format!("more than the expected {} bytes", self.expected_size);
                    Poll::Ready(Some(Err(self.mismatch(reason))))
                }
                Poll::Ready(Some(Ok(_))) => Poll::Ready(Some(Ok(Bytes::new()))),
                other => other,
            };
        }
        if self.hasher.is_none() {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(context) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(error))) => {
                self.hasher = None;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(Some(Ok(chunk))) => {
                let hasher = self.hasher.as_mut().expect("checked above");
                hasher.update(&chunk);
                let length = hasher.length();
                if length > self.expected_size {
                    self.hasher = None;
                    let reason = format!("more than the expected {} bytes", self.expected_size);
                    return Poll::Ready(Some(Err(self.mismatch(reason))));
                }
                if length == self.expected_size {
                    // Checked before the last chunk is released: a consumer that stops at the
                    // declared length, as an HTTP body with Content-Length does, never sees the
                    // end of the stream, so the check must not wait for it.
                    let digest = self.hasher.take().expect("checked above").finish();
                    if digest != self.expected_digest {
                        let reason = format!("content has digest {digest}");
                        return Poll::Ready(Some(Err(self.mismatch(reason))));
                    }
                    self.verified = true;
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                let hasher = self.hasher.take().expect("checked above");
                let length = hasher.length();
                let digest = hasher.finish();
                if length != self.expected_size {
                    let reason = format!("{length} bytes, expected {}", self.expected_size);
                    return Poll::Ready(Some(Err(self.mismatch(reason))));
                }
                if digest != self.expected_digest {
                    let reason = format!("content has digest {digest}");
                    return Poll::Ready(Some(Err(self.mismatch(reason))));
                }
                Poll::Ready(None)
            }
        }
    }
}

/// Streams a file's bytes.
pub async fn file_stream(path: &std::path::Path) -> io::Result<BlobStream> {
    let file = tokio::fs::File::open(path).await?;
    Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
        file,
        256 * 1024,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{stream, StreamExt};

    fn chunks(parts: &[&'static [u8]]) -> BlobStream {
        Box::pin(stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        ))
    }

    async fn collect(stream: BlobStream) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut stream = stream;
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn verified_stream_passes_matching_content() {
        let stream = verify(chunks(&[b"ab", b"c"]), Digest::of(b"abc"), 3, "test".into());
        assert_eq!(collect(stream).await.unwrap(), b"abc");
    }

    #[tokio::test]
    async fn verified_stream_rejects_wrong_content() {
        let wrong = verify(chunks(&[b"abd"]), Digest::of(b"abc"), 3, "test".into());
        assert!(collect(wrong)
            .await
            .unwrap_err()
            .to_string()
            .contains("content has digest"));
        let long = verify(chunks(&[b"abcd"]), Digest::of(b"abc"), 3, "test".into());
        assert!(collect(long)
            .await
            .unwrap_err()
            .to_string()
            .contains("more than"));
        let short = verify(chunks(&[b"ab"]), Digest::of(b"abc"), 3, "test".into());
        assert!(collect(short)
            .await
            .unwrap_err()
            .to_string()
            .contains("2 bytes, expected 3"));
    }
}
