//! EventBridgeBus against moto over real HTTP: the bus contract, read where the business reads
//! it (a rule on the bus with an SQS target, as the template's `BusinessQueueArn` sets up).

mod common;

use std::time::{Duration, Instant};

use lc_adapters::eventbridge::{create_bus, EventBridgeBus};
use lc_core::contract::bus::run_all;
use serde_json::Value;
use tokio::sync::Mutex;

#[tokio::test]
#[ignore = "needs moto: run tests/run.sh"]
async fn eventbridge_bus_meets_the_bus_contract_through_a_rule_to_sqs() {
    let sdk = common::moto_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = sqs
        .create_queue()
        .queue_name(common::unique("business"))
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes")
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("queue arn");
    let eb = aws_sdk_eventbridge::Client::new(&sdk);
    let bus_name = common::unique("bus");
    create_bus(&eb, &bus_name).await.expect("bus");
    let rule = common::unique("all");
    eb.put_rule()
        .name(&rule)
        .event_bus_name(&bus_name)
        .event_pattern(r#"{"source":["login-connect"]}"#)
        .send()
        .await
        .expect("rule");
    eb.put_targets()
        .rule(&rule)
        .event_bus_name(&bus_name)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("business-queue")
                .arn(arn)
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("targets");
    let bus = EventBridgeBus::new(eb, bus_name);

    // Everything the queue delivered so far (each message read once, then deleted).
    let seen: Mutex<Vec<Value>> = Mutex::new(Vec::new());
    let delivered = |want: usize| {
        let (sqs, url, seen) = (&sqs, &url, &seen);
        async move {
            let start = Instant::now();
            let mut seen = seen.lock().await;
            while seen.len() < want && start.elapsed() < Duration::from_secs(20) {
                let out = sqs
                    .receive_message()
                    .queue_url(url)
                    .max_number_of_messages(10)
                    .send()
                    .await
                    .expect("receive");
                for m in out.messages.unwrap_or_default() {
                    let body: Value =
                        serde_json::from_str(m.body().unwrap_or_default()).expect("envelope json");
                    seen.push(body);
                    if let Some(r) = m.receipt_handle() {
                        sqs.delete_message()
                            .queue_url(url)
                            .receipt_handle(r)
                            .send()
                            .await
                            .expect("delete");
                    }
                }
            }
            seen.clone()
        }
    };
    run_all(&bus, delivered, "moto").await;
}
