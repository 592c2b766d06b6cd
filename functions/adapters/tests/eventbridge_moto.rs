//! EventBridgeBus against moto over real HTTP: the bus contract, read where the business reads
//! it (a rule on the bus with an SQS target, as the template's `BusinessQueueArn` sets up).

mod common;

use std::time::{Duration, Instant};

use lc_adapters::eventbridge::{create_bus, route_to_queue, EventBridgeBus};
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
    let eb = aws_sdk_eventbridge::Client::new(&sdk);
    let bus_name = common::unique("bus");
    create_bus(&eb, &bus_name).await.expect("bus");
    route_to_queue(&eb, &sqs, &bus_name, &common::unique("all"), &url)
        .await
        .expect("rule to the queue");
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
