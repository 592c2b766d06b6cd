//! Public data types: admin request bodies (also used by the in-process
//! methods on `SimHandle`), recorded messages and counters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

fn yes() -> bool {
    true
}

/// `POST /_sim/pages`: a Page access token (several tokens per Page allowed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageRegistration {
    pub page_id: String,
    pub token: String,
    /// An expired token answers 190/463.
    #[serde(default)]
    pub expired: bool,
}

/// Per-Page permissions, features and restrictions (2026 rules; see
/// README). A Page with no entry has these defaults. Kept apart from
/// [`PageRegistration`] so code that builds that struct literally still
/// compiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PageFeatures {
    /// The app has `pages_messaging` for this Page (default true). Without
    /// it a `login_id` send answers "(#100) Param recipient[id] must be a
    /// valid ID string" (LC-FAQ) and other sends a 10 permission error.
    pub pages_messaging: bool,
    /// `pages_messaging_phone_number` for `phone_number` recipients.
    /// Default **true**, so existing phone-number tests keep passing; set it
    /// false to check that a sender without the permission is refused.
    pub pages_messaging_phone_number: bool,
    /// `page_utility_messaging` for `messaging_type: UTILITY` (default false).
    pub page_utility_messaging: bool,
    /// The approved Human Agent feature for the `HUMAN_AGENT` tag (default false).
    pub human_agent: bool,
    /// Page temporarily restricted from sending: every send answers
    /// 10/1893063 (default false).
    pub restricted: bool,
    /// The Instagram professional account linked to the Page: its IGSIDs
    /// can be messaged with the Page token.
    pub instagram_account_id: Option<String>,
}

impl Default for PageFeatures {
    fn default() -> Self {
        Self {
            pages_messaging: true,
            pages_messaging_phone_number: true,
            page_utility_messaging: false,
            human_agent: false,
            restricted: false,
            instagram_account_id: None,
        }
    }
}

/// `POST /_sim/page_features`: changes some flags of one Page (fields left
/// out keep their value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageFeaturesUpdate {
    pub page_id: String,
    #[serde(default)]
    pub pages_messaging: Option<bool>,
    #[serde(default)]
    pub pages_messaging_phone_number: Option<bool>,
    #[serde(default)]
    pub page_utility_messaging: Option<bool>,
    #[serde(default)]
    pub human_agent: Option<bool>,
    #[serde(default)]
    pub restricted: Option<bool>,
    #[serde(default)]
    pub instagram_account_id: Option<String>,
}

/// `POST /_sim/instagram_tokens`: an Instagram user token for the
/// Instagram-Login path (`POST /{version}/{ig_id}/messages`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstagramTokenRegistration {
    pub token: String,
    pub ig_account_id: String,
    /// An expired token answers 190/463.
    #[serde(default)]
    pub expired: bool,
}

/// `POST /_sim/instagram_people`: an IGSID known to an Instagram account,
/// with the time of the person's last message (registering again updates it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstagramPersonRegistration {
    pub ig_account_id: String,
    pub igsid: String,
    pub last_user_message_at_ms: i64,
}

/// `POST /_sim/login_ids`: a Login Connect `login_id` and its opt-in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginIdRegistration {
    pub login_id: String,
    /// When set, the id is bound to this Page from the start (the Page named
    /// by `messenger_page_id` in the login dialog). Otherwise the first Page
    /// whose send is accepted binds it.
    #[serde(default)]
    pub page_id: Option<String>,
    pub opted_in_at_ms: i64,
}

/// `POST /_sim/login_connect`: a person (ASID) accepts `user_messenger_contact` for a Page in
/// the login dialog; Meta generates the `login_id` by its own rule (see `SimHandle::login_connect`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConnect {
    /// The app-scoped user id of the person, for the sim's app.
    pub asid: String,
    /// The Page of the consent (`messenger_page_id`); the `login_id` is bound to it.
    pub page_id: String,
    /// The opt-in time; absent = sim now.
    #[serde(default)]
    pub opted_in_at_ms: Option<i64>,
}

/// `POST /_sim/user_refs`: a checkbox/chat plugin `user_ref`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRefRegistration {
    pub user_ref: String,
    /// Optional pre-binding, as for `login_id`.
    #[serde(default)]
    pub page_id: Option<String>,
    pub opted_in_at_ms: i64,
}

/// `POST /_sim/people`: a PSID known to a Page and the time of the person's
/// last message to it (registering again updates the time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonRegistration {
    pub page_id: String,
    pub psid: String,
    pub last_user_message_at_ms: i64,
}

/// `POST /_sim/opt_outs`: exactly one of `psid`, `login_id`, `user_ref`,
/// `notification_messages_token`. `page_id` scopes a `psid` opt-out to one
/// Page (without it the PSID is opted out on every Page); it is ignored for
/// the other kinds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptOut {
    #[serde(default)]
    pub page_id: Option<String>,
    #[serde(default)]
    pub psid: Option<String>,
    #[serde(default)]
    pub login_id: Option<String>,
    #[serde(default)]
    pub user_ref: Option<String>,
    #[serde(default)]
    pub notification_messages_token: Option<String>,
}

/// `POST /_sim/tokens`: a Marketing Messages `notification_messages_token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationTokenRegistration {
    pub token: String,
    pub page_id: String,
    /// Inactive (stopped/expired) tokens answer 10/2018065.
    #[serde(default = "yes")]
    pub active: bool,
    /// The person behind the token; if that PSID is opted out on the Page,
    /// sends answer 551/1545041.
    #[serde(default)]
    pub psid: Option<String>,
}

/// `POST /_sim/user_tokens`: a user access token for `debug_token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserTokenRegistration {
    pub token: String,
    /// The app the token was issued to; `None` = the simulator's app. Use
    /// another id to simulate a token of a foreign app.
    #[serde(default)]
    pub app_id: Option<String>,
    /// The app-scoped user id (ASID).
    pub user_id: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Expiry in epoch ms by the sim clock; 0 = never expires.
    #[serde(default)]
    pub expires_at_ms: i64,
    /// False = revoked/invalidated.
    #[serde(default = "yes")]
    pub valid: bool,
    /// When the token was issued, epoch ms by the sim clock (`debug_token`'s `issued_at`);
    /// `None` = at registration. An old value models a token replayed long after its login.
    #[serde(default)]
    pub issued_at_ms: Option<i64>,
}

/// `POST /_sim/clock`: set, freeze and/or move the sim clock. Applied in
/// field order: `offset_ms`, then `freeze`, then `advance_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockUpdate {
    /// Sets the offset (sim now = real now + offset).
    #[serde(default)]
    pub offset_ms: Option<i64>,
    /// `true` stops the sim clock at its current value; `false` lets it run
    /// again from there.
    #[serde(default)]
    pub freeze: Option<bool>,
    /// Then moves the sim clock by this much (frozen or not).
    #[serde(default)]
    pub advance_ms: Option<i64>,
}

/// `POST /_sim/config`: runtime changes of the send rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigUpdate {
    #[serde(default)]
    pub require_appsecret_proof: Option<bool>,
    #[serde(default)]
    pub rate_limit_per_sec: Option<u32>,
    #[serde(default)]
    pub allowed_tags: Option<Vec<String>>,
    /// See `SimConfig::allow_repeat_login_id_sends`.
    #[serde(default)]
    pub allow_repeat_login_id_sends: Option<bool>,
    /// See `SimConfig::client_token`.
    #[serde(default)]
    pub client_token: Option<String>,
}

/// One accepted send that carried a message (sender actions are only
/// counted in [`Stats::sender_actions`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentMessage {
    /// The Page that sent it (resolved from the token for `/me/messages`).
    pub page_id: String,
    /// `recipient` exactly as sent.
    pub recipient: Value,
    pub messaging_type: String,
    pub tag: Option<String>,
    /// `message` exactly as sent.
    pub message: Value,
    pub message_id: String,
    /// Sim clock at acceptance, epoch ms.
    pub at_ms: i64,
}

/// Which injected fault an attempt met (see README "Faults").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FaultKind {
    /// HTTP 500, code 2.
    #[serde(rename = "5xx")]
    Http5xx,
    /// A hold of `timeout_ms`, then HTTP 504, code 2.
    #[serde(rename = "timeout")]
    Timeout,
}

/// `POST /_sim/lose_next`: the next `count` send attempts (whatever the
/// rules answer) lose their answer this way. Deterministic, so a test can
/// target one send; it overrides the ratio faults for those attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoseNextAnswers {
    pub count: usize,
    pub kind: FaultKind,
}

/// What the simulator decided for one Send API attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The rules accepted it. `message_id` is `None` for a sender action.
    Accepted { message_id: Option<String> },
    /// The rules refused it with this Graph error.
    Refused { code: i64, subcode: Option<i64> },
    /// An injected fault answered before the rules ran (nothing recorded).
    Fault { fault: FaultKind },
}

/// One Send API attempt: every POST to a messages endpoint that got past
/// routing, whatever its outcome. Tests count these (not accepted messages)
/// to prove that the client itself sent only once; the simulator's own
/// one-message rule would otherwise hide a duplicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1, 2, 3 … in arrival order since start or the last reset.
    pub seq: u64,
    /// Sim clock when the attempt arrived, epoch ms.
    pub at_ms: i64,
    /// The sending account: the token's Page (or Instagram account), else
    /// the Page in the path, else `None` (unknown token on `/me`).
    pub page_id: Option<String>,
    /// The recipient key as sent (`id`, `login_id`, `user_ref`,
    /// `phone_number`, `notification_messages_token`, …); `None` when the
    /// body has no readable recipient.
    pub recipient_kind: Option<String>,
    /// The recipient value as sent.
    pub recipient_id: Option<String>,
    pub messaging_type: Option<String>,
    pub tag: Option<String>,
    pub sender_action: Option<String>,
    pub outcome: AttemptOutcome,
    /// Set when the answer was lost after the rules ran (the outcome above
    /// still holds: an accepted message *was* recorded).
    pub lost_answer: Option<FaultKind>,
}

impl Attempt {
    /// True when the rules accepted it (even if its answer was then lost).
    pub fn is_accepted(&self) -> bool {
        matches!(self.outcome, AttemptOutcome::Accepted { .. })
    }

    /// `(code, subcode)` when the rules refused it.
    pub fn refusal(&self) -> Option<(i64, Option<i64>)> {
        match self.outcome {
            AttemptOutcome::Refused { code, subcode } => Some((code, subcode)),
            _ => None,
        }
    }
}

/// What the simulator kept of one login_id in tally-only mode
/// ([`crate::SimHandle::keep_login_id_tally_only`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginIdTally {
    /// Send attempts that named it, whatever their outcome (refused, faulted, accepted).
    pub attempts: u32,
    /// When a message to it was first accepted (sim clock, ms).
    pub first_accepted_at_ms: Option<i64>,
}

/// Counters since start or the last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Accepted sends that carried a message.
    pub accepted: u64,
    /// Accepted sender actions.
    pub sender_actions: u64,
    /// Sends answered with a Graph error (HTTP 400).
    pub rejected: u64,
    /// Rejections by `code`, e.g. `"100"`.
    pub rejected_by_code: BTreeMap<String, u64>,
    /// Rejections by `code/subcode` (or `code` when there is no subcode),
    /// e.g. `"10/2018278"`.
    pub rejected_by_code_subcode: BTreeMap<String, u64>,
    /// 613 answers (Page rate limit) in total.
    pub rate_limited: u64,
    /// 613 answers per sending Page, e.g. `{"1001": 3}`; a Page without any
    /// is absent. Lets a test assert that several sender instances sharing a
    /// Page never hit the limit.
    pub rate_limited_by_page: BTreeMap<String, u64>,
    /// Injected HTTP 500 answers.
    pub faults_5xx: u64,
    /// Injected timeouts (HTTP 504 after the sleep).
    pub faults_timeout: u64,
    /// Answers lost as HTTP 500 after the rules ran (ratio or `lose_next`).
    pub lost_answers_5xx: u64,
    /// Answers lost as a held connection + HTTP 504 after the rules ran.
    pub lost_answers_timeout: u64,
    /// `debug_token` calls answered.
    pub debug_token_calls: u64,
    /// Send API attempts of any outcome (see [`Attempt`]).
    pub attempts: u64,
    /// Attempts beyond the first per (Page, `login_id`/`user_ref`): a
    /// client that sends a one-shot recipient exactly once keeps this at 0.
    /// Faulted and refused attempts count too.
    pub duplicate_attempts: u64,
    /// Accepted messages beyond the first per (Page, `login_id`/`user_ref`);
    /// only non-zero with `allow_repeat_login_id_sends`.
    pub duplicate_accepted: u64,
}
