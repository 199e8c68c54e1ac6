//! The stock API's channel operations, as requests: a mode switch, and the
//! runs (reconcile, import, resync). Who asks is the caller's IAM identity
//! in the cloud, else the body's `actor`; every one says why.

use serde::Deserialize;

use crate::connector::runs::{RunKind, RunTask};
use crate::connector::Mode;
use crate::domain::{Actor, InvalidInput, Sku};

/// The longest `reason`.
const MAX_REASON: usize = 500;
/// SKUs one resync names at most.
pub const MAX_RESYNC_SKUS: usize = 1000;

#[derive(Debug, Default, Deserialize)]
struct Body {
    mode: Option<String>,
    actor: Option<String>,
    reason: Option<String>,
    #[serde(default)]
    skus: Option<Vec<String>>,
    #[serde(default)]
    all: Option<bool>,
}

fn read(body: &[u8]) -> Result<Body, InvalidInput> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| InvalidInput::field("body", format!("not a JSON object of the expected fields: {e}")))
}

fn who(b: &Body, identity: Option<&str>) -> Result<(Actor, String), InvalidInput> {
    let actor = match identity {
        Some(arn) => Actor::system(arn),
        None => Actor::parse(b.actor.as_deref().unwrap_or_default())
            .map_err(|_| InvalidInput::field("actor", "is required (who is asking)"))?,
    };
    let reason = b.reason.as_deref().map(str::trim).unwrap_or_default().to_owned();
    if reason.is_empty() || reason.chars().count() > MAX_REASON || reason.chars().any(char::is_control) {
        return Err(InvalidInput::field(
            "reason",
            format!("is required: 1 to {MAX_REASON} characters without control characters"),
        ));
    }
    Ok((actor, reason))
}

/// `PUT /channels/{name}/mode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeRequest {
    pub mode: Mode,
    pub actor: Actor,
    pub reason: String,
}

impl ModeRequest {
    pub fn parse(body: &[u8], identity: Option<&str>) -> Result<Self, InvalidInput> {
        let b = read(body)?;
        let mode = b
            .mode
            .as_deref()
            .and_then(Mode::parse)
            .ok_or_else(|| InvalidInput::field("mode", "must be \"shadow\" or \"live\""))?;
        let (actor, reason) = who(&b, identity)?;
        Ok(Self { mode, actor, reason })
    }
}

/// `POST /channels/{name}/reconcile|import|resync`: the run it queues.
pub fn parse_run(
    body: &[u8],
    identity: Option<&str>,
    channel: &str,
    kind: RunKind,
    id: String,
) -> Result<RunTask, InvalidInput> {
    let b = read(body)?;
    let (actor, reason) = match (kind, identity, &b.actor, &b.reason) {
        // A reconcile changes nothing in shadow and only puts right in live:
        // who and why are welcome, not required.
        (RunKind::Reconcile, None, None, None) => (Actor::system("stock-api"), "asked for".to_owned()),
        _ => who(&b, identity)?,
    };
    let (skus, all) = match kind {
        RunKind::Resync => {
            let all = b.all.unwrap_or(false);
            let skus = b.skus.unwrap_or_default();
            if all != skus.is_empty() {
                return Err(InvalidInput::field(
                    "skus",
                    "give either \"skus\": [...] or \"all\": true",
                ));
            }
            if skus.len() > MAX_RESYNC_SKUS {
                return Err(InvalidInput::field(
                    "skus",
                    format!("at most {MAX_RESYNC_SKUS} at once"),
                ));
            }
            let skus = skus
                .iter()
                .map(|s| Sku::parse(s).map(|s| s.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            (skus, all)
        }
        _ => (Vec::new(), false),
    };
    Ok(RunTask {
        channel: channel.to_owned(),
        id: Some(id),
        kind,
        cursor: None,
        skus,
        all,
        actor: actor.as_str().to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mode_switch_says_which_mode_who_and_why() {
        let r =
            ModeRequest::parse(br#"{"mode": "shadow", "actor": "ana", "reason": "trial"}"#, None).unwrap();
        assert_eq!(
            (r.mode, r.actor.as_str(), r.reason.as_str()),
            (Mode::Shadow, "ana", "trial")
        );
        // In the cloud the caller is the actor.
        let r = ModeRequest::parse(
            br#"{"mode": "live", "reason": "go"}"#,
            Some("arn:aws:iam::1:user/ops"),
        )
        .unwrap();
        assert_eq!(r.actor.as_str(), "arn:aws:iam::1:user/ops");
        for bad in [
            &br#"{"mode": "dark", "actor": "a", "reason": "r"}"#[..],
            br#"{"mode": "live", "reason": "r"}"#,
            br#"{"mode": "live", "actor": "a"}"#,
            br#"{"mode": "live", "actor": "a", "reason": " "}"#,
            b"[]",
        ] {
            assert!(
                ModeRequest::parse(bad, None).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_run_request_names_its_skus_or_all_and_who_asks() {
        let t = parse_run(
            br#"{"skus": ["A", "B"], "actor": "ana", "reason": "lost"}"#,
            None,
            "web",
            RunKind::Resync,
            "r1".into(),
        )
        .unwrap();
        assert_eq!((t.skus.len(), t.all, t.id.as_deref()), (2, false, Some("r1")));
        let t = parse_run(
            br#"{"all": true, "actor": "ana", "reason": "lost"}"#,
            None,
            "web",
            RunKind::Resync,
            "r2".into(),
        )
        .unwrap();
        assert!(t.all && t.skus.is_empty());
        for bad in [
            &br#"{"actor": "ana", "reason": "r"}"#[..],
            br#"{"all": true, "skus": ["A"], "actor": "ana", "reason": "r"}"#,
            br#"{"skus": [""], "actor": "ana", "reason": "r"}"#,
            br#"{"skus": ["A"], "reason": "r"}"#,
        ] {
            assert!(parse_run(bad, None, "web", RunKind::Resync, "x".into()).is_err());
        }
        // An import needs who and why; a reconcile may come bare.
        assert!(parse_run(b"", None, "web", RunKind::Import, "x".into()).is_err());
        let t = parse_run(b"", None, "web", RunKind::Reconcile, "x".into()).unwrap();
        assert_eq!(t.actor, "stock-api");
    }
}
