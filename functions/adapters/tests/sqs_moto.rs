//! SqsQueue against moto over real HTTP.

mod common;

use std::sync::Arc;
use std::time::Duration;

use lc_adapters::sqs::SqsQueue;
use lc_core::ports::{NoMetrics, OutMessage, QueueSender, SecretSource, SystemClock};
use lc_core::support::secret::{AppCredentials, Secret, Secrets};
use lc_core::webhook::intake::{Intake, IntakeConfig, Receipt};
use lc_core::webhook::signature::sign;
use lc_core::webhook::{EventKind, InboundEvent};

async fn queue() -> SqsQueue {
    let sdk = common::moto_config().await;
    let client = aws_sdk_sqs::Client::new(&sdk);
    let url = client
        .create_queue()
        .queue_name(common::unique("events"))
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");
    SqsQueue::new(client, url)
}

async fn receive_all(q: &SqsQueue) -> Vec<aws_sdk_sqs::types::Message> {
    let mut all = Vec::new();
    loop {
        let out = q
            .client()
            .receive_message()
            .queue_url(q.queue_url())
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive");
        let batch = out.messages.unwrap_or_default();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

fn msg(id: &str, body: &str, delay: u32) -> OutMessage {
    OutMessage {
        id: id.into(),
        body: body.into(),
        attributes: vec![("kind".into(), "optin".into())],
        delay_secs: delay,
    }
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn batch_is_delivered_with_attributes() {
    let q = queue().await;
    let failed = q
        .send_batch(&[msg("0", "{\"a\":1}", 0), msg("1", "{\"b\":\"é\"}", 0)])
        .await
        .expect("batch call");
    assert!(failed.is_empty(), "{failed:?}");
    let got = receive_all(&q).await;
    assert_eq!(got.len(), 2);
    let attr = got[0].message_attributes().and_then(|a| a.get("kind"));
    assert_eq!(attr.and_then(|v| v.string_value()), Some("optin"));
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn partial_batch_failure_names_the_failed_entry() {
    let q = queue().await;
    // SQS refuses a per-entry delay above 900 s; the other entries still go through.
    let failed = q
        .send_batch(&[
            msg("ok1", "one", 0),
            msg("bad", "two", 901),
            msg("ok2", "three", 0),
        ])
        .await
        .expect("batch call");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].id, "bad");
    assert!(failed[0].sender_fault);
    assert_eq!(receive_all(&q).await.len(), 2);
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn whole_call_failure_is_an_error() {
    let q = queue().await;
    // Duplicate entry ids make SQS refuse the whole call.
    let err = q
        .send_batch(&[msg("same", "one", 0), msg("same", "two", 0)])
        .await
        .expect_err("duplicate ids are refused");
    assert!(!err.is_retryable(), "{err}");
}

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn signed_webhook_lands_on_sqs_as_events() {
    let q = queue().await;
    let consumer = q.clone();
    let secrets: Arc<dyn SecretSource> = Arc::new(Arc::new(Secrets {
        apps: vec![AppCredentials {
            app_id: "1".into(),
            app_secret: Secret::new("moto-secret"),
            client_token: Secret::default(),
        }],
        verify_token: Secret::new("vt"),
        ..Default::default()
    }));
    let config = IntakeConfig {
        retry_base: Duration::from_millis(5),
        ..IntakeConfig::default()
    };
    let intake = Intake::new(
        Arc::new(q),
        secrets,
        Arc::new(SystemClock),
        Arc::new(NoMetrics),
        config,
    );
    let items: Vec<String> = (0..23)
        .map(|i| format!(r#"{{"sender":{{"id":"{i}"}},"recipient":{{"id":"100"}},"timestamp":{i},"message":{{"mid":"m_{i}","text":"hi \u00e9"}}}}"#))
        .collect();
    let body = format!(
        r#"{{"object":"page","entry":[{{"id":"100","time":1,"messaging":[{}]}}]}}"#,
        items.join(",")
    );
    let (receipt, _) = intake
        .receive(
            Some(&sign("moto-secret", body.as_bytes())),
            false,
            body.as_bytes(),
        )
        .await;
    assert_eq!(receipt, Receipt::Accepted);
    let got = receive_all(&consumer).await;
    assert_eq!(got.len(), 23);
    let mut keys: Vec<String> = got
        .iter()
        .map(|m| InboundEvent::from_json(m.body().unwrap_or_default()).expect("event"))
        .inspect(|e| assert_eq!(e.kind, EventKind::Message))
        .map(|e| e.key)
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 23);
}

async fn fifo_queue() -> SqsQueue {
    let sdk = common::moto_config().await;
    let client = aws_sdk_sqs::Client::new(&sdk);
    let url = client
        .create_queue()
        .queue_name(format!("{}.fifo", common::unique("requests")))
        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .expect("create fifo queue")
        .queue_url
        .expect("queue url");
    SqsQueue::new(client, url)
}

fn grouped(id: &str, body: &str, group: &str, dedup: &str) -> lc_core::ports::GroupedMessage {
    lc_core::ports::GroupedMessage {
        message: msg(id, body, 0),
        group_id: group.into(),
        dedup_id: dedup.into(),
    }
}

/// The follow-up requests queue: entries carry their group and deduplication ids, a group comes
/// back in order with its id, and a duplicate id within the window is not delivered twice.
#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn fifo_entries_carry_group_and_deduplication_ids() {
    use lc_core::ports::QueueReceiver;
    let q = fifo_queue().await;
    let failed = q
        .send_grouped(&[
            grouped("a", "first", "person-1", "key-1"),
            grouped("b", "second", "person-1", "key-2"),
            grouped("c", "first again", "person-1", "key-1"),
        ])
        .await
        .expect("batch call");
    assert!(failed.is_empty(), "{failed:?}");
    let mut got = Vec::new();
    for _ in 0..5 {
        let batch = q.receive(10, 0).await.expect("receive");
        for m in &batch {
            q.delete(&m.receipt_handle).await.expect("delete");
        }
        got.extend(batch);
    }
    let bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(
        bodies,
        ["first", "second"],
        "in order, the duplicate dropped"
    );
    assert!(got
        .iter()
        .all(|m| m.group_id.as_deref() == Some("person-1")));

    // A standard queue given a group: SQS refuses the entry (InvalidParameterValue); moto 5.2.5
    // accepts it, so that refusal is checked on the twin (memory::queue) only.
}
