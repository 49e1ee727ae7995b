//! The registry HTTP API (OCI distribution spec): manifests, blob checks, uploads and
//! mounts, with the Basic and Bearer token authentication flows.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{
    HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use tracing::{debug, warn};
use url::Url;

use super::auth::{parse_challenge, run_credential_helper, Challenge, Credentials, DockerConfig};
use super::error::RegistryError;
use crate::digest::Digest;
use crate::media_type::{MediaType, MANIFEST_ACCEPT};
use crate::reference::Reference;

/// Largest manifest or index this client reads or writes: the limit ECR and most registries
/// apply, and a guard against hostile servers.
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// Largest token or error response read into memory.
const MAX_SMALL_BODY: usize = 1024 * 1024;

/// Attempts to connect to a registry that has not sent a response yet in this run.
const FIRST_CONTACT_ATTEMPTS: u32 = 2;

/// The permission a request needs on a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Pull,
    Push,
}

impl Access {
    fn scope_actions(self) -> &'static str {
        match self {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        }
    }
}

/// Settings for [`RegistryClient`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long a request may wait for the next bytes from the registry.
    pub read_timeout: Duration,
    pub connect_timeout: Duration,
    /// How many times a request is sent before a transport failure, 429 or 5xx is final.
    pub max_attempts: u32,
    /// Host names to connect to at fixed addresses, as curl's `--resolve`; the name is still
    /// used for TLS certificate checks.
    pub resolve: Vec<(String, std::net::IpAddr)>,
    /// Registries (`host[:port]`) whose TLS certificates are not checked.
    pub insecure_registries: Vec<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            read_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(30),
            max_attempts: 5,
            resolve: Vec::new(),
            insecure_registries: Vec::new(),
        }
    }
}

/// A manifest or index as fetched: its exact bytes, media type and digest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: MediaType,
    pub digest: Digest,
}

/// A client for any number of registries, sharing connections and tokens.
pub struct RegistryClient {
    http: reqwest::Client,
    /// The client for registries named by `--insecure`, which skips certificate checks. It is
    /// built only when `--insecure` names one, because each client loads the system's CA
    /// certificates.
    insecure_http: Option<reqwest::Client>,
    insecure_registries: Vec<String>,
    max_attempts: u32,
    docker_config: DockerConfig,
    credentials: Mutex<HashMap<String, Credentials>>,
    /// `Authorization` values by registry and scope, reused until a registry rejects one.
    authorizations: Mutex<HashMap<(String, String), String>>,
    /// Held while a token is fetched, so parallel requests share one.
    authorizing: tokio::sync::Mutex<()>,
    /// The registries that have sent a response during this run.
    reached: Mutex<HashSet<String>>,
}

impl RegistryClient {
    pub fn new(options: &ClientOptions) -> Result<RegistryClient, RegistryError> {
        let builder = || {
            let mut builder = reqwest::Client::builder()
                .user_agent(concat!("lambda-image/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(options.connect_timeout)
                .read_timeout(options.read_timeout)
                .redirect(redirect_policy());
            for (host, address) in &options.resolve {
                // Port 0 keeps the port of each request's URL.
                builder = builder.resolve(host, std::net::SocketAddr::new(*address, 0));
            }
            builder
        };
        let build_error = |e: reqwest::Error| {
            RegistryError::new("-", "set up the HTTP client").with_transport_error(error_chain(&e))
        };
        let http = builder().build().map_err(build_error)?;
        let insecure_http = if options.insecure_registries.is_empty() {
            None
        } else {
            let client = builder()
                .tls_danger_accept_invalid_certs(true)
                .build()
                .map_err(build_error)?;
            Some(client)
        };
        Ok(RegistryClient {
            http,
            insecure_http,
            insecure_registries: options.insecure_registries.clone(),
            max_attempts: options.max_attempts.max(1),
            docker_config: DockerConfig::load(),
            credentials: Mutex::new(HashMap::new()),
            authorizations: Mutex::new(HashMap::new()),
            authorizing: tokio::sync::Mutex::new(()),
            reached: Mutex::new(HashSet::new()),
        })
    }

    /// Returns the HTTP client for `registry`, whose certificate checks stay on unless
    /// `--insecure` names it.
    fn http(&self, registry: &str) -> &reqwest::Client {
        match &self.insecure_http {
            Some(insecure) if self.insecure_registries.iter().any(|name| name == registry) => {
                insecure
            }
            _ => &self.http,
        }
    }

    /// Uses `credentials` for `registry` in place of any from Docker's config.json.
    pub fn set_credentials(&self, registry: &str, credentials: Credentials) {
        lock(&self.credentials).insert(registry.to_string(), credentials);
        lock(&self.authorizations).retain(|(host, _), _| host != registry);
    }

    /// Finds credentials for `registry`: those set by the caller, else the credential helper
    /// that config.json names, else its `auths` entry.
    fn credentials_for(&self, registry: &str) -> Option<Credentials> {
        if let Some(credentials) = lock(&self.credentials).get(registry) {
            return Some(credentials.clone());
        }
        if let Some(helper) = self.docker_config.helper_for(registry) {
            match run_credential_helper(helper, registry) {
                Ok(Some(credentials)) => {
                    lock(&self.credentials).insert(registry.to_string(), credentials.clone());
                    return Some(credentials);
                }
                Ok(None) => debug!(registry, helper, "the credential helper has no entry"),
                Err(error) => {
                    warn!(registry, helper, %error, "credential helper failed; trying config.json auths")
                }
            }
        }
        self.docker_config.credentials(registry).cloned()
    }

    /// Returns the `/v2/<repository>` URL of `reference`'s repository.
    pub fn repository_url(&self, reference: &Reference) -> String {
        let scheme = if reference.is_loopback() {
            "http"
        } else {
            "https"
        };
        format!(
            "{scheme}://{}/v2/{}",
            reference.registry_api_host(),
            reference.repository()
        )
    }

    /// Asks for the digest of the manifest or index that `reference` names, without its body.
    /// Returns `None` when the registry sends no `Docker-Content-Digest`, which the spec allows.
    pub async fn head_manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<Digest>, RegistryError> {
        let operation = format!("check manifest {reference}");
        let response = self
            .request_manifest(reference, Method::HEAD, &operation)
            .await?;
        Ok(content_digest(response.headers()))
    }

    /// Returns the digest of the manifest that `reference` names in a repository this run
    /// pushes to, or `None` when there is none (or the registry sends no digest). The request
    /// uses the push scope, so a token registry issues no second token for it.
    pub async fn pushed_manifest_digest(
        &self,
        reference: &Reference,
    ) -> Result<Option<Digest>, RegistryError> {
        let operation = format!("check manifest {reference}");
        let response = self
            .send_manifest_request(reference, Method::HEAD, Access::Push, &operation)
            .await?;
        match response.status() {
            StatusCode::OK => Ok(content_digest(response.headers())),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(status_error(response, reference.registry(), &operation).await),
        }
    }

    /// Sends a manifest request with pull access that accepts every manifest and index media
    /// type, and checks for 200.
    async fn request_manifest(
        &self,
        reference: &Reference,
        method: Method,
        operation: &str,
    ) -> Result<Response, RegistryError> {
        let response = self
            .send_manifest_request(reference, method, Access::Pull, operation)
            .await?;
        expect_status(response, &[StatusCode::OK], reference.registry(), operation).await
    }

    /// Sends a manifest request that accepts every manifest and index media type, whatever
    /// status comes back.
    async fn send_manifest_request(
        &self,
        reference: &Reference,
        method: Method,
        access: Access,
        operation: &str,
    ) -> Result<Response, RegistryError> {
        let url = self.manifest_url(reference);
        self.send(reference, &[scope(reference, access)], operation, || {
            self.http(reference.registry())
                .request(method.clone(), &url)
                .header(ACCEPT, MANIFEST_ACCEPT)
        })
        .await
    }

    /// Returns the URL of the manifest that `reference` names by tag or digest.
    fn manifest_url(&self, reference: &Reference) -> String {
        format!(
            "{}/manifests/{}",
            self.repository_url(reference),
            reference.manifest_reference()
        )
    }

    /// Fetches the manifest or index that `reference` names, verifying a digest reference.
    pub async fn get_manifest(
        &self,
        reference: &Reference,
    ) -> Result<FetchedManifest, RegistryError> {
        let operation = format!("pull manifest {reference}");
        let response = self
            .request_manifest(reference, Method::GET, &operation)
            .await?;
        let header_type =
            header_string(response.headers(), CONTENT_TYPE.as_str()).map(str::to_string);
        let bytes = read_limited(
            response,
            MAX_MANIFEST_SIZE,
            reference.registry(),
            &operation,
        )
        .await?;
        let digest = Digest::of(&bytes);
        if let Some(expected) = reference.digest() {
            if *expected != digest {
                return Err(
                    RegistryError::new(reference.registry(), operation).with_detail(format!(
                        "the registry returned content with digest {digest}"
                    )),
                );
            }
        }
        let media_type = crate::manifest::sniff_media_type(&bytes)
            .filter(|m| m.is_index() || m.is_manifest())
            .or_else(|| {
                header_type
                    .map(|t| MediaType::parse(t.split(';').next().unwrap_or_default().trim()))
            })
            .ok_or_else(|| {
                RegistryError::new(reference.registry(), &operation)
                    .with_detail("the response is not a manifest")
            })?;
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Starts a blob download; the caller streams and verifies the body.
    pub async fn get_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<Response, RegistryError> {
        let operation = format!("pull blob {digest} from {}", reference.repository());
        let url = format!("{}/blobs/{digest}", self.repository_url(reference));
        let response = self
            .send(
                reference,
                &[scope(reference, Access::Pull)],
                &operation,
                || self.http(reference.registry()).get(&url),
            )
            .await?;
        expect_status(
            response,
            &[StatusCode::OK],
            reference.registry(),
            &operation,
        )
        .await
    }

    /// Reports whether the repository already has the blob.
    pub async fn blob_exists(
        &self,
        reference: &Reference,
        digest: &Digest,
        access: Access,
    ) -> Result<bool, RegistryError> {
        let operation = format!("check blob {digest} in {}", reference.repository());
        let url = format!("{}/blobs/{digest}", self.repository_url(reference));
        let response = self
            .send(reference, &[scope(reference, access)], &operation, || {
                self.http(reference.registry()).head(&url)
            })
            .await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(response, reference.registry(), &operation).await),
        }
    }

    /// Asks the registry to link a blob from another repository of the same registry.
    /// Returns `false` when the registry declined and a normal upload is needed.
    pub async fn mount_blob(
        &self,
        target: &Reference,
        digest: &Digest,
        from: &str,
    ) -> Result<bool, RegistryError> {
        let operation = format!("mount blob {digest} into {}", target.repository());
        let mut url = Url::parse(&format!("{}/blobs/uploads/", self.repository_url(target)))
            .map_err(|e| {
                RegistryError::new(target.registry(), &operation).with_detail(e.to_string())
            })?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        // A mount needs pull access to the source repository too, in the same token.
        let scopes = [
            scope(target, Access::Push),
            format!("repository:{from}:pull"),
        ];
        let result = self
            .send(target, &scopes, &operation, || {
                self.http(target.registry())
                    .post(url.clone())
                    .header(CONTENT_LENGTH, 0)
            })
            .await;
        let response = match result {
            Ok(response) => response,
            // Without access to the source, an ordinary upload still works.
            Err(error) if matches!(error.status, Some(401 | 403)) => {
                debug!(%digest, "mount rejected; uploading instead");
                return Ok(false);
            }
            Err(error) => return Err(error),
        };
        match response.status() {
            StatusCode::CREATED => Ok(true),
            // 202 opens an ordinary upload session instead; it expires unused on the registry.
            StatusCode::ACCEPTED => Ok(false),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Ok(false),
            _ => Err(status_error(response, target.registry(), &operation).await),
        }
    }

    /// Uploads a blob in one request (POST, then a PUT with the whole body), the mode ECR
    /// requires: it rejects chunks under 5 MiB and mishandles several PATCH requests.
    ///
    /// `body` is called for each attempt and must produce the blob's bytes from the start.
    pub async fn upload_blob(
        &self,
        target: &Reference,
        digest: &Digest,
        size: u64,
        body: impl Fn() -> reqwest::Body,
    ) -> Result<(), RegistryError> {
        let operation = format!("push blob {digest} to {}", target.repository());
        if size == 0 {
            return Err(RegistryError::new(target.registry(), &operation)
                .with_detail("refusing to upload an empty blob, which ECR rejects"));
        }
        let start_url = format!("{}/blobs/uploads/", self.repository_url(target));
        let response = self
            .send(target, &[scope(target, Access::Push)], &operation, || {
                self.http(target.registry())
                    .post(&start_url)
                    .header(CONTENT_LENGTH, 0)
            })
            .await?;
        // The spec requires 202, but ECR has been seen to return 201.
        let response = expect_status(
            response,
            &[StatusCode::ACCEPTED, StatusCode::CREATED],
            target.registry(),
            &operation,
        )
        .await?;
        let location = upload_location(&response, &start_url).map_err(|detail| {
            RegistryError::new(target.registry(), &operation).with_detail(detail)
        })?;

        let mut put_url = location;
        put_url
            .query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let response = self
            .send_with(
                target,
                &[scope(target, Access::Push)],
                &operation,
                // A failed commit is never sent again to the same session, which the registry
                // may have closed or already used; the caller checks for the blob and starts over.
                1,
                || {
                    self.http(target.registry())
                        .put(put_url.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, size)
                        .body(body())
                },
            )
            .await?;
        expect_status(
            response,
            &[
                StatusCode::CREATED,
                StatusCode::ACCEPTED,
                StatusCode::NO_CONTENT,
            ],
            target.registry(),
            &operation,
        )
        .await?;
        Ok(())
    }

    /// Uploads a manifest under `reference`'s tag (or digest) and returns the digest the
    /// registry reports, which must equal the digest of `bytes`.
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        bytes: &[u8],
        media_type: &MediaType,
    ) -> Result<Digest, RegistryError> {
        let operation = format!("push manifest {reference}");
        let digest = Digest::of(bytes);
        let url = self.manifest_url(reference);
        let response = self
            .send(
                reference,
                &[scope(reference, Access::Push)],
                &operation,
                || {
                    self.http(reference.registry())
                        .put(&url)
                        .header(CONTENT_TYPE, media_type.as_str())
                        .body(bytes.to_vec())
                },
            )
            .await?;
        let response = expect_status(
            response,
            &[StatusCode::CREATED, StatusCode::OK],
            reference.registry(),
            &operation,
        )
        .await?;
        if let Some(reported) = header_string(response.headers(), "docker-content-digest") {
            if reported != digest.to_string() {
                return Err(
                    RegistryError::new(reference.registry(), operation).with_detail(format!(
                        "the registry stored digest {reported}, expected {digest}"
                    )),
                );
            }
        }
        Ok(digest)
    }

    /// Sends a request and meets one authentication challenge if the registry sends one.
    /// `scopes` are the token scopes the request needs, such as `repository:app:pull,push`.
    async fn send(
        &self,
        reference: &Reference,
        scopes: &[String],
        operation: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        self.send_with(reference, scopes, operation, self.max_attempts, make)
            .await
    }

    /// Like `send`, but sends the request at most `attempts` times on failures that a retry
    /// may cure.
    async fn send_with(
        &self,
        reference: &Reference,
        scopes: &[String],
        operation: &str,
        attempts: u32,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let registry = reference.registry();
        let key = (registry.to_string(), scopes.join(" "));
        let cached = lock(&self.authorizations).get(&key).cloned();

        let response = self
            .execute(&make, cached.as_deref(), registry, operation, attempts)
            .await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let Some(challenge) =
            header_string(response.headers(), WWW_AUTHENTICATE.as_str()).and_then(parse_challenge)
        else {
            return Err(status_error(response, registry, operation).await);
        };

        // Parallel requests that meet the same challenge wait here, so one token is fetched
        // per scope and the others reuse it.
        let authorization = {
            let _guard = self.authorizing.lock().await;
            let current = lock(&self.authorizations).get(&key).cloned();
            match current.filter(|value| Some(value) != cached.as_ref()) {
                Some(value) => value,
                None => {
                    let value = self
                        .authorize(registry, scopes, &challenge, operation)
                        .await?;
                    debug!(registry, scopes = %key.1, "authenticated");
                    lock(&self.authorizations).insert(key, value.clone());
                    value
                }
            }
        };

        let response = self
            .execute(&make, Some(&authorization), registry, operation, attempts)
            .await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(status_error(response, registry, operation).await);
        }
        Ok(response)
    }

    /// Sends the request that `make` builds, retrying transport failures, 429 and 5xx
    /// responses with exponential backoff and jitter, and honouring `Retry-After`.
    async fn execute(
        &self,
        make: &impl Fn() -> RequestBuilder,
        authorization: Option<&str>,
        registry: &str,
        operation: &str,
        attempts: u32,
    ) -> Result<Response, RegistryError> {
        let mut attempt = 1;
        loop {
            let mut request = make();
            if let Some(value) = authorization {
                request = request.header(AUTHORIZATION, value);
            }
            let outcome = request.send().await;
            // A registry that has not responded yet is more likely a wrong address or port than
            // a registry restarting, so a failed connection to it is retried once, not for the
            // whole backoff of about half a minute.
            let attempts = match &outcome {
                Ok(_) => {
                    let mut reached = lock(&self.reached);
                    if !reached.contains(registry) {
                        reached.insert(registry.to_string());
                    }
                    attempts
                }
                Err(error) if error.is_connect() && !lock(&self.reached).contains(registry) => {
                    attempts.min(FIRST_CONTACT_ATTEMPTS)
                }
                Err(_) => attempts,
            };
            let retry_after = match &outcome {
                Ok(response) if is_retryable_status(response.status()) => {
                    Some(retry_after(response.headers()))
                }
                Ok(_) => None,
                Err(error) if is_retryable_error(error) => Some(None),
                Err(_) => None,
            };
            let Some(retry_after) = retry_after.filter(|_| attempt < attempts) else {
                return outcome.map_err(|e| {
                    let error = RegistryError::new(registry, operation);
                    // Content that failed its digest check is no network trouble: retrying
                    // would fetch the same wrong bytes.
                    if is_invalid_data(&e) {
                        error.with_detail(error_chain(&e))
                    } else {
                        error.with_transport_error(error_chain(&e))
                    }
                });
            };
            let delay = retry_after.unwrap_or_else(|| backoff(attempt));
            let reason = match &outcome {
                Ok(response) => format!("HTTP {}", response.status().as_u16()),
                Err(error) => error_chain(error),
            };
            warn!(registry, operation, attempt, reason = %reason, delay_ms = delay.as_millis() as u64, "retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Returns the `Authorization` value that answers `challenge`.
    async fn authorize(
        &self,
        registry: &str,
        scopes: &[String],
        challenge: &Challenge,
        operation: &str,
    ) -> Result<String, RegistryError> {
        let credentials = self.credentials_for(registry);
        let (realm, service) = match challenge {
            Challenge::Basic => {
                return credentials.map(|c| c.basic_header()).ok_or_else(|| {
                    RegistryError::new(registry, operation)
                        .with_status(401)
                        .with_detail("the registry requires a username and password")
                })
            }
            Challenge::Bearer { realm, service, .. } => (realm, service),
        };
        let mut url = Url::parse(realm).map_err(|_| {
            RegistryError::new(registry, operation)
                .with_detail(format!("the token realm `{realm}` is not a valid URL"))
        })?;
        if let Some(service) = service {
            url.query_pairs_mut().append_pair("service", service);
        }
        for scope in scopes {
            url.query_pairs_mut().append_pair("scope", scope);
        }

        let token_operation = format!("get a token for {}", scopes.join(" "));
        let transport_error = |e: reqwest::Error| {
            RegistryError::new(registry, &token_operation).with_transport_error(error_chain(&e))
        };
        let send = |credentials: Option<&Credentials>| {
            let mut request = self.http(registry).get(url.clone());
            if let Some(credentials) = credentials {
                request = request.header(AUTHORIZATION, credentials.basic_header());
            }
            request.send()
        };
        let mut response = send(credentials.as_ref()).await.map_err(transport_error)?;
        let rejected = matches!(
            response.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        );
        let pull_only = scopes.iter().all(|scope| scope.ends_with(":pull"));
        if rejected && credentials.is_some() && pull_only {
            // Stale stored credentials for a public registry (public.ecr.aws, Docker Hub) must not
            // block a pull that anonymous access allows.
            warn!(
                registry,
                "stored credentials were rejected; pulling anonymously"
            );
            response = send(None).await.map_err(transport_error)?;
        }
        let response =
            expect_status(response, &[StatusCode::OK], registry, &token_operation).await?;
        let body = read_limited(response, MAX_SMALL_BODY, registry, &token_operation).await?;

        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            RegistryError::new(registry, &token_operation)
                .with_detail("the token response is not JSON")
        })?;
        parsed
            .token
            .or(parsed.access_token)
            .filter(|token| !token.is_empty())
            .map(|token| format!("Bearer {token}"))
            .ok_or_else(|| {
                RegistryError::new(registry, token_operation)
                    .with_detail("the token response has no token")
            })
    }
}

/// Returns the token scope for `access` to `reference`'s repository.
fn scope(reference: &Reference, access: Access) -> String {
    format!(
        "repository:{}:{}",
        reference.repository(),
        access.scope_actions()
    )
}

/// Follows at most 10 redirects, and none from a public host to a loopback, private or
/// link-local address (the cloud metadata service lives at 169.254.169.254): a registry, or
/// whoever answers for it, must not steer requests with credentials-bearing context inside
/// the network. Redirects between private hosts (a registry on a LAN) stay allowed.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= 10 {
            return attempt.error("too many redirects");
        }
        let internal = |url: &Url| match url.host() {
            Some(url::Host::Ipv4(address)) => {
                address.is_private()
                    || address.is_loopback()
                    || address.is_link_local()
                    || address.is_unspecified()
            }
            Some(url::Host::Ipv6(address)) => {
                address.is_loopback()
                    || address.is_unspecified()
                    || (address.segments()[0] & 0xfe00) == 0xfc00
                    || (address.segments()[0] & 0xffc0) == 0xfe80
            }
            Some(url::Host::Domain(name)) => name == "localhost",
            None => false,
        };
        let from_internal = attempt.previous().first().is_some_and(internal);
        if internal(attempt.url()) && !from_internal {
            let target = attempt.url().host_str().unwrap_or_default().to_string();
            return attempt.error(format!(
                "refusing a redirect to the internal address {target}"
            ));
        }
        attempt.follow()
    })
}

fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

fn is_retryable_error(error: &reqwest::Error) -> bool {
    let transient =
        error.is_connect() || error.is_timeout() || error.is_request() || error.is_body();
    transient && !is_invalid_data(error)
}

/// Reports whether the failure is a body stream's digest or size check (`InvalidData`).
fn is_invalid_data(error: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::InvalidData)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Reads `Retry-After` in seconds, capped at a minute; an HTTP date is ignored in favour of the
/// backoff.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = header_string(headers, "retry-after")?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds.min(60)))
}

/// Returns 0.5 s, 1 s, 2 s, … (at most 8 s) for attempts 1, 2, 3, …, plus up to 50 % jitter so
/// that parallel uploads do not retry in step.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500) * 2u32.pow(attempt.saturating_sub(1).min(4));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    base.min(Duration::from_secs(8)) + base.min(Duration::from_secs(8)) * (nanos % 500) / 1000
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these maps cannot leave them half-updated, so poisoning is ignored.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads the `Docker-Content-Digest` header, `None` when it is missing or not a sha256 digest.
fn content_digest(headers: &HeaderMap) -> Option<Digest> {
    header_string(headers, "docker-content-digest").and_then(|value| value.parse().ok())
}

fn header_string<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Resolves an upload `Location` against the request URL, refusing other hosts: a registry
/// that sends uploads elsewhere could leak the `Authorization` header.
fn upload_location(response: &Response, request_url: &str) -> Result<Url, String> {
    let location = header_string(response.headers(), LOCATION.as_str())
        .ok_or("the registry sent no upload Location header")?;
    let base = Url::parse(request_url).map_err(|e| e.to_string())?;
    let url = base
        .join(location)
        .map_err(|_| format!("the upload Location `{location}` is not a valid URL"))?;
    if url.scheme() != base.scheme()
        || url.host_str() != base.host_str()
        || url.port_or_known_default() != base.port_or_known_default()
    {
        return Err(format!(
            "the upload Location points at {}, not at the registry; refusing to send data there",
            url.origin().ascii_serialization()
        ));
    }
    Ok(url)
}

async fn expect_status(
    response: Response,
    expected: &[StatusCode],
    registry: &str,
    operation: &str,
) -> Result<Response, RegistryError> {
    if expected.contains(&response.status()) {
        Ok(response)
    } else {
        Err(status_error(response, registry, operation).await)
    }
}

async fn status_error(response: Response, registry: &str, operation: &str) -> RegistryError {
    let status = response.status().as_u16();
    let body = read_limited(response, 64 * 1024, registry, operation)
        .await
        .unwrap_or_default();
    RegistryError::new(registry, operation)
        .with_status(status)
        .with_body(&body)
}

/// Reads a response body of at most `limit` bytes.
async fn read_limited(
    mut response: Response,
    limit: usize,
    registry: &str,
    operation: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || {
        RegistryError::new(registry, operation)
            .with_detail(format!("the response is larger than {limit} bytes"))
    };
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        RegistryError::new(registry, operation).with_transport_error(error_chain(&e))
    })? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Renders an error and its causes on one line, without the request URL, which may carry
/// upload session state.
pub(crate) fn error_chain(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
