//! Table test: every webhook fixture (`tests/fixtures/webhooks/`), split and processed by the
//! lifecycle on the in-memory adapters, yields exactly the bus events in
//! `tests/fixtures/bus/<name>.json` (type, page, person, payload; ids and times too, since the
//! clock is fixed). Every inbound event yields at least one bus event: none is dropped.
//!
//! A new fixture needs its expectation: write it with `LC_BLESS_BUS=1 cargo test -p lc-core
//! --test bus_fixtures`, then read it before committing.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lc_core::lifecycle::processor::{Lifecycle, LifecycleConfig, LifecyclePorts, Processed};
use lc_core::memory::{ManualClock, MemoryBus, MemoryQueue, MemoryScheduler, MemoryStore};
use lc_core::ports::{NoMetrics, Table};
use lc_core::support::secret::Secrets;
use lc_core::webhook::{split_body, SplitOutcome};
use serde_json::Value;

const RECEIVED_AT_MS: i64 = 1_700_000_000_000;

fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(sub)
}

fn bodies() -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir("webhooks")).expect("fixtures dir") {
        let path = entry.expect("entry").path();
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("")
            .to_owned();
        if file.ends_with(".expected.json") {
            continue;
        }
        if let Some(name) = file
            .strip_suffix(".json")
            .or_else(|| file.strip_suffix(".bin"))
        {
            out.insert(name.to_owned(), path);
        }
    }
    out
}

fn lifecycle(bus: Arc<MemoryBus>) -> Lifecycle {
    Lifecycle::new(
        LifecyclePorts {
            table: Table::new(Arc::new(MemoryStore::new())),
            scheduler: Arc::new(MemoryScheduler::new()),
            jobs: Arc::new(MemoryQueue::new("outbound")),
            secrets: Arc::new(Arc::new(Secrets::default())),
            bus,
            clock: Arc::new(ManualClock::at(RECEIVED_AT_MS)),
            metrics: Arc::new(NoMetrics),
        },
        LifecycleConfig::default(),
    )
}

/// The bus events one fixture yields, as JSON (`detail-type` + `detail`).
async fn published(body: &[u8]) -> (Vec<Value>, Vec<String>) {
    let events = match split_body(body, RECEIVED_AT_MS) {
        SplitOutcome::Events(e) => e,
        SplitOutcome::Quarantined { events, .. } => events,
    };
    let bus = Arc::new(MemoryBus::new());
    let lc = lifecycle(bus.clone());
    let mut silent = Vec::new();
    let mut out = Vec::new();
    for e in &events {
        let done = lc.process(e).await.expect("processed");
        let got = bus.take();
        if got.is_empty() && !matches!(done, Processed::Replayed { .. }) {
            silent.push(format!("{} ({})", e.kind.as_str(), done.name()));
        }
        for b in got {
            out.push(serde_json::json!({
                "detail-type": b.detail_type.as_str(),
                "detail": serde_json::to_value(&b.detail).expect("detail json"),
            }));
        }
    }
    (out, silent)
}

#[tokio::test]
async fn every_fixture_yields_its_bus_events() {
    let bless = std::env::var("LC_BLESS_BUS").is_ok();
    let mut errors = Vec::new();
    let bodies = bodies();
    assert!(bodies.len() >= 60, "fixtures found: {}", bodies.len());
    for (name, path) in &bodies {
        let body = fs::read(path).expect("body");
        let (got, silent) = published(&body).await;
        if !silent.is_empty() {
            errors.push(format!("{name}: events with nothing published: {silent:?}"));
        }
        let want_path = dir("bus").join(format!("{name}.json"));
        if bless {
            fs::create_dir_all(dir("bus")).expect("bus dir");
            let text = serde_json::to_string_pretty(&got).expect("json") + "\n";
            fs::write(&want_path, text).expect("write expectation");
            continue;
        }
        let Ok(text) = fs::read_to_string(&want_path) else {
            errors.push(format!("{name}: no expectation {}", want_path.display()));
            continue;
        };
        let want: Value = serde_json::from_str(&text).expect("expectation json");
        if Value::Array(got.clone()) != want {
            errors.push(format!(
                "{name}: got\n{}",
                serde_json::to_string_pretty(&got).unwrap_or_default()
            ));
        }
    }
    // An expectation without its fixture is a stale file.
    if let Ok(entries) = fs::read_dir(dir("bus")) {
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(name) = file.strip_suffix(".json") {
                if !bodies.contains_key(name) {
                    errors.push(format!("bus/{file}: no fixture of that name"));
                }
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// The webhook skips an event heard only as a switched-off detail type
/// (`bus::inbound::heard_only_as`): safe only while processing such an event writes nothing
/// anywhere and publishes that detail type alone. Checked on every fixture event of those kinds.
#[tokio::test]
async fn what_the_webhook_may_skip_has_no_effect_but_its_bus_event() {
    use lc_core::bus::inbound::heard_only_as;
    use lc_core::ports::RequestCounter;
    let mut checked = 0;
    let mut errors = Vec::new();
    for (name, path) in &bodies() {
        let body = fs::read(path).expect("body");
        for e in split_body(&body, RECEIVED_AT_MS).events() {
            let Some(only) = heard_only_as(e.kind) else {
                continue;
            };
            let counter = Arc::new(RequestCounter::default());
            let bus = Arc::new(MemoryBus::new());
            let jobs = Arc::new(MemoryQueue::new("outbound"));
            let lc = Lifecycle::new(
                LifecyclePorts {
                    table: Table::new(Arc::new(MemoryStore::with_counter(counter.clone()))),
                    scheduler: Arc::new(MemoryScheduler::with_counter(counter.clone())),
                    jobs: jobs.clone(),
                    secrets: Arc::new(Arc::new(Secrets::default())),
                    bus: bus.clone(),
                    clock: Arc::new(ManualClock::at(RECEIVED_AT_MS)),
                    metrics: Arc::new(NoMetrics),
                },
                LifecycleConfig::default(),
            );
            lc.process(e).await.expect("processed");
            let requests = counter.snapshot();
            let types: Vec<_> = bus.take().iter().map(|b| b.detail_type).collect();
            if !requests.is_empty() || !jobs.bodies().is_empty() || types != [only] {
                errors.push(format!(
                    "{name} ({}): requests {requests:?}, jobs {}, published {types:?}",
                    e.kind.as_str(),
                    jobs.bodies().len()
                ));
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "fixture events of skippable kinds: {checked}");
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// The schemas in `infra/schemas/` document every detail type, and every event the fixtures
/// yield stays inside its schema's fields (a new payload field must be documented).
#[tokio::test]
async fn every_detail_type_has_a_schema_that_its_events_keep_to() {
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/schemas");
    let load = |name: &str| -> Value {
        let text = fs::read_to_string(schemas.join(format!("{name}.json")))
            .unwrap_or_else(|e| panic!("schema for {name}: {e}"));
        serde_json::from_str(&text).expect("schema json")
    };
    for t in lc_core::bus::DetailType::ALL {
        let s = load(t.as_str());
        assert_eq!(s["title"], t.as_str());
    }
    let mut errors = Vec::new();
    for (name, path) in bodies() {
        let (got, _) = published(&fs::read(path).expect("body")).await;
        for e in got {
            let t = e["detail-type"].as_str().unwrap_or("");
            let s = load(t);
            let detail = e["detail"].as_object().cloned().unwrap_or_default();
            for req in s["required"].as_array().into_iter().flatten() {
                if !detail.contains_key(req.as_str().unwrap_or("")) {
                    errors.push(format!("{name}: {t} lacks {req}"));
                }
            }
            let allowed = &s["properties"]["payload"]["properties"];
            for key in detail["payload"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
            {
                if allowed.get(key).is_none() {
                    errors.push(format!(
                        "{name}: {t} payload field {key} is not in its schema"
                    ));
                }
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}
