//! Configuration, read once per container from the environment
//! (`infra/local.env` locally, the template's `Environment` in the cloud).

use std::collections::HashMap;

use crate::domain::Location;
use crate::signature::WebhookSecrets;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is invalid: {message}")]
    Invalid { name: &'static str, message: String },
    #[error("could not read the webhook secret {arn}: {message}")]
    Secret { arn: String, message: String },
}

/// A setting from the environment; unset or blank is `None`.
pub fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn required(name: &'static str) -> Result<String, ConfigError> {
    var(name).ok_or(ConfigError::Missing(name))
}

fn location(name: &'static str, raw: &str) -> Result<Location, ConfigError> {
    Location::parse(raw).map_err(|e| ConfigError::Invalid {
        name,
        message: e.to_string(),
    })
}

/// Reads `key=value,key=value` maps from configuration.
pub(crate) fn parse_pairs(raw: &str) -> Result<HashMap<String, String>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .ok_or_else(|| format!("expected key=value, got {p:?}"))
        })
        .collect()
}

/// Where an order takes stock from: the order's own location (Shopify
/// `location_id` mapped here), else the channel's, else the default.
#[derive(Debug, Clone)]
pub struct LocationRules {
    default: Location,
    channels: HashMap<String, Location>,
    shopify: HashMap<String, Location>,
}

impl LocationRules {
    /// `channels`: `pos=shop-1,web=warehouse`; `shopify`: `<location_id>=<location>,...`.
    pub fn new(default: Location, channels: &str, shopify: &str) -> Result<Self, ConfigError> {
        let map = |name: &'static str, raw: &str| -> Result<HashMap<String, Location>, ConfigError> {
            parse_pairs(raw)
                .map_err(|message| ConfigError::Invalid { name, message })?
                .into_iter()
                .map(|(k, v)| Ok((k, location(name, &v)?)))
                .collect()
        };
        Ok(Self {
            default,
            channels: map("CHANNEL_LOCATIONS", channels)?,
            shopify: map("SHOPIFY_LOCATIONS", shopify)?,
        })
    }

    pub fn default_location(&self) -> &Location {
        &self.default
    }

    /// Maps a Shopify `location_id` to a location, if configured.
    pub fn shopify_location(&self, location_id: &str) -> Option<Location> {
        let found = self.shopify.get(location_id).cloned();
        if found.is_none() {
            tracing::warn!(
                location_id,
                "unmapped Shopify location_id; using the channel's location"
            );
        }
        found
    }

    pub fn resolve(&self, explicit: Option<Location>, channel: &str) -> Location {
        explicit
            .or_else(|| self.channels.get(channel).cloned())
            .unwrap_or_else(|| self.default.clone())
    }
}

/// Everything the functions read from their environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `STOCK_TABLE`: the one table holding levels, ledger and receipts.
    pub table: String,
    /// `DEFAULT_LOCATION`, `CHANNEL_LOCATIONS`, `SHOPIFY_LOCATIONS`.
    pub locations: LocationRules,
    /// `ALERT_QUEUE_URL`: where oversell alerts go (unset: logged only).
    pub alert_queue_url: Option<String>,
    /// `RECEIPT_TTL_DAYS`: how long idempotency receipts are kept (default 35).
    pub receipt_ttl_days: u32,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let default = location("DEFAULT_LOCATION", &required("DEFAULT_LOCATION")?)?;
        let receipt_ttl_days = match var("RECEIPT_TTL_DAYS") {
            None => 35,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|d| *d >= 30)
                .ok_or_else(|| ConfigError::Invalid {
                    name: "RECEIPT_TTL_DAYS",
                    message: "must be a whole number of days, at least 30".into(),
                })?,
        };
        Ok(Self {
            table: required("STOCK_TABLE")?,
            locations: LocationRules::new(
                default,
                &var("CHANNEL_LOCATIONS").unwrap_or_default(),
                &var("SHOPIFY_LOCATIONS").unwrap_or_default(),
            )?,
            alert_queue_url: var("ALERT_QUEUE_URL"),
            receipt_ttl_days,
        })
    }
}

/// The HTTPS client every AWS client uses: rustls with ring, the system's
/// trusted roots. Built once per container with the configuration.
pub fn http_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Loads the AWS configuration once; `AWS_ENDPOINT_URL` points it at a local emulator.
pub async fn aws() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client())
        .load()
        .await
}

/// A secret's text and the setting it came from: from Secrets Manager when
/// `arn_var` is set (the cloud), else the value of `value_var` (local).
pub async fn secret_text(
    sdk: &aws_config::SdkConfig,
    arn_var: &'static str,
    value_var: &'static str,
) -> Result<(String, &'static str), ConfigError> {
    let Some(arn) = var(arn_var) else {
        return Ok((required(value_var)?, value_var));
    };
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let out = client
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .map_err(|e| ConfigError::Secret {
            arn: arn.clone(),
            message: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
        })?;
    let raw = out.secret_string().ok_or_else(|| ConfigError::Secret {
        arn: arn.clone(),
        message: "the secret has no string value".into(),
    })?;
    Ok((raw.to_owned(), arn_var))
}

/// Loads the webhook secrets once per container: from Secrets Manager when
/// `WEBHOOK_SECRET_ARN` is set (the cloud), else from `WEBHOOK_SECRET` (local).
pub async fn webhook_secrets(sdk: &aws_config::SdkConfig) -> Result<WebhookSecrets, ConfigError> {
    let (raw, name) = secret_text(sdk, "WEBHOOK_SECRET_ARN", "WEBHOOK_SECRET").await?;
    WebhookSecrets::parse(&raw).map_err(|e| ConfigError::Invalid {
        name,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_parse_and_reject_garbage() {
        let m = parse_pairs(" a=1, b = 2 ,").unwrap();
        assert_eq!(m.get("b").map(String::as_str), Some("2"));
        assert!(parse_pairs("a").is_err());
        assert!(parse_pairs("").unwrap().is_empty());
    }

    #[test]
    fn location_rules_reject_bad_config() {
        let d = Location::parse("warehouse").unwrap();
        assert!(LocationRules::new(d.clone(), "pos=Shop One", "").is_err());
        assert!(LocationRules::new(d.clone(), "pos", "").is_err());
        let r = LocationRules::new(d, "pos=shop-1", "42=shop-1").unwrap();
        assert_eq!(r.resolve(None, "pos").as_str(), "shop-1");
        assert_eq!(r.resolve(None, "web").as_str(), "warehouse");
        assert_eq!(r.shopify_location("42").unwrap().as_str(), "shop-1");
        assert!(r.shopify_location("43").is_none());
    }
}
