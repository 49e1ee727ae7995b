//! The ECR API calls lambda-image makes, through the AWS SDK for Rust and its standard
//! credential chain (environment, shared config and credentials files, SSO, web identity,
//! container and instance roles).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_ecr::types::{ImageIdentifier, ImageScanningConfiguration, ImageTagMutability};
use base64::Engine as _;

use super::token_cache::{now, CachedToken, TokenCache};
use super::EcrRegistry;
use crate::digest::Digest;
use crate::registry::Credentials;

/// How lambda-image reaches the ECR API.
#[derive(Debug, Clone, Default)]
pub struct EcrOptions {
    /// The profile from `~/.aws/config`; `None` uses `AWS_PROFILE` or the default profile.
    pub profile: Option<String>,
}

/// What the push needs to know about an existing repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryInfo {
    pub immutable_tags: bool,
}

/// Settings for `--create-repository`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepositorySettings {
    pub immutable_tags: bool,
    pub scan_on_push: bool,
}

/// A failed ECR API call or login.
#[derive(Debug, thiserror::Error)]
pub enum EcrError {
    #[error(
        "no AWS credentials found for ECR registry {account} ({region}): {detail}; set \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, choose a profile with --profile or \
         AWS_PROFILE (as `aws configure --profile NAME` writes it), or run where a role provides them"
    )]
    NoCredentials {
        account: String,
        region: String,
        detail: String,
    },

    #[error(
        "repository `{repository}` does not exist in registry {account} ({region}); create it with \
         --create-repository or `aws ecr create-repository --repository-name {repository} --region {region}`"
    )]
    RepositoryNotFound {
        repository: String,
        account: String,
        region: String,
    },

    #[error(
        "tag `{tag}` of repository `{repository}` in registry {account} ({region}) already names \
         {existing}, and the repository's tags are immutable; push under a new tag"
    )]
    ImmutableTag {
        tag: String,
        repository: String,
        account: String,
        region: String,
        existing: Digest,
    },

    #[error("ECR {operation} failed for registry {account} ({region}): {detail}")]
    Api {
        operation: &'static str,
        account: String,
        region: String,
        detail: String,
    },
}

/// An ECR API client for one registry.
pub struct EcrClient {
    client: aws_sdk_ecr::Client,
    config: SdkConfig,
    registry: EcrRegistry,
    profile: Option<String>,
}

impl EcrClient {
    /// Loads the AWS configuration for the registry's region (the region is in the host
    /// name) and checks that credentials can be found.
    pub async fn connect(
        registry: EcrRegistry,
        options: &EcrOptions,
    ) -> Result<EcrClient, EcrError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(registry.region.clone()));
        if let Some(profile) = &options.profile {
            loader = loader.profile_name(profile);
        }
        let config = loader.load().await;
        let client = EcrClient {
            client: aws_sdk_ecr::Client::new(&config),
            config,
            profile: options
                .profile
                .clone()
                .or_else(|| std::env::var("AWS_PROFILE").ok()),
            registry,
        };
        client.check_credentials().await?;
        Ok(client)
    }

    async fn check_credentials(&self) -> Result<(), EcrError> {
        let no_credentials = |detail: String| EcrError::NoCredentials {
            account: self.registry.account.clone(),
            region: self.registry.region.clone(),
            detail,
        };
        let provider = self
            .config
            .credentials_provider()
            .ok_or_else(|| no_credentials("no credential provider is configured".to_string()))?;
        provider
            .provide_credentials()
            .await
            .map(|_| ())
            .map_err(|e| no_credentials(one_line_chain(&e)))
    }

    /// Returns registry credentials, from the token cache while they are fresh.
    pub async fn login(&self, cache: &TokenCache) -> Result<Credentials, EcrError> {
        if let Some(token) = cache.get(&self.cache_key()) {
            tracing::debug!(registry = %self.registry.account, "reusing the cached ECR token");
            return Ok(token.credentials());
        }
        self.fresh_login(cache).await
    }

    /// Calls GetAuthorizationToken and caches the result, replacing any cached token.
    pub async fn fresh_login(&self, cache: &TokenCache) -> Result<Credentials, EcrError> {
        let output = self
            .client
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| self.api_error("GetAuthorizationToken", &e))?;
        let data = output
            .authorization_data()
            .first()
            .ok_or_else(|| self.invalid("GetAuthorizationToken", "no authorization data"))?;
        let token = data
            .authorization_token()
            .ok_or_else(|| self.invalid("GetAuthorizationToken", "no token"))?;
        // The token is base64 of `AWS:<password>`, sent to the registry as Basic credentials.
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| self.invalid("GetAuthorizationToken", "the token is not base64 text"))?;
        let (username, password) = decoded.split_once(':').ok_or_else(|| {
            self.invalid("GetAuthorizationToken", "the token is not user:password")
        })?;

        let issued_at = now();
        let expires_at = data
            .expires_at()
            .map(|time| time.secs().max(0) as u64)
            .filter(|expires| *expires > issued_at)
            // ECR tokens last 12 hours.
            .unwrap_or(issued_at + 12 * 3600);
        let cached = CachedToken {
            username: username.to_string(),
            password: password.to_string(),
            issued_at,
            expires_at,
        };
        cache.put(&self.cache_key(), &cached);
        Ok(cached.credentials())
    }

    /// Forgets the cached token after the registry rejected it.
    pub fn forget_token(&self, cache: &TokenCache) {
        cache.remove(&self.cache_key());
    }

    /// Describes `repository`; `None` when it does not exist.
    pub async fn repository(&self, repository: &str) -> Result<Option<RepositoryInfo>, EcrError> {
        let result = self
            .client
            .describe_repositories()
            .registry_id(&self.registry.account)
            .repository_names(repository)
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_repository_not_found_exception()) =>
            {
                return Ok(None)
            }
            Err(error) => return Err(self.api_error("DescribeRepositories", &error)),
        };
        Ok(output
            .repositories()
            .first()
            .map(|repository| RepositoryInfo {
                immutable_tags: matches!(
                    repository.image_tag_mutability(),
                    Some(
                        ImageTagMutability::Immutable | ImageTagMutability::ImmutableWithExclusion
                    )
                ),
            }))
    }

    /// Creates `repository` with `settings`.
    pub async fn create_repository(
        &self,
        repository: &str,
        settings: RepositorySettings,
    ) -> Result<RepositoryInfo, EcrError> {
        let mutability = if settings.immutable_tags {
            ImageTagMutability::Immutable
        } else {
            ImageTagMutability::Mutable
        };
        self.client
            .create_repository()
            .registry_id(&self.registry.account)
            .repository_name(repository)
            .image_tag_mutability(mutability)
            .image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(settings.scan_on_push)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.api_error("CreateRepository", &e))?;
        Ok(RepositoryInfo {
            immutable_tags: settings.immutable_tags,
        })
    }

    /// Returns the digest the tag points to, or `None` if the repository has no such tag.
    pub async fn tag_digest(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<Digest>, EcrError> {
        let result = self
            .client
            .describe_images()
            .registry_id(&self.registry.account)
            .repository_name(repository)
            .image_ids(ImageIdentifier::builder().image_tag(tag).build())
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_image_not_found_exception()) =>
            {
                return Ok(None)
            }
            Err(error) => return Err(self.api_error("DescribeImages", &error)),
        };
        let digest = output
            .image_details()
            .first()
            .and_then(|detail| detail.image_digest());
        Ok(digest.and_then(|digest| digest.parse().ok()))
    }

    /// Tokens are cached per registry and identity, so two profiles never share one.
    fn cache_key(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}",
            self.registry.account,
            self.registry.region,
            self.profile.as_deref().unwrap_or(""),
            std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default()
        )
    }

    fn api_error<E: std::error::Error + 'static>(
        &self,
        operation: &'static str,
        error: &E,
    ) -> EcrError {
        EcrError::Api {
            operation,
            account: self.registry.account.clone(),
            region: self.registry.region.clone(),
            detail: one_line_chain(error),
        }
    }

    fn invalid(&self, operation: &'static str, detail: &str) -> EcrError {
        EcrError::Api {
            operation,
            account: self.registry.account.clone(),
            region: self.registry.region.clone(),
            detail: format!("the response has {detail}"),
        }
    }
}

/// Renders an error and its causes on one line. The SDK's own `DisplayErrorContext` ends with a
/// Debug dump, and its credential errors span many lines (one per provider tried).
fn one_line_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    let joined = parts.join(": ");
    let words: Vec<&str> = joined.split_whitespace().collect();
    words.join(" ").replace(". Attempted: ", "; tried ")
}
