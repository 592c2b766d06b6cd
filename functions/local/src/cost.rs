//! Cost per opt-in from counted AWS requests and a dated price table (`infra/prices.json`).

use std::collections::BTreeMap;

use serde::Deserialize;

const PRICES: &str = include_str!("../../../infra/prices.json");

#[derive(Debug, Deserialize)]
struct Prices {
    as_of: String,
    dynamodb_usd_per_million_wru: f64,
    dynamodb_usd_per_million_rru: f64,
    sqs_usd_per_million_requests: f64,
    scheduler_usd_per_million_invocations: f64,
}

/// Capacity units per DynamoDB operation for our items (all well under 1 KB): a write is 1
/// WRU, a transactional write 2 per item (our transactions write 2 items), a strongly
/// consistent read of up to 4 KB is 1 RRU.
fn units(op: &str) -> (f64, f64) {
    match op {
        "PutItem" | "UpdateItem" | "DeleteItem" => (1.0, 0.0),
        "TransactWriteItems" => (4.0, 0.0),
        "GetItem" | "Query" => (0.0, 1.0),
        _ => (0.0, 0.0),
    }
}

/// `cost requests_per_optin=… dynamodb_wru_per_optin=… usd_per_million_optins=…`.
pub fn line(requests: &BTreeMap<String, u64>, optins: usize) -> Result<String, String> {
    let prices: Prices = serde_json::from_str(PRICES).map_err(|e| format!("prices.json: {e}"))?;
    let n = optins.max(1) as f64;
    let (mut total, mut wru, mut rru, mut sqs, mut invocations) = (0u64, 0.0, 0.0, 0u64, 0u64);
    for (key, count) in requests {
        total += count;
        let (service, op) = key.split_once('.').unwrap_or((key, ""));
        match service {
            "dynamodb" => {
                let (w, r) = units(op);
                wru += w * *count as f64;
                rru += r * *count as f64;
            }
            "sqs" => sqs += count,
            "scheduler" if op == "Invocation" => invocations += count,
            _ => {}
        }
    }
    let usd = (wru * prices.dynamodb_usd_per_million_wru
        + rru * prices.dynamodb_usd_per_million_rru
        + sqs as f64 * prices.sqs_usd_per_million_requests
        + invocations as f64 * prices.scheduler_usd_per_million_invocations)
        / n;
    let detail: Vec<String> = requests.iter().map(|(k, v)| format!("{k}={v}")).collect();
    eprintln!(
        "cost: requests {} (prices as of {})",
        detail.join(" "),
        prices.as_of
    );
    Ok(format!(
        "cost requests_per_optin={:.2} dynamodb_wru_per_optin={:.2} usd_per_million_optins={:.2}",
        total as f64 / n,
        wru / n,
        usd
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_parse_and_the_line_adds_up() {
        let mut r = BTreeMap::new();
        r.insert("dynamodb.PutItem".to_string(), 10);
        r.insert("dynamodb.UpdateItem".to_string(), 10);
        r.insert("sqs.SendMessageBatch".to_string(), 10);
        r.insert("scheduler.CreateSchedule".to_string(), 10);
        let l = line(&r, 10).unwrap();
        assert!(l.starts_with("cost requests_per_optin=4.00 dynamodb_wru_per_optin=2.00 usd_per_million_optins=1.65"), "{l}");
    }
}
