//! The user's cache folder for lambda-image.

use std::path::PathBuf;

/// `$XDG_CACHE_HOME/lambda-image`, else `~/.cache/lambda-image`; `None` without either variable.
pub fn cache_root() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|value| !value.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|value| !value.is_empty())?)
            .join(".cache"),
    };
    Some(base.join("lambda-image"))
}
