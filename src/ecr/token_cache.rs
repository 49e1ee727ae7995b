//! ECR registry passwords cached on disk, so that pushes within a few hours of each other
//! make one GetAuthorizationToken call.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::registry::Credentials;

/// A cached registry password and its lifetime, in seconds since the epoch.
#[derive(Clone, Serialize, Deserialize)]
pub struct CachedToken {
    pub username: String,
    pub password: String,
    pub issued_at: u64,
    pub expires_at: u64,
}

impl CachedToken {
    pub fn credentials(&self) -> Credentials {
        Credentials {
            username: self.username.clone(),
            password: self.password.clone(),
        }
    }

    /// Reports whether the token is younger than half its lifetime, the point after which it
    /// is replaced so that a long push does not outlive it.
    pub fn is_fresh(&self, now: u64) -> bool {
        let half_life = self.expires_at.saturating_sub(self.issued_at) / 2;
        now >= self.issued_at && now < self.issued_at + half_life
    }
}

/// The token folder, `$XDG_CACHE_HOME/lambda-image/ecr-tokens` (or `~/.cache/…`); files are
/// readable by their owner only.
#[derive(Debug, Clone)]
pub struct TokenCache {
    dir: Option<PathBuf>,
}

impl TokenCache {
    pub fn new(dir: Option<PathBuf>) -> TokenCache {
        TokenCache { dir }
    }

    /// The cache in the user's cache folder; disabled when neither `XDG_CACHE_HOME` nor `HOME`
    /// is set.
    pub fn in_user_cache() -> TokenCache {
        TokenCache::new(crate::cache::cache_root().map(|root| root.join("ecr-tokens")))
    }

    /// Returns the cached token for `key` if it is still fresh.
    pub fn get(&self, key: &str) -> Option<CachedToken> {
        let path = self.path(key)?;
        let token: CachedToken = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
        token.is_fresh(now()).then_some(token)
    }

    /// Stores `token` for `key`; failures only lose the cache, so they are logged and ignored.
    pub fn put(&self, key: &str, token: &CachedToken) {
        let Some(path) = self.path(key) else {
            return;
        };
        if let Err(error) =
            write_private(&path, &serde_json::to_vec(token).expect("token serializes"))
        {
            tracing::warn!(path = %path.display(), %error, "cannot cache the ECR token");
        }
    }

    /// Forgets the token for `key`, after a registry rejected it.
    pub fn remove(&self, key: &str) {
        if let Some(path) = self.path(key) {
            let _ = fs::remove_file(path);
        }
    }

    /// Tokens are filed under a digest of the key (registry, profile, access key id), so that
    /// neither account ids nor key ids appear in file names.
    fn path(&self, key: &str) -> Option<PathBuf> {
        let digest = Digest::of(key.as_bytes());
        Some(
            self.dir
                .as_ref()?
                .join(format!("{}.json", &digest.hex()[..32])),
        )
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes `bytes` to `path` through a temporary file created with mode 0600, then renames it,
/// so the password is never readable by others, even for a moment, and never half-written.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("token paths have a folder");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let temporary = dir.join(format!(".{}.tmp", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn token(issued_at: u64, expires_at: u64) -> CachedToken {
        CachedToken {
            username: "AWS".to_string(),
            password: "secret".to_string(),
            issued_at,
            expires_at,
        }
    }

    #[test]
    fn token_is_fresh_for_half_its_life() {
        let token = token(1000, 1000 + 12 * 3600);
        assert!(token.is_fresh(1000));
        assert!(token.is_fresh(1000 + 6 * 3600 - 1));
        assert!(!token.is_fresh(1000 + 6 * 3600));
        assert!(!token.is_fresh(999));
    }

    #[test]
    fn cache_round_trips_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::new(Some(dir.path().join("ecr-tokens")));
        let now = now();
        cache.put("key", &token(now, now + 3600));
        assert_eq!(cache.get("key").unwrap().password, "secret");
        let path = cache.path("key").unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!path.to_str().unwrap().contains("key"));

        cache.remove("key");
        assert!(cache.get("key").is_none());
    }

    #[test]
    fn stale_token_is_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::new(Some(dir.path().to_path_buf()));
        cache.put("old", &token(10, 20));
        assert!(cache.get("old").is_none());
    }
}
