//! `demo`: the whole Login Connect story, narrated, with every step checked. Exit 0 only if
//! every step held. The clock is ours to move, so the 24-hour deadline takes a second.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lc_core::lifecycle::optin::{optin_key, OptinState, DAY_MS};
use lc_core::memory::ManualClock;
use lc_core::ports::graph::{MessagingType, Recipient};
use lc_core::ports::Clock;
use lc_core::sending::policy::{self, Attempt, Decision, PolicyConfig};
use lc_core::support::privacy::hash_id;
use lc_core::webhook::{Identity, IdentityKind};

use crate::serve::{
    generated, local_secrets, now_ms, page_ids, post_signed, Settings, Stack, PAGE,
};

const HOUR: i64 = 3_600_000;
/// A Page whose access token was never configured: its first messages cannot go out.
const TOKENLESS_PAGE: &str = "3000000001";

struct Story {
    step: usize,
    failures: usize,
    /// How many published events were already shown.
    shown: usize,
}

impl Story {
    fn say(&mut self, title: &str) {
        self.step += 1;
        println!("\n{}. {title}", self.step);
    }

    /// Prints the events published on the bus since the last call (what the business heard).
    async fn heard(&mut self, bus: &lc_core::memory::MemoryBus) {
        // Publishing follows the state: give the consumers a moment to finish the step.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let events = bus.since(self.shown);
        self.shown += events.len();
        let names: Vec<&str> = events.iter().map(|e| e.detail_type.as_str()).collect();
        if !names.is_empty() {
            println!("   bus: {}", names.join(", "));
        }
    }

    fn check(&mut self, ok: bool, what: &str) {
        if ok {
            println!("   ✓ {what}");
        } else {
            self.failures += 1;
            println!("   ✗ {what}");
        }
    }
}

/// Polls `probe` until it yields `Some`, for at most `within`.
async fn wait_for<T, F, Fut>(within: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if start.elapsed() > within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The opt-in once it reaches `state`, within `wait`.
async fn optin_in(
    table: &lc_core::ports::Table,
    key: &str,
    state: OptinState,
    wait: Duration,
) -> Option<lc_core::lifecycle::optin::Optin> {
    wait_for(wait, || async move {
        table
            .optins
            .get_optin(key)
            .await
            .ok()
            .flatten()
            .filter(|o| o.state == state)
    })
    .await
}

fn messaging(page: &str, item: &str, ts: i64) -> Vec<u8> {
    format!(r#"{{"object":"page","entry":[{{"id":"{page}","time":{ts},"messaging":[{item}]}}]}}"#)
        .into_bytes()
}

pub async fn demo(settings: Settings) -> Result<(), String> {
    let settings = Settings {
        port: 0,
        ..settings
    };
    let (secrets, _) = local_secrets(&page_ids(1));
    let clock = ManualClock::at(now_ms());
    let stack = Stack::start(
        &settings,
        secrets,
        Arc::new(clock.clone()),
        300,
        &generated("demo")[..8],
    )
    .await?;
    let sim = stack
        .sim
        .as_ref()
        .ok_or("demo needs the built-in Graph simulator (no --graph-url)")?;
    let table = stack.pipeline.backends.table.clone();
    let http = reqwest::Client::new();
    let url = stack.webhook_url();
    let secret = stack.app_secret().to_string();
    let mut story = Story {
        step: 0,
        failures: 0,
        shown: 0,
    };
    let bus = stack.pipeline.backends.published.clone();
    let wait = Duration::from_secs(10);
    println!(
        "login-connect demo ({}, Graph simulator at {})",
        stack.pipeline.backends.label,
        sim.base_url()
    );

    // 1. Opt-in and first message.
    story.say("A person logs in with Facebook Login and ticks \"contact me on Messenger\".\n   Meta sends a signed messaging_optins webhook carrying a login_id.");
    let login_id = format!("demo-{}", &generated("login")[..12]);
    let t0 = clock.now_ms();
    sim.register_login_id(&login_id, Some(PAGE), t0);
    let item = format!(
        r#"{{"recipient":{{"id":"{PAGE}"}},"timestamp":{t0},"optin":{{"login_id":"{login_id}"}}}}"#
    );
    let (status, _) = post_signed(&http, &url, &secret, messaging(PAGE, &item, t0)).await?;
    story.check(
        status == 200,
        &format!("webhook answered {status} once the event was on the events queue"),
    );
    let key = optin_key(&Identity::new(IdentityKind::LoginId, &login_id), PAGE);
    let sent = wait_for(wait, || {
        let login_id = login_id.clone();
        async move {
            sim.messages()
                .into_iter()
                .find(|m| m.recipient["login_id"] == login_id.as_str())
        }
    })
    .await;
    story.check(
        sent.is_some(),
        "the first message reached the Graph simulator (recipient.login_id, UPDATE, no tag)",
    );
    if let Some(m) = &sent {
        println!("   message {} said: {}", m.message_id, m.message["text"]);
        story.check(
            m.tag.is_none() && m.messaging_type == "UPDATE",
            "no message tag on the first message",
        );
    }
    let o = optin_in(&table, &key, OptinState::Sent, wait).await;
    story.check(
        o.is_some(),
        "opt-in recorded as sent; its deadline check was deleted",
    );
    story.heard(&bus).await;

    // 2. Reply and link.
    story.say("The person replies. Meta's webhook carries prior_message with the login_id.");
    let psid = "7000000001";
    let t1 = t0 + 60_000;
    let reply = format!(
        r#"{{"sender":{{"id":"{psid}"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{t1},"message":{{"mid":"m_demo_reply","text":"Hi! 👋"}},"prior_message":{{"source":"login_connect","identifier":"{login_id}"}}}}"#
    );
    let (status, _) = post_signed(&http, &url, &secret, messaging(PAGE, &reply, t1)).await?;
    story.check(status == 200, "reply webhook accepted");
    let linked = wait_for(wait, || {
        let (table, key) = (table.clone(), key.clone());
        async move {
            let o = table.optins.get_optin(&key).await.ok().flatten()?;
            let p = table.people.get_person(PAGE, psid).await.ok().flatten()?;
            (o.psid.as_deref() == Some(psid) && p.login_id.as_deref() == Some(login_id_of(&o)))
                .then_some((o, p))
        }
    })
    .await;
    story.check(
        linked.is_some(),
        &format!(
            "login_id {} <-> PSID {} stored both ways; opt-in answered; 24 h window open",
            hash_id(&login_id),
            hash_id(psid)
        ),
    );
    story.heard(&bus).await;

    // 2b. A new generation.
    story.say("Two hours later the person resets their Messenger state (reset_messenger_state=1)\n   and opts in again: the same login_id, a new opt-in.");
    let t_again = t0 + 2 * HOUR;
    clock.advance(2 * HOUR);
    sim.advance_clock(2 * HOUR);
    sim.register_login_id(&login_id, Some(PAGE), t_again);
    let item = format!(
        r#"{{"recipient":{{"id":"{PAGE}"}},"timestamp":{t_again},"optin":{{"login_id":"{login_id}"}}}}"#
    );
    let (status, _) = post_signed(&http, &url, &secret, messaging(PAGE, &item, t_again)).await?;
    story.check(status == 200, "the new opt-in webhook was accepted");
    let second = wait_for(wait, || {
        let (table, key) = (table.clone(), key.clone());
        async move {
            table
                .optins
                .get_optin(&key)
                .await
                .ok()
                .flatten()
                .filter(|o| o.generation == 2 && o.state == OptinState::Sent)
        }
    })
    .await;
    let to_login_id = sim
        .messages()
        .iter()
        .filter(|m| m.recipient["login_id"] == login_id.as_str())
        .count();
    story.check(
        second.is_some() && to_login_id == 2,
        "generation 2 got its own first message (two messages to this login_id in all)",
    );
    if let Some(o) = &second {
        story.check(
            o.history.len() == 1 && o.history[0].state == OptinState::Answered,
            "the first generation's record is kept: answered, in the opt-in's history",
        );
    }
    story.heard(&bus).await;

    // 3. Opt-out and the refusal that follows.
    story
        .say("Another person opts in with the Send-to-Messenger plugin, but has blocked the Page.");
    let blocked = "7000000002";
    sim.register_person(PAGE, blocked, t0);
    let _ = sim.opt_out(graph_sim::OptOut {
        page_id: Some(PAGE.into()),
        psid: Some(blocked.into()),
        ..Default::default()
    });
    let t2 = t0 + 120_000;
    let plugin = format!(
        r#"{{"sender":{{"id":"{blocked}"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{t2},"optin":{{"ref":"spring-sale"}}}}"#
    );
    post_signed(&http, &url, &secret, messaging(PAGE, &plugin, t2)).await?;
    let stopped = wait_for(wait, || {
        let table = table.clone();
        async move {
            table
                .people
                .get_person(PAGE, blocked)
                .await
                .ok()
                .flatten()
                .filter(|p| p.opted_out_at_ms.is_some())
        }
    })
    .await;
    story.check(
        stopped.is_some(),
        "Meta answered 551/1545041; the person is marked stopped at once",
    );
    let person = stopped.unwrap_or_default();
    let decision = policy::decide(
        &Attempt {
            now_ms: clock.now_ms(),
            page_id: PAGE,
            recipient: &Recipient::Id(blocked.into()),
            messaging_type: MessagingType::Response,
            tag: None,
            page: None,
            optin: None,
            person: Some(&person),
            token: None,
            first_message: false,
        },
        &PolicyConfig::default(),
    );
    match &decision {
        Decision::Refuse { rule, reason } => {
            println!("   policy: refuse ({}) {reason}", rule.as_str())
        }
        Decision::Allow { rule } => println!("   policy: allow ({})", rule.as_str()),
    }
    story.check(
        matches!(decision, Decision::Refuse { .. }),
        "any later message to that person is refused by the policy",
    );
    story.heard(&bus).await;

    // 4. A missed deadline, loudly reported.
    story.say("An opt-in for a Page with no access token configured: its first message cannot go out.\n   The clock is compressed: 23 hours pass, then the deadline.");
    let late_id = format!("demo-late-{}", &generated("late")[..8]);
    let t3 = clock.now_ms();
    let item = format!(
        r#"{{"recipient":{{"id":"{TOKENLESS_PAGE}"}},"timestamp":{t3},"optin":{{"login_id":"{late_id}"}}}}"#
    );
    post_signed(&http, &url, &secret, messaging(TOKENLESS_PAGE, &item, t3)).await?;
    let late_key = optin_key(
        &Identity::new(IdentityKind::LoginId, &late_id),
        TOKENLESS_PAGE,
    );
    let paused = wait_for(wait, || {
        let table = table.clone();
        async move {
            table
                .pages
                .get_page(TOKENLESS_PAGE)
                .await
                .ok()
                .flatten()
                .filter(|p| p.paused)
        }
    })
    .await;
    story.check(
        paused.is_some(),
        "the sender paused that Page (operator action: no token) and kept the job",
    );
    clock.advance(23 * HOUR);
    sim.advance_clock(23 * HOUR);
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("   … 23 h later the deadline check fires: last chance, still impossible (FirstMessageAtRisk)");
    clock.advance(DAY_MS - 23 * HOUR + 2_000);
    sim.advance_clock(DAY_MS - 23 * HOUR + 2_000);
    let expired = optin_in(&table, &late_key, OptinState::Expired, wait).await;
    story.check(
        expired.is_some(),
        "at the deadline: state expired, FirstMessageMissed reported",
    );
    let after = sim
        .messages()
        .iter()
        .filter(|m| m.page_id == TOKENLESS_PAGE)
        .count();
    story.check(after == 0, "nothing was sent after the deadline");
    story.heard(&bus).await;

    println!();
    if story.failures == 0 {
        println!("demo: every step held ({} steps)", story.step);
        Ok(())
    } else {
        Err(format!("{} check(s) failed", story.failures))
    }
}

fn login_id_of(o: &lc_core::lifecycle::optin::Optin) -> &str {
    &o.recipient.id
}
