//! Registry errors: the request, the registry, its response, and what to do next.

use std::fmt;

/// One entry of the registry's `{"errors": [...]}` body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ErrorCode {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// A failed registry request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    /// The registry host and port.
    pub registry: String,
    /// The operation that failed, such as `push blob sha256:… to my-app`.
    pub operation: String,
    /// The HTTP status, absent when no response arrived.
    pub status: Option<u16>,
    /// The registry's error codes, from the response body.
    pub codes: Vec<ErrorCode>,
    /// The transport or protocol failure, when there is no usable error code.
    pub detail: Option<String>,
    /// Whether no response arrived (refused, reset, timed out), as opposed to a response this
    /// client rejected.
    pub transport: bool,
}

impl RegistryError {
    pub fn new(registry: &str, operation: impl Into<String>) -> RegistryError {
        RegistryError {
            registry: registry.to_string(),
            operation: operation.into(),
            status: None,
            codes: Vec::new(),
            detail: None,
            transport: false,
        }
    }

    /// Records a failure to get any response, which is worth retrying and points at the network.
    pub fn with_transport_error(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self.transport = true;
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Fills in the error codes from a response body, which may be JSON, plain text or empty.
    pub fn with_body(mut self, body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Body {
            errors: Vec<ErrorCode>,
        }
        match serde_json::from_slice::<Body>(body) {
            Ok(parsed) => self.codes = parsed.errors,
            Err(_) => {
                // ECR answers some failures with plain text such as "Not Authorized".
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
                let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                if !text.is_empty() {
                    self.detail = Some(text);
                }
            }
        }
        self
    }

    /// Reports whether the registry named `code` among its errors.
    pub fn has_code(&self, code: &str) -> bool {
        self.codes.iter().any(|c| c.code == code)
    }

    /// Reports whether trying the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self.status {
            None => self.transport,
            Some(status) => status == 429 || status >= 500 || self.has_code("TOOMANYREQUESTS"),
        }
    }

    fn advice(&self) -> Option<String> {
        let registry = &self.registry;
        let rejected = matches!(self.status, Some(401 | 403))
            || self.has_code("UNAUTHORIZED")
            || self.has_code("DENIED");
        if rejected && crate::ecr::EcrRegistry::parse(registry).is_some() {
            return Some(
                "ECR rejected the login; check that the AWS credentials in use may pull and push this \
                 repository (ecr:GetAuthorizationToken and the push permissions)"
                    .to_string(),
            );
        }
        if self.has_code("NAME_UNKNOWN") {
            return Some("check the repository name, or create the repository first".to_string());
        }
        if self.has_code("MANIFEST_UNKNOWN") {
            return Some(
                "check the reference: the registry has no image under this tag or digest"
                    .to_string(),
            );
        }
        if self.has_code("MANIFEST_INVALID") || self.has_code("MANIFEST_BLOB_UNKNOWN") {
            return Some("the registry rejected the manifest; run again with -v and report it if it persists".to_string());
        }
        if self.has_code("DENIED") || self.status == Some(403) {
            return Some(format!(
                "the credentials for {registry} lack permission for this; check the account's access to the repository"
            ));
        }
        if self.has_code("UNAUTHORIZED") || self.status == Some(401) {
            return Some(format!(
                "log in with `docker login {registry}` or add credentials for {registry} to ~/.docker/config.json"
            ));
        }
        if self.status == Some(429) || self.has_code("TOOMANYREQUESTS") {
            return Some("the registry is throttling requests; wait and run again".to_string());
        }
        if self.transport {
            return Some(format!(
                "check that {registry} is reachable from this machine"
            ));
        }
        None
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "registry {}: {} failed", self.registry, self.operation)?;
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        for code in &self.codes {
            write!(f, ": {}", code.code)?;
            if !code.message.is_empty() {
                write!(f, " {}", code.message.replace('\n', " "))?;
            }
        }
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        if let Some(advice) = self.advice() {
            write!(f, "; {advice}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RegistryError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_body_codes_are_shown() {
        let error = RegistryError::new("localhost:5000", "push manifest to app")
            .with_status(404)
            .with_body(br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#);
        assert_eq!(
            error.to_string(),
            "registry localhost:5000: push manifest to app failed (HTTP 404): NAME_UNKNOWN repository name not known to registry; check the repository name, or create the repository first"
        );
        assert!(!error.is_retryable());
    }

    #[test]
    fn unknown_manifest_says_what_to_check() {
        let error = RegistryError::new("localhost:5000", "pull manifest app:nothere")
            .with_status(404)
            .with_body(br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#);
        assert_eq!(
            error.to_string(),
            "registry localhost:5000: pull manifest app:nothere failed (HTTP 404): MANIFEST_UNKNOWN manifest unknown; check the reference: the registry has no image under this tag or digest"
        );
    }

    #[test]
    fn plain_text_body_is_kept_as_detail() {
        let error = RegistryError::new("r.example", "pull manifest")
            .with_status(401)
            .with_body(b"Not Authorized\n");
        assert!(error.to_string().contains(": Not Authorized;"), "{error}");
        assert!(
            error.to_string().contains("docker login r.example"),
            "{error}"
        );
    }

    #[test]
    fn throttling_and_server_errors_are_retryable() {
        assert!(RegistryError::new("r", "x").with_status(429).is_retryable());
        assert!(RegistryError::new("r", "x").with_status(503).is_retryable());
        assert!(RegistryError::new("r", "x")
            .with_transport_error("reset")
            .is_retryable());
        assert!(!RegistryError::new("r", "x")
            .with_detail("not JSON")
            .is_retryable());
        assert!(!RegistryError::new("r", "x").with_status(400).is_retryable());
    }
}
