//! Checks on `template.yaml` that `sam validate`, cfn-lint and checkov do
//! not make: that it describes this workspace, that nothing asynchronous can
//! lose a message (or be retried toward its dead-letter queue while still
//! running), that policies name what they touch, that every queue is
//! encrypted (checkov's own check sees only KMS, so the template skips it)
//! and says who may send to it, and that every check the template skips
//! says why.

use std::collections::BTreeSet;
use std::path::Path;

use serde_norway::Value;

use crate::template::function_binary;

/// Every problem found, as sentences; empty when the template is sound.
pub fn check(template: &str, workspace: &Path) -> Vec<String> {
    let doc: Value = match serde_norway::from_str(template) {
        Ok(d) => d,
        Err(e) => return vec![format!("template.yaml does not parse: {e}")],
    };
    let Some(resources) = doc.get("Resources").and_then(Value::as_mapping) else {
        return vec!["template.yaml has no Resources".into()];
    };
    let mut problems = Vec::new();
    let id_of = |v: &Value| -> Option<String> {
        match v {
            Value::Tagged(t) => match &t.value {
                Value::String(s) => s.split('.').next().map(str::to_owned),
                Value::Sequence(s) => s.first().and_then(Value::as_str).map(str::to_owned),
                _ => None,
            },
            _ => None,
        }
    };
    let mut dead_letter_queues = BTreeSet::new();
    let mut alarmed_queues = BTreeSet::new();
    let mut log_groups = BTreeSet::new();
    let mut queues = BTreeSet::new();
    let mut policed_queues = BTreeSet::new();
    let mut binaries = BTreeSet::new();
    // Lambda's own default when neither the function nor Globals sets one.
    let global_timeout = doc
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .and_then(|f| f.get("Timeout"))
        .and_then(Value::as_u64)
        .unwrap_or(3);
    for (id, res) in resources {
        let id = id.as_str().unwrap_or_default();
        let props = res.get("Properties").cloned().unwrap_or(Value::Null);
        for skip in res
            .get("Metadata")
            .and_then(|m| m.get("checkov"))
            .and_then(|c| c.get("skip"))
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let check = skip.get("id").and_then(Value::as_str).unwrap_or("a check");
            let reason = skip.get("comment").and_then(Value::as_str).unwrap_or_default();
            if reason.trim().is_empty() {
                problems.push(format!("{id} skips {check} without saying why (comment)"));
            }
        }
        match res.get("Type").and_then(Value::as_str).unwrap_or_default() {
            "AWS::SQS::Queue" => {
                queues.insert(id.to_owned());
                let sse = props.get("SqsManagedSseEnabled").and_then(Value::as_bool) == Some(true);
                if !sse && props.get("KmsMasterKeyId").is_none() {
                    problems.push(format!(
                        "queue {id} is not encrypted: set SqsManagedSseEnabled: true (or a KmsMasterKeyId)"
                    ));
                }
                if let Some(dlq) = props
                    .get("RedrivePolicy")
                    .and_then(|r| r.get("deadLetterTargetArn"))
                    .and_then(id_of)
                {
                    dead_letter_queues.insert(dlq);
                }
            }
            "AWS::SQS::QueuePolicy" => {
                for q in props
                    .get("Queues")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                    .filter_map(id_of)
                {
                    policed_queues.insert(q);
                }
            }
            "AWS::CloudWatch::Alarm" => {
                for d in props
                    .get("Dimensions")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                {
                    if d.get("Name").and_then(Value::as_str) == Some("QueueName") {
                        if let Some(q) = d.get("Value").and_then(id_of) {
                            alarmed_queues.insert(q);
                        }
                    }
                }
            }
            "AWS::Logs::LogGroup" => {
                if props.get("RetentionInDays").is_none() {
                    problems.push(format!("log group {id} keeps logs forever: set RetentionInDays"));
                }
                if let Some(Value::Tagged(t)) = props.get("LogGroupName") {
                    if let Some(name) = t.value.as_str() {
                        if let Some(f) = name
                            .strip_prefix("/aws/lambda/${")
                            .and_then(|n| n.strip_suffix('}'))
                        {
                            log_groups.insert(f.to_owned());
                        }
                    }
                }
            }
            "AWS::Serverless::Function" => {
                match function_binary(res) {
                    None => problems.push(format!("function {id} names no Binary in its Metadata")),
                    Some(b) => {
                        binaries.insert(b.to_owned());
                        let manifest = workspace.join("functions").join(b).join("Cargo.toml");
                        match std::fs::read_to_string(&manifest) {
                            Ok(text) if text.contains(&format!("name = \"{b}\"")) => {}
                            _ => problems.push(format!(
                                "function {id} runs binary {b}, but functions/{b}/Cargo.toml does not build it"
                            )),
                        }
                    }
                }
                for (name, event) in props
                    .get("Events")
                    .and_then(Value::as_mapping)
                    .into_iter()
                    .flatten()
                {
                    let name = name.as_str().unwrap_or_default();
                    let p = event.get("Properties").cloned().unwrap_or(Value::Null);
                    match event.get("Type").and_then(Value::as_str).unwrap_or_default() {
                        "SQS" => {
                            let queue = p.get("Queue").and_then(id_of);
                            let has_dlq = queue
                                .as_deref()
                                .and_then(|q| resources.get(q))
                                .and_then(|q| q.get("Properties"))
                                .and_then(|q| q.get("RedrivePolicy"))
                                .is_some();
                            if !has_dlq {
                                problems.push(format!(
                                    "{id}.{name}: its queue has no dead-letter queue (RedrivePolicy)"
                                ));
                            }
                            if p.get("FunctionResponseTypes").is_none() {
                                problems.push(format!("{id}.{name}: no ReportBatchItemFailures"));
                            }
                            // Lambda's advice for SQS triggers: a batch retried
                            // after a throttle must not be counted toward the
                            // dead-letter queue while the first is still running.
                            let timeout = props
                                .get("Timeout")
                                .and_then(Value::as_u64)
                                .unwrap_or(global_timeout);
                            let visibility = queue
                                .as_deref()
                                .and_then(|q| resources.get(q))
                                .and_then(|q| q.get("Properties"))
                                .and_then(|q| q.get("VisibilityTimeout"))
                                .and_then(Value::as_u64)
                                .unwrap_or(30);
                            if visibility < 6 * timeout {
                                problems.push(format!(
                                    "{id}.{name}: its queue's VisibilityTimeout ({visibility} s) is under six times the function's timeout ({timeout} s)"
                                ));
                            }
                        }
                        "DynamoDB" | "Kinesis" => {
                            match p
                                .get("DestinationConfig")
                                .and_then(|d| d.get("OnFailure"))
                                .and_then(|o| o.get("Destination"))
                                .and_then(id_of)
                            {
                                Some(q) => {
                                    dead_letter_queues.insert(q);
                                }
                                None => problems.push(format!(
                                    "{id}.{name}: a stream trigger without an on-failure destination"
                                )),
                            }
                            if p.get("MaximumRetryAttempts").is_none() {
                                problems.push(format!("{id}.{name}: MaximumRetryAttempts unset retries a bad record until it expires"));
                            }
                        }
                        _ => {}
                    }
                }
                for policy in props
                    .get("Policies")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                {
                    for st in policy
                        .get("Statement")
                        .and_then(Value::as_sequence)
                        .into_iter()
                        .flatten()
                    {
                        let resources: Vec<&Value> = match st.get("Resource") {
                            Some(Value::Sequence(s)) => s.iter().collect(),
                            Some(v) => vec![v],
                            None => vec![],
                        };
                        if resources.iter().any(|r| r.as_str() == Some("*")) {
                            problems.push(format!(
                                "{id}: a policy statement allows Resource \"*\"; name the resource"
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    for (id, res) in resources {
        if res.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::Function") {
            let id = id.as_str().unwrap_or_default();
            if !log_groups.contains(id) {
                problems.push(format!("function {id} has no log group with a retention"));
            }
        }
    }
    for q in &dead_letter_queues {
        if !alarmed_queues.contains(q) {
            problems.push(format!("dead-letter queue {q} has no alarm on its depth"));
        }
    }
    // Within the account any role whose own policy allows it may send to a
    // queue; only a queue policy's Deny confines a queue to its senders (a
    // dead-letter queue is filled by SQS or Lambda, not by a sender).
    for q in queues.difference(&dead_letter_queues) {
        if !policed_queues.contains(q) {
            problems.push(format!("queue {q} has no queue policy saying who may send to it"));
        }
    }
    if let Ok(dir) = std::fs::read_dir(workspace.join("functions")) {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().join("Cargo.toml").exists() && !binaries.contains(&name) {
                problems.push(format!(
                    "functions/{name} is in the workspace but template.yaml deploys no such function"
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn the_project_template_is_sound() {
        let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
        let problems = check(&text, &root());
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn unsound_templates_are_caught() {
        let text = r#"
Resources:
  Q:
    Type: AWS::SQS::Queue
    Metadata:
      checkov:
        skip:
          - id: CKV_AWS_27
    Properties:
      VisibilityTimeout: 10
  F:
    Type: AWS::Serverless::Function
    Metadata:
      Binary: no-such-function
    Properties:
      Events:
        FromQ:
          Type: SQS
          Properties:
            Queue: !GetAtt Q.Arn
        FromStream:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt T.StreamArn
      Policies:
        - Statement:
            - Effect: Allow
              Action: s3:GetObject
              Resource: "*"
"#;
        let problems = check(text, &root()).join("\n");
        for expected in [
            "does not build it",
            "no dead-letter queue",
            "no ReportBatchItemFailures",
            "without an on-failure destination",
            "Resource \"*\"",
            "no log group",
            "template.yaml deploys no such function",
            "queue Q is not encrypted",
            "Q skips CKV_AWS_27 without saying why",
            "queue Q has no queue policy",
            "under six times the function's timeout",
        ] {
            assert!(
                problems.contains(expected),
                "missing {expected:?} in:\n{problems}"
            );
        }
    }
}
