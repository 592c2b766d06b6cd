//! The opt-in lifecycle on the in-memory adapters: GIVEN events as the webhook queues them,
//! WHEN the events function processes them (again, concurrently, out of order), THEN the table,
//! the schedules and the outbound queue hold exactly what the promise needs.

use std::sync::Arc;

use futures::future::join_all;
use lc_core::lifecycle::optin::{
    schedule_name, DeadlineCheck, EntryPoint, FirstMessageJob, OptinState, DAY_MS,
};
use lc_core::lifecycle::processor::{
    Lifecycle, LifecycleConfig, LifecyclePorts, ProcessError, Processed,
};
use lc_core::lifecycle::refs;
use lc_core::memory::{
    ManualClock, MemoryBus, MemoryQueue, MemoryScheduler, MemoryStore, QueueFault,
};
use lc_core::ports::store::{Claim, Finish, TokenStatus};
use lc_core::ports::{
    Clock, NoMetrics, OptinStore, PageStore, PersonStore, QuarantineStore, RequestCounter,
    Scheduler, Table,
};
use lc_core::support::secret::{Secret, Secrets};
use lc_core::webhook::{split_body, InboundEvent, SplitOutcome};

const T: i64 = 1_800_000_000_000;
const PAGE: &str = "100";
const HOUR: i64 = 3_600_000;

struct World {
    bus: Arc<MemoryBus>,
    events: Lifecycle,
    store: Arc<MemoryStore>,
    scheduler: Arc<MemoryScheduler>,
    jobs: Arc<MemoryQueue>,
    clock: ManualClock,
    counter: Arc<RequestCounter>,
}

const REF_KEY: [u8; 32] = [7; 32];

fn world() -> World {
    let counter = Arc::new(RequestCounter::new());
    let store = Arc::new(MemoryStore::with_counter(counter.clone()));
    let scheduler = Arc::new(MemoryScheduler::with_counter(counter.clone()));
    let jobs = Arc::new(MemoryQueue::new("outbound"));
    let clock = ManualClock::at(T + 5_000);
    let bus = Arc::new(MemoryBus::new());
    let config = LifecycleConfig::default();
    let secrets = Arc::new(Secrets {
        ref_keys: std::collections::BTreeMap::from([(
            "1".to_string(),
            Secret::new(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                REF_KEY,
            )),
        )]),
        ..Secrets::default()
    });
    World {
        events: Lifecycle::new(
            LifecyclePorts {
                table: Table::new(store.clone()),
                scheduler: scheduler.clone(),
                jobs: jobs.clone(),
                secrets: Arc::new(secrets),
                bus: bus.clone(),
                clock: Arc::new(clock.clone()),
                metrics: Arc::new(NoMetrics),
            },
            config,
        ),
        store,
        scheduler,
        jobs,
        clock,
        counter,
        bus,
    }
}

fn events_of(body: &str) -> Vec<InboundEvent> {
    match split_body(body.as_bytes(), T + 1_000) {
        SplitOutcome::Events(e) => e,
        other => panic!("fixture must parse: {other:?}"),
    }
}

fn one(item: &str) -> InboundEvent {
    let body = format!(
        r#"{{"object":"page","entry":[{{"id":"{PAGE}","time":{T},"messaging":[{item}]}}]}}"#
    );
    let mut e = events_of(&body);
    assert_eq!(e.len(), 1);
    e.remove(0)
}

fn login_optin(login_id: &str, ts: i64) -> InboundEvent {
    one(&format!(
        r#"{{"recipient":{{"id":"{PAGE}"}},"timestamp":{ts},"optin":{{"login_id":"{login_id}"}}}}"#
    ))
}

fn reply(psid: &str, ts: i64, mid: &str, prior: Option<(&str, &str)>) -> InboundEvent {
    let prior = prior
        .map(|(source, id)| {
            format!(r#","prior_message":{{"source":"{source}","identifier":"{id}"}}"#)
        })
        .unwrap_or_default();
    one(&format!(
        r#"{{"sender":{{"id":"{psid}"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{ts},"message":{{"mid":"{mid}","text":"hi ✓"}}{prior}}}"#
    ))
}

fn jobs(w: &World) -> Vec<FirstMessageJob> {
    w.jobs
        .bodies()
        .iter()
        .map(|b| serde_json::from_str(b).expect("job json"))
        .collect()
}

#[tokio::test]
async fn a_login_connect_optin_becomes_one_obligation() {
    let w = world();
    let ev = login_optin("L1", T);
    let out = w.events.process(&ev).await.unwrap();
    assert!(
        matches!(
            out,
            Processed::OptinCreated {
                entry_point: EntryPoint::LoginConnect,
                schedule_created: true,
                ..
            }
        ),
        "{out:?}"
    );
    // The measured cost of one opt-in in this function (before the test's own reads).
    let counts = w.counter.snapshot();
    println!(
        "requests per opt-in: {counts:?}, sqs SendMessageBatch={}",
        w.jobs.calls()
    );
    assert_eq!(
        w.counter.total("dynamodb"),
        2,
        "PutItem + UpdateItem: {counts:?}"
    );
    assert_eq!(w.counter.total("scheduler"), 1, "{counts:?}");
    assert_eq!(w.jobs.calls(), 1);

    let o = w
        .store
        .get_optin("OPTIN#login_id#L1")
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(o.state, OptinState::Pending);
    assert_eq!(o.opted_in_at_ms, T, "the event's time, not processing time");
    assert_eq!(o.deadline_at_ms, T + DAY_MS);
    assert_eq!(o.page_id, PAGE);
    assert!(o.job_enqueued);

    let s = w
        .scheduler
        .get_schedule(&schedule_name("OPTIN#login_id#L1"))
        .await
        .unwrap()
        .expect("scheduled");
    assert_eq!(s.at_ms, T + DAY_MS - HOUR, "deadline minus the 1 h margin");
    let input: DeadlineCheck = serde_json::from_str(&s.input).unwrap();
    assert_eq!(
        (input.optin_key.as_str(), input.check.as_str()),
        ("OPTIN#login_id#L1", "at_risk")
    );

    let j = jobs(&w);
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].optin_key, "OPTIN#login_id#L1");
    assert_eq!(j[0].deadline_at_ms, T + DAY_MS);
}

#[tokio::test]
async fn duplicates_change_nothing_and_emit_nothing() {
    let w = world();
    let ev = login_optin("L1", T);
    w.events.process(&ev).await.unwrap();
    w.counter.reset();
    let again = w.events.process(&ev).await.unwrap();
    assert_eq!(
        again,
        Processed::OptinDuplicate {
            state: OptinState::Pending
        }
    );
    assert_eq!(jobs(&w).len(), 1);
    assert_eq!(w.scheduler.len(), 1);
    assert_eq!(w.counter.total("scheduler"), 0);
    assert_eq!(
        w.counter.total("dynamodb"),
        1,
        "a duplicate costs one failed conditional put"
    );
}

#[tokio::test]
async fn storm_of_fifty_plus_one_out_of_order() {
    let w = world();
    let ev = login_optin("L1", T);
    let results = join_all((0..50).map(|_| w.events.process(&ev))).await;
    let created = results
        .iter()
        .filter(|r| matches!(r, Ok(Processed::OptinCreated { .. })))
        .count();
    assert_eq!(created, 1, "{results:?}");
    // A copy that met the creator mid-way is retried (SQS redelivers it), never dropped.
    let retried = results.iter().filter(|r| r.is_err()).count();
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(_) | Err(ProcessError::Retry(_)))));
    for _ in 0..retried {
        assert!(matches!(
            w.events.process(&ev).await.unwrap(),
            Processed::OptinDuplicate { .. }
        ));
    }
    // The same person's later webhook (another app on the page, delivered late).
    let late = login_optin("L1", T - 10);
    w.events.process(&late).await.unwrap();
    assert_eq!(w.scheduler.len(), 1);
    assert_eq!(jobs(&w).len(), 1, "at most one live first-message job");
}

#[tokio::test]
async fn an_optin_past_its_deadline_is_recorded_missed_and_never_sent() {
    let w = world();
    w.clock.set(T + DAY_MS);
    let out = w.events.process(&login_optin("L1", T)).await.unwrap();
    assert_eq!(
        out,
        Processed::OptinMissedOnArrival {
            entry_point: EntryPoint::LoginConnect
        }
    );
    let o = w
        .store
        .get_optin("OPTIN#login_id#L1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.state, OptinState::Expired);
    assert!(jobs(&w).is_empty() && w.scheduler.is_empty());
}

#[tokio::test]
async fn a_late_optin_gets_a_final_check_at_its_deadline() {
    let w = world();
    w.clock.set(T + DAY_MS - 30_000);
    w.events.process(&login_optin("L1", T)).await.unwrap();
    let s = w
        .scheduler
        .get_schedule(&schedule_name("OPTIN#login_id#L1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.at_ms, T + DAY_MS);
    assert!(s.input.contains("\"final\""));
}

#[tokio::test]
async fn a_crash_before_enqueue_is_recovered_by_a_redelivery() {
    let w = world();
    let ev = login_optin("L1", T);
    w.jobs.set_fault(QueueFault::FailCalls(1));
    assert!(matches!(
        w.events.process(&ev).await,
        Err(ProcessError::Retry(_))
    ));
    assert!(jobs(&w).is_empty());
    // Redelivered at once: the creator's claim is still live, so no second job may start,
    // and the copy is kept for later rather than dropped.
    assert!(matches!(
        w.events.process(&ev).await,
        Err(ProcessError::Retry(_))
    ));
    assert!(jobs(&w).is_empty());
    // Redelivered after the claim lapsed (SQS visibility 180 s > claim 60 s).
    w.clock.advance(61_000);
    assert_eq!(
        w.events.process(&ev).await.unwrap(),
        Processed::OptinJobTakenOver
    );
    assert_eq!(jobs(&w).len(), 1);
    assert!(matches!(
        w.events.process(&ev).await.unwrap(),
        Processed::OptinDuplicate { .. }
    ));
    assert_eq!(jobs(&w).len(), 1);
}

#[tokio::test]
async fn a_reply_links_login_id_and_psid_both_ways() {
    let w = world();
    w.events.process(&login_optin("L1", T)).await.unwrap();
    let out = w
        .events
        .process(&reply("P1", T + HOUR, "m_1", Some(("login_connect", "L1"))))
        .await
        .unwrap();
    assert_eq!(
        out,
        Processed::UserMessage {
            window_moved: true,
            linked: true
        }
    );
    let o = w
        .store
        .get_optin("OPTIN#login_id#L1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (o.state, o.psid.as_deref()),
        (OptinState::Answered, Some("P1"))
    );
    let p = w.store.get_person(PAGE, "P1").await.unwrap().unwrap();
    assert_eq!(p.login_id.as_deref(), Some("L1"));
    assert_eq!(p.last_user_message_at_ms, Some(T + HOUR));
}

fn checkbox_optin(user_ref: &str, ts: i64) -> InboundEvent {
    one(&format!(
        r#"{{"recipient":{{"id":"{PAGE}"}},"timestamp":{ts},"optin":{{"ref":"cart-1","user_ref":"{user_ref}"}}}}"#
    ))
}

#[tokio::test]
async fn a_reply_before_its_optin_converges_to_the_same_state() {
    // The checkbox plugin's prior_message source is documented: a reply that overtakes its
    // opt-in may create the obligation, already answered.
    let in_order = world();
    in_order
        .events
        .process(&checkbox_optin("U1", T))
        .await
        .unwrap();
    in_order
        .events
        .process(&reply(
            "P1",
            T + HOUR,
            "m_1",
            Some(("checkbox_plugin", "U1")),
        ))
        .await
        .unwrap();

    let reversed = world();
    reversed
        .events
        .process(&reply(
            "P1",
            T + HOUR,
            "m_1",
            Some(("checkbox_plugin", "U1")),
        ))
        .await
        .unwrap();
    let out = reversed
        .events
        .process(&checkbox_optin("U1", T))
        .await
        .unwrap();
    assert_eq!(
        out,
        Processed::OptinDuplicate {
            state: OptinState::Answered
        }
    );

    for w in [&in_order, &reversed] {
        let o = w
            .store
            .get_optin("OPTIN#user_ref#U1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (o.state, o.psid.as_deref()),
            (OptinState::Answered, Some("P1"))
        );
        let p = w.store.get_person(PAGE, "P1").await.unwrap().unwrap();
        assert_eq!(p.user_ref.as_deref(), Some("U1"));
    }
    assert!(
        jobs(&reversed).is_empty(),
        "the person already wrote: no first message is owed"
    );
}

#[tokio::test]
async fn an_unknown_source_naming_an_unknown_identifier_creates_no_optin() {
    let w = world();
    w.events
        .process(&reply("P1", T + HOUR, "m_1", Some(("something_new", "L9"))))
        .await
        .unwrap();
    assert_eq!(
        w.store.get_optin("OPTIN#login_id#L9").await.unwrap(),
        None,
        "no obligation invented from an undocumented source"
    );
    // The person still remembers what the reply named.
    let p = w.store.get_person(PAGE, "P1").await.unwrap().unwrap();
    assert_eq!(p.linked, vec!["login_id:L9".to_string()]);
}

#[tokio::test]
async fn links_never_rewrite_history() {
    let w = world();
    w.events.process(&login_optin("L1", T)).await.unwrap();
    // The first message failed for good (Meta knew no such login_id, say).
    let now = T + 5_000;
    let Claim::Claimed(c) = w
        .store
        .claim("OPTIN#login_id#L1", 1, now, now + 30_000)
        .await
        .unwrap()
    else {
        panic!("claimable");
    };
    assert!(w
        .store
        .finish(
            &c.key(),
            c.attempts,
            &Finish::Failed {
                error: "no_matching_user".into()
            },
            now
        )
        .await
        .unwrap());
    // A reply naming it links the PSID but does not turn `failed` into `answered`.
    w.events
        .process(&reply("P1", T + HOUR, "m_1", Some(("login_connect", "L1"))))
        .await
        .unwrap();
    let o = w
        .store
        .get_optin("OPTIN#login_id#L1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.state, OptinState::Failed);
    assert_eq!(o.psid.as_deref(), Some("P1"));
    // A second, different identifier on the same PSID is kept beside the first.
    w.events.process(&login_optin("L2", T + 1)).await.unwrap();
    w.events
        .process(&reply(
            "P1",
            T + 2 * HOUR,
            "m_2",
            Some(("login_connect", "L2")),
        ))
        .await
        .unwrap();
    let p = w.store.get_person(PAGE, "P1").await.unwrap().unwrap();
    assert_eq!(p.login_id.as_deref(), Some("L1"), "the first link stays");
    assert_eq!(
        p.linked,
        vec!["login_id:L1".to_string(), "login_id:L2".to_string()]
    );
}

#[tokio::test]
async fn a_reply_during_a_live_send_is_retried_later() {
    let w = world();
    w.events.process(&login_optin("L1", T)).await.unwrap();
    let now = T + 5_000;
    w.store
        .claim("OPTIN#login_id#L1", 1, now, now + 30_000)
        .await
        .unwrap();
    let r = w
        .events
        .process(&reply("P1", T + HOUR, "m_1", Some(("login_connect", "L1"))))
        .await;
    assert!(matches!(r, Err(ProcessError::Retry(_))), "{r:?}");
}

#[tokio::test]
async fn checkbox_reply_links_the_user_ref() {
    let w = world();
    let ev = one(&format!(
        r#"{{"recipient":{{"id":"{PAGE}"}},"timestamp":{T},"optin":{{"ref":"cart-1","user_ref":"U1"}}}}"#
    ));
    assert!(matches!(
        w.events.process(&ev).await.unwrap(),
        Processed::OptinCreated {
            entry_point: EntryPoint::Checkbox,
            ..
        }
    ));
    w.events
        .process(&reply("P2", T + 1, "m_2", Some(("checkbox_plugin", "U1"))))
        .await
        .unwrap();
    let o = w
        .store
        .get_optin("OPTIN#user_ref#U1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.psid.as_deref(), Some("P2"));
    assert_eq!(
        w.store
            .get_person(PAGE, "P2")
            .await
            .unwrap()
            .unwrap()
            .user_ref
            .as_deref(),
        Some("U1")
    );
}

#[tokio::test]
async fn send_to_messenger_refs_are_verified_never_trusted() {
    let w = world();
    let valid = refs::mint(1, &REF_KEY, b"order-42", (T / 1000) + 3600).unwrap();
    let mut tampered = valid.clone();
    tampered.pop();
    tampered.push(if valid.ends_with('A') { 'B' } else { 'A' });
    let cases = [
        ("P1", valid.as_str(), "valid"),
        ("P2", tampered.as_str(), "invalid"),
        ("P3", "plain-ref", "opaque"),
    ];
    for (psid, r, status) in cases {
        let ev = one(&format!(
            r#"{{"sender":{{"id":"{psid}"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{T},"optin":{{"ref":"{r}"}}}}"#
        ));
        w.events.process(&ev).await.unwrap();
        let o = w
            .store
            .get_optin(&format!("OPTIN#psid#{PAGE}#{psid}"))
            .await
            .unwrap()
            .unwrap();
        let info = o.reference.expect("ref kept");
        assert_eq!(info.status, status, "{psid}");
        assert_eq!(info.payload.is_some(), status == "valid");
        if status == "valid" {
            assert_eq!(info.payload.as_deref(), Some("order-42"));
        }
    }
    assert_eq!(
        jobs(&w).len(),
        3,
        "a flagged ref is still an opt-in; only the payload is untrusted"
    );
}

#[tokio::test]
async fn marketing_tokens_stop_and_resume_in_event_order() {
    let w = world();
    let ev = |ts: i64, status: Option<&str>| {
        let status = status
            .map(|s| format!(r#","notification_messages_status":"{s}""#))
            .unwrap_or_default();
        one(&format!(
            r#"{{"sender":{{"id":"P1"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{ts},"optin":{{"type":"notification_messages","payload":"deals","notification_messages_token":"TOK"{status}}}}}"#
        ))
    };
    let status = || async { w.store.get_tokens(PAGE, "P1").await.unwrap()[0].status };
    w.events.process(&ev(T, None)).await.unwrap();
    assert_eq!(status().await, TokenStatus::Active);
    w.events
        .process(&ev(T + 10, Some("STOP NOTIFICATIONS")))
        .await
        .unwrap();
    assert_eq!(
        status().await,
        TokenStatus::Stopped,
        "STOP disables at once"
    );
    w.events
        .process(&ev(T + 20, Some("RESUME NOTIFICATIONS")))
        .await
        .unwrap();
    assert_eq!(status().await, TokenStatus::Active);
    let late = w
        .events
        .process(&ev(T + 15, Some("STOP NOTIFICATIONS")))
        .await
        .unwrap();
    assert!(matches!(
        late,
        Processed::MarketingToken { applied: false, .. }
    ));
    assert_eq!(
        status().await,
        TokenStatus::Active,
        "an older STOP never overrides a newer RESUME"
    );
    assert!(
        jobs(&w).is_empty(),
        "marketing opt-ins are not first-message obligations"
    );
}

#[tokio::test]
async fn the_window_only_moves_forward() {
    let w = world();
    w.events
        .process(&reply("P1", T + 100, "m_a", None))
        .await
        .unwrap();
    let older = w
        .events
        .process(&reply("P1", T + 50, "m_b", None))
        .await
        .unwrap();
    assert_eq!(
        older,
        Processed::UserMessage {
            window_moved: false,
            linked: false
        }
    );
    assert_eq!(
        w.store
            .get_person(PAGE, "P1")
            .await
            .unwrap()
            .unwrap()
            .last_user_message_at_ms,
        Some(T + 100)
    );
}

#[tokio::test]
async fn referrals_are_stored_with_source_and_ad() {
    let w = world();
    let ev = one(&format!(
        r#"{{"sender":{{"id":"P1"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{T},"referral":{{"ref":"spring","source":"ADS","type":"OPEN_THREAD","ad_id":6045246247433}}}}"#
    ));
    assert_eq!(
        w.events.process(&ev).await.unwrap(),
        Processed::Referral { stored: true }
    );
    let r = w
        .store
        .get_person(PAGE, "P1")
        .await
        .unwrap()
        .unwrap()
        .referral
        .unwrap();
    assert_eq!(
        (
            r.reference.as_deref(),
            r.source.as_deref(),
            r.ad_id.as_deref()
        ),
        (Some("spring"), Some("ADS"), Some("6045246247433"))
    );
    let pb = one(&format!(
        r#"{{"sender":{{"id":"P2"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{T},"postback":{{"mid":"m_pb","title":"Get Started","payload":"GS","referral":{{"ref":"mme","source":"SHORTLINK","type":"OPEN_THREAD"}}}}}}"#
    ));
    w.events.process(&pb).await.unwrap();
    let p2 = w.store.get_person(PAGE, "P2").await.unwrap().unwrap();
    assert_eq!(p2.referral.unwrap().reference.as_deref(), Some("mme"));
    assert_eq!(
        p2.last_user_message_at_ms,
        Some(T),
        "a Get Started tap opens the window"
    );
}

#[tokio::test]
async fn policy_enforcement_pauses_and_unpauses_in_order() {
    let w = world();
    let pe = |ts: i64, action: &str| {
        one(&format!(
            r#"{{"recipient":{{"id":"{PAGE}"}},"timestamp":{ts},"policy_enforcement":{{"action":"{action}","reason":"spam"}}}}"#
        ))
    };
    assert_eq!(
        w.events.process(&pe(T, "block")).await.unwrap(),
        Processed::PagePaused { applied: true }
    );
    let page = w.store.get_page(PAGE).await.unwrap().unwrap();
    assert!(page.paused && page.paused_reason.unwrap().contains("spam"));
    assert_eq!(
        w.events.process(&pe(T + 10, "unblock")).await.unwrap(),
        Processed::PageUnpaused { applied: true }
    );
    assert_eq!(
        w.events.process(&pe(T + 5, "block")).await.unwrap(),
        Processed::PagePaused { applied: false }
    );
    assert!(!w.store.get_page(PAGE).await.unwrap().unwrap().paused);
    assert_eq!(
        w.events.process(&pe(T + 20, "warning")).await.unwrap(),
        Processed::PolicyWarning
    );
}

#[tokio::test]
async fn echoes_deliveries_and_unknown_kinds_are_no_ops() {
    let w = world();
    let echo = one(&format!(
        r#"{{"sender":{{"id":"{PAGE}"}},"recipient":{{"id":"P1"}},"timestamp":{T},"message":{{"mid":"m_e","is_echo":true,"app_id":1234,"text":"ours"}}}}"#
    ));
    let delivery = one(&format!(
        r#"{{"sender":{{"id":"P1"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{T},"delivery":{{"watermark":{T}}}}}"#
    ));
    let unknown = one(&format!(
        r#"{{"sender":{{"id":"P1"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{T},"brand_new_kind":{{"x":1}}}}"#
    ));
    for ev in [echo, delivery, unknown] {
        assert!(matches!(
            w.events.process(&ev).await.unwrap(),
            Processed::Ignored { .. }
        ));
    }
    assert!(
        w.store.get_person(PAGE, "P1").await.unwrap().is_none(),
        "an echo is not the person writing"
    );
}

#[tokio::test]
async fn what_cannot_be_acted_on_is_quarantined_and_listable() {
    let w = world();
    let malformed = one(&format!(
        r#"{{"sender":{{"id":"P1"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{T},"message":5}}"#
    ));
    assert!(matches!(
        w.events.process(&malformed).await.unwrap(),
        Processed::Quarantined { .. }
    ));
    let garbage = match split_body(b"{not json", T) {
        SplitOutcome::Quarantined { events, .. } => events,
        other => panic!("{other:?}"),
    };
    w.events.process(&garbage[0]).await.unwrap();
    assert!(matches!(
        w.events.process_body("not an event").await.unwrap(),
        Processed::Quarantined { .. }
    ));
    // Processing the same quarantined event again stores it once.
    w.events.process(&garbage[0]).await.unwrap();
    let listed = w.store.list_quarantined(10).await.unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let back = InboundEvent::from_json(
        &listed
            .iter()
            .find(|r| r.event_json.contains("{not json"))
            .unwrap()
            .event_json,
    )
    .unwrap();
    assert_eq!(
        back.quarantine.unwrap().data,
        "{not json",
        "the raw body is kept for replay"
    );
}

#[tokio::test]
async fn an_operator_replay_processes_what_parses_now_and_keeps_the_rest() {
    let w = world();
    // Quarantined by an older parser: its item is a perfectly good opt-in today.
    let mut fixed_since = login_optin("L-replay", T);
    fixed_since.kind = lc_core::webhook::EventKind::Malformed;
    w.store
        .put_quarantined(&lc_core::ports::store::QuarantinedRecord {
            id: format!("{:013}#{}", T, fixed_since.key),
            reason: "malformed item".into(),
            received_at_ms: T,
            event_json: fixed_since.to_json().unwrap(),
        })
        .await
        .unwrap();
    // Still garbage.
    let garbage = match split_body(b"{not json", T) {
        SplitOutcome::Quarantined { events, .. } => events,
        other => panic!("{other:?}"),
    };
    w.events.process(&garbage[0]).await.unwrap();

    let out = w
        .events
        .process_body(r#"{"replay":"quarantine","limit":10}"#)
        .await
        .unwrap();
    assert_eq!(
        out,
        Processed::Replayed {
            replayed: 1,
            still_quarantined: 1
        }
    );
    assert!(w
        .store
        .get_optin("OPTIN#login_id#L-replay")
        .await
        .unwrap()
        .is_some());
    assert_eq!(jobs(&w).len(), 1);
    let left = w.store.list_quarantined(10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].event_json.contains("{not json"));
}

/// Marks generation `generation` of `key` sent, as the sender would.
async fn mark_sent(w: &World, key: &str, generation: u32) {
    let now = w.clock.now_ms();
    let Claim::Claimed(c) = w
        .store
        .claim(key, generation, now, now + 30_000)
        .await
        .unwrap()
    else {
        panic!("claimable");
    };
    assert!(w
        .store
        .finish(
            key,
            c.attempts,
            &Finish::Sent {
                message_id: Some(format!("m-{generation}")),
                sent_at_ms: now
            },
            now
        )
        .await
        .unwrap());
}

#[tokio::test]
async fn a_later_optin_on_a_closed_obligation_opens_a_new_generation() {
    let w = world();
    let first = login_optin("L1", T);
    w.events.process(&first).await.unwrap();
    mark_sent(&w, "OPTIN#login_id#L1", 1).await;

    // reset_messenger_state, then the same login_id opts in again two hours later.
    w.clock.set(T + 2 * HOUR + 5_000);
    let again = login_optin("L1", T + 2 * HOUR);
    let out = w.events.process(&again).await.unwrap();
    assert!(matches!(out, Processed::OptinCreated { .. }), "{out:?}");

    let o = w
        .store
        .get_optin("OPTIN#login_id#L1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((o.generation, o.state), (2, OptinState::Pending));
    assert_eq!(o.opted_in_at_ms, T + 2 * HOUR);
    assert_eq!(o.deadline_at_ms, T + 2 * HOUR + DAY_MS, "its own deadline");
    assert_eq!(o.history.len(), 1, "the first generation's outcome is kept");
    assert_eq!(o.history[0].state, OptinState::Sent);
    assert_eq!(o.history[0].message_id.as_deref(), Some("m-1"));

    // Its own first-message job and its own deadline check.
    let js = jobs(&w);
    assert_eq!(js.len(), 2);
    assert_eq!(js[1].generation, Some(2));
    let names = w.scheduler.names();
    assert!(names.contains(&o.schedule_name), "{names:?}");
    assert_ne!(o.schedule_name, schedule_name("OPTIN#login_id#L1"));

    // Redeliveries of either event converge: no third generation, no third job.
    for ev in [&again, &first, &again] {
        let out = w.events.process(ev).await.unwrap();
        assert!(matches!(out, Processed::OptinDuplicate { .. }), "{out:?}");
    }
    assert_eq!(jobs(&w).len(), 2);
    let o = w
        .store
        .get_optin("OPTIN#login_id#L1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.generation, 2);
}

#[tokio::test]
async fn an_optin_on_an_open_obligation_is_a_duplicate() {
    let w = world();
    w.events.process(&login_optin("L1", T)).await.unwrap();
    // Still pending: a second opt-in event is the same obligation.
    let out = w
        .events
        .process(&login_optin("L1", T + HOUR))
        .await
        .unwrap();
    assert!(matches!(out, Processed::OptinDuplicate { .. }), "{out:?}");
    let o = w
        .store
        .get_optin("OPTIN#login_id#L1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.generation, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_copies_of_a_new_optin_open_one_generation() {
    let w = Arc::new(world());
    w.events.process(&login_optin("L1", T)).await.unwrap();
    mark_sent(&w, "OPTIN#login_id#L1", 1).await;
    w.clock.set(T + 2 * HOUR + 5_000);
    let again = login_optin("L1", T + 2 * HOUR);
    let runs = (0..20).map(|_| {
        let (w, ev) = (w.clone(), again.clone());
        tokio::spawn(async move { w.events.process(&ev).await })
    });
    let outs: Vec<Processed> = join_all(runs)
        .await
        .into_iter()
        .filter_map(|r| r.ok().and_then(|r| r.ok()))
        .collect();
    let opened = outs
        .iter()
        .filter(|o| matches!(o, Processed::OptinCreated { .. }))
        .count();
    assert_eq!(opened, 1, "{outs:?}");
    let o = w
        .store
        .get_optin("OPTIN#login_id#L1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((o.generation, o.history.len()), (2, 1));
    let gen2_jobs = jobs(&w).iter().filter(|j| j.generation == Some(2)).count();
    assert!(gen2_jobs >= 1);
}

#[tokio::test]
async fn a_scheduler_outage_does_not_hold_back_the_first_message() {
    let w = world();
    w.scheduler.fail_next_creates(1);
    let ev = login_optin("L1", T);
    let r = w.events.process(&ev).await;
    assert!(matches!(r, Err(ProcessError::Retry(_))), "{r:?}");
    assert_eq!(
        jobs(&w).len(),
        1,
        "the job went out before the schedule failed"
    );
    // The redelivery, once the creator's claim lapsed, sets the deadline check.
    w.clock.advance(61_000);
    let out = w.events.process(&ev).await.unwrap();
    assert_eq!(out, Processed::OptinJobTakenOver);
    assert_eq!(
        w.scheduler.names(),
        vec![schedule_name("OPTIN#login_id#L1")]
    );
}

#[tokio::test]
async fn events_are_published_after_the_state_and_never_lost() {
    let w = world();
    // One entry refused: sent again within the call.
    w.bus.refuse_next_entries(1);
    w.events.process(&login_optin("L1", T)).await.unwrap();
    let published = w.bus.take();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].detail_type.as_str(), "OptInReceived");
    let first_id = published[0].detail.event_id.clone();

    // The bus down for every round: the message is kept (Retry) though the state is durable...
    w.bus.fail_next_calls(10);
    let ev = reply("P1", T + HOUR, "m_1", None);
    let r = w.events.process(&ev).await;
    assert!(matches!(r, Err(ProcessError::Retry(_))), "{r:?}");
    assert!(w.bus.take().is_empty());
    let p = w.store.get_person(PAGE, "P1").await.unwrap().unwrap();
    assert_eq!(p.last_user_message_at_ms, Some(T + HOUR), "state first");
    // ...and processing it again publishes the same event, with a stable id.
    w.bus.fail_next_calls(0);
    w.events.process(&ev).await.unwrap();
    w.events.process(&ev).await.unwrap();
    let again = w.bus.take();
    assert_eq!(again.len(), 2);
    assert_eq!(again[0].detail_type.as_str(), "MessageReceived");
    assert_eq!(again[0].detail.event_id, again[1].detail.event_id);
    // The opt-in's redelivery republishes with its own id.
    w.events.process(&login_optin("L1", T)).await.unwrap();
    assert_eq!(w.bus.take()[0].detail.event_id, first_id);
}

/// A login-started generation gets a confirm check an hour after the login, under its own
/// name; the webhook for the same grant confirms it once; a webhook-started one gets neither.
#[tokio::test]
async fn a_login_started_generation_is_checked_and_confirmed_by_its_webhook() {
    let w = world();
    let login = lc_core::lifecycle::processor::login_event(PAGE, "L1", T, T + 1_000).unwrap();
    w.events.process(&login).await.unwrap();
    let key = "OPTIN#login_id#L1";
    let o = w.store.get_optin(key).await.unwrap().unwrap();
    assert_eq!(o.source, lc_core::lifecycle::optin::OptinSource::Login);
    let confirm = w
        .scheduler
        .get_schedule(&o.confirm_schedule_name())
        .await
        .unwrap()
        .expect("a confirm check");
    assert_eq!(confirm.at_ms, T + HOUR);
    let check: DeadlineCheck = serde_json::from_str(&confirm.input).unwrap();
    assert_eq!(
        (
            check.optin_key.as_str(),
            check.generation,
            check.check.as_str()
        ),
        (key, Some(1), "confirm")
    );
    assert!(
        w.scheduler.names().contains(&o.schedule_name),
        "and its deadline check"
    );

    // Meta's webhook for the same grant, stamped a little before the callback's time.
    w.clock.set(T + 30_000);
    let out = w
        .events
        .process(&login_optin("L1", T - 2_000))
        .await
        .unwrap();
    assert!(matches!(out, Processed::OptinDuplicate { .. }), "{out:?}");
    let confirmed = w.store.get_optin(key).await.unwrap().unwrap();
    assert_eq!(confirmed.confirmed_at_ms, Some(T + 30_000));
    // A redelivery keeps the first confirmation.
    w.clock.set(T + 60_000);
    w.events
        .process(&login_optin("L1", T - 2_000))
        .await
        .unwrap();
    assert_eq!(
        w.store
            .get_optin(key)
            .await
            .unwrap()
            .unwrap()
            .confirmed_at_ms,
        Some(T + 30_000)
    );

    // A webhook-started opt-in: no confirm check, nothing to confirm.
    w.events.process(&login_optin("W1", T)).await.unwrap();
    let wo = w
        .store
        .get_optin("OPTIN#login_id#W1")
        .await
        .unwrap()
        .unwrap();
    assert!(w
        .scheduler
        .get_schedule(&wo.confirm_schedule_name())
        .await
        .unwrap()
        .is_none());
}

/// A webhook for another grant (past the same-grant window) confirms nothing of a
/// login-started generation.
#[tokio::test]
async fn a_webhook_for_another_grant_does_not_confirm() {
    let w = world();
    let login = lc_core::lifecycle::processor::login_event(PAGE, "L1", T, T + 1_000).unwrap();
    w.events.process(&login).await.unwrap();
    w.clock.set(T + 2 * HOUR);
    let out = w
        .events
        .process(&login_optin("L1", T + HOUR))
        .await
        .unwrap();
    assert!(matches!(out, Processed::OptinDuplicate { .. }), "{out:?}");
    let o = w
        .store
        .get_optin("OPTIN#login_id#L1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.confirmed_at_ms, None);
}
