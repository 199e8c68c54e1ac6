//! Sends [`ApiRequest`]s: plain HTTP to the local stack, SigV4-signed to a
//! function URL (credentials from the AWS default chain, read per request so
//! a long wait outlives a session token's refresh).

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::api::{ApiRequest, Target};
use crate::error::{chain, check_status, CliError};
use crate::sign::sign_request;

/// How long one exchange may take (a run is waited for by polling, not here).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The stock API at one target.
pub struct Api {
    target: Target,
    credentials: Option<SharedCredentialsProvider>,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Api {
    /// A client for `target`; a signing target needs `credentials`.
    pub fn new(target: Target, credentials: Option<SharedCredentialsProvider>) -> Result<Self, CliError> {
        if target.sign_region.is_some() && credentials.is_none() {
            return Err(CliError::Unreachable(
                "no AWS credentials found (the default chain: environment, profile, SSO, instance role)"
                    .into(),
            ));
        }
        // The connector `stockroom::shopify` builds: rustls with ring and the
        // system's roots, HTTP/1.1, plain HTTP allowed (the local stack).
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .map_err(|e| CliError::Unreachable(format!("no TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            target,
            credentials,
            http: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// Where this client sends.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Sends one request; the body of a 2xx answer, else the error it maps to.
    pub async fn call(&self, req: &ApiRequest) -> Result<Value, CliError> {
        let (status, body) = self.send(req).await?;
        check_status(status, body)
    }

    /// Sends one request: its status and body (JSON, or the text as a string).
    pub async fn send(&self, req: &ApiRequest) -> Result<(u16, Value), CliError> {
        let mut http_req = req.to_http(&self.target)?;
        if let (Some(region), Some(provider)) = (&self.target.sign_region, &self.credentials) {
            let creds = provider
                .provide_credentials()
                .await
                .map_err(|e| CliError::Unreachable(format!("AWS credentials: {e}")))?;
            sign_request(&mut http_req, &creds, region, SystemTime::now())
                .map_err(|e| CliError::Usage(e.to_string()))?;
        }
        let url = http_req.uri().to_string();
        let (parts, body) = http_req.into_parts();
        let exchange = async {
            let res = self
                .http
                .request(http::Request::from_parts(parts, Full::new(body)))
                .await
                .map_err(|e| CliError::Unreachable(format!("{url}: {}", chain(&e))))?;
            let status = res.status().as_u16();
            let bytes = res
                .into_body()
                .collect()
                .await
                .map_err(|e| CliError::Unreachable(format!("{url}: {e}")))?
                .to_bytes();
            Ok::<_, CliError>((status, parse_body(&bytes)))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| CliError::Unreachable(format!("{url}: no answer in {REQUEST_TIMEOUT:?}")))?
    }
}

/// The body as JSON, or (a proxy's page, an empty body) as a JSON string.
pub fn parse_body(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}
