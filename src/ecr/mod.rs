//! Amazon ECR: recognising its registries, logging in with AWS credentials, and the API calls
//! that check a repository before a push.

mod api;
mod session;
mod token_cache;

pub use api::{EcrClient, EcrError, EcrOptions, RepositoryInfo, RepositorySettings};
pub use session::{is_auth_rejection, EcrSession, TagState};
pub use token_cache::TokenCache;

/// A private ECR registry, as named by its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrRegistry {
    /// The 12-digit AWS account id, which is also the registry id.
    pub account: String,
    pub region: String,
}

/// The DNS suffixes of ECR registries in every AWS partition, as amazon-ecr-credential-helper
/// accepts them: `dkr.ecr` hosts end in the first group, dual-stack `dkr-ecr` hosts in the second.
const DKR_ECR_SUFFIXES: &[&str] = &[
    "amazonaws.com",
    "amazonaws.com.cn",
    "sc2s.sgov.gov",
    "c2s.ic.gov",
    "cloud.adc-e.uk",
    "csp.hci.ic.gov",
];
const DUAL_STACK_SUFFIXES: &[&str] = &["on.aws", "on.amazonwebservices.com.cn"];

impl EcrRegistry {
    /// Parses `<account>.dkr.ecr[-fips].<region>.<suffix>` or the dual-stack
    /// `<account>.dkr-ecr[-fips].<region>.<suffix>`; a `:port` is allowed and ignored.
    pub fn parse(registry: &str) -> Option<EcrRegistry> {
        let host = crate::reference::split_host_port(registry)
            .0
            .to_ascii_lowercase();
        let (account, rest) = host.split_once('.')?;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (service, rest) = rest.split_once('.')?;
        let suffixes = match service {
            "dkr" => {
                let rest = rest.strip_prefix("ecr")?;
                return parse_region(
                    rest.strip_prefix("-fips").unwrap_or(rest),
                    DKR_ECR_SUFFIXES,
                    account,
                );
            }
            "dkr-ecr" | "dkr-ecr-fips" => DUAL_STACK_SUFFIXES,
            _ => return None,
        };
        parse_region(&format!(".{rest}"), suffixes, account)
    }
}

/// Parses `.<region>.<suffix>` with one of `suffixes`.
fn parse_region(rest: &str, suffixes: &[&str], account: &str) -> Option<EcrRegistry> {
    let rest = rest.strip_prefix('.')?;
    let (region, suffix) = rest.split_once('.')?;
    let valid_region = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (valid_region && suffixes.contains(&suffix)).then(|| EcrRegistry {
        account: account.to_string(),
        region: region.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(host: &str) -> Option<(String, String)> {
        EcrRegistry::parse(host).map(|r| (r.account, r.region))
    }

    #[test]
    fn parse_ecr_hosts_in_every_partition() {
        let expected = Some(("123456789012".to_string(), "us-east-1".to_string()));
        assert_eq!(
            parsed("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            expected
        );
        assert_eq!(
            parsed("123456789012.dkr.ecr.us-east-1.amazonaws.com:443"),
            expected
        );
        assert_eq!(
            parsed("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com"),
            expected
        );
        assert_eq!(parsed("123456789012.dkr-ecr.us-east-1.on.aws"), expected);
        assert_eq!(
            parsed("123456789012.dkr-ecr-fips.us-east-1.on.aws"),
            expected
        );
        assert_eq!(
            parsed("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
            Some(("123456789012".to_string(), "cn-north-1".to_string()))
        );
        assert_eq!(
            parsed("123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov"),
            Some(("123456789012".to_string(), "us-iso-east-1".to_string()))
        );
    }

    #[test]
    fn parse_rejects_other_hosts() {
        for host in [
            "public.ecr.aws",
            "localhost:5000",
            "12345678901.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
            "123456789012.dkr.ecr..amazonaws.com",
            "123456789012.dkr.ecrx.us-east-1.amazonaws.com",
            "abcdefghijkl.dkr.ecr.us-east-1.amazonaws.com",
        ] {
            assert_eq!(parsed(host), None, "{host}");
        }
    }
}
