//! Builds OCI images of Node.js AWS Lambda functions from an app directory and pushes them to a
//! registry, Amazon ECR above all, without a Docker daemon.
//!
//! The data flows one way: app directory ([`files`]) → layers ([`layer`]) → image config and
//! manifest ([`image`]) → a destination: a registry ([`registry`]) or an OCI image layout
//! ([`layout`]). The base image comes from a registry or a layout through [`base`].

pub mod base;
pub mod blob;
pub mod build;
pub mod cache;
pub mod check;
pub mod deps;
pub mod digest;
pub mod dockerignore;
pub mod ecr;
pub mod error;
pub mod files;
pub mod handler;
pub mod image;
pub mod invoke;
pub mod layer;
pub mod layout;
pub mod manifest;
pub mod media_type;
pub mod node_version;
pub mod platform;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod secrets;

pub use digest::Digest;
pub use error::Error;
pub use manifest::{Descriptor, ImageIndex, ImageManifest};
pub use media_type::{Family, MediaType};
pub use platform::Platform;
pub use reference::Reference;
