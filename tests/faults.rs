//! The emulator's fault mode does what `infra/faults.py` says, for the
//! resources of the stack that asked and no other, and counts the units
//! every request consumes.

use std::collections::HashMap;
use std::time::Duration;

use stockroom::aws_sdk_dynamodb::error::DisplayErrorContext;
use stockroom::aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use stockroom::aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use stockroom_local::faults::{Emulator, FaultConfig};
use stockroom_tests::{emulator, stack, TestStack};

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn item(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".into(), s(pk)), ("sk".into(), s(sk)), ("v".into(), s("x"))])
}

fn admin() -> Emulator {
    Emulator::new(&emulator().endpoint)
}

/// Switches faults on for this stack's resources, as `set` configures them.
async fn faults(st: &TestStack, set: impl FnOnce(&mut FaultConfig)) {
    let mut config = FaultConfig {
        scope: st.name.clone(),
        seed: Some(1),
        ..FaultConfig::default()
    };
    set(&mut config);
    admin().set_faults(&config).await.expect("faults on");
}

async fn get(st: &TestStack, pk: &str, sk: &str) -> Option<HashMap<String, AttributeValue>> {
    let key = HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))]);
    let out = st
        .ddb
        .get_item()
        .table_name(st.table())
        .consistent_read(true)
        .set_key(Some(key))
        .send()
        .await
        .expect("get");
    out.item().cloned()
}

async fn put(st: &TestStack, pk: &str, sk: &str) -> Result<(), String> {
    st.ddb
        .put_item()
        .table_name(st.table())
        .set_item(Some(item(pk, sk)))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| DisplayErrorContext(&e).to_string())
}

fn transaction(st: &TestStack, pk: &str, sks: &[&str]) -> Vec<TransactWriteItem> {
    sks.iter()
        .map(|sk| {
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(st.table())
                        .set_item(Some(item(pk, sk)))
                        .build()
                        .unwrap(),
                )
                .build()
        })
        .collect()
}

#[tokio::test]
async fn server_errors_hit_only_the_stack_that_asked() {
    let (st, other) = (stack().await, stack().await);
    faults(&st, |c| c.server_error = 1.0).await;
    let err = put(&st, "A", "1").await.unwrap_err();
    assert!(
        err.contains("InternalServerError") || err.contains("500"),
        "{err}"
    );
    // The SDK retried: every attempt was refused and counted.
    assert!(admin().injected(&st.name).await.unwrap()["server_error"] >= 2);
    put(&other, "A", "1").await.expect("another stack is untouched");
    admin().clear_faults(&st.name).await.unwrap();
    put(&st, "A", "1").await.expect("faults off");
}

#[tokio::test]
async fn a_transaction_on_an_item_another_just_wrote_conflicts() {
    let st = stack().await;
    st.ddb
        .transact_write_items()
        .set_transact_items(Some(transaction(&st, "A", &["1", "2"])))
        .send()
        .await
        .expect("the first transaction");
    faults(&st, |c| {
        c.transaction_conflict = 1.0;
        c.conflict_window_ms = Some(60_000)
    })
    .await;
    let err = st
        .ddb
        .transact_write_items()
        .set_transact_items(Some(transaction(&st, "A", &["3", "2"])))
        .send()
        .await
        .unwrap_err();
    let Some(TransactWriteItemsError::TransactionCanceledException(c)) = err.as_service_error() else {
        panic!("{}", DisplayErrorContext(&err));
    };
    let codes: Vec<_> = c.cancellation_reasons().iter().filter_map(|r| r.code()).collect();
    assert_eq!(codes, ["None", "TransactionConflict"]);
    // Nothing was written; an item no transaction touched is free.
    assert!(get(&st, "A", "3").await.is_none());
    st.ddb
        .transact_write_items()
        .set_transact_items(Some(transaction(&st, "B", &["1"])))
        .send()
        .await
        .expect("an untouched item does not conflict");
}

#[tokio::test]
async fn a_hot_partition_is_throttled_and_units_are_counted() {
    let st = stack().await;
    put(&st, "HOT", "0").await.unwrap();
    let units = admin().units(st.table()).await.unwrap();
    assert_eq!(units.operations["PutItem"].write, 1.0);
    faults(&st, |c| {
        c.capacity = true;
        c.write_units_per_second = Some(3.0)
    })
    .await;
    let results = futures::future::join_all((1..=8).map(|i| {
        let st = &st;
        async move { put(st, "HOT", &i.to_string()).await }
    }))
    .await;
    let throttled = results
        .iter()
        .filter(|r| {
            r.as_ref()
                .is_err_and(|e| e.contains("ProvisionedThroughputExceeded"))
        })
        .count();
    assert!(throttled > 0, "{results:?}");
    assert!(admin().injected(&st.name).await.unwrap()["throttled"] > 0);
    // Another partition has its own capacity.
    put(&st, "COLD", "1").await.expect("another partition");
    let units = admin().units(st.table()).await.unwrap();
    assert!(units.write >= 5.0 && units.write <= 9.0, "{units:?}");
}

#[tokio::test]
async fn a_lost_response_has_still_committed_and_the_retry_sees_it() {
    let st = stack().await;
    faults(&st, |c| c.lost_response = 1.0).await;
    let err = st
        .ddb
        .put_item()
        .table_name(st.table())
        .set_item(Some(item("L", "1")))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .unwrap_err();
    // The first attempt wrote the item and lost its answer; the SDK's retry
    // then found the item there.
    let text = DisplayErrorContext(&err).to_string();
    assert!(text.contains("ConditionalCheckFailed"), "{text}");
    admin().clear_faults(&st.name).await.unwrap();
    assert!(get(&st, "L", "1").await.is_some());
    assert!(admin().injected(&st.name).await.is_err(), "cleared");
}

#[tokio::test]
async fn sqs_sends_fail_and_deleted_messages_come_back() {
    let st = stack().await;
    let queue = st.alert_queue().to_owned();
    faults(&st, |c| c.sqs_send_failure = 1.0).await;
    let sent = st
        .sqs
        .send_message()
        .queue_url(&queue)
        .message_body("{}")
        .send()
        .await;
    assert!(sent.is_err());
    faults(&st, |c| c.sqs_redelivery = 1.0).await;
    st.sqs
        .send_message()
        .queue_url(&queue)
        .message_body(r#"{"n": 1}"#)
        .send()
        .await
        .unwrap();
    let first = st
        .sqs
        .receive_message()
        .queue_url(&queue)
        .visibility_timeout(1)
        .send()
        .await
        .unwrap();
    let m = &first.messages()[0];
    st.sqs
        .delete_message()
        .queue_url(&queue)
        .receipt_handle(m.receipt_handle().unwrap())
        .send()
        .await
        .expect("the delete answers success");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = st.sqs.receive_message().queue_url(&queue).send().await.unwrap();
    assert_eq!(again.messages().len(), 1, "the message came back");
    assert_eq!(again.messages()[0].body(), m.body());
}
