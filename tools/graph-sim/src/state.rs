//! All mutable simulator state and the Send API / debug_token rules. Pure:
//! every function takes the sim clock (`now`, epoch ms) as an argument and
//! never sleeps, so the HTTP layer only locks, calls and unlocks.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde_json::{json, Map, Value};

use crate::config::{Faults, LostAnswerFaults, SimConfig};
use crate::rng::SplitMix64;
use crate::types::{
    Attempt, AttemptOutcome, ClockUpdate, ConfigUpdate, FaultKind, InstagramPersonRegistration,
    InstagramTokenRegistration, LoginConnect, LoginIdRegistration, LoginIdTally,
    NotificationTokenRegistration, OptOut, PageFeatures, PageFeaturesUpdate, PageRegistration,
    PersonRegistration, SentMessage, Stats, UserRefRegistration, UserTokenRegistration,
};

pub(crate) const DAY_MS: i64 = 86_400_000;
const STANDARD_WINDOW_MS: i64 = DAY_MS;
const HUMAN_AGENT_WINDOW_MS: i64 = 7 * DAY_MS;
const ONE_SHOT_WINDOW_MS: i64 = DAY_MS;
const RATE_WINDOW_MS: i64 = 1_000;
const MAX_TEXT_CHARS: usize = 2_000;
/// Instagram's text limit (meta-platform.md §0), in Unicode scalar values.
const IG_MAX_TEXT_CHARS: usize = 1_000;
const HUMAN_AGENT: &str = "HUMAN_AGENT";
/// Retired on 2026-04-27: Meta answers "(#100) Invalid parameter".
const RETIRED_TAGS: [&str; 3] = [
    "CONFIRMED_EVENT_UPDATE",
    "POST_PURCHASE_UPDATE",
    "ACCOUNT_UPDATE",
];
const MAX_QUICK_REPLIES: usize = 13;
const DATA_ACCESS_SECS: i64 = 90 * 86_400;

const MSG_NO_MATCHING_USER: &str = "(#100) No matching user found";
const MSG_OUTSIDE_WINDOW: &str = "(#10) This message is sent outside of allowed window. Learn more about the new policy here: https://developers.facebook.com/docs/messenger-platform/policy-overview";
const MSG_NOT_AVAILABLE: &str = "(#551) This person isn't available right now.";
const MSG_IG_OUTSIDE_WINDOW: &str =
    "(#10) This message is sent outside of allowed window. (Instagram)";
const MSG_5XX: &str = "An unexpected error has occurred. Please retry your request later.";

/// A Graph error answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GraphError {
    pub status: u16,
    pub code: i64,
    pub subcode: Option<i64>,
    pub message: String,
    pub transient: bool,
}

impl GraphError {
    fn new(code: i64, subcode: Option<i64>, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            code,
            subcode,
            message: message.into(),
            transient: false,
        }
    }

    fn param(message: impl Into<String>) -> Self {
        Self::new(100, None, message)
    }
}

/// What the HTTP layer turns into a response.
#[derive(Debug, Clone)]
pub(crate) struct SimResponse {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
}

/// An injected fault chosen for one send. The `Lost*` kinds run the rules
/// (and record an accepted message) before losing the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    Error5xx,
    Timeout { ms: u64 },
    Lost5xx,
    LostTimeout { ms: u64 },
}

/// One send request as received.
pub(crate) struct SendInput<'a> {
    pub version: &'a str,
    /// `me` or a Page id.
    pub node: &'a str,
    pub token: Option<&'a str>,
    pub appsecret_proof: Option<&'a str>,
    /// False when the query string could not be parsed (answered 100, but
    /// still an attempt: it got past routing).
    pub query_ok: bool,
    pub body: &'a [u8],
}

/// What the HTTP layer does with one send: wait `delay_ms` (an injected
/// timeout holds the connection), then answer `response`. Everything else,
/// including recording the attempt, already happened under the lock.
#[derive(Debug, Clone)]
pub(crate) struct SendPlan {
    pub delay_ms: u64,
    pub response: SimResponse,
}

#[derive(Debug, Clone)]
struct PageToken {
    page_id: String,
    expired: bool,
}

/// A `login_id` or `user_ref`: one message, within 24 h, first Page binds.
#[derive(Debug, Clone)]
struct OneShot {
    opted_in_at_ms: i64,
    page_id: Option<String>,
    used: bool,
}

#[derive(Debug, Clone)]
struct NotifToken {
    page_id: String,
    active: bool,
    psid: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessagingType {
    Response,
    Update,
    MessageTag,
    Utility,
}

impl MessagingType {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "RESPONSE" => Some(Self::Response),
            "UPDATE" => Some(Self::Update),
            "MESSAGE_TAG" => Some(Self::MessageTag),
            "UTILITY" => Some(Self::Utility),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Response => "RESPONSE",
            Self::Update => "UPDATE",
            Self::MessageTag => "MESSAGE_TAG",
            Self::Utility => "UTILITY",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Recipient {
    Psid(String),
    LoginId(String),
    UserRef(String),
    Phone(String),
    NotifToken(String),
}

#[derive(Debug, Clone)]
struct ParsedSend {
    recipient: Recipient,
    recipient_json: Value,
    messaging_type: Option<MessagingType>,
    tag: Option<String>,
    message: Option<Value>,
    sender_action: Option<String>,
}

impl ParsedSend {
    fn is_human_agent(&self) -> bool {
        self.messaging_type == Some(MessagingType::MessageTag)
            && self.tag.as_deref() == Some(HUMAN_AGENT)
    }
}

/// Who is sending: a Page (Page token) or an Instagram account (Instagram
/// user token, Instagram-Login path).
#[derive(Debug, Clone, PartialEq, Eq)]
enum SenderAccount {
    Page(String),
    Instagram(String),
}

impl SenderAccount {
    fn id(&self) -> &str {
        match self {
            Self::Page(id) | Self::Instagram(id) => id,
        }
    }
}

#[derive(Debug, Clone)]
struct IgToken {
    ig_account_id: String,
    expired: bool,
}

/// [assumption] Meta's code for a HUMAN_AGENT send without the approved
/// feature is not confirmed; a plain permission error (10) is the closest
/// documented one.
fn human_agent_missing() -> GraphError {
    GraphError::new(
        10,
        None,
        "(#10) Application does not have permission for this action: the Human Agent feature is not enabled for this Page",
    )
}

pub(crate) struct State {
    initial: SimConfig,
    app_id: String,
    app_secret: String,
    client_token: String,
    require_appsecret_proof: bool,
    rate_limit_per_sec: u32,
    allowed_tags: Vec<String>,
    allow_repeat_login_id_sends: bool,
    faults: Faults,
    lost_answers: LostAnswerFaults,
    /// Lost answers forced on the next attempts (`lose_next`), oldest first.
    forced_lost: VecDeque<FaultKind>,
    rng: SplitMix64,
    clock_offset_ms: i64,
    /// When set, the sim clock stands still at this value.
    frozen_at_ms: Option<i64>,
    page_tokens: HashMap<String, PageToken>,
    login_ids: HashMap<String, OneShot>,
    user_refs: HashMap<String, OneShot>,
    /// (page_id, psid) -> last user message, epoch ms.
    people: HashMap<(String, String), i64>,
    /// (Some(page) | None = every Page, psid).
    opted_out_psids: HashSet<(Option<String>, String)>,
    opted_out_login_ids: HashSet<String>,
    opted_out_user_refs: HashSet<String>,
    opted_out_notif_tokens: HashSet<String>,
    notif_tokens: HashMap<String, NotifToken>,
    user_tokens: HashMap<String, UserTokenRegistration>,
    /// Page id -> flags; Pages without an entry use the defaults.
    page_features: HashMap<String, PageFeatures>,
    /// Instagram user tokens (Instagram-Login path).
    ig_tokens: HashMap<String, IgToken>,
    /// (ig_account_id, igsid) -> last user message, epoch ms.
    ig_people: HashMap<(String, String), i64>,
    messages: Vec<SentMessage>,
    /// Every send attempt, oldest first.
    attempts: Vec<Attempt>,
    /// Attempts counted, whether or not `attempts` keeps them (`keep_logs`).
    attempt_count: u64,
    keep_logs: bool,
    /// Kept instead of the logs in tally-only mode (`keep_login_id_tally_only`).
    login_id_tally: Option<HashMap<String, LoginIdTally>>,
    /// Times of the attempts counted against each Page's limit (sliding
    /// 1 s window): every attempt that passed the token checks and was not
    /// itself refused with 613.
    windows: HashMap<String, VecDeque<i64>>,
    stats: Stats,
    /// Survive resets so ids stay unique for the process lifetime.
    next_message_id: u64,
    next_trace_id: u64,
}

impl State {
    pub(crate) fn new(config: SimConfig) -> Self {
        let page_tokens = config
            .pages
            .iter()
            .map(|(page_id, token)| {
                (
                    token.clone(),
                    PageToken {
                        page_id: page_id.clone(),
                        expired: false,
                    },
                )
            })
            .collect();
        Self {
            app_id: config.app_id.clone(),
            app_secret: config.app_secret.clone(),
            client_token: config.client_token.clone(),
            require_appsecret_proof: config.require_appsecret_proof,
            rate_limit_per_sec: config.rate_limit_per_sec,
            allowed_tags: config.allowed_tags.clone(),
            allow_repeat_login_id_sends: config.allow_repeat_login_id_sends,
            faults: config.faults.clone(),
            lost_answers: config.lost_answers.clone(),
            forced_lost: VecDeque::new(),
            rng: SplitMix64::new(config.faults.seed),
            clock_offset_ms: config.clock_offset_ms,
            frozen_at_ms: None,
            page_tokens,
            login_ids: HashMap::new(),
            user_refs: HashMap::new(),
            people: HashMap::new(),
            opted_out_psids: HashSet::new(),
            opted_out_login_ids: HashSet::new(),
            opted_out_user_refs: HashSet::new(),
            opted_out_notif_tokens: HashSet::new(),
            notif_tokens: HashMap::new(),
            user_tokens: HashMap::new(),
            page_features: config
                .page_features
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ig_tokens: HashMap::new(),
            ig_people: HashMap::new(),
            messages: Vec::new(),
            attempts: Vec::new(),
            attempt_count: 0,
            keep_logs: config.keep_logs,
            login_id_tally: None,
            windows: HashMap::new(),
            stats: Stats::default(),
            next_message_id: 1,
            next_trace_id: 1,
            initial: config,
        }
    }

    // ----- clock -------------------------------------------------------

    pub(crate) fn now_ms(&self) -> i64 {
        self.frozen_at_ms
            .unwrap_or_else(|| real_now_ms().saturating_add(self.clock_offset_ms))
    }

    pub(crate) fn clock_value(&self) -> Value {
        json!({
            "now_ms": self.now_ms(),
            "offset_ms": self.now_ms().saturating_sub(real_now_ms()),
            "frozen": self.frozen_at_ms.is_some(),
        })
    }

    pub(crate) fn update_clock(&mut self, update: &ClockUpdate) {
        if let Some(offset) = update.offset_ms {
            self.clock_offset_ms = offset;
            if self.frozen_at_ms.is_some() {
                self.frozen_at_ms = Some(real_now_ms().saturating_add(offset));
            }
        }
        match update.freeze {
            Some(true) => self.frozen_at_ms = Some(self.now_ms()),
            Some(false) => {
                if let Some(at) = self.frozen_at_ms.take() {
                    self.clock_offset_ms = at.saturating_sub(real_now_ms());
                }
            }
            None => {}
        }
        if let Some(advance) = update.advance_ms {
            match &mut self.frozen_at_ms {
                Some(at) => *at = at.saturating_add(advance),
                None => self.clock_offset_ms = self.clock_offset_ms.saturating_add(advance),
            }
        }
    }

    // ----- admin -------------------------------------------------------

    /// Back to the state right after `start`: the configured Pages, app,
    /// rules, faults (PRNG re-seeded) and clock offset (running). Message and trace
    /// counters keep counting.
    pub(crate) fn reset(&mut self) {
        let (next_message_id, next_trace_id) = (self.next_message_id, self.next_trace_id);
        *self = State::new(self.initial.clone());
        self.next_message_id = next_message_id;
        self.next_trace_id = next_trace_id;
    }

    pub(crate) fn register_page(&mut self, reg: &PageRegistration) {
        self.page_tokens.insert(
            reg.token.clone(),
            PageToken {
                page_id: reg.page_id.clone(),
                expired: reg.expired,
            },
        );
    }

    pub(crate) fn register_login_id(&mut self, reg: &LoginIdRegistration) {
        self.login_ids.insert(
            reg.login_id.clone(),
            OneShot {
                opted_in_at_ms: reg.opted_in_at_ms,
                page_id: reg.page_id.clone(),
                used: false,
            },
        );
    }

    pub(crate) fn register_user_ref(&mut self, reg: &UserRefRegistration) {
        self.user_refs.insert(
            reg.user_ref.clone(),
            OneShot {
                opted_in_at_ms: reg.opted_in_at_ms,
                page_id: reg.page_id.clone(),
                used: false,
            },
        );
    }

    pub(crate) fn register_person(&mut self, reg: &PersonRegistration) {
        self.people.insert(
            (reg.page_id.clone(), reg.psid.clone()),
            reg.last_user_message_at_ms,
        );
    }

    pub(crate) fn opt_out(&mut self, o: &OptOut) -> Result<(), String> {
        let kinds = [
            o.psid.is_some(),
            o.login_id.is_some(),
            o.user_ref.is_some(),
            o.notification_messages_token.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(
                "exactly one of psid, login_id, user_ref, notification_messages_token".to_owned(),
            );
        }
        if let Some(psid) = &o.psid {
            self.opted_out_psids
                .insert((o.page_id.clone(), psid.clone()));
        } else if let Some(id) = &o.login_id {
            self.opted_out_login_ids.insert(id.clone());
        } else if let Some(r) = &o.user_ref {
            self.opted_out_user_refs.insert(r.clone());
        } else if let Some(t) = &o.notification_messages_token {
            self.opted_out_notif_tokens.insert(t.clone());
        }
        Ok(())
    }

    pub(crate) fn register_notification_token(&mut self, reg: &NotificationTokenRegistration) {
        self.notif_tokens.insert(
            reg.token.clone(),
            NotifToken {
                page_id: reg.page_id.clone(),
                active: reg.active,
                psid: reg.psid.clone(),
            },
        );
    }

    pub(crate) fn register_user_token(&mut self, reg: &UserTokenRegistration) {
        let mut reg = reg.clone();
        // A token is issued when it is registered unless the test says otherwise.
        reg.issued_at_ms = Some(reg.issued_at_ms.unwrap_or_else(|| self.now_ms()));
        self.user_tokens.insert(reg.token.clone(), reg);
    }

    /// A person accepts `user_messenger_contact` for a Page: Meta's `login_id` for them, known
    /// from now on as Meta knows it (bound to that Page, opted in at the given time).
    pub(crate) fn login_connect(&mut self, reg: &LoginConnect) -> String {
        let login_id =
            crate::meta_login_id(&self.client_token, &reg.asid, &self.app_id, &reg.page_id);
        let opted_in_at_ms = reg.opted_in_at_ms.unwrap_or_else(|| self.now_ms());
        self.register_login_id(&LoginIdRegistration {
            login_id: login_id.clone(),
            page_id: Some(reg.page_id.clone()),
            opted_in_at_ms,
        });
        login_id
    }

    /// Applies the fields that are set; answers the Page's flags after.
    pub(crate) fn update_page_features(&mut self, u: &PageFeaturesUpdate) -> PageFeatures {
        let f = self.page_features.entry(u.page_id.clone()).or_default();
        let flags = [
            (&mut f.pages_messaging, u.pages_messaging),
            (
                &mut f.pages_messaging_phone_number,
                u.pages_messaging_phone_number,
            ),
            (&mut f.page_utility_messaging, u.page_utility_messaging),
            (&mut f.human_agent, u.human_agent),
            (&mut f.restricted, u.restricted),
        ];
        for (field, value) in flags {
            if let Some(v) = value {
                *field = v;
            }
        }
        if let Some(ig) = &u.instagram_account_id {
            f.instagram_account_id = Some(ig.clone());
        }
        f.clone()
    }

    pub(crate) fn page_features(&self, page_id: &str) -> PageFeatures {
        self.features(page_id)
    }

    /// Every Page with a token or flags -> its effective flags.
    pub(crate) fn all_page_features(&self) -> BTreeMap<String, PageFeatures> {
        self.page_tokens
            .values()
            .map(|t| t.page_id.clone())
            .chain(self.page_features.keys().cloned())
            .map(|p| {
                let f = self.features(&p);
                (p, f)
            })
            .collect()
    }

    pub(crate) fn register_instagram_token(&mut self, reg: &InstagramTokenRegistration) {
        self.ig_tokens.insert(
            reg.token.clone(),
            IgToken {
                ig_account_id: reg.ig_account_id.clone(),
                expired: reg.expired,
            },
        );
    }

    pub(crate) fn register_instagram_person(&mut self, reg: &InstagramPersonRegistration) {
        self.ig_people.insert(
            (reg.ig_account_id.clone(), reg.igsid.clone()),
            reg.last_user_message_at_ms,
        );
    }

    /// Replaces `faults` only (the lost-answer ratios stay) and re-seeds.
    pub(crate) fn set_faults(&mut self, faults: Faults) -> Result<(), String> {
        let lost = self.lost_answers.clone();
        self.set_all_faults(faults, lost)
    }

    /// Replaces the lost-answer ratios (the other faults stay) and re-seeds,
    /// so the same settings always give the same sequence.
    pub(crate) fn set_lost_answers(&mut self, lost: LostAnswerFaults) -> Result<(), String> {
        let faults = self.faults.clone();
        self.set_all_faults(faults, lost)
    }

    pub(crate) fn set_all_faults(
        &mut self,
        faults: Faults,
        lost: LostAnswerFaults,
    ) -> Result<(), String> {
        lost.validate_with(&faults)?;
        self.rng = SplitMix64::new(faults.seed);
        self.faults = faults;
        self.lost_answers = lost;
        Ok(())
    }

    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    pub(crate) fn lost_answers(&self) -> &LostAnswerFaults {
        &self.lost_answers
    }

    /// The next `count` attempts lose their answer as `kind`.
    pub(crate) fn lose_next(&mut self, count: usize, kind: FaultKind) -> usize {
        self.forced_lost.extend(std::iter::repeat_n(kind, count));
        self.forced_lost.len()
    }

    pub(crate) fn pending_lost_answers(&self) -> usize {
        self.forced_lost.len()
    }

    /// Both fault sets as one JSON object (`GET /_sim/faults`).
    pub(crate) fn faults_value(&self) -> Value {
        let mut v = json!(self.faults);
        if let (Some(obj), Value::Object(lost)) = (v.as_object_mut(), json!(self.lost_answers)) {
            obj.extend(lost);
        }
        v
    }

    pub(crate) fn update_config(&mut self, u: &ConfigUpdate) {
        if let Some(v) = u.require_appsecret_proof {
            self.require_appsecret_proof = v;
        }
        if let Some(v) = u.rate_limit_per_sec {
            self.rate_limit_per_sec = v;
        }
        if let Some(v) = &u.allowed_tags {
            self.allowed_tags = v.clone();
        }
        if let Some(v) = u.allow_repeat_login_id_sends {
            self.allow_repeat_login_id_sends = v;
        }
        if let Some(v) = &u.client_token {
            self.client_token = v.clone();
        }
    }

    pub(crate) fn effective_config(&self) -> Value {
        json!({
            "app_id": self.app_id,
            "require_appsecret_proof": self.require_appsecret_proof,
            "rate_limit_per_sec": self.rate_limit_per_sec,
            "allowed_tags": self.allowed_tags,
            "allow_repeat_login_id_sends": self.allow_repeat_login_id_sends,
            "faults": self.faults,
            "clock": self.clock_value(),
        })
    }

    pub(crate) fn messages(&self) -> Vec<SentMessage> {
        self.messages.clone()
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.attempts = self.attempt_count;
        // Derived from the attempt log rather than counted on the way, so
        // the two can never disagree.
        let mut tried: HashMap<(&str, &str, &str), u64> = HashMap::new();
        let mut accepted: HashMap<(&str, &str, &str), u64> = HashMap::new();
        for a in &self.attempts {
            let (Some(kind), Some(id)) = (a.recipient_kind.as_deref(), a.recipient_id.as_deref())
            else {
                continue;
            };
            if kind != "login_id" && kind != "user_ref" {
                continue;
            }
            let key = (a.page_id.as_deref().unwrap_or(""), kind, id);
            *tried.entry(key).or_default() += 1;
            if a.is_accepted() && a.sender_action.is_none() {
                *accepted.entry(key).or_default() += 1;
            }
        }
        stats.duplicate_attempts = tried.values().map(|n| n.saturating_sub(1)).sum();
        stats.duplicate_accepted = accepted.values().map(|n| n.saturating_sub(1)).sum();
        stats
    }

    pub(crate) fn accepted_count(&self) -> u64 {
        self.stats.accepted
    }

    pub(crate) fn keep_login_id_tally_only(&mut self) {
        self.keep_logs = false;
        self.login_id_tally.get_or_insert_with(HashMap::new);
    }

    pub(crate) fn login_id_tally(&self) -> HashMap<String, LoginIdTally> {
        self.login_id_tally.clone().unwrap_or_default()
    }

    pub(crate) fn login_ids_accepted(&self) -> usize {
        self.login_id_tally.as_ref().map_or(0, |t| {
            t.values()
                .filter(|e| e.first_accepted_at_ms.is_some())
                .count()
        })
    }

    /// The tally entry of `login_id`, when tally-only mode is on.
    fn tally_of(&mut self, login_id: &str) -> Option<&mut LoginIdTally> {
        let tally = self.login_id_tally.as_mut()?;
        if !tally.contains_key(login_id) {
            tally.insert(login_id.to_owned(), LoginIdTally::default());
        }
        tally.get_mut(login_id)
    }

    pub(crate) fn attempts(&self) -> Vec<Attempt> {
        self.attempts.clone()
    }

    /// Attempts whose recipient value is `recipient_id` (any kind, any Page).
    pub(crate) fn attempts_for(&self, recipient_id: &str) -> usize {
        self.attempts
            .iter()
            .filter(|a| a.recipient_id.as_deref() == Some(recipient_id))
            .count()
    }

    // ----- faults ------------------------------------------------------

    /// Draws exactly one PRNG value per send, so the fault sequence only
    /// depends on the seed and the number of sends.
    /// A forced lost answer (`lose_next`) still draws, so it does not shift
    /// the seeded sequence of the sends after it.
    pub(crate) fn roll_fault(&mut self) -> Option<Fault> {
        let r = self.rng.next_f64();
        let ms = self.faults.timeout_ms;
        if let Some(kind) = self.forced_lost.pop_front() {
            return Some(match kind {
                FaultKind::Http5xx => Fault::Lost5xx,
                FaultKind::Timeout => Fault::LostTimeout { ms },
            });
        }
        let f = &self.faults;
        let l = &self.lost_answers;
        let bounds = [
            f.error_5xx_ratio,
            f.timeout_ratio,
            l.lost_answer_5xx_ratio,
            l.lost_answer_timeout_ratio,
        ];
        // Consecutive intervals of [0,1): 5xx, timeout, lost 5xx, lost timeout.
        let mut upper = 0.0;
        let mut pick = None;
        for (i, ratio) in bounds.into_iter().enumerate() {
            upper += ratio;
            if r < upper {
                pick = Some(i);
                break;
            }
        }
        match pick {
            Some(0) => {
                self.stats.faults_5xx += 1;
                Some(Fault::Error5xx)
            }
            Some(1) => {
                self.stats.faults_timeout += 1;
                Some(Fault::Timeout { ms })
            }
            Some(2) => Some(Fault::Lost5xx),
            Some(_) => Some(Fault::LostTimeout { ms }),
            None => None,
        }
    }

    /// One send, start to finish: rolls the fault, runs the rules, records
    /// the attempt, and says how long the HTTP layer must hold the answer.
    pub(crate) fn process_send(&mut self, now: i64, input: &SendInput<'_>) -> SendPlan {
        let page = self.page_hint(input.node, input.token);
        let peek = peek_send(input.body);
        match self.roll_fault() {
            Some(lost @ (Fault::Lost5xx | Fault::LostTimeout { .. })) => {
                // The rules run and an accepted message is recorded; only
                // the answer is replaced.
                let (_, outcome) = self.handle_send(now, input, page.as_deref());
                let (status, kind, delay_ms) = match lost {
                    Fault::LostTimeout { ms } => {
                        self.stats.lost_answers_timeout += 1;
                        (504, FaultKind::Timeout, ms)
                    }
                    _ => {
                        self.stats.lost_answers_5xx += 1;
                        (500, FaultKind::Http5xx, 0)
                    }
                };
                self.record_attempt(now, page.clone(), peek, outcome, Some(kind));
                SendPlan {
                    delay_ms,
                    response: self.fault_response(now, page.as_deref(), status),
                }
            }
            Some(fault) => {
                let (status, kind, delay_ms) = match fault {
                    Fault::Timeout { ms } => (504, FaultKind::Timeout, ms),
                    _ => (500, FaultKind::Http5xx, 0),
                };
                self.record_attempt(
                    now,
                    page.clone(),
                    peek,
                    AttemptOutcome::Fault { fault: kind },
                    None,
                );
                SendPlan {
                    delay_ms,
                    response: self.fault_response(now, page.as_deref(), status),
                }
            }
            None => {
                let (response, outcome) = self.handle_send(now, input, page.as_deref());
                self.record_attempt(now, page, peek, outcome, None);
                SendPlan {
                    delay_ms: 0,
                    response,
                }
            }
        }
    }

    fn record_attempt(
        &mut self,
        now: i64,
        page_id: Option<String>,
        peek: Peek,
        outcome: AttemptOutcome,
        lost_answer: Option<FaultKind>,
    ) {
        self.attempt_count += 1;
        if peek.recipient_kind.as_deref() == Some("login_id") {
            if let Some(entry) = peek
                .recipient_id
                .as_deref()
                .and_then(|id| self.tally_of(id))
            {
                entry.attempts += 1;
            }
        }
        if !self.keep_logs {
            return;
        }
        let seq = self.attempt_count;
        self.attempts.push(Attempt {
            seq,
            at_ms: now,
            page_id,
            recipient_kind: peek.recipient_kind,
            recipient_id: peek.recipient_id,
            messaging_type: peek.messaging_type,
            tag: peek.tag,
            sender_action: peek.sender_action,
            outcome,
            lost_answer,
        });
    }

    fn fault_response(&mut self, now: i64, page: Option<&str>, status: u16) -> SimResponse {
        let message = if status == 500 {
            MSG_5XX.to_owned()
        } else {
            "(graph-sim) injected timeout".to_owned()
        };
        let err = GraphError {
            status,
            code: 2,
            subcode: None,
            message,
            transient: true,
        };
        let body = self.error_body(&err);
        SimResponse {
            status,
            body,
            headers: self.usage_headers(now, page),
        }
    }

    fn handle_send(
        &mut self,
        now: i64,
        input: &SendInput<'_>,
        page: Option<&str>,
    ) -> (SimResponse, AttemptOutcome) {
        let (status, body, outcome) = match self.evaluate_send(now, input) {
            Ok(body) => {
                let message_id = body
                    .get("message_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                (200, body, AttemptOutcome::Accepted { message_id })
            }
            Err(e) => {
                self.record_rejection(&e);
                let outcome = AttemptOutcome::Refused {
                    code: e.code,
                    subcode: e.subcode,
                };
                (e.status, self.error_body(&e), outcome)
            }
        };
        let response = SimResponse {
            status,
            body,
            headers: self.usage_headers(now, page),
        };
        (response, outcome)
    }

    /// The account the usage headers and attempts talk about: the token's
    /// Page (or Instagram account) if the token is registered, else the node
    /// in the path, else none.
    fn page_hint(&self, node: &str, token: Option<&str>) -> Option<String> {
        token
            .and_then(|t| {
                self.page_tokens
                    .get(t)
                    .map(|p| p.page_id.clone())
                    .or_else(|| self.ig_tokens.get(t).map(|i| i.ig_account_id.clone()))
            })
            .or_else(|| (node != "me").then(|| node.to_owned()))
    }

    /// A Page's flags (defaults for a Page without an entry).
    fn features(&self, page_id: &str) -> PageFeatures {
        self.page_features.get(page_id).cloned().unwrap_or_default()
    }

    /// Resolves the token to the sending account (rows 2-4).
    fn resolve_sender<'t>(
        &self,
        token: Option<&'t str>,
    ) -> Result<(SenderAccount, &'t str), GraphError> {
        let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
            GraphError::new(
                104,
                None,
                "An access token is required to request this resource.",
            )
        })?;
        let (sender, expired) = if let Some(p) = self.page_tokens.get(token) {
            (SenderAccount::Page(p.page_id.clone()), p.expired)
        } else if let Some(i) = self.ig_tokens.get(token) {
            (SenderAccount::Instagram(i.ig_account_id.clone()), i.expired)
        } else {
            return Err(GraphError::new(
                190,
                None,
                "Invalid OAuth access token - Cannot parse access token",
            ));
        };
        if expired {
            return Err(GraphError::new(
                190,
                Some(463),
                "Error validating access token: Session has expired.",
            ));
        }
        Ok((sender, token))
    }

    fn evaluate_send(&mut self, now: i64, input: &SendInput<'_>) -> Result<Value, GraphError> {
        if !valid_version(input.version) {
            return Err(GraphError::new(
                2500,
                None,
                format!(
                    "Unknown path components: /{}/{}/messages",
                    input.version, input.node
                ),
            ));
        }
        if !input.query_ok {
            return Err(GraphError::param("(#100) The query string is not valid"));
        }
        let (sender, token) = self.resolve_sender(input.token)?;
        self.check_appsecret_proof(token, input.appsecret_proof)?;
        let account_id = sender.id().to_owned();
        if input.node != "me" && input.node != account_id {
            return Err(GraphError::new(
                200,
                None,
                "(#200) Permissions error: the access token does not belong to this Page",
            ));
        }
        if let SenderAccount::Page(page_id) = &sender {
            if self.features(page_id).restricted {
                return Err(GraphError::new(
                    10,
                    Some(1893063),
                    "(#10) This Page is temporarily restricted from sending messages.",
                ));
            }
        }
        // Meta limits calls, not successes: a send the rules refuse still
        // used the Page's quota, so it counts. A call refused with 613 does
        // not, so a Page recovers once its window slides.
        if self.window_count(now, &account_id) >= self.rate_limit_per_sec as usize {
            self.stats.rate_limited += 1;
            *self
                .stats
                .rate_limited_by_page
                .entry(account_id.clone())
                .or_default() += 1;
            let mut e = GraphError::new(
                613,
                None,
                "(#613) Calls to this API have exceeded the rate limit.",
            );
            e.transient = true;
            return Err(e);
        }
        self.windows
            .entry(account_id.clone())
            .or_default()
            .push_back(now);
        let req = parse_send_body(input.body, &self.allowed_tags)?;
        let recipient_id = match &sender {
            SenderAccount::Page(page_id) => {
                self.check_page_permissions(page_id, &req)?;
                self.check_recipient(now, page_id, &req)?
            }
            SenderAccount::Instagram(ig) => self.check_instagram_login_send(now, ig, &req)?,
        };
        Ok(self.accept(now, &account_id, req, recipient_id))
    }

    fn check_appsecret_proof(&self, token: &str, proof: Option<&str>) -> Result<(), GraphError> {
        match proof {
            None if self.require_appsecret_proof => Err(GraphError::param(
                "API calls from the server require an appsecret_proof argument",
            )),
            None => Ok(()),
            Some(p) if crate::verify_appsecret_proof(&self.app_secret, token, p) => Ok(()),
            Some(_) => Err(GraphError::param(
                "Invalid appsecret_proof provided in the API argument",
            )),
        }
    }

    /// Row 21: what the Page's app may send at all, before any recipient
    /// lookup (a missing permission fails whoever the recipient is).
    fn check_page_permissions(&self, page_id: &str, req: &ParsedSend) -> Result<(), GraphError> {
        let f = self.features(page_id);
        if !f.pages_messaging {
            // LC-FAQ: this misleading parameter error is what a login_id
            // send gets when the app lacks pages_messaging.
            if matches!(req.recipient, Recipient::LoginId(_)) {
                return Err(GraphError::param(
                    "(#100) Param recipient[id] must be a valid ID string",
                ));
            }
            return Err(GraphError::new(
                10,
                None,
                "(#10) Application does not have permission for this action: pages_messaging",
            ));
        }
        if matches!(req.recipient, Recipient::Phone(_)) && !f.pages_messaging_phone_number {
            return Err(GraphError::new(
                200,
                Some(2018027),
                "(#200) This Page cannot message phone numbers: the app lacks pages_messaging_phone_number",
            ));
        }
        if req.messaging_type == Some(MessagingType::Utility) && !f.page_utility_messaging {
            return Err(GraphError::new(
                10,
                None,
                "(#10) Application does not have permission for this action: page_utility_messaging",
            ));
        }
        if req.is_human_agent() && !f.human_agent {
            return Err(human_agent_missing());
        }
        Ok(())
    }

    /// State-dependent recipient rules for a Page token. Returns the
    /// `recipient_id` to answer (PSID/IGSID recipients only). Does not mutate.
    fn check_recipient(
        &self,
        now: i64,
        page_id: &str,
        req: &ParsedSend,
    ) -> Result<Option<String>, GraphError> {
        match &req.recipient {
            Recipient::LoginId(id) => {
                check_one_shot(
                    self.login_ids.get(id),
                    page_id,
                    now,
                    self.allow_repeat_login_id_sends,
                    || self.opted_out_login_ids.contains(id),
                )?;
                Ok(None)
            }
            Recipient::UserRef(r) => {
                check_one_shot(
                    self.user_refs.get(r),
                    page_id,
                    now,
                    self.allow_repeat_login_id_sends,
                    || self.opted_out_user_refs.contains(r),
                )?;
                Ok(None)
            }
            Recipient::Psid(psid) => {
                let Some(last) = self
                    .people
                    .get(&(page_id.to_owned(), psid.clone()))
                    .copied()
                else {
                    // Not a Messenger PSID of this Page: maybe an IGSID of
                    // the Page's Instagram account (Messenger API for
                    // Instagram, Facebook-Login variant).
                    let ig_person = self.features(page_id).instagram_account_id.and_then(|ig| {
                        self.ig_people
                            .get(&(ig.clone(), psid.clone()))
                            .map(|last| (ig, *last))
                    });
                    return match ig_person {
                        Some((ig, last)) => self.check_igsid(now, &ig, psid, last, req),
                        None => Err(GraphError::new(100, Some(2018001), MSG_NO_MATCHING_USER)),
                    };
                };
                if self.psid_opted_out(page_id, psid) {
                    return Err(GraphError::new(551, Some(1545041), MSG_NOT_AVAILABLE));
                }
                let window = match (req.messaging_type, req.tag.as_deref()) {
                    // Sender actions follow the standard window.
                    _ if req.sender_action.is_some() => Some(STANDARD_WINDOW_MS),
                    (Some(MessagingType::Response | MessagingType::Update), _) => {
                        Some(STANDARD_WINDOW_MS)
                    }
                    (Some(MessagingType::MessageTag), Some(HUMAN_AGENT)) => {
                        Some(HUMAN_AGENT_WINDOW_MS)
                    }
                    // UTILITY (a template, checked above) is the post-window
                    // lane: no window.
                    _ => None,
                };
                if let Some(w) = window {
                    if now >= last.saturating_add(w) {
                        return Err(GraphError::new(10, Some(2018278), MSG_OUTSIDE_WINDOW));
                    }
                }
                Ok(Some(psid.clone()))
            }
            Recipient::NotifToken(t) => {
                let tok = self
                    .notif_tokens
                    .get(t)
                    .filter(|tok| tok.page_id == page_id)
                    .ok_or_else(|| GraphError::new(100, Some(2018001), MSG_NO_MATCHING_USER))?;
                let person_out = tok
                    .psid
                    .as_ref()
                    .is_some_and(|psid| self.psid_opted_out(page_id, psid));
                if person_out || self.opted_out_notif_tokens.contains(t) {
                    return Err(GraphError::new(551, Some(1545041), MSG_NOT_AVAILABLE));
                }
                if !tok.active {
                    return Err(GraphError::new(
                        10,
                        Some(2018065),
                        "(#10) The notification_messages_token is not active (stopped or expired)",
                    ));
                }
                Ok(None)
            }
            Recipient::Phone(_) => Ok(None),
        }
    }

    /// A send with an Instagram user token (`POST /{ig_id}/messages`): only
    /// IGSIDs of that account. The Human Agent feature is the one of the
    /// Page linked to the account, if any (an unlinked account has none).
    fn check_instagram_login_send(
        &self,
        now: i64,
        ig: &str,
        req: &ParsedSend,
    ) -> Result<Option<String>, GraphError> {
        let Recipient::Psid(igsid) = &req.recipient else {
            return Err(GraphError::param(
                "(#100) Only recipient[id] (an Instagram-scoped ID) is supported on the Instagram API",
            ));
        };
        if req.is_human_agent() {
            let linked_has_feature = self
                .page_features
                .values()
                .any(|f| f.instagram_account_id.as_deref() == Some(ig) && f.human_agent);
            if !linked_has_feature {
                return Err(human_agent_missing());
            }
        }
        let last = self
            .ig_people
            .get(&(ig.to_owned(), igsid.clone()))
            .copied()
            .ok_or_else(|| GraphError::new(100, Some(2018001), MSG_NO_MATCHING_USER))?;
        self.check_igsid(now, ig, igsid, last, req)
    }

    /// Instagram recipient rules, in this order: text limit 1000, no
    /// UTILITY, no tag but HUMAN_AGENT, opted out, window (10/2534022).
    fn check_igsid(
        &self,
        now: i64,
        ig: &str,
        igsid: &str,
        last: i64,
        req: &ParsedSend,
    ) -> Result<Option<String>, GraphError> {
        let text_chars = req
            .message
            .as_ref()
            .and_then(|m| m.get("text"))
            .and_then(Value::as_str)
            .map_or(0, |t| t.chars().count());
        if text_chars > IG_MAX_TEXT_CHARS {
            return Err(GraphError::param(format!(
                "(#100) Length of param message[text] must be less than or equal to {IG_MAX_TEXT_CHARS}"
            )));
        }
        if req.messaging_type == Some(MessagingType::Utility) {
            return Err(GraphError::param(
                "(#100) messaging_type UTILITY is not supported for Instagram recipients",
            ));
        }
        if req.tag.as_deref().is_some_and(|t| t != HUMAN_AGENT) {
            return Err(GraphError::param(
                "(#100) Only the HUMAN_AGENT tag is supported for Instagram recipients",
            ));
        }
        if self.psid_opted_out(ig, igsid) {
            return Err(GraphError::new(551, Some(1545041), MSG_NOT_AVAILABLE));
        }
        let window = if req.is_human_agent() {
            HUMAN_AGENT_WINDOW_MS
        } else {
            STANDARD_WINDOW_MS
        };
        if now >= last.saturating_add(window) {
            return Err(GraphError::new(10, Some(2534022), MSG_IG_OUTSIDE_WINDOW));
        }
        Ok(Some(igsid.to_owned()))
    }

    fn psid_opted_out(&self, page_id: &str, psid: &str) -> bool {
        self.opted_out_psids
            .contains(&(Some(page_id.to_owned()), psid.to_owned()))
            || self.opted_out_psids.contains(&(None, psid.to_owned()))
    }

    fn accept(
        &mut self,
        now: i64,
        page_id: &str,
        req: ParsedSend,
        recipient_id: Option<String>,
    ) -> Value {
        let one_shot = match &req.recipient {
            Recipient::LoginId(id) => self.login_ids.get_mut(id),
            Recipient::UserRef(r) => self.user_refs.get_mut(r),
            _ => None,
        };
        if let Some(entry) = one_shot {
            entry.used = true;
            entry.page_id = Some(page_id.to_owned());
        }

        let mut body = Map::new();
        if let Some(id) = recipient_id {
            body.insert("recipient_id".to_owned(), Value::String(id));
        }
        match req.message {
            Some(message) => {
                let message_id = format!("m_{}", self.next_message_id);
                self.next_message_id += 1;
                self.stats.accepted += 1;
                if let Recipient::LoginId(id) = &req.recipient {
                    if let Some(entry) = self.tally_of(id) {
                        entry.first_accepted_at_ms.get_or_insert(now);
                    }
                }
                if self.keep_logs {
                    self.messages.push(SentMessage {
                        page_id: page_id.to_owned(),
                        recipient: req.recipient_json,
                        messaging_type: req
                            .messaging_type
                            .map_or("", MessagingType::as_str)
                            .to_owned(),
                        tag: req.tag,
                        message,
                        message_id: message_id.clone(),
                        at_ms: now,
                    });
                }
                body.insert("message_id".to_owned(), Value::String(message_id));
            }
            None => self.stats.sender_actions += 1,
        }
        Value::Object(body)
    }

    // ----- rate window and usage headers ---------------------------------

    fn window_count(&mut self, now: i64, page_id: &str) -> usize {
        match self.windows.get_mut(page_id) {
            Some(w) => {
                // Sorted: every push follows a count at the same `now`, which first drops what
                // is later (a clock set back). So both ends trim in O(dropped), not O(window).
                while w.front().is_some_and(|&t| t <= now - RATE_WINDOW_MS) {
                    w.pop_front();
                }
                while w.back().is_some_and(|&t| t > now) {
                    w.pop_back();
                }
                w.len()
            }
            None => 0,
        }
    }

    fn usage_headers(&mut self, now: i64, page_id: Option<&str>) -> Vec<(&'static str, String)> {
        let limit = u64::from(self.rate_limit_per_sec);
        let (pct, regain_min) = match page_id {
            Some(p) => {
                let count = self.window_count(now, p) as u64;
                // A limit of 0 means "always throttled": 100 %.
                let pct = (count * 100).checked_div(limit).map_or(100, |p| p.min(100));
                let regain = if count >= limit {
                    let oldest = self
                        .windows
                        .get(p)
                        .and_then(|w| w.iter().min().copied())
                        .unwrap_or(now);
                    let ms = (oldest + RATE_WINDOW_MS - now).max(1);
                    (ms + 59_999) / 60_000
                } else {
                    0
                };
                (pct, regain)
            }
            None => (0, 0),
        };
        // Formatted, not built as `Value` maps: two headers on every send were ~1% of a
        // `load` flood, and the simulator shares the cores with what it measures.
        let buc = match page_id {
            Some(p) => format!(
                r#"{{{}:[{{"type":"pages","call_count":{pct},"total_cputime":{pct},"total_time":{pct},"estimated_time_to_regain_access":{regain_min}}}]}}"#,
                Value::from(p)
            ),
            None => "{}".to_string(),
        };
        let app = format!(r#"{{"call_count":{pct},"total_cputime":0,"total_time":0}}"#);
        vec![("x-business-use-case-usage", buc), ("x-app-usage", app)]
    }

    // ----- errors --------------------------------------------------------

    fn record_rejection(&mut self, e: &GraphError) {
        self.stats.rejected += 1;
        *self
            .stats
            .rejected_by_code
            .entry(e.code.to_string())
            .or_default() += 1;
        let key = match e.subcode {
            Some(s) => format!("{}/{}", e.code, s),
            None => e.code.to_string(),
        };
        *self.stats.rejected_by_code_subcode.entry(key).or_default() += 1;
    }

    fn error_body(&mut self, e: &GraphError) -> Value {
        let trace = format!("SimTrace{:010}", self.next_trace_id);
        self.next_trace_id += 1;
        let mut err = Map::new();
        err.insert("message".to_owned(), json!(e.message));
        err.insert("type".to_owned(), json!("OAuthException"));
        err.insert("code".to_owned(), json!(e.code));
        if let Some(s) = e.subcode {
            err.insert("error_subcode".to_owned(), json!(s));
        }
        if e.transient {
            err.insert("is_transient".to_owned(), json!(true));
        }
        err.insert("fbtrace_id".to_owned(), json!(trace));
        json!({ "error": Value::Object(err) })
    }

    // ----- debug_token ---------------------------------------------------

    pub(crate) fn debug_token(
        &mut self,
        now: i64,
        version: &str,
        access_token: Option<&str>,
        input_token: Option<&str>,
    ) -> (u16, Value) {
        self.stats.debug_token_calls += 1;
        match self.evaluate_debug_token(now, version, access_token, input_token) {
            Ok(v) => (200, v),
            Err(e) => (e.status, self.error_body(&e)),
        }
    }

    fn evaluate_debug_token(
        &self,
        now: i64,
        version: &str,
        access_token: Option<&str>,
        input_token: Option<&str>,
    ) -> Result<Value, GraphError> {
        if !valid_version(version) {
            return Err(GraphError::new(
                2500,
                None,
                format!("Unknown path components: /{version}/debug_token"),
            ));
        }
        let access_token = access_token.filter(|t| !t.is_empty()).ok_or_else(|| {
            GraphError::new(
                104,
                None,
                "An access token is required to request this resource.",
            )
        })?;
        if access_token != format!("{}|{}", self.app_id, self.app_secret) {
            return Err(GraphError::new(
                190,
                None,
                "Invalid OAuth access token - Cannot parse access token",
            ));
        }
        let input = input_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| GraphError::param("(#100) The parameter input_token is required"))?;

        if let Some(u) = self.user_tokens.get(input) {
            let expires_s = u.expires_at_ms.div_euclid(1000);
            let issued_s = u.issued_at_ms.unwrap_or(now).div_euclid(1000);
            let expired = u.expires_at_ms != 0 && now >= u.expires_at_ms;
            let data_access = if u.expires_at_ms == 0 {
                now.div_euclid(1000) + DATA_ACCESS_SECS
            } else {
                expires_s + DATA_ACCESS_SECS
            };
            let mut data = json!({
                "app_id": u.app_id.clone().unwrap_or_else(|| self.app_id.clone()),
                "type": "USER",
                "application": "sim",
                "data_access_expires_at": data_access,
                "expires_at": expires_s,
                "issued_at": issued_s,
                "is_valid": u.valid && !expired,
                "scopes": u.scopes,
                "user_id": u.user_id,
            });
            let error = if !u.valid {
                Some(
                    json!({"code": 190, "subcode": 460, "message": "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons."}),
                )
            } else if expired {
                Some(
                    json!({"code": 190, "subcode": 463, "message": "Error validating access token: Session has expired."}),
                )
            } else {
                None
            };
            if let (Some(err), Some(obj)) = (error, data.as_object_mut()) {
                obj.insert("error".to_owned(), err);
            }
            return Ok(json!({ "data": data }));
        }
        if let Some(p) = self.page_tokens.get(input) {
            let mut data = json!({
                "app_id": self.app_id,
                "type": "PAGE",
                "application": "sim",
                "data_access_expires_at": 0,
                "expires_at": 0,
                "is_valid": !p.expired,
                "profile_id": p.page_id,
                "scopes": ["pages_messaging"],
            });
            if let (true, Some(obj)) = (p.expired, data.as_object_mut()) {
                obj.insert(
                    "error".to_owned(),
                    json!({"code": 190, "subcode": 463, "message": "Error validating access token: Session has expired."}),
                );
            }
            return Ok(json!({ "data": data }));
        }
        Ok(json!({"data": {
            "is_valid": false,
            "error": {"code": 190, "message": "Invalid OAuth access token."},
        }}))
    }
}

/// `login_id` / `user_ref` rules, in this order: registered, bound Page,
/// opted out, already used (unless `allow_repeat`), 24 h window.
fn check_one_shot(
    entry: Option<&OneShot>,
    page_id: &str,
    now: i64,
    allow_repeat: bool,
    opted_out: impl FnOnce() -> bool,
) -> Result<(), GraphError> {
    let entry = entry.ok_or_else(|| GraphError::new(100, Some(2018001), MSG_NO_MATCHING_USER))?;
    if entry.page_id.as_deref().is_some_and(|p| p != page_id) {
        return Err(GraphError::new(100, Some(2018001), MSG_NO_MATCHING_USER));
    }
    if opted_out() {
        return Err(GraphError::new(551, Some(1545041), MSG_NOT_AVAILABLE));
    }
    let used_up = entry.used && !allow_repeat;
    if used_up || now >= entry.opted_in_at_ms.saturating_add(ONE_SHOT_WINDOW_MS) {
        return Err(GraphError::new(10, Some(2018278), MSG_OUTSIDE_WINDOW));
    }
    Ok(())
}

/// `v<digits>.<digits>`.
pub(crate) fn valid_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let Some((major, minor)) = rest.split_once('.') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(major) && digits(minor)
}

pub(crate) fn real_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The request fields an [`Attempt`] records, read leniently: an attempt
/// is logged even when its body is invalid or a fault answered first.
#[derive(Debug, Default)]
struct Peek {
    recipient_kind: Option<String>,
    recipient_id: Option<String>,
    messaging_type: Option<String>,
    tag: Option<String>,
    sender_action: Option<String>,
}

fn peek_send(body: &[u8]) -> Peek {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return Peek::default();
    };
    let string = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_owned);
    let recipient = match obj.get("recipient") {
        // Form-style clients send the recipient as a JSON string.
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).ok(),
        Some(v) => Some(v.clone()),
        None => None,
    };
    let (recipient_kind, recipient_id) = recipient
        .as_ref()
        .and_then(Value::as_object)
        .and_then(|r| {
            r.iter()
                .filter(|(k, _)| k.as_str() != "name")
                .find_map(|(k, v)| {
                    let id = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => return None,
                        other => other.to_string(),
                    };
                    Some((Some(k.clone()), Some(id)))
                })
        })
        .unwrap_or((None, None));
    Peek {
        recipient_kind,
        recipient_id,
        messaging_type: string("messaging_type"),
        tag: string("tag"),
        sender_action: string("sender_action"),
    }
}

// ----- body validation (state independent except the tag allow-list) ------

const RECIPIENT_KINDS: [&str; 5] = [
    "id",
    "login_id",
    "user_ref",
    "phone_number",
    "notification_messages_token",
];
const UNSUPPORTED_RECIPIENT_KINDS: [&str; 3] = ["post_id", "comment_id", "one_time_notif_token"];
const SENDER_ACTIONS: [&str; 5] = ["MARK_SEEN", "TYPING_ON", "TYPING_OFF", "REACT", "UNREACT"];
const ATTACHMENT_TYPES: [&str; 5] = ["audio", "file", "image", "template", "video"];
const QUICK_REPLY_TYPES: [&str; 3] = ["text", "user_phone_number", "user_email"];

fn parse_send_body(body: &[u8], allowed_tags: &[String]) -> Result<ParsedSend, GraphError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GraphError::param(
            "(#100) The parameter recipient is required",
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| GraphError::param("(#100) The request body is not valid JSON"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| GraphError::param("(#100) The request body must be a JSON object"))?;

    let recipient_json = match obj.get("recipient") {
        None | Some(Value::Null) => {
            return Err(GraphError::param(
                "(#100) The parameter recipient is required",
            ))
        }
        // Form-style clients send the recipient as a JSON string.
        Some(Value::String(s)) => serde_json::from_str::<Value>(s)
            .map_err(|_| GraphError::param("(#100) param recipient must be a JSON object"))?,
        Some(v) => v.clone(),
    };
    let recipient = parse_recipient(&recipient_json)?;

    let sender_action = match obj.get("sender_action") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if SENDER_ACTIONS.contains(&s.as_str()) => Some(s.clone()),
        Some(_) => {
            return Err(GraphError::param(format!(
                "(#100) param sender_action must be one of {}",
                SENDER_ACTIONS.join(", ")
            )))
        }
    };
    let message = match obj.get("message") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.clone()),
    };
    let messaging_type = match obj.get("messaging_type") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(MessagingType::parse(s).ok_or_else(|| {
            GraphError::param(
                "(#100) param messaging_type must be one of RESPONSE, UPDATE, MESSAGE_TAG, UTILITY",
            )
        })?),
        Some(_) => {
            return Err(GraphError::param(
                "(#100) param messaging_type must be a string",
            ))
        }
    };
    let tag = match obj.get("tag") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(GraphError::param("(#100) param tag must be a string")),
    };

    if let Some(action) = &sender_action {
        if message.is_some() {
            return Err(GraphError::param(
                "(#100) sender_action must be sent without message, in a separate request",
            ));
        }
        if !matches!(recipient, Recipient::Psid(_)) {
            return Err(GraphError::param(format!(
                "(#100) sender_action {action} is only supported for recipient id (PSID) in graph-sim"
            )));
        }
        if tag.is_some() {
            return Err(GraphError::param(
                "(#100) param tag cannot be used with sender_action",
            ));
        }
        return Ok(ParsedSend {
            recipient,
            recipient_json,
            messaging_type,
            tag,
            message: None,
            sender_action,
        });
    }

    let Some(message) = message else {
        return Err(GraphError::param(
            "(#100) Must send either message or sender_action",
        ));
    };
    let messaging_type = messaging_type
        .ok_or_else(|| GraphError::param("(#100) The parameter messaging_type is required"))?;
    let tag_used = tag.is_some() || messaging_type == MessagingType::MessageTag;
    match &recipient {
        Recipient::LoginId(_) if tag_used => {
            return Err(GraphError::param(
                "Message tags are not allowed for login_id recipients",
            ))
        }
        Recipient::UserRef(_) if tag_used => {
            return Err(GraphError::param(
                "Message tags are not allowed for user_ref recipients",
            ))
        }
        // [assumption] Meta does not say whether UTILITY may target a
        // login_id (or a user_ref); refusing is the strict choice.
        Recipient::LoginId(_) if messaging_type == MessagingType::Utility => {
            return Err(GraphError::param(
                "(#100) messaging_type UTILITY is not supported for login_id recipients",
            ))
        }
        Recipient::UserRef(_) if messaging_type == MessagingType::Utility => {
            return Err(GraphError::param(
                "(#100) messaging_type UTILITY is not supported for user_ref recipients",
            ))
        }
        _ => {}
    }
    match (&tag, messaging_type) {
        (None, MessagingType::MessageTag) => {
            return Err(GraphError::param(
                "(#100) param tag is required when messaging_type is MESSAGE_TAG",
            ))
        }
        (Some(_), mt) if mt != MessagingType::MessageTag => {
            return Err(GraphError::param(
                "(#100) param tag is only allowed with messaging_type MESSAGE_TAG",
            ))
        }
        // Retired tags fail even if the allow-list still names them.
        (Some(t), _) if RETIRED_TAGS.contains(&t.as_str()) => {
            return Err(GraphError::param("(#100) Invalid parameter"))
        }
        (Some(t), _) if !allowed_tags.iter().any(|a| a == t) => {
            return Err(GraphError::param(format!(
                "(#100) Tag {t} is not allowed for this app"
            )))
        }
        _ => {}
    }
    validate_message(&message)?;
    let is_template = message
        .get("attachment")
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
        == Some("template");
    if messaging_type == MessagingType::Utility && !is_template {
        return Err(GraphError::param(
            "(#100) messaging_type UTILITY requires a template message (message.attachment.type = template)",
        ));
    }
    Ok(ParsedSend {
        recipient,
        recipient_json,
        messaging_type: Some(messaging_type),
        tag,
        message: Some(message),
        sender_action: None,
    })
}

fn parse_recipient(v: &Value) -> Result<Recipient, GraphError> {
    let obj = v
        .as_object()
        .ok_or_else(|| GraphError::param("(#100) param recipient must be a JSON object"))?;
    let mut kinds = Vec::new();
    for key in obj.keys() {
        if RECIPIENT_KINDS.contains(&key.as_str()) {
            kinds.push(key.as_str());
        } else if UNSUPPORTED_RECIPIENT_KINDS.contains(&key.as_str()) {
            return Err(GraphError::param(format!(
                "(#100) recipient[{key}] is not supported by graph-sim"
            )));
        } else if key != "name" {
            return Err(GraphError::param(format!(
                "(#100) Unknown parameter recipient[{key}]"
            )));
        }
    }
    let kind = match kinds.as_slice() {
        [] => {
            return Err(GraphError::param(
                "(#100) param recipient must contain one of id, login_id, user_ref, phone_number, notification_messages_token",
            ))
        }
        [k] => *k,
        _ => {
            return Err(GraphError::param(
                "(#100) param recipient must contain exactly one of id, login_id, user_ref, phone_number, notification_messages_token",
            ))
        }
    };
    if obj.contains_key("name") && kind != "phone_number" {
        return Err(GraphError::param(
            "(#100) recipient[name] is only allowed with recipient[phone_number]",
        ));
    }
    let value = match obj.get(kind) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => {
            return Err(GraphError::param(format!(
                "(#100) Param recipient[{kind}] must be a valid ID string"
            )))
        }
    };
    if let Some(name) = obj.get("name") {
        if !name.is_object() && !name.is_string() {
            return Err(GraphError::param(
                "(#100) recipient[name] must be an object or string",
            ));
        }
    }
    Ok(match kind {
        "id" => Recipient::Psid(value),
        "login_id" => Recipient::LoginId(value),
        "user_ref" => Recipient::UserRef(value),
        "phone_number" => {
            if !value.bytes().any(|b| b.is_ascii_digit()) {
                return Err(GraphError::param(
                    "(#100) Param recipient[phone_number] must be a phone number",
                ));
            }
            Recipient::Phone(value)
        }
        _ => Recipient::NotifToken(value),
    })
}

fn validate_message(message: &Value) -> Result<(), GraphError> {
    let obj = message
        .as_object()
        .ok_or_else(|| GraphError::param("(#100) param message must be a JSON object"))?;
    let text = match obj.get("text") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => {
            return Err(GraphError::param(
                "(#100) param message[text] must be a string",
            ))
        }
    };
    if text.is_some_and(|t| t.chars().count() > MAX_TEXT_CHARS) {
        return Err(GraphError::param(format!(
            "(#100) Length of param message[text] must be less than or equal to {MAX_TEXT_CHARS}"
        )));
    }
    if let Some(qr) = obj.get("quick_replies").filter(|v| !v.is_null()) {
        let items = qr.as_array().ok_or_else(|| {
            GraphError::param("(#100) param message[quick_replies] must be an array")
        })?;
        if items.len() > MAX_QUICK_REPLIES {
            return Err(GraphError::new(
                105,
                None,
                format!(
                    "(#105) param message[quick_replies] must have at most {MAX_QUICK_REPLIES} elements"
                ),
            ));
        }
        for (i, item) in items.iter().enumerate() {
            let content_type = item.get("content_type").and_then(Value::as_str);
            if !content_type.is_some_and(|c| QUICK_REPLY_TYPES.contains(&c)) {
                return Err(GraphError::param(format!(
                    "(#100) param message[quick_replies][{i}][content_type] must be one of {}",
                    QUICK_REPLY_TYPES.join(", ")
                )));
            }
            let has_title = item
                .get("title")
                .and_then(Value::as_str)
                .is_some_and(|t| !t.is_empty());
            if content_type == Some("text") && !has_title {
                return Err(GraphError::param(format!(
                    "(#100) param message[quick_replies][{i}][title] is required for text quick replies"
                )));
            }
        }
    }
    let attachment = obj.get("attachment").filter(|v| !v.is_null());
    if let Some(a) = attachment {
        let ty = a.get("type").and_then(Value::as_str);
        if !ty.is_some_and(|t| ATTACHMENT_TYPES.contains(&t)) {
            return Err(GraphError::param(format!(
                "(#100) param message[attachment][type] must be one of {}",
                ATTACHMENT_TYPES.join(", ")
            )));
        }
        if !a.get("payload").is_some_and(Value::is_object) {
            return Err(GraphError::param(
                "(#100) param message[attachment][payload] must be an object",
            ));
        }
    }
    let has_text = text.is_some_and(|t| !t.is_empty());
    if has_text && attachment.is_some() {
        return Err(GraphError::param(
            "(#100) Only one of message[text] or message[attachment] may be set",
        ));
    }
    if !has_text && attachment.is_none() {
        return Err(GraphError::new(
            100,
            Some(2018034),
            "(#100) Message cannot be empty, must provide valid attachment or text",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn state() -> State {
        State::new(
            SimConfig::default()
                .with_page("P1", "TOK1")
                .with_page("P2", "TOK2"),
        )
    }

    fn send(s: &mut State, now: i64, body: Value) -> SimResponse {
        let bytes = body.to_string().into_bytes();
        s.process_send(
            now,
            &SendInput {
                version: "v25.0",
                node: "me",
                token: Some("TOK1"),
                appsecret_proof: None,
                query_ok: true,
                body: &bytes,
            },
        )
        .response
    }

    fn code(r: &SimResponse) -> (i64, Option<i64>) {
        let e = &r.body["error"];
        (e["code"].as_i64().unwrap_or(0), e["error_subcode"].as_i64())
    }

    /// [`state`] with these login_ids opted in at `T0`, on no Page yet.
    fn with_login_ids(ids: &[&str]) -> State {
        let mut s = state();
        for id in ids {
            s.register_login_id(&LoginIdRegistration {
                login_id: (*id).into(),
                page_id: None,
                opted_in_at_ms: T0,
            });
        }
        s
    }

    fn login(id: &str) -> Value {
        json!({"messaging_type": "UPDATE", "recipient": {"login_id": id}, "message": {"text": "hi"}})
    }

    #[test]
    fn the_login_id_tally_counts_every_attempt_and_the_first_acceptance() {
        let mut s = with_login_ids(&["a", "b"]);
        s.keep_login_id_tally_only();
        assert_eq!(send(&mut s, T0 + 1, login("a")).status, 200);
        // Meta's one-message rule refuses the second: still an attempt of ours.
        assert_eq!(code(&send(&mut s, T0 + 2, login("a"))), (10, Some(2018278)));
        // A login_id nobody registered: refused, counted.
        assert_ne!(send(&mut s, T0 + 3, login("nobody")).status, 200);
        assert_eq!(send(&mut s, T0 + 4, phone_update()).status, 200);

        let tally = s.login_id_tally();
        let entry = |attempts, first_accepted_at_ms| LoginIdTally {
            attempts,
            first_accepted_at_ms,
        };
        assert_eq!(tally.len(), 2, "{tally:?}");
        assert_eq!(tally["a"], entry(2, Some(T0 + 1)));
        assert_eq!(tally["nobody"], entry(1, None));
        assert_eq!(s.login_ids_accepted(), 1);
        assert!(s.messages().is_empty() && s.attempts().is_empty());
        assert_eq!(s.accepted_count(), 2, "the counters go on");

        // Repeats allowed (as `load` runs it): each accepted, the first time kept.
        s.allow_repeat_login_id_sends = true;
        assert_eq!(send(&mut s, T0 + 5, login("b")).status, 200);
        assert_eq!(send(&mut s, T0 + 6, login("b")).status, 200);
        assert_eq!(s.login_id_tally()["b"], entry(2, Some(T0 + 5)));
        assert_eq!(s.login_ids_accepted(), 2);
    }

    #[test]
    fn login_id_window_boundary_is_exclusive() {
        let mut s = with_login_ids(&["a", "b"]);
        let r = send(&mut s, T0 + DAY_MS - 1, login("a"));
        assert_eq!(r.status, 200, "{}", r.body);
        let r = send(&mut s, T0 + DAY_MS, login("b"));
        assert_eq!(code(&r), (10, Some(2018278)));
    }

    #[test]
    fn psid_windows_boundaries() {
        let mut s = state();
        s.update_page_features(&PageFeaturesUpdate {
            page_id: "P1".into(),
            human_agent: Some(true),
            ..PageFeaturesUpdate::default()
        });
        s.register_person(&PersonRegistration {
            page_id: "P1".into(),
            psid: "U".into(),
            last_user_message_at_ms: T0,
        });
        let resp = json!({"messaging_type": "RESPONSE", "recipient": {"id": "U"}, "message": {"text": "x"}});
        assert_eq!(send(&mut s, T0 + DAY_MS - 1, resp.clone()).status, 200);
        assert_eq!(code(&send(&mut s, T0 + DAY_MS, resp)), (10, Some(2018278)));
        let human = json!({"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT", "recipient": {"id": "U"}, "message": {"text": "x"}});
        assert_eq!(send(&mut s, T0 + 7 * DAY_MS - 1, human.clone()).status, 200);
        assert_eq!(
            code(&send(&mut s, T0 + 7 * DAY_MS, human)),
            (10, Some(2018278))
        );
    }

    #[test]
    fn text_length_counts_chars_not_bytes() {
        let ok = json!({"text": "é".repeat(2000)});
        assert!(validate_message(&ok).is_ok());
        let too_long = json!({"text": "a".repeat(2001)});
        assert_eq!(validate_message(&too_long).map_err(|e| e.code), Err(100));
    }

    /// A state whose Pages may make two calls a second.
    fn two_per_second() -> State {
        let mut s = state();
        s.update_config(&ConfigUpdate {
            rate_limit_per_sec: Some(2),
            ..ConfigUpdate::default()
        });
        s
    }

    /// A send with no one-message rule in its way (a phone number, `UPDATE`).
    fn phone_update() -> Value {
        json!({"messaging_type": "UPDATE", "recipient": {"phone_number": "+1 555 0100"}, "message": {"text": "x"}})
    }

    #[test]
    fn rate_window_slides() {
        let mut s = two_per_second();
        let phone = phone_update();
        assert_eq!(send(&mut s, T0, phone.clone()).status, 200);
        assert_eq!(send(&mut s, T0 + 500, phone.clone()).status, 200);
        assert_eq!(code(&send(&mut s, T0 + 999, phone.clone())), (613, None));
        // The first send leaves the window at T0 + 1000.
        assert_eq!(send(&mut s, T0 + 1000, phone.clone()).status, 200);
        assert_eq!(code(&send(&mut s, T0 + 1001, phone)), (613, None));
    }

    #[test]
    fn a_clock_set_back_forgets_the_sends_after_it() {
        let mut s = two_per_second();
        let phone = phone_update();
        assert_eq!(send(&mut s, T0, phone.clone()).status, 200);
        assert_eq!(send(&mut s, T0 + 500, phone.clone()).status, 200);
        // Back before the second send: only the first is in this window.
        assert_eq!(send(&mut s, T0 + 100, phone.clone()).status, 200);
        assert_eq!(code(&send(&mut s, T0 + 200, phone)), (613, None));
    }

    #[test]
    fn refused_attempts_count_in_the_rate_window() {
        let mut s = two_per_second();
        assert_eq!(
            code(&send(&mut s, T0, login("nobody"))),
            (100, Some(2018001))
        );
        assert_eq!(
            code(&send(&mut s, T0 + 1, login("nobody"))),
            (100, Some(2018001))
        );
        assert_eq!(code(&send(&mut s, T0 + 2, login("nobody"))), (613, None));
        let stats = s.stats();
        assert_eq!(stats.rate_limited, 1);
        assert_eq!(stats.rate_limited_by_page.get("P1"), Some(&1));
        // The 613 itself did not count: the window frees at T0 + 1000.
        let phone = phone_update();
        assert_eq!(send(&mut s, T0 + 1_000, phone).status, 200);
    }

    #[test]
    fn versions() {
        assert!(valid_version("v25.0"));
        assert!(valid_version("v2.12"));
        assert!(!valid_version("v25"));
        assert!(!valid_version("25.0"));
        assert!(!valid_version("v.0"));
        assert!(!valid_version("vx.0"));
        assert!(!valid_version("me"));
    }

    #[test]
    fn fault_sequence_depends_only_on_seed() {
        let faults = Faults {
            error_5xx_ratio: 0.3,
            timeout_ratio: 0.2,
            seed: 99,
            ..Faults::default()
        };
        let run = || {
            let mut s = state();
            s.set_faults(faults.clone()).unwrap();
            (0..50).map(|_| s.roll_fault()).collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.contains(&Some(Fault::Error5xx)));
        assert!(a.contains(&Some(Fault::Timeout { ms: 30_000 })));
        assert!(a.contains(&None));
    }
}
