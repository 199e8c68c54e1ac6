//! SigV4 for the stock API's function URL (`AuthType: AWS_IAM`): service
//! `lambda`, the SDK's own signer and its default settings, so a request is
//! signed exactly as an SDK client for Lambda would sign it.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::Request;

/// The service name function URLs are signed for.
pub const SERVICE: &str = "lambda";

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the request: {0}")]
pub struct SignError(String);

/// Signs `req` in place (adds `authorization`, `x-amz-date` and, with
/// temporary credentials, `x-amz-security-token`), for `region` at `time`.
pub fn sign_request(
    req: &mut Request<Bytes>,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<(), SignError> {
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| SignError(e.to_string()))?
        .into();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            v.to_str()
                .map(|v| (k.as_str(), v))
                .map_err(|e| SignError(format!("header {k}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let uri = req.uri().to_string();
    let signable = SignableRequest::new(
        req.method().as_str(),
        &uri,
        headers.into_iter(),
        SignableBody::Bytes(req.body()),
    )
    .map_err(|e| SignError(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| SignError(e.to_string()))?
        .into_parts();
    instructions.apply_to_request_http1x(req);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The signature follows AWS's published SigV4 test suite (`get-vanilla`),
    /// computed here independently of the comparison with the SDK.
    #[test]
    fn matches_the_sigv4_suites_get_vanilla() {
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        // 2015-08-30T12:36:00Z
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let identity = creds.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("service")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            "GET",
            "https://example.amazonaws.com/",
            [("host", "example.amazonaws.com")].into_iter(),
            SignableBody::Bytes(&[]),
        )
        .unwrap();
        let (_, signature) = sign(signable, &params).unwrap().into_parts();
        assert_eq!(
            signature,
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn a_signed_request_names_lambda_and_the_region() {
        let creds = Credentials::new("AKID", "secret", Some("token".into()), None, "test");
        let mut req = Request::builder()
            .method("POST")
            .uri("https://abc.lambda-url.eu-west-1.on.aws/adjustments")
            .header("host", "abc.lambda-url.eu-west-1.on.aws")
            .header("content-type", "application/json")
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        sign_request(
            &mut req,
            &creds,
            "eu-west-1",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        )
        .unwrap();
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/20270115/eu-west-1/lambda/aws4_request"),
            "{auth}"
        );
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"),
            "{auth}"
        );
        assert_eq!(req.headers()["x-amz-date"], "20270115T080000Z");
        assert_eq!(req.headers()["x-amz-security-token"], "token");
    }
}
