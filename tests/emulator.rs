//! The local emulator is faster than plain moto where moto is slow
//! (`infra/emulator.py`) and keeps the rules: invalid update expressions are
//! still refused, alone and inside a transaction; an expression parsed once
//! serves later requests with their own values; and queues still count
//! their visible, in-flight and delayed messages. It patches moto's
//! internals, so it refuses to start on a moto other than the pinned one or
//! one that lacks a patch target.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use stockroom::aws_sdk_dynamodb::error::DisplayErrorContext;
use stockroom::aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use stockroom_tests::{root, stack};

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn key(sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".into(), s("EMULATOR#1")), ("sk".into(), s(sk))])
}

/// The item at `key(sk)`, if any.
async fn item(st: &stockroom_tests::TestStack, sk: &str) -> Option<HashMap<String, AttributeValue>> {
    st.ddb
        .get_item()
        .table_name(st.table())
        .set_key(Some(key(sk)))
        .send()
        .await
        .unwrap()
        .item()
        .cloned()
}

#[tokio::test]
async fn invalid_update_expressions_are_refused() {
    let st = stack().await;
    let refused = |expression: &'static str| {
        let (ddb, table) = (st.ddb.clone(), st.table().to_owned());
        async move {
            let err = ddb
                .update_item()
                .table_name(table)
                .set_key(Some(key("A")))
                .update_expression(expression)
                .expression_attribute_values(":a", n(1))
                .expression_attribute_values(":b", n(2))
                .send()
                .await
                .expect_err(expression);
            DisplayErrorContext(&err).to_string()
        }
    };
    assert!(refused("SET a = :a SET b = :b").await.contains("SET"));
    assert!(refused("ADD a :a ADD b :b").await.contains("ADD"));
    assert!(refused("SET a = :a, a = :b").await.contains("overlap"));
    assert!(refused("SET b = :a ADD b :b").await.contains("overlap"));
    assert!(refused("SET pk = :a").await.contains("key"));
    // Nothing was written by any of them.
    assert!(item(&st, "A").await.is_none());

    // Inside a transaction the whole transaction is refused.
    let update = |sk: &str, expression: &str| {
        TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(st.table())
                    .set_key(Some(key(sk)))
                    .update_expression(expression)
                    .set_expression_attribute_values(Some(HashMap::from([
                        (":a".to_owned(), n(1)),
                        (":b".to_owned(), n(2)),
                    ])))
                    .build()
                    .unwrap(),
            )
            .build()
    };
    let items = vec![
        update("B", "SET a = :a, b = :b"),
        update("C", "SET a = :a, a = :b"),
    ];
    st.ddb
        .transact_write_items()
        .set_transact_items(Some(items))
        .send()
        .await
        .expect_err("an overlapping update in a transaction");
    assert!(
        item(&st, "B").await.is_none(),
        "a refused transaction wrote nothing"
    );
}

#[tokio::test]
async fn a_repeated_expression_uses_each_requests_values() {
    let st = stack().await;
    for (value, name) in [(5, "x"), (7, "y")] {
        st.ddb
            .update_item()
            .table_name(st.table())
            .set_key(Some(key("D")))
            .update_expression("SET #f = :v ADD version :one")
            .expression_attribute_names("#f", name)
            .expression_attribute_values(":v", n(value))
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .unwrap();
    }
    let item = item(&st, "D").await.unwrap();
    assert_eq!(item["x"], n(5));
    assert_eq!(item["y"], n(7));
    assert_eq!(item["version"], n(2));
}

#[tokio::test]
async fn queues_count_visible_in_flight_and_delayed_messages() {
    let st = stack().await;
    let url = st
        .sqs
        .create_queue()
        .queue_name(format!("{}-counts", st.name))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    for i in 0..3 {
        st.sqs
            .send_message()
            .queue_url(&url)
            .message_body(format!("m{i}"))
            .send()
            .await
            .unwrap();
    }
    st.sqs
        .send_message()
        .queue_url(&url)
        .message_body("later")
        .delay_seconds(60)
        .send()
        .await
        .unwrap();
    let got = st
        .sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(1)
        .visibility_timeout(60)
        .send()
        .await
        .unwrap();
    assert_eq!(got.messages().len(), 1);
    let attrs = st
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(stockroom::aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let count = |name: &str| {
        attrs
            .attributes()
            .and_then(|a| a.iter().find(|(k, _)| k.as_str() == name).map(|(_, v)| v.clone()))
            .unwrap_or_default()
    };
    assert_eq!(count("ApproximateNumberOfMessages"), "2");
    assert_eq!(count("ApproximateNumberOfMessagesNotVisible"), "1");
    assert_eq!(count("ApproximateNumberOfMessagesDelayed"), "1");
    // The delayed message is not delivered yet; the two visible ones are.
    let rest = st
        .sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let mut bodies: Vec<&str> = rest.messages().iter().filter_map(|m| m.body()).collect();
    bodies.sort();
    assert_eq!(bodies.len(), 2);
    assert!(!bodies.contains(&"later"));
}

/// channel-events queues an edit with a per-message delay (the grace
/// period) on the template's standard ChannelEditsQueue: the emulator holds
/// it back for that long and then delivers it, as SQS does.
#[tokio::test]
async fn a_delayed_edit_arrives_after_its_delay_and_not_before() {
    let st = stack().await;
    let url = st.stack.queue_urls["ChannelEditsQueue"].clone();
    let sent = std::time::Instant::now();
    st.sqs
        .send_message()
        .queue_url(&url)
        .message_body("edit")
        .delay_seconds(2)
        .send()
        .await
        .unwrap();
    assert!(st.receive(&url).await.is_empty(), "delivered before its delay");
    let got = loop {
        let got = st.receive(&url).await;
        if !got.is_empty() || sent.elapsed() > std::time::Duration::from_secs(10) {
            break got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(got.len(), 1, "the delayed message never arrived");
    assert!(sent.elapsed() >= std::time::Duration::from_secs(2));
}

/// What the local trigger runner relies on to keep a SKU's channel messages
/// in order on the web channel's FIFO queue (channel-sync's trigger): a
/// message group's messages come in the order sent, and none of a group is
/// handed out while an earlier one of it is in flight (as SQS does), while
/// other groups are.
#[tokio::test]
async fn a_fifo_group_is_delivered_in_order_one_batch_at_a_time() {
    let st = stack().await;
    let url = st.stack.queue_urls["WebChannelQueue"].clone();
    for (group, body) in [("A", "a1"), ("A", "a2"), ("B", "b1"), ("A", "a3")] {
        st.sqs
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(body)
            .send()
            .await
            .unwrap();
    }
    let bodies = |msgs: &[stockroom::aws_sdk_sqs::types::Message]| -> Vec<String> {
        msgs.iter().filter_map(|m| m.body().map(str::to_owned)).collect()
    };
    let first = st
        .sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(1)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(bodies(&first), ["a1"]);
    // A is in flight: only B's message is handed out.
    assert_eq!(bodies(&st.receive(&url).await), ["b1"]);
    st.sqs
        .delete_message()
        .queue_url(&url)
        .receipt_handle(first[0].receipt_handle().unwrap_or_default())
        .send()
        .await
        .unwrap();
    assert_eq!(bodies(&st.receive(&url).await), ["a2", "a3"]);
}

/// The venv's Python, as the stack starts the emulator with.
fn python() -> PathBuf {
    std::env::var_os("STOCKROOM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"))
}

/// `emulator.py --check` with `args`, run as the tests run the emulator.
fn check(args: &[&str]) -> Output {
    Command::new(python())
        .arg(root().join("infra/emulator.py"))
        .arg("--check")
        .args(args)
        .output()
        .expect("run infra/emulator.py (run `make tools`)")
}

/// The moto version `infra/requirements-dev.txt` pins.
fn pinned_moto() -> String {
    let text = std::fs::read_to_string(root().join("infra/requirements-dev.txt")).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("moto[server]=="))
        .expect("a moto[server]== pin")
        .trim()
        .to_owned()
}

#[test]
fn the_installed_moto_is_the_pinned_one_with_every_patch_target() {
    let out = check(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the check failed: {stderr}");
    assert!(stderr.contains(&pinned_moto()), "{stderr}");
}

#[test]
fn a_moto_other_than_the_expected_one_is_refused() {
    let out = check(&["--expect-moto", "0.0.1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started against another moto: {stderr}");
    // The message names both versions: the installed (pinned) one and the one asked for.
    assert!(
        stderr.contains(&format!("moto {} is installed", pinned_moto())),
        "{stderr}"
    );
    assert!(stderr.contains("0.0.1"), "{stderr}");
}

#[test]
fn a_missing_patch_target_is_refused_and_named() {
    // As if an upgrade had renamed it: remove one target, then run the
    // emulator's own start-up in the same interpreter.
    let infra = root().join("infra");
    let script = format!(
        "import runpy, sys\n\
         sys.path.insert(0, {infra:?})\n\
         from moto.sqs.models import Queue\n\
         del Queue.approximate_number_of_messages_delayed\n\
         sys.argv = ['emulator.py', '--check']\n\
         runpy.run_path({emulator:?}, run_name='__main__')\n",
        infra = infra.display().to_string(),
        emulator = infra.join("emulator.py").display().to_string(),
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .expect("run python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started without a patch target: {stderr}");
    assert!(
        stderr.contains("moto.sqs.models.Queue.approximate_number_of_messages_delayed"),
        "{stderr}"
    );
}
