//! Talking to registries: authentication, the distribution API, and pushing an image.

mod auth;
mod client;
mod error;
mod push;

pub use auth::{
    credential_helper_installed, parse_challenge, run_credential_helper, Challenge, Credentials,
    DockerConfig,
};
pub use client::{Access, ClientOptions, FetchedManifest, RegistryClient, MAX_MANIFEST_SIZE};
pub use error::{ErrorCode, RegistryError};
pub use push::{push_base_layers, push_image};
