//! `graph-sim`: a Graph API (Messenger Send API + `debug_token`) simulator
//! over real HTTP on 127.0.0.1, enforcing Meta's rules for Login Connect
//! (`login_id`), `user_ref`, PSID, Instagram (IGSID),
//! `notification_messages_token` and `phone_number` recipients, including
//! Meta's 2026 rules, with seeded faults (lost answers included) and a log
//! of every send attempt. See README.md.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = graph_sim::start(graph_sim::SimConfig::default().with_page("123", "PAGE_TOKEN")).await?;
//! sim.register_login_id("LOGIN", None, sim.now_ms());
//! // POST {sim.base_url()}/v25.0/me/messages?access_token=PAGE_TOKEN ...
//! let sent = sim.messages();
//! # drop(sent); Ok(()) }
//! ```

mod config;
mod http;
mod rng;
mod state;
mod types;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{
    Faults, LostAnswerFaults, SimConfig, DEFAULT_RATE_LIMIT_PER_SEC, DEFAULT_TIMEOUT_MS,
};
pub use types::{
    Attempt, AttemptOutcome, ClockUpdate, ConfigUpdate, FaultKind, InstagramPersonRegistration,
    InstagramTokenRegistration, LoginConnect, LoginIdRegistration, LoginIdTally, LoseNextAnswers,
    NotificationTokenRegistration, OptOut, PageFeatures, PageFeaturesUpdate, PageRegistration,
    PersonRegistration, SentMessage, Stats, UserRefRegistration, UserTokenRegistration,
};

/// The answer to a send made in-process ([`SimHandle::send_direct`]): what the HTTP layer
/// would have answered.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectAnswer {
    pub status: u16,
    pub body: serde_json::Value,
    /// The response headers (the usage headers), lower-case names.
    pub headers: Vec<(&'static str, String)>,
    /// How long the HTTP layer would hold the answer (latency + an injected timeout).
    pub hold_ms: u64,
}

/// Milliseconds in 24 h (the standard and one-shot windows).
pub const DAY_MS: i64 = state::DAY_MS;

/// Hex HMAC-SHA256(key = app secret, msg = access token), as Meta expects in
/// `appsecret_proof`.
pub fn appsecret_proof(app_secret: &str, access_token: &str) -> String {
    proof_mac(app_secret, access_token)
        .map(|mac| hex::encode(mac.finalize().into_bytes()))
        .unwrap_or_default()
}

/// Meta's `login_id` for a person (ASID), app and Page: lowercase hex
/// HMAC-SHA256(key = the app's Client Token, msg = `umc_{ASID}_{APP_ID}_{PAGE_ID}`).
///
/// Written here from the rule as Meta's sample states it (meta-platform.md §1.3; the rule
/// itself is **[assumption]**: Meta's sample, not its documentation), deliberately not shared
/// with login-connect's own derivation: the simulator plays Meta, so a test comparing the two
/// catches a bug in either instead of agreeing with itself.
pub fn meta_login_id(client_token: &str, asid: &str, app_id: &str, page_id: &str) -> String {
    let message = format!("umc_{asid}_{app_id}_{page_id}");
    <Hmac<Sha256> as KeyInit>::new_from_slice(client_token.as_bytes())
        .map(|mut mac| {
            mac.update(message.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        })
        .unwrap_or_default()
}

/// HMAC takes keys of any length, so this is always `Some`.
fn proof_mac(app_secret: &str, access_token: &str) -> Option<Hmac<Sha256>> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(app_secret.as_bytes()).ok()?;
    mac.update(access_token.as_bytes());
    Some(mac)
}

/// Constant-time check of a hex `appsecret_proof`.
pub(crate) fn verify_appsecret_proof(app_secret: &str, access_token: &str, proof: &str) -> bool {
    match (
        hex::decode(proof.trim()),
        proof_mac(app_secret, access_token),
    ) {
        (Ok(bytes), Some(mac)) => mac.verify_slice(&bytes).is_ok(),
        _ => false,
    }
}

/// A listener whose accept queue holds a burst of new connections. `TcpListener::bind` asks for
/// 128: an open-loop `load` at 10,000/s opens a few hundred connections in its first
/// milliseconds, and the ones past 128 had their SYN dropped (`ListenOverflows`) and retried
/// 0.2-1 s later, the whole run's p99. The kernel caps it at `net.core.somaxconn`.
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Starts the simulator on `127.0.0.1:port` (0 = any free port). Must be
/// called inside a Tokio runtime. The environment is not read here; use
/// [`SimConfig::with_env`] for `GRAPH_SIM_*` fault overrides.
pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
    start_on(config, 0).await
}

/// Like [`start`] with an explicit port.
pub async fn start_on(config: SimConfig, port: u16) -> std::io::Result<SimHandle> {
    config
        .lost_answers
        .validate_with(&config.faults)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = listen(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
    let addr = listener.local_addr()?;
    let shared: http::Shared = Arc::new(Mutex::new(state::State::new(config)));
    let app = http::router(shared.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = rx.await;
        });
        if let Err(e) = serve.await {
            tracing::warn!(error = %e, "graph-sim server stopped with an error");
        }
    });
    tracing::debug!(%addr, "graph-sim listening");
    Ok(SimHandle {
        addr,
        shared,
        shutdown: Some(tx),
        task: Some(task),
    })
}

/// A running simulator. Dropping it stops accepting connections (in-flight
/// requests finish); [`SimHandle::shutdown`] also waits (at most 2 s).
/// The methods below act on the same state as the HTTP admin endpoints,
/// in-process and without HTTP.
pub struct SimHandle {
    addr: SocketAddr,
    shared: http::Shared,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl SimHandle {
    /// The bound address (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash): use it in place of
    /// `https://graph.facebook.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits for it (at most 2 s, then aborts).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut state::State) -> R) -> R {
        f(&mut http::lock(&self.shared))
    }

    /// Sim clock now, epoch ms (real now + offset).
    pub fn now_ms(&self) -> i64 {
        self.with(|s| s.now_ms())
    }

    /// Applies a clock update (offset, freeze, advance), as `POST /_sim/clock`.
    pub fn update_clock(&self, update: ClockUpdate) {
        self.with(|s| s.update_clock(&update));
    }

    /// Sets the clock offset (sim now = real now + offset).
    pub fn set_clock_offset(&self, offset_ms: i64) {
        self.update_clock(ClockUpdate {
            offset_ms: Some(offset_ms),
            ..ClockUpdate::default()
        });
    }

    /// Moves the sim clock forward (or back, if negative).
    pub fn advance_clock(&self, ms: i64) {
        self.update_clock(ClockUpdate {
            advance_ms: Some(ms),
            ..ClockUpdate::default()
        });
    }

    /// Stops the sim clock at its current value (until `unfreeze_clock`).
    pub fn freeze_clock(&self) {
        self.update_clock(ClockUpdate {
            freeze: Some(true),
            ..ClockUpdate::default()
        });
    }

    /// Lets a frozen sim clock run again from its frozen value.
    pub fn unfreeze_clock(&self) {
        self.update_clock(ClockUpdate {
            freeze: Some(false),
            ..ClockUpdate::default()
        });
    }

    /// Registers a valid Page token.
    pub fn register_page(&self, page_id: &str, token: &str) {
        self.register_page_token(PageRegistration {
            page_id: page_id.to_owned(),
            token: token.to_owned(),
            expired: false,
        });
    }

    /// Registers a Page token, possibly expired.
    pub fn register_page_token(&self, reg: PageRegistration) {
        self.with(|s| s.register_page(&reg));
    }

    /// Registers a `login_id` (optionally pre-bound to a Page).
    pub fn register_login_id(&self, login_id: &str, page_id: Option<&str>, opted_in_at_ms: i64) {
        let reg = LoginIdRegistration {
            login_id: login_id.to_owned(),
            page_id: page_id.map(str::to_owned),
            opted_in_at_ms,
        };
        self.with(|s| s.register_login_id(&reg));
    }

    /// A person (`asid`, the app-scoped user id for the sim's app) accepts
    /// `user_messenger_contact` for `page_id` in the login dialog, now: the simulator computes
    /// Meta's `login_id` by its own implementation of Meta's rule ([`meta_login_id`], keyed by
    /// [`SimConfig::client_token`]), registers it bound to that Page as Meta would, and returns
    /// it (what Meta puts in the `messaging_optins` webhook). Accepting again (a
    /// `reset_messenger_state` login) registers the same id afresh.
    pub fn login_connect(&self, asid: &str, page_id: &str) -> String {
        let reg = LoginConnect {
            asid: asid.to_owned(),
            page_id: page_id.to_owned(),
            opted_in_at_ms: None,
        };
        self.with(|s| s.login_connect(&reg))
    }

    /// Registers a `user_ref` (optionally pre-bound to a Page).
    pub fn register_user_ref(&self, user_ref: &str, page_id: Option<&str>, opted_in_at_ms: i64) {
        let reg = UserRefRegistration {
            user_ref: user_ref.to_owned(),
            page_id: page_id.map(str::to_owned),
            opted_in_at_ms,
        };
        self.with(|s| s.register_user_ref(&reg));
    }

    /// Registers a PSID for a Page with the time of the person's last message.
    pub fn register_person(&self, page_id: &str, psid: &str, last_user_message_at_ms: i64) {
        let reg = PersonRegistration {
            page_id: page_id.to_owned(),
            psid: psid.to_owned(),
            last_user_message_at_ms,
        };
        self.with(|s| s.register_person(&reg));
    }

    /// Records an opt-out (exactly one of psid/login_id/user_ref/token).
    pub fn opt_out(&self, opt_out: OptOut) -> Result<(), String> {
        self.with(|s| s.opt_out(&opt_out))
    }

    /// Registers a `notification_messages_token`.
    pub fn register_notification_token(&self, reg: NotificationTokenRegistration) {
        self.with(|s| s.register_notification_token(&reg));
    }

    /// Registers a user access token for `debug_token`.
    pub fn register_user_token(&self, reg: UserTokenRegistration) {
        self.with(|s| s.register_user_token(&reg));
    }

    /// Changes some permissions/features/restrictions of one Page (fields
    /// left `None` keep their value). Returns the Page's flags after.
    pub fn update_page_features(&self, update: PageFeaturesUpdate) -> PageFeatures {
        self.with(|s| s.update_page_features(&update))
    }

    /// A Page's current flags (the defaults if never set).
    pub fn page_features(&self, page_id: &str) -> PageFeatures {
        self.with(|s| s.page_features(page_id))
    }

    /// Registers an Instagram user token for `POST /{version}/{ig_id}/messages`.
    pub fn register_instagram_token(&self, reg: InstagramTokenRegistration) {
        self.with(|s| s.register_instagram_token(&reg));
    }

    /// Registers an IGSID of an Instagram account with the time of the
    /// person's last message.
    pub fn register_instagram_person(
        &self,
        ig_account_id: &str,
        igsid: &str,
        last_user_message_at_ms: i64,
    ) {
        let reg = InstagramPersonRegistration {
            ig_account_id: ig_account_id.to_owned(),
            igsid: igsid.to_owned(),
            last_user_message_at_ms,
        };
        self.with(|s| s.register_instagram_person(&reg));
    }

    /// Replaces the faults and re-seeds the PRNG. The lost-answer ratios
    /// are kept (and must still fit in the shared 0..=1 budget).
    pub fn set_faults(&self, faults: Faults) -> Result<(), String> {
        self.with(|s| s.set_faults(faults))
    }

    /// Current faults.
    pub fn faults(&self) -> Faults {
        self.with(|s| s.faults().clone())
    }

    /// Replaces the accepted-then-lost ratios and re-seeds the PRNG from
    /// `faults().seed`.
    pub fn set_lost_answers(&self, lost: LostAnswerFaults) -> Result<(), String> {
        self.with(|s| s.set_lost_answers(lost))
    }

    /// Current accepted-then-lost ratios.
    pub fn lost_answers(&self) -> LostAnswerFaults {
        self.with(|s| s.lost_answers().clone())
    }

    /// The next `count` send attempts run the rules (an accepted message is
    /// recorded) and then lose their answer as `kind`, whatever the ratios
    /// say. Returns how many forced lost answers are pending.
    pub fn lose_next_answers(&self, count: usize, kind: FaultKind) -> usize {
        self.with(|s| s.lose_next(count, kind))
    }

    /// Forced lost answers not used yet.
    pub fn pending_lost_answers(&self) -> usize {
        self.with(|s| s.pending_lost_answers())
    }

    /// Changes send rules at runtime (proof requirement, rate limit, tags).
    pub fn update_config(&self, update: ConfigUpdate) {
        self.with(|s| s.update_config(&update));
    }

    /// Accepted sends that carried a message, oldest first.
    pub fn messages(&self) -> Vec<SentMessage> {
        self.with(|s| s.messages())
    }

    /// Every Send API attempt (accepted, refused or faulted), oldest first.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.with(|s| s.attempts())
    }

    /// How many attempts named `recipient_id` as their recipient value
    /// (any recipient kind, any Page, any outcome).
    pub fn attempts_for(&self, recipient_id: &str) -> usize {
        self.with(|s| s.attempts_for(recipient_id))
    }

    /// One Send API call without HTTP, for simulations of millions of sends: the same rules,
    /// faults, rate window, usage headers and counters as `POST /{version}/{node}/messages`
    /// with the token in `access_token`. The sim clock is read as for an HTTP request; the
    /// time the HTTP layer would hold the answer (latency, an injected timeout) is returned in
    /// [`DirectAnswer::hold_ms`], not slept.
    pub fn send_direct(
        &self,
        version: &str,
        node: &str,
        access_token: Option<&str>,
        appsecret_proof: Option<&str>,
        body: &[u8],
    ) -> DirectAnswer {
        self.with(|s| {
            let latency_ms = s.faults().latency_ms;
            let now = s.now_ms();
            let plan = s.process_send(
                now,
                &state::SendInput {
                    version,
                    node,
                    token: access_token,
                    appsecret_proof,
                    query_ok: true,
                    body,
                },
            );
            DirectAnswer {
                status: plan.response.status,
                body: plan.response.body,
                headers: plan.response.headers,
                hold_ms: latency_ms.saturating_add(plan.delay_ms),
            }
        })
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.with(|s| s.stats())
    }

    /// `stats().accepted` alone: a counter read, where [`SimHandle::stats`] walks the whole
    /// attempt log (under the lock every send needs) to derive the duplicate counts. For a
    /// caller that polls progress while sends flow.
    pub fn accepted_count(&self) -> u64 {
        self.with(|s| s.accepted_count())
    }

    /// From now on keeps, instead of every message and attempt, only a [`LoginIdTally`] per
    /// login_id: for `login-connect load`, whose runs of hundreds of thousands of sends read
    /// nothing else, and whose logs (~1 KB a send, never freed) grew on the cores being
    /// measured. [`SimHandle::messages`], [`SimHandle::attempts`] and the duplicate counts of
    /// [`SimHandle::stats`] see nothing from then on; the rules and counters are unchanged.
    /// Until [`SimHandle::reset`].
    pub fn keep_login_id_tally_only(&self) {
        self.with(|s| s.keep_login_id_tally_only());
    }

    /// The tally per login_id since [`SimHandle::keep_login_id_tally_only`] (empty without it).
    pub fn login_id_tally(&self) -> HashMap<String, LoginIdTally> {
        self.with(|s| s.login_id_tally())
    }

    /// How many login_ids of the tally have had a message accepted: a walk of the tally, for
    /// a caller that confirms an end once, not one that polls.
    pub fn login_ids_accepted(&self) -> usize {
        self.with(|s| s.login_ids_accepted())
    }

    /// Back to the state right after `start` (configured Pages, app, rules,
    /// faults re-seeded, clock offset); message ids keep counting.
    pub fn reset(&self) {
        self.with(|s| s.reset());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_login_id_matches_python() {
        // hmac.new(b"login-client-token-7f3a", b"umc_5550001_100000000000001_100",
        //          hashlib.sha256).hexdigest()
        assert_eq!(
            meta_login_id(
                "login-client-token-7f3a",
                "5550001",
                "100000000000001",
                "100"
            ),
            "7251f9788c58abbe17b0e3876280d4ac6006adc3b2a7864a10f34158d39810b9"
        );
    }

    #[test]
    fn proof_roundtrip() {
        let p = appsecret_proof("secret", "token");
        assert_eq!(p.len(), 64);
        assert!(verify_appsecret_proof("secret", "token", &p));
        assert!(!verify_appsecret_proof("secret", "other", &p));
        assert!(!verify_appsecret_proof("secret", "token", "zz"));
    }
}
