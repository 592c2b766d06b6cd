//! The operations commands on the in-memory twins, where a stub Graph can say anything:
//! token expiry and validity as debug_token reports them, and the sweep's gauges.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use lc_core::lifecycle::optin::{EntryPoint, Optin, OptinSource, DAY_MS};
use lc_core::memory::{ManualClock, MemoryBus, MemoryQueue, MemoryScheduler, MemoryStore};
use lc_core::operations::{Caller, Operations, OpsConfig, OpsPorts};
use lc_core::ports::graph::{PageAuth, SendError, SendOk, SendRequest, TokenInfo};
use lc_core::ports::{GraphApi, MemoryMetrics, Metric, OptinStore, PageStore, Table};
use lc_core::sending::errors::TransportFailure;
use lc_core::support::secret::{AppCredentials, Secret, Secrets};
use lc_core::webhook::{Identity, IdentityKind};
use serde_json::{json, Value};

const NOW: i64 = 1_800_000_000_000;

/// debug_token answers per input token; no sends.
#[derive(Default)]
#[allow(clippy::type_complexity)]
struct Tokens(Mutex<BTreeMap<String, Result<TokenInfo, SendError>>>);

#[async_trait]
impl GraphApi for Tokens {
    async fn send(&self, _: &PageAuth, _: &SendRequest) -> Result<SendOk, SendError> {
        Err(SendError::Transport {
            failure: TransportFailure::Other,
            detail: "no sends here".into(),
        })
    }

    async fn debug_token(&self, _app: &Secret, input: &Secret) -> Result<TokenInfo, SendError> {
        match self.0.lock().unwrap().get(input.expose()) {
            Some(answer) => answer.clone(),
            None => Ok(TokenInfo::default()),
        }
    }
}

struct World {
    ops: Operations,
    store: Arc<MemoryStore>,
    bus: Arc<MemoryBus>,
    metrics: Arc<MemoryMetrics>,
}

fn world(graph: Tokens) -> World {
    let store = Arc::new(MemoryStore::new());
    let bus = Arc::new(MemoryBus::new());
    let metrics = Arc::new(MemoryMetrics::new());
    let secrets = Arc::new(Secrets {
        apps: vec![AppCredentials {
            app_id: "1".into(),
            app_secret: Secret::new("s"),
            client_token: Secret::default(),
        }],
        verify_token: Secret::new("v"),
        page_tokens: BTreeMap::from([
            ("100".into(), Secret::new("tok-100")),
            ("200".into(), Secret::new("tok-200")),
            ("300".into(), Secret::new("tok-300")),
        ]),
        ..Default::default()
    });
    let q = || Arc::new(MemoryQueue::new("q"));
    let ops = Operations::new(
        OpsPorts {
            table: Table::new(store.clone()),
            bus: bus.clone(),
            events_queue: q(),
            outbound_queue: q(),
            events_dlq: q(),
            outbound_dlq: q(),
            scheduler_dlq: q(),
            scheduler: Arc::new(MemoryScheduler::new()),
            secrets: Arc::new(secrets),
            graph: Arc::new(graph),
            clock: Arc::new(ManualClock::at(NOW)),
            metrics: metrics.clone(),
        },
        OpsConfig::default(),
    );
    World {
        ops,
        store,
        bus,
        metrics,
    }
}

fn caller() -> Caller {
    Caller {
        account: Some("123456789012".into()),
        request_id: "req-1".into(),
        identity: None,
    }
}

#[tokio::test]
async fn tokens_report_days_to_expiry_and_validity_per_page() {
    let graph = Tokens::default();
    {
        let mut t = graph.0.lock().unwrap();
        t.insert(
            "tok-100".into(),
            Ok(TokenInfo {
                is_valid: true,
                app_id: Some("1".into()),
                expires_at_secs: Some((NOW + 6 * DAY_MS + DAY_MS / 2) / 1000),
                ..TokenInfo::default()
            }),
        );
        t.insert(
            "tok-200".into(),
            Ok(TokenInfo {
                is_valid: true,
                app_id: Some("2".into()),
                expires_at_secs: Some(0),
                ..TokenInfo::default()
            }),
        );
        t.insert(
            "tok-300".into(),
            Err(SendError::Transport {
                failure: TransportFailure::Timeout,
                detail: "timed out".into(),
            }),
        );
    }
    let w = world(graph);
    let a = w
        .ops
        .handle(&json!({"command": "check_page_tokens"}), &caller())
        .await
        .unwrap();
    let page = |id: &str| -> Value {
        a["pages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["page_id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(page("100")["days_to_expiry"], 6, "{a:#}");
    assert_eq!(page("100")["valid"], true);
    assert_eq!(page("200")["valid"], false, "a token of another app");
    assert_eq!(page("200")["never_expires"], true);
    assert_eq!(page("300")["valid"], Value::Null, "unknown, not invalid");
    assert_eq!(a["expiring_within_7_days"], 1);
    let m = w.metrics.take();
    assert!(m.contains(&Metric::PageTokenDaysToExpiry {
        page_id: "100".into(),
        days: 6
    }));
    assert!(m.contains(&Metric::PageTokenValid {
        page_id: "100".into(),
        valid: true
    }));
    assert!(m.contains(&Metric::PageTokenValid {
        page_id: "200".into(),
        valid: false
    }));
    assert!(
        !m.iter().any(|x| matches!(x, Metric::PageTokenValid { page_id, .. } | Metric::PageTokenDaysToExpiry { page_id, .. } if page_id == "300")),
        "nothing recorded when Graph could not answer: {m:?}"
    );
    assert!(!a.to_string().contains("tok-"), "tokens are never answered");
    let published = w.bus.take();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].detail.payload["command"], "check_page_tokens");
}

fn optin(id: &str, at: i64) -> Optin {
    Optin::pending(
        Identity::new(IdentityKind::LoginId, id),
        "100",
        "page",
        EntryPoint::LoginConnect,
        OptinSource::Webhook,
        at,
        &format!("optin:{id}"),
        at,
    )
}

#[tokio::test]
async fn the_sweep_measures_what_is_paused_and_owed_now() {
    let w = world(Tokens::default());
    w.store
        .create_optin(&optin("old", NOW - 2 * 3_600_000))
        .await
        .unwrap();
    w.store
        .create_optin(&optin("new", NOW - 60_000))
        .await
        .unwrap();
    assert!(w
        .store
        .set_paused("100", Some("graph 190: token expired"), NOW - 600_000)
        .await
        .unwrap());

    let a = w
        .ops
        .handle(&json!({"command": "sweep"}), &caller())
        .await
        .unwrap();
    assert_eq!(a["oldest_unsent_age_s"], 7_200, "{a:#}");
    let at_risk = a["at_risk"].as_array().unwrap();
    assert_eq!(
        at_risk.len(),
        1,
        "only owed opt-ins older than 10 min: {a:#}"
    );
    assert_eq!(at_risk[0]["optin_key"], "OPTIN#login_id#old");
    assert_eq!(at_risk[0]["deadline_in_min"], (DAY_MS - 7_200_000) / 60_000);
    assert_eq!(a["paused_pages"][0]["reason"], "graph 190: token expired");
    assert_eq!(a["paused_pages"][0]["paused_for_min"], 10);
    assert_eq!(
        w.metrics.take(),
        vec![
            Metric::PagesPausedNow(1),
            Metric::OldestUnsentFirstMessageAge { seconds: 7_200 }
        ]
    );
    assert!(
        w.bus.take().is_empty(),
        "the scheduled sweep is not published"
    );
}
