//! The Instagram-Login send path over real HTTP against graph-sim (in-process, 127.0.0.1):
//! `GraphClient` on its own (which host, which token), then the follow-up sender with the
//! client, showing the route an account's config chooses reaches the simulator as it expects
//! (`check_instagram_login_send`: `POST /{version}/{IG_ID}/messages` with an Instagram user
//! token, IGSID recipients only).

use std::collections::BTreeMap;
use std::sync::Arc;

use graph_sim::{
    AttemptOutcome, InstagramTokenRegistration, PageFeaturesUpdate, SimConfig, SimHandle,
};
use lc_adapters::graph::{GraphClient, GraphConfig};
use lc_core::consumer::Fate;
use lc_core::memory::{ManualClock, MemoryBus, MemoryQueue, MemoryStore};
use lc_core::ports::graph::{
    GraphApi, MessagingType, OutgoingMessage, PageAuth, Recipient, SendApi, SendError, SendRequest,
};
use lc_core::ports::store::PageConfig;
use lc_core::ports::{NoMetrics, PageStore, PersonStore, Table};
use lc_core::sending::followup::{Answer, FollowUpConfig, FollowUpPorts, FollowUps};
use lc_core::support::secret::{AppCredentials, Secret, Secrets};
use serde_json::json;

const PAGE: &str = "1001";
const PAGE_TOKEN: &str = "EAAsimPageToken1001abcdef";
/// An Instagram account sending through Instagram Login (its IG_ID is its account id, as the
/// Instagram-Login webhooks name it).
const IG: &str = "17841400000000001";
const IG_TOKEN: &str = "IGQWsimInstagramUserToken001";
/// An Instagram account linked to `PAGE`, not configured for Instagram Login.
const IG_LINKED: &str = "17841400000000002";
/// Configured for Instagram Login, but the secret holds the Page token under its id.
const IG_WRONG: &str = "17841400000000003";
/// Configured for Instagram Login, no token in the secret.
const IG_MISSING: &str = "17841400000000004";
const IGSID: &str = "9100000000000001";

async fn sim() -> SimHandle {
    let sim = graph_sim::start(SimConfig::default().with_page(PAGE, PAGE_TOKEN))
        .await
        .expect("start graph-sim");
    sim.register_instagram_token(InstagramTokenRegistration {
        token: IG_TOKEN.into(),
        ig_account_id: IG.into(),
        expired: false,
    });
    sim.freeze_clock();
    sim
}

fn ig_request(node: &str, api: SendApi) -> SendRequest {
    SendRequest {
        api,
        page_id: node.into(),
        recipient: Recipient::Id(IGSID.into()),
        messaging_type: MessagingType::Response,
        tag: None,
        message: OutgoingMessage {
            text: Some("hi".into()),
            ..OutgoingMessage::default()
        },
    }
}

fn auth(token: &str) -> PageAuth {
    PageAuth {
        access_token: Secret::new(token),
        app_secret: None,
    }
}

fn graph_code(r: Result<lc_core::ports::graph::SendOk, SendError>) -> Option<i64> {
    match r {
        Err(SendError::Graph { error, .. }) => {
            assert!(
                !error.message.contains(IG_TOKEN) && !error.message.contains(PAGE_TOKEN),
                "a token in {error:?}"
            );
            error.code
        }
        other => panic!("expected a Graph error, got {other:?}"),
    }
}

/// The host follows the API: with graph.facebook.com on a dead port and graph.instagram.com on
/// the simulator, only the Instagram-Login send gets through; it carries the IG user token to
/// `/{IG_ID}/messages` and the simulator accepts it as the Instagram account's.
#[tokio::test]
async fn the_instagram_login_path_uses_the_instagram_host_and_the_ig_token() {
    let sim = sim().await;
    sim.register_instagram_person(IG, IGSID, sim.now_ms());
    let client = GraphClient::new(GraphConfig {
        base_url: "http://127.0.0.1:9".into(),
        instagram_base_url: sim.base_url(),
        ..GraphConfig::default()
    })
    .expect("client");

    let ok = client
        .send(&auth(IG_TOKEN), &ig_request(IG, SendApi::InstagramLogin))
        .await
        .expect("accepted on the Instagram-Login path");
    assert_eq!(ok.recipient_id.as_deref(), Some(IGSID));
    let sent = sim.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].page_id, IG, "sent as the Instagram account");
    assert_eq!(sent[0].recipient, json!({"id": IGSID}));

    // The same send on the Page API goes to graph.facebook.com (here: nothing listens).
    match client
        .send(&auth(IG_TOKEN), &ig_request(IG, SendApi::Facebook))
        .await
    {
        Err(SendError::Transport { .. }) => {}
        other => panic!("expected the Facebook host (unreachable), got {other:?}"),
    }
    assert_eq!(
        sim.attempts().len(),
        1,
        "only the Instagram host was reached"
    );
}

/// The simulator refuses a wrong token on the Instagram-Login path: a Page token cannot post
/// to the Instagram node (200), an unknown token is not a token (190).
#[tokio::test]
async fn the_instagram_login_path_refuses_a_wrong_token() {
    let sim = sim().await;
    sim.register_instagram_person(IG, IGSID, sim.now_ms());
    let client = GraphClient::new(GraphConfig::at(sim.base_url())).expect("client");
    let r = client
        .send(&auth(PAGE_TOKEN), &ig_request(IG, SendApi::InstagramLogin))
        .await;
    assert_eq!(graph_code(r), Some(200));
    let r = client
        .send(
            &auth("IGQWnotARegisteredToken99"),
            &ig_request(IG, SendApi::InstagramLogin),
        )
        .await;
    assert_eq!(graph_code(r), Some(190));
    assert!(sim.messages().is_empty());
}

struct World {
    sim: SimHandle,
    store: Arc<MemoryStore>,
    queue: Arc<MemoryQueue>,
    followups: FollowUps,
}

async fn world() -> World {
    let sim = sim().await;
    let now = sim.now_ms();
    let clock = ManualClock::at(now);
    let store = Arc::new(MemoryStore::new());
    let queue =
        Arc::new(MemoryQueue::with_clock("requests.fifo", Arc::new(clock.clone()), 30_000).fifo());
    // The accounts' configs, as an operator writes them on `PAGE#<ig_account_id>`.
    let ig_login = |id: &str| PageConfig {
        page_id: id.into(),
        instagram_login_user_id: Some(id.into()),
        ..PageConfig::default()
    };
    store.put_page(ig_login(IG));
    store.put_page(ig_login(IG_WRONG));
    store.put_page(ig_login(IG_MISSING));
    store.put_page(PageConfig {
        page_id: IG_LINKED.into(),
        linked_page_id: Some(PAGE.into()),
        ..PageConfig::default()
    });
    sim.update_page_features(PageFeaturesUpdate {
        page_id: PAGE.into(),
        instagram_account_id: Some(IG_LINKED.into()),
        ..PageFeaturesUpdate::default()
    });
    // The person wrote to each account just now (the webhook would record it).
    for account in [IG, IG_LINKED, IG_WRONG, IG_MISSING] {
        sim.register_instagram_person(account, IGSID, now);
        store
            .record_user_message(account, IGSID, now)
            .await
            .expect("person");
    }
    let secrets = Secrets {
        apps: vec![AppCredentials {
            app_id: "100000000000001".into(),
            app_secret: Secret::new("sim-app-secret"),
            client_token: Secret::default(),
        }],
        verify_token: Secret::new("vt"),
        page_tokens: BTreeMap::from([(PAGE.to_string(), Secret::new(PAGE_TOKEN))]),
        instagram_tokens: BTreeMap::from([
            (IG.to_string(), Secret::new(IG_TOKEN)),
            // A slip an operator can make: the Page token where the IG user token belongs.
            (IG_WRONG.to_string(), Secret::new(PAGE_TOKEN)),
        ]),
        ..Secrets::default()
    };
    let graph = GraphClient::new(GraphConfig::at(sim.base_url())).expect("client");
    let followups = FollowUps::new(
        FollowUpPorts {
            table: Table::new(store.clone()),
            requests: queue.clone(),
            bus: Arc::new(MemoryBus::new()),
            graph: Arc::new(graph),
            secrets: Arc::new(Arc::new(secrets)),
            clock: Arc::new(clock),
            metrics: Arc::new(NoMetrics),
        },
        FollowUpConfig::default(),
    );
    World {
        sim,
        store,
        queue,
        followups,
    }
}

impl World {
    /// `POST /v1/messages` to the IGSID of `account`, then the requests-queue consumer on what
    /// it queued: the fate of the send.
    async fn follow_up(&self, account: &str) -> Fate {
        let body = json!({
            "recipient": {"igsid": IGSID},
            "page_id": account,
            "message": {"text": format!("hello from {account}")},
            "idempotency_key": format!("k-{account}"),
        })
        .to_string();
        let answer = self.followups.accept(body.as_bytes()).await;
        assert!(matches!(answer, Answer::Accepted(_)), "{answer:?}");
        let queued = self.queue.bodies().pop().expect("queued");
        self.followups.handle_message(&queued).await
    }

    async fn paused(&self, account: &str) -> bool {
        self.store
            .get_page(account)
            .await
            .expect("page")
            .is_some_and(|p| p.paused)
    }
}

#[tokio::test]
async fn a_follow_up_takes_the_route_the_account_config_names() {
    let w = world().await;

    // Configured for Instagram Login: `/{IG}/messages` with the IG user token, accepted.
    assert_eq!(w.follow_up(IG).await, Fate::Ack);
    let sent = w.sim.messages();
    assert_eq!(sent.len(), 1, "{:?}", w.sim.attempts());
    assert_eq!(sent[0].page_id, IG, "sent as the Instagram account itself");
    assert_eq!(sent[0].recipient, json!({"id": IGSID}));
    assert_eq!(sent[0].messaging_type, "RESPONSE");

    // Not configured: the linked Page's token through `/me/messages`, as before.
    assert_eq!(w.follow_up(IG_LINKED).await, Fate::Ack);
    let sent = w.sim.messages();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].page_id, PAGE, "sent with the linked Page's token");

    // Configured, but the secret holds a Page token under the id: Meta refuses it (200, an
    // operator's fix), the account is paused, nothing was sent.
    let fate = w.follow_up(IG_WRONG).await;
    assert!(matches!(fate, Fate::Retry { .. }), "{fate:?}");
    let last = w.sim.attempts().pop().expect("attempt");
    assert_eq!(last.recipient_id.as_deref(), Some(IGSID));
    assert_eq!(
        last.outcome,
        AttemptOutcome::Refused {
            code: 200,
            subcode: None
        }
    );
    assert!(
        w.paused(IG_WRONG).await,
        "the account waits for an operator"
    );
    assert!(!w.paused(PAGE).await, "the Page itself was not at fault");

    // Configured without a token: never sent with another kind of token, paused before Meta.
    let attempts = w.sim.attempts().len();
    let fate = w.follow_up(IG_MISSING).await;
    assert!(matches!(fate, Fate::Retry { .. }), "{fate:?}");
    assert_eq!(
        w.sim.attempts().len(),
        attempts,
        "no call without the token"
    );
    assert!(w.paused(IG_MISSING).await);
    assert_eq!(w.sim.messages().len(), 2);
}
