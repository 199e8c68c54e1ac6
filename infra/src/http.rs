//! A small HTTP/1.1 client for the local stack (function URLs and the
//! Lambda invoke API that `cargo lambda watch` serves).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: {message}")]
    Request { url: String, message: String },
    #[error("{url}: no answer within {secs} s")]
    Timeout { url: String, secs: u64 },
}

/// A status, the headers we care about, and the body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub function_error: bool,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&self.body).into_owned()))
    }
}

#[derive(Clone)]
pub struct HttpClient {
    inner: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    pub fn new(timeout: Duration) -> Self {
        Self {
            inner: Client::builder(TokioExecutor::new()).build_http(),
            timeout,
        }
    }

    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Reply, HttpError> {
        Ok(self.send_with_headers(method, url, headers, body).await?.0)
    }

    /// [`Self::send`], with every header of the answer (`Retry-After`, ...).
    pub async fn send_with_headers(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(Reply, http::HeaderMap), HttpError> {
        let err = |message: String| HttpError::Request {
            url: url.to_owned(),
            message,
        };
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| err(e.to_string()))?;
        let fut = async {
            let res = self.inner.request(req).await.map_err(|e| err(e.to_string()))?;
            let status = res.status().as_u16();
            let function_error = res.headers().contains_key("x-amz-function-error");
            let headers = res.headers().clone();
            let body = res
                .into_body()
                .collect()
                .await
                .map_err(|e| err(e.to_string()))?
                .to_bytes();
            Ok((
                Reply {
                    status,
                    function_error,
                    body,
                },
                headers,
            ))
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| HttpError::Timeout {
                url: url.to_owned(),
                secs: self.timeout.as_secs(),
            })?
    }
}
