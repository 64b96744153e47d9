//! The origin secret: read from Secrets Manager once at cold start, sent to the origin with every
//! fetch, never logged.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_secretsmanager::config::Region;
use http::{HeaderName, HeaderValue};
use shared::origin_secret;

use crate::config::{Config, OriginSecretSource};
use crate::error::BackfillError;

/// How long the read may take, retries included: well inside Lambda's 10 s init, so that a
/// Secrets Manager that does not answer fails the init with its reason rather than a timeout.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The cold start's step: reads the secret the configuration names, if any, and adds it to the
/// headers sent to the origin, as `ORIGIN_HEADERS`' are.
pub async fn add_origin_secret(config: &mut Config, sdk: &SdkConfig) -> Result<(), BackfillError> {
    if let Some(source) = &config.origin_secret {
        let secret = SecretStore::for_secret(sdk, source)
            .origin_secret(source)
            .await?;
        config.origin_headers.push(secret.into_header());
    }
    Ok(())
}

/// The secret header, ready to send. Its value never shows in `Debug` (nor in the header's own
/// `Debug`: it is marked sensitive).
pub struct OriginSecret {
    header: HeaderName,
    value: HeaderValue,
}

impl OriginSecret {
    /// The secret under `header`, if `value` is one (the problem otherwise, which never quotes
    /// the value).
    pub fn new(header: HeaderName, value: &str) -> Result<Self, String> {
        if let Some(problem) = origin_secret::value_problem(value) {
            return Err(format!(
                "the secret's value {problem}; expected {}",
                origin_secret::VALUE_FORM
            ));
        }
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| "the secret's value is not a header value".to_owned())?;
        value.set_sensitive(true);
        Ok(OriginSecret { header, value })
    }

    /// The header and its value, to send with every origin request.
    pub fn into_header(self) -> (HeaderName, HeaderValue) {
        (self.header, self.value)
    }
}

impl std::fmt::Debug for OriginSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginSecret")
            .field("header", &self.header)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// Reads origin secrets from Secrets Manager.
pub struct SecretStore {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretStore {
    /// A client for the secret's own region (it may not be the function's).
    pub fn for_secret(sdk: &SdkConfig, source: &OriginSecretSource) -> Self {
        let config = aws_sdk_secretsmanager::config::Builder::from(sdk)
            .region(Region::new(source.arn.region().to_owned()))
            .build();
        SecretStore {
            client: aws_sdk_secretsmanager::Client::from_conf(config),
        }
    }

    /// The secret's value (the version `source` names, else the current one) under its header.
    /// Fails with the ARN and the reason: Secrets Manager's error, a binary or missing string, or
    /// a value that is not a safe header value.
    pub async fn origin_secret(
        &self,
        source: &OriginSecretSource,
    ) -> Result<OriginSecret, BackfillError> {
        let failed = |reason: String| BackfillError::OriginSecret {
            arn: source.arn.to_string(),
            reason,
        };
        // The client's own timeouts (connect, ...) with an operation timeout on top.
        let timeouts =
            shared::aws::timeouts_within(self.client.config().timeout_config(), READ_TIMEOUT);
        let answer = self
            .client
            .get_secret_value()
            .secret_id(source.arn.as_str())
            .set_version_id(source.version.clone())
            .customize()
            .config_override(
                aws_sdk_secretsmanager::config::Builder::default().timeout_config(timeouts),
            )
            .send()
            .await
            .map_err(|err| failed(shared::error::sdk_error_message(&err)))?;
        let value = match (answer.secret_string(), answer.secret_binary()) {
            (Some(text), _) => text,
            (None, Some(_)) => {
                return Err(failed(
                    "the secret holds binary data (SecretBinary), not a SecretString".to_owned(),
                ))
            }
            (None, None) => return Err(failed("the secret has no SecretString".to_owned())),
        };
        OriginSecret::new(source.header.clone(), value).map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_never_shows() {
        let value = "Zr4qPn8VtK2mXw9Lb6Jc3Hs7Df5Ga1Ye";
        let secret = OriginSecret::new(HeaderName::from_static("x-origin-verify"), value).unwrap();
        assert!(!format!("{secret:?}").contains(value));
        let (name, header) = secret.into_header();
        assert_eq!(name, "x-origin-verify");
        assert_eq!(header, value);
        assert!(!format!("{header:?}").contains(value));
    }

    #[test]
    fn values_that_are_no_safe_header_are_refused_without_being_quoted() {
        let header = HeaderName::from_static("x-origin-verify");
        for bad in [
            "too-short-value",
            "a-long-enough-secret\nx",
            "a long enough secret",
        ] {
            let problem = OriginSecret::new(header.clone(), bad).unwrap_err();
            assert!(problem.contains("16 to 256 characters"), "{problem}");
            assert!(!problem.contains(bad), "{problem}");
        }
    }
}
