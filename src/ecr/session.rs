//! What a push to ECR does around the registry protocol: log in with AWS credentials, check
//! the repository first, respect immutable tags, and log in again when a token is rejected.

use super::{
    EcrClient, EcrError, EcrOptions, EcrRegistry, RepositoryInfo, RepositorySettings, TokenCache,
};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::registry::{credential_helper_installed, DockerConfig, RegistryClient, RegistryError};

/// An ECR login for one target repository.
pub struct EcrSession {
    client: EcrClient,
    cache: TokenCache,
    registry: EcrRegistry,
    target: Reference,
    repository: RepositoryInfo,
}

/// What the registry holds under the tag being pushed, for a repository with immutable tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagState {
    /// The tag is free, or the repository's tags are mutable.
    Free,
    /// The tag already names this very image: nothing needs pushing.
    SameImage,
}

impl EcrSession {
    /// Logs in to the ECR registry of `target` and checks that its repository exists, creating
    /// it when `create` says how. Returns `None` for registries that are not ECR.
    pub async fn start(
        target: &Reference,
        options: &EcrOptions,
        create: Option<RepositorySettings>,
        registry_client: &RegistryClient,
        cache: TokenCache,
    ) -> Result<Option<EcrSession>> {
        let Some(registry) = EcrRegistry::parse(target.registry()) else {
            return Ok(None);
        };
        let client = EcrClient::connect(registry.clone(), options).await?;
        let repository = match client.repository(target.repository()).await? {
            Some(info) => info,
            None => match create {
                Some(settings) => {
                    tracing::info!(
                        repository = target.repository(),
                        "creating the ECR repository"
                    );
                    client
                        .create_repository(target.repository(), settings)
                        .await?
                }
                None => {
                    return Err(EcrError::RepositoryNotFound {
                        repository: target.repository().to_string(),
                        account: registry.account.clone(),
                        region: registry.region.clone(),
                    }
                    .into())
                }
            },
        };
        if uses_native_login(target.registry()) {
            let credentials = client.login(&cache).await?;
            registry_client.set_credentials(target.registry(), credentials);
        }
        Ok(Some(EcrSession {
            client,
            cache,
            registry,
            target: target.clone(),
            repository,
        }))
    }

    /// Checks the tag against an immutable repository before anything is uploaded: the same
    /// image is a success with nothing to do, another image an error.
    pub async fn check_tag(&self, tag: &str, manifest_digest: &Digest) -> Result<TagState> {
        if !self.repository.immutable_tags {
            return Ok(TagState::Free);
        }
        match self
            .client
            .tag_digest(self.target.repository(), tag)
            .await?
        {
            None => Ok(TagState::Free),
            Some(existing) if existing == *manifest_digest => Ok(TagState::SameImage),
            Some(existing) => Err(EcrError::ImmutableTag {
                tag: tag.to_string(),
                repository: self.target.repository().to_string(),
                account: self.registry.account.clone(),
                region: self.registry.region.clone(),
                existing,
            }
            .into()),
        }
    }

    /// Replaces a rejected registry token with a fresh one from the ECR API.
    pub async fn refresh_login(&self, registry_client: &RegistryClient) -> Result<()> {
        self.client.forget_token(&self.cache);
        let credentials = self.client.fresh_login(&self.cache).await?;
        registry_client.set_credentials(self.target.registry(), credentials);
        Ok(())
    }
}

/// Reports whether lambda-image logs in itself: unless config.json's `credHelpers` names a
/// helper for this registry, other than an `ecr-login` that is not installed. A general
/// `credsStore` (Docker Desktop's, say) rarely holds a current ECR token, so it does not count.
fn uses_native_login(registry: &str) -> bool {
    match DockerConfig::load().registry_helper(registry) {
        None => true,
        Some("ecr-login") => !credential_helper_installed("ecr-login"),
        Some(_) => false,
    }
}

/// Reports whether a registry error means the credentials were rejected, as an expired ECR
/// token is ("403 Your authorization token has expired").
pub fn is_auth_rejection(error: &Error) -> bool {
    match error {
        Error::Registry(RegistryError {
            status: Some(401 | 403),
            ..
        }) => true,
        Error::Registry(error) => error.has_code("UNAUTHORIZED") || error.has_code("DENIED"),
        _ => false,
    }
}
