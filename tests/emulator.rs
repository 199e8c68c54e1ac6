//! The local emulator is faster than plain moto where moto is slow
//! (`infra/emulator.py`) and keeps the rules: invalid update expressions are
//! still refused, alone and inside a transaction; an expression parsed once
//! serves later requests with their own values; and queues still count
//! their visible, in-flight and delayed messages.

use std::collections::HashMap;

use stockroom::aws_sdk_dynamodb::error::DisplayErrorContext;
use stockroom::aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use stockroom_tests::stack;

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
    let items = vec![
        TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(st.table())
                    .set_key(Some(key("B")))
                    .update_expression("SET a = :a")
                    .expression_attribute_values(":a", n(1))
                    .build()
                    .unwrap(),
            )
            .build(),
        TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(st.table())
                    .set_key(Some(key("C")))
                    .update_expression("SET a = :a, a = :b")
                    .expression_attribute_values(":a", n(1))
                    .expression_attribute_values(":b", n(2))
                    .build()
                    .unwrap(),
            )
            .build(),
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
