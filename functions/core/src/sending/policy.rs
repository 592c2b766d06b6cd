//! The messaging policy: may this message go to this recipient now?
//!
//! One pure function, [`decide`], over everything the caller already loaded (Page config,
//! opt-in, person, marketing token). It never does I/O and never guesses: a missing record is
//! a refusal, never an allowance. Every decision names the [`Rule`] that made it, with a stable
//! snake_case name ([`Rule::as_str`]) for logs and metrics.
//!
//! Rules, checked in this order (the first that applies decides):
//!
//! 1. Page paused -> refuse `page_paused`.
//! 2. Opted out (person or opt-in) -> refuse `opted_out`, whatever the type or tag.
//! 3. `login_id` / `user_ref` (Login Connect, checkbox): one untagged RESPONSE/UPDATE, from
//!    the bound Page, within 24 h of the opt-in -> `first_message`.
//! 4. PSID / IGSID: the Send-to-Messenger first message (`plugin_first_message`), else the
//!    24 h standard window (`standard_window`), message tags from the allow-list
//!    (`human_agent_window` for `HUMAN_AGENT`, `message_tag` for the others), `utility`.
//! 5. Marketing-messages token -> `marketing` while active, unexpired and untagged.
//! 6. Phone number -> `phone_number` only when enabled.
//!
//! A tag Meta retired on 2026-04-27 (`CONFIRMED_EVENT_UPDATE`, `POST_PURCHASE_UPDATE`,
//! `ACCOUNT_UPDATE`) is refused as `retired_tag` even when the allow-list names it: Meta answers
//! every such send with `100 "Invalid parameter"` (meta-platform.md §0).
//!
//! Windows are half-open: `[start, start + window)`. A message at exactly the end is refused.
//!
//! # Follow-ups
//!
//! [`decide_followup`] answers the business's own messages (`POST /v1/messages`): it does not
//! check a `messaging_type` the caller chose, it *chooses* one from the caller's intent, or
//! refuses with the rule, a reason and, when known, when the window closed. In order:
//!
//! 1. Page paused -> `page_paused`; 2. opted out -> `opted_out`;
//! 3. a retired tag named -> `retired_tag`; another tag but `HUMAN_AGENT` -> `tag_not_allowed`;
//! 4. a recipient nobody knows -> `unknown_recipient`; a `login_id` / `user_ref` whose person
//!    has not replied -> `login_id_once` (it accepts only its one first message: wait for the
//!    reply, then the person is a PSID); a phone number -> `phone_number` (per-Page setting);
//! 5. Instagram: text over 1000 characters -> `instagram_text_limit`, UTILITY ->
//!    `instagram_utility`;
//! 6. `utility` -> UTILITY when the Page (or the deployment) has utility messaging
//!    (`utility`), else `utility_disabled`;
//! 7. inside the 24 h window: `reply` -> RESPONSE, `update` -> UPDATE, `human_agent` ->
//!    RESPONSE (no tag needed) -> `standard_window`;
//! 8. 24 h to 7 days: `human_agent` written by a human (`human_agent_author`), from a Page with
//!    Meta's Human Agent feature (`human_agent_feature`) -> MESSAGE_TAG + HUMAN_AGENT
//!    (`human_agent_window`); anything else is refused `standard_window` with the time the
//!    window closed. After 7 days nothing but UTILITY goes.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::lifecycle::optin::{Optin, OptinState, DAY_MS};
use crate::ports::graph::{MessagingType, Recipient};
use crate::ports::store::{MarketingToken, PageConfig, Person, TokenStatus};
use crate::sending::errors::RETIRED_TAGS;
use crate::webhook::IdentityKind;

/// The `HUMAN_AGENT` message tag (human reply up to 7 days after the user's last message).
pub const HUMAN_AGENT: &str = "HUMAN_AGENT";

/// Settings of the policy (per deployment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Message tags that may be used with `MESSAGE_TAG` (compared upper-case). Default:
    /// `HUMAN_AGENT` only; Meta is retiring the update tags (meta-platform.md §4).
    pub allowed_tags: Vec<String>,
    /// RESPONSE / UPDATE to a PSID: since the user's last message. Default 24 h.
    pub standard_window_ms: i64,
    /// `HUMAN_AGENT`: since the user's last message. Default 7 days.
    pub human_agent_window_ms: i64,
    /// `messaging_type: UTILITY` (utility templates). Default off.
    pub allow_utility: bool,
    /// `recipient: {phone_number}` (Customer Matching). Default off.
    pub allow_phone_number: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            allowed_tags: vec![HUMAN_AGENT.to_string()],
            standard_window_ms: DAY_MS,
            human_agent_window_ms: 7 * DAY_MS,
            allow_utility: false,
            allow_phone_number: false,
        }
    }
}

/// One message about to be sent, with what the caller knows of its recipient.
///
/// The records are the ones belonging to this recipient: `optin` keyed by the recipient (or,
/// for a PSID, the Send-to-Messenger opt-in), `person` the (page, PSID) record (or the person
/// linked to the `login_id` / `user_ref`), `token` the stored marketing token it names.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub now_ms: i64,
    pub page_id: &'a str,
    pub recipient: &'a Recipient,
    pub messaging_type: MessagingType,
    pub tag: Option<&'a str>,
    pub page: Option<&'a PageConfig>,
    pub optin: Option<&'a Optin>,
    pub person: Option<&'a Person>,
    pub token: Option<&'a MarketingToken>,
    /// This is the first message owed to an opt-in (Send-to-Messenger plugin, for a PSID).
    pub first_message: bool,
}

/// Which rule decided. [`Rule::as_str`] is the stable name used in logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Refuse: the Page is paused (policy enforcement, operator).
    PagePaused,
    /// Refuse: the person opted out (blocked, turned messages off, opt-in closed as opted out).
    OptedOut,
    /// Refuse: no opt-in for this `login_id` / `user_ref` (or PSID first message).
    UnknownOptin,
    /// Refuse: a first message carries a tag or a MESSAGE_TAG / UTILITY type.
    NoTagOnFirstMessage,
    /// Refuse: the opt-in is bound to another Page.
    BoundPage,
    /// Refuse: the first message was already sent (or answered).
    FirstMessageOnce,
    /// Refuse: the opt-in was closed (expired, failed).
    OptinClosed,
    /// Refuse: 24 h since the opt-in have passed.
    FirstMessageWindow,
    /// Allow: the first message to a `login_id` / `user_ref`.
    FirstMessage,
    /// Allow: the first message to a PSID that opted in with the Send-to-Messenger plugin.
    PluginFirstMessage,
    /// Allow or refuse: RESPONSE / UPDATE within the standard window.
    StandardWindow,
    /// Refuse: MESSAGE_TAG without a tag.
    TagMissing,
    /// Refuse: a tag not on the allow-list.
    TagNotAllowed,
    /// Allow or refuse: `HUMAN_AGENT` within its window.
    HumanAgentWindow,
    /// Allow: an allowed tag other than `HUMAN_AGENT`.
    MessageTag,
    /// Allow: UTILITY (enabled).
    Utility,
    /// Refuse: UTILITY is disabled.
    UtilityDisabled,
    /// Refuse: no stored token matches the marketing-messages token.
    UnknownToken,
    /// Refuse: the person stopped marketing messages for this token.
    MarketingStopped,
    /// Refuse: the marketing-messages token expired.
    MarketingTokenExpired,
    /// Refuse: a marketing message carries a tag.
    NoTagOnMarketing,
    /// Allow: a marketing message to an active token.
    Marketing,
    /// Allow: phone-number recipient (enabled).
    PhoneNumber,
    /// Refuse: phone-number recipients are disabled.
    PhoneNumberDisabled,
    /// Refuse: a message tag Meta retired on 2026-04-27 (the three update tags), whatever the
    /// allow-list says: Meta answers them with `100 "Invalid parameter"`.
    RetiredTag,
    /// Refuse: the recipient cannot be resolved to anyone this deployment knows.
    UnknownRecipient,
    /// Refuse: a follow-up to a `login_id` / `user_ref` whose person has not replied: it
    /// accepts only its one first message.
    LoginIdOnce,
    /// Refuse: `human_agent` for a message a human did not write.
    HumanAgentAuthor,
    /// Refuse: `HUMAN_AGENT` from a Page without Meta's Human Agent feature.
    HumanAgentFeature,
    /// Refuse: Instagram text longer than 1000 characters.
    InstagramTextLimit,
    /// Refuse: UTILITY to an Instagram recipient (utility messages are Messenger's).
    InstagramUtility,
}

impl Rule {
    /// Every rule, in declaration order.
    pub const ALL: [Rule; 31] = [
        Rule::PagePaused,
        Rule::OptedOut,
        Rule::UnknownOptin,
        Rule::NoTagOnFirstMessage,
        Rule::BoundPage,
        Rule::FirstMessageOnce,
        Rule::OptinClosed,
        Rule::FirstMessageWindow,
        Rule::FirstMessage,
        Rule::PluginFirstMessage,
        Rule::StandardWindow,
        Rule::TagMissing,
        Rule::TagNotAllowed,
        Rule::HumanAgentWindow,
        Rule::MessageTag,
        Rule::Utility,
        Rule::UtilityDisabled,
        Rule::UnknownToken,
        Rule::MarketingStopped,
        Rule::MarketingTokenExpired,
        Rule::NoTagOnMarketing,
        Rule::Marketing,
        Rule::PhoneNumber,
        Rule::PhoneNumberDisabled,
        Rule::RetiredTag,
        Rule::UnknownRecipient,
        Rule::LoginIdOnce,
        Rule::HumanAgentAuthor,
        Rule::HumanAgentFeature,
        Rule::InstagramTextLimit,
        Rule::InstagramUtility,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Rule::PagePaused => "page_paused",
            Rule::OptedOut => "opted_out",
            Rule::UnknownOptin => "unknown_optin",
            Rule::NoTagOnFirstMessage => "no_tag_on_first_message",
            Rule::BoundPage => "bound_page",
            Rule::FirstMessageOnce => "first_message_once",
            Rule::OptinClosed => "optin_closed",
            Rule::FirstMessageWindow => "first_message_window",
            Rule::FirstMessage => "first_message",
            Rule::PluginFirstMessage => "plugin_first_message",
            Rule::StandardWindow => "standard_window",
            Rule::TagMissing => "tag_missing",
            Rule::TagNotAllowed => "tag_not_allowed",
            Rule::HumanAgentWindow => "human_agent_window",
            Rule::MessageTag => "message_tag",
            Rule::Utility => "utility",
            Rule::UtilityDisabled => "utility_disabled",
            Rule::UnknownToken => "unknown_token",
            Rule::MarketingStopped => "marketing_stopped",
            Rule::MarketingTokenExpired => "marketing_token_expired",
            Rule::NoTagOnMarketing => "no_tag_on_marketing",
            Rule::Marketing => "marketing",
            Rule::PhoneNumber => "phone_number",
            Rule::PhoneNumberDisabled => "phone_number_disabled",
            Rule::RetiredTag => "retired_tag",
            Rule::UnknownRecipient => "unknown_recipient",
            Rule::LoginIdOnce => "login_id_once",
            Rule::HumanAgentAuthor => "human_agent_author",
            Rule::HumanAgentFeature => "human_agent_feature",
            Rule::InstagramTextLimit => "instagram_text_limit",
            Rule::InstagramUtility => "instagram_utility",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict, naming the rule that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow { rule: Rule },
    Refuse { rule: Rule, reason: String },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    pub fn rule(&self) -> Rule {
        match self {
            Decision::Allow { rule } | Decision::Refuse { rule, .. } => *rule,
        }
    }

    /// The refusal reason (`None` when allowed).
    pub fn reason(&self) -> Option<&str> {
        match self {
            Decision::Allow { .. } => None,
            Decision::Refuse { reason, .. } => Some(reason),
        }
    }
}

fn allow(rule: Rule) -> Decision {
    Decision::Allow { rule }
}

fn refuse(rule: Rule, reason: impl Into<String>) -> Decision {
    Decision::Refuse {
        rule,
        reason: reason.into(),
    }
}

/// Decides whether the message may go now. See the module docs for the rules and their order.
pub fn decide(a: &Attempt, config: &PolicyConfig) -> Decision {
    // 1-2. Page paused; opted out: never, whatever the type or tag.
    if let Some(refusal) = paused_or_opted_out(a.page, a.person, a.optin) {
        return refusal;
    }

    match a.recipient {
        // 3. Login Connect / checkbox first message.
        Recipient::LoginId(id) => login_first_message(a, IdentityKind::LoginId, id),
        Recipient::UserRef(id) => login_first_message(a, IdentityKind::UserRef, id),
        // 4. PSID / IGSID.
        Recipient::Id(id) => to_scoped_id(a, id, config),
        // 5. Marketing messages.
        Recipient::NotificationToken(token) => marketing(a, token),
        // 6. Phone number.
        Recipient::PhoneNumber { .. } => {
            if config.allow_phone_number {
                allow(Rule::PhoneNumber)
            } else {
                refuse(
                    Rule::PhoneNumberDisabled,
                    "phone-number recipients are disabled",
                )
            }
        }
    }
}

/// Rules 1 and 2, shared by every message: the Page's pause, then the person's opt-out.
fn paused_or_opted_out(
    page: Option<&PageConfig>,
    person: Option<&Person>,
    optin: Option<&Optin>,
) -> Option<Decision> {
    if let Some(page) = page.filter(|p| p.paused) {
        return Some(refuse(
            Rule::PagePaused,
            format!(
                "page is paused: {}",
                page.paused_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            ),
        ));
    }
    if let Some(person) = person.filter(|p| p.opted_out_at_ms.is_some()) {
        return Some(refuse(
            Rule::OptedOut,
            format!(
                "person opted out: {}",
                person
                    .opted_out_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            ),
        ));
    }
    if optin.is_some_and(|o| o.state == OptinState::OptedOut) {
        return Some(refuse(Rule::OptedOut, "opt-in closed as opted out"));
    }
    None
}

/// A tag as Meta compares it: trimmed, upper-case; blank counts as none.
fn normalized_tag(tag: Option<&str>) -> Option<String> {
    tag.map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_uppercase)
}

/// The refusal of a retired tag (`tag` normalized), if it is one.
fn retired(tag: &str) -> Option<Decision> {
    RETIRED_TAGS.contains(&tag).then(|| {
        refuse(
            Rule::RetiredTag,
            format!(
                "Meta retired the {tag} tag on 2026-04-27 and answers it with (#100) Invalid \
                 parameter; send transactional updates as intent utility (a template), or let \
                 a human answer within 7 days (intent human_agent)"
            ),
        )
    })
}

/// Rule 3: the opt-in must be this `login_id` / `user_ref`'s.
fn login_first_message(a: &Attempt, kind: IdentityKind, id: &str) -> Decision {
    let Some(optin) = a
        .optin
        .filter(|o| o.recipient.kind == kind && o.recipient.id == id)
    else {
        return refuse(
            Rule::UnknownOptin,
            format!("no opt-in for this {}", kind.as_str()),
        );
    };
    first_message_checks(a, optin, Rule::FirstMessage)
}

/// Rules 3 and 4 (plugin): the message untagged, from the bound Page, not yet sent, and within
/// 24 h of the opt-in.
fn first_message_checks(a: &Attempt, optin: &Optin, on_allow: Rule) -> Decision {
    // Any tag at all (even blank) is refused: the first message must carry none.
    if a.tag.is_some() {
        return refuse(
            Rule::NoTagOnFirstMessage,
            "the first message may not carry a message tag",
        );
    }
    if matches!(
        a.messaging_type,
        MessagingType::MessageTag | MessagingType::Utility
    ) {
        return refuse(
            Rule::NoTagOnFirstMessage,
            format!(
                "the first message must be RESPONSE or UPDATE, not {}",
                a.messaging_type.as_str()
            ),
        );
    }
    if optin.page_id != a.page_id {
        return refuse(
            Rule::BoundPage,
            format!(
                "opt-in is bound to page {}, not {}",
                optin.page_id, a.page_id
            ),
        );
    }
    if matches!(optin.state, OptinState::Sent | OptinState::Answered) || optin.message_id.is_some()
    {
        return refuse(
            Rule::FirstMessageOnce,
            format!(
                "first message already sent (opt-in {})",
                optin.state.as_str()
            ),
        );
    }
    if matches!(optin.state, OptinState::Expired | OptinState::Failed) {
        return refuse(
            Rule::OptinClosed,
            format!("opt-in is {}", optin.state.as_str()),
        );
    }
    // The stored deadline, never later than Meta's 24 h from the opt-in.
    let deadline = optin
        .deadline_at_ms
        .min(optin.opted_in_at_ms.saturating_add(DAY_MS));
    if a.now_ms >= deadline {
        return refuse(
            Rule::FirstMessageWindow,
            format!(
                "24 h since the opt-in have passed ({} ms past the deadline)",
                a.now_ms.saturating_sub(deadline)
            ),
        );
    }
    allow(on_allow)
}

/// Rule 4: PSID / IGSID.
fn to_scoped_id(a: &Attempt, id: &str, config: &PolicyConfig) -> Decision {
    if a.first_message {
        if let Some(optin) = a.optin {
            if !matches!(
                optin.recipient.kind,
                IdentityKind::Psid | IdentityKind::Igsid
            ) || optin.recipient.id != id
            {
                return refuse(Rule::UnknownOptin, "opt-in is for another recipient");
            }
            return first_message_checks(a, optin, Rule::PluginFirstMessage);
        }
    }

    // The last time this person wrote to this Page. A record for someone else is ignored.
    let last = a
        .person
        .filter(|p| p.psid == id && p.page_id == a.page_id)
        .and_then(|p| p.last_user_message_at_ms);
    let since_last = last.map(|at| a.now_ms.saturating_sub(at));

    match a.messaging_type {
        MessagingType::Response | MessagingType::Update => match since_last {
            Some(elapsed) if elapsed < config.standard_window_ms => allow(Rule::StandardWindow),
            Some(elapsed) => refuse(
                Rule::StandardWindow,
                format!(
                    "last user message {elapsed} ms ago; the standard window is {} ms",
                    config.standard_window_ms
                ),
            ),
            None => refuse(
                Rule::StandardWindow,
                "the person never wrote to this page: no standard window",
            ),
        },
        MessagingType::MessageTag => {
            let Some(tag) = normalized_tag(a.tag) else {
                return refuse(Rule::TagMissing, "MESSAGE_TAG without a tag");
            };
            if let Some(refusal) = retired(&tag) {
                return refusal;
            }
            if !config
                .allowed_tags
                .iter()
                .any(|t| t.trim().eq_ignore_ascii_case(&tag))
            {
                return refuse(
                    Rule::TagNotAllowed,
                    format!("tag {tag} is not on the allow-list"),
                );
            }
            if tag != HUMAN_AGENT {
                return allow(Rule::MessageTag);
            }
            match since_last {
                Some(elapsed) if elapsed < config.human_agent_window_ms => {
                    allow(Rule::HumanAgentWindow)
                }
                Some(elapsed) => refuse(
                    Rule::HumanAgentWindow,
                    format!(
                        "last user message {elapsed} ms ago; the HUMAN_AGENT window is {} ms",
                        config.human_agent_window_ms
                    ),
                ),
                None => refuse(
                    Rule::HumanAgentWindow,
                    "the person never wrote to this page: no HUMAN_AGENT window",
                ),
            }
        }
        MessagingType::Utility => {
            if config.allow_utility {
                allow(Rule::Utility)
            } else {
                refuse(Rule::UtilityDisabled, "UTILITY messages are disabled")
            }
        }
    }
}

/// Rule 5: marketing messages (`notification_messages_token`).
fn marketing(a: &Attempt, token: &str) -> Decision {
    let Some(stored) = a.token.filter(|t| t.token.as_deref() == Some(token)) else {
        return refuse(
            Rule::UnknownToken,
            "no stored marketing token matches the recipient",
        );
    };
    if stored.status == TokenStatus::Stopped {
        return refuse(
            Rule::MarketingStopped,
            format!("marketing messages stopped for topic {}", stored.topic),
        );
    }
    if let Some(expires) = stored.expires_at_ms {
        if a.now_ms >= expires {
            return refuse(
                Rule::MarketingTokenExpired,
                format!(
                    "marketing token expired {} ms ago",
                    a.now_ms.saturating_sub(expires)
                ),
            );
        }
    }
    if a.tag.is_some() || a.messaging_type == MessagingType::MessageTag {
        return refuse(
            Rule::NoTagOnMarketing,
            "a marketing message may not carry a message tag",
        );
    }
    allow(Rule::Marketing)
}

// ---- Follow-ups ------------------------------------------------------------------------------

/// Instagram's text limit (meta-platform.md §0): Messenger allows 2000.
pub const INSTAGRAM_MAX_TEXT_CHARS: usize = 1000;

/// What the business means by a follow-up; the policy picks the `messaging_type` and tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// An answer to the person (RESPONSE inside the 24 h window).
    Reply,
    /// Something new the business has to say (UPDATE inside the 24 h window).
    Update,
    /// A human agent's answer: RESPONSE inside 24 h, HUMAN_AGENT up to 7 days.
    HumanAgent,
    /// A utility template (UTILITY, any time, where enabled).
    Utility,
}

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Reply => "reply",
            Intent::Update => "update",
            Intent::HumanAgent => "human_agent",
            Intent::Utility => "utility",
        }
    }
}

/// Which platform the conversation is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Messenger,
    Instagram,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Messenger => "messenger",
            Channel::Instagram => "instagram",
        }
    }
}

/// The recipient of a follow-up, as far as the caller could resolve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUpRecipient<'a> {
    /// A PSID or IGSID (also a `login_id` / `user_ref` whose person replied).
    Scoped(&'a str),
    /// A `login_id` / `user_ref` whose person has not replied.
    Unlinked(IdentityKind),
    PhoneNumber,
    /// Nobody this deployment knows; the reason says why.
    Unknown(&'a str),
}

/// One follow-up about to be accepted (or sent), with what the caller loaded for it.
#[derive(Debug, Clone, Copy)]
pub struct FollowUp<'a> {
    pub now_ms: i64,
    /// The Page (or Instagram account) of the conversation.
    pub page_id: &'a str,
    pub channel: Channel,
    pub recipient: FollowUpRecipient<'a>,
    pub intent: Intent,
    /// `Some(true)` when the request says a human wrote it (`author.kind = "human"`).
    pub human_author: Option<bool>,
    /// A message tag the caller named (only ever to be refused or to mean HUMAN_AGENT).
    pub tag: Option<&'a str>,
    /// Characters of `message.text` (Unicode scalar values).
    pub text_chars: usize,
    /// The Page's config (for an Instagram account: the account's, merged with its Page's
    /// pause by the caller).
    pub page: Option<&'a PageConfig>,
    /// The (page, PSID / IGSID) person.
    pub person: Option<&'a Person>,
    /// The opt-in of a `login_id` / `user_ref` recipient.
    pub optin: Option<&'a Optin>,
}

/// Why a follow-up may not go now, and when its window closed (when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: Rule,
    pub reason: String,
    /// When the window that would have allowed it closed (24 h or 7 days after the person's
    /// last message).
    pub window_closed_at_ms: Option<i64>,
    /// Until when a human agent may still answer (`human_agent`), when that is later than now.
    pub human_agent_until_ms: Option<i64>,
}

/// The verdict on a follow-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowUpDecision {
    Send {
        rule: Rule,
        messaging_type: MessagingType,
        tag: Option<&'static str>,
    },
    Refuse(Refusal),
}

impl FollowUpDecision {
    pub fn rule(&self) -> Rule {
        match self {
            FollowUpDecision::Send { rule, .. } => *rule,
            FollowUpDecision::Refuse(r) => r.rule,
        }
    }
}

fn no(rule: Rule, reason: impl Into<String>) -> FollowUpDecision {
    FollowUpDecision::Refuse(Refusal {
        rule,
        reason: reason.into(),
        window_closed_at_ms: None,
        human_agent_until_ms: None,
    })
}

fn send(rule: Rule, messaging_type: MessagingType, tag: Option<&'static str>) -> FollowUpDecision {
    FollowUpDecision::Send {
        rule,
        messaging_type,
        tag,
    }
}

/// Decides a follow-up. See the module docs ("Follow-ups") for the rules and their order.
pub fn decide_followup(f: &FollowUp, config: &PolicyConfig) -> FollowUpDecision {
    // 1-2. The Page's pause and the person's opt-out: the same rules as every message.
    if let Some(Decision::Refuse { rule, reason }) = paused_or_opted_out(f.page, f.person, f.optin)
    {
        return no(rule, reason);
    }

    // 3. A tag the caller named.
    if let Some(tag) = normalized_tag(f.tag) {
        if let Some(Decision::Refuse { rule, reason }) = retired(&tag) {
            return no(rule, reason);
        }
        if tag != HUMAN_AGENT {
            return no(
                Rule::TagNotAllowed,
                format!("tag {tag} is not accepted: only HUMAN_AGENT remains (intent human_agent)"),
            );
        }
    }

    // 4. Who it goes to.
    let psid = match f.recipient {
        FollowUpRecipient::Unknown(why) => return no(Rule::UnknownRecipient, why),
        FollowUpRecipient::Unlinked(kind) => {
            return no(
                Rule::LoginIdOnce,
                format!(
                    "a {} accepts only its one first message, which login-connect sends; wait \
                     for the person's reply, then message them here again (the reply links \
                     their PSID)",
                    kind.as_str()
                ),
            )
        }
        FollowUpRecipient::PhoneNumber => return phone_number(f, config),
        FollowUpRecipient::Scoped(id) => id,
    };

    // 5. Instagram's own limits.
    if f.channel == Channel::Instagram {
        if f.text_chars > INSTAGRAM_MAX_TEXT_CHARS {
            return no(
                Rule::InstagramTextLimit,
                format!(
                    "Instagram text is limited to {INSTAGRAM_MAX_TEXT_CHARS} characters; this \
                     one has {}",
                    f.text_chars
                ),
            );
        }
        if f.intent == Intent::Utility {
            return no(
                Rule::InstagramUtility,
                "utility messages are a Messenger feature; Instagram has none",
            );
        }
    }

    // 6. Utility templates: no window, where enabled.
    if f.intent == Intent::Utility {
        return utility(f, config);
    }

    // 7-8. The person's windows.
    let last = f
        .person
        .filter(|p| p.psid == psid && p.page_id == f.page_id)
        .and_then(|p| p.last_user_message_at_ms);
    let Some(last) = last else {
        return no(
            Rule::StandardWindow,
            "the person never wrote to this page: nothing but a utility template may go until \
             they do",
        );
    };
    let window_end = last.saturating_add(config.standard_window_ms);
    let agent_end = last.saturating_add(config.human_agent_window_ms);
    if f.intent == Intent::HumanAgent && f.human_author != Some(true) {
        return no(
            Rule::HumanAgentAuthor,
            "human_agent is only for replies a human wrote (author.kind = \"human\"); tagging \
             automated replies HUMAN_AGENT breaks Meta's policy",
        );
    }
    if f.now_ms < window_end {
        return match f.intent {
            Intent::Update => send(Rule::StandardWindow, MessagingType::Update, None),
            _ => send(Rule::StandardWindow, MessagingType::Response, None),
        };
    }
    if f.intent != Intent::HumanAgent {
        return FollowUpDecision::Refuse(Refusal {
            rule: Rule::StandardWindow,
            reason: format!(
                "the 24-hour window closed {} ms ago; it reopens when the person writes{}",
                f.now_ms.saturating_sub(window_end),
                if f.now_ms < agent_end {
                    "; until then only a human agent may answer (intent human_agent)"
                } else {
                    ""
                }
            ),
            window_closed_at_ms: Some(window_end),
            human_agent_until_ms: (f.now_ms < agent_end).then_some(agent_end),
        });
    }
    if f.now_ms >= agent_end {
        return FollowUpDecision::Refuse(Refusal {
            rule: Rule::HumanAgentWindow,
            reason: format!(
                "the 7-day human agent window closed {} ms ago; it reopens when the person writes",
                f.now_ms.saturating_sub(agent_end)
            ),
            window_closed_at_ms: Some(agent_end),
            human_agent_until_ms: None,
        });
    }
    if !config
        .allowed_tags
        .iter()
        .any(|t| t.trim().eq_ignore_ascii_case(HUMAN_AGENT))
    {
        return no(
            Rule::TagNotAllowed,
            "HUMAN_AGENT is not on this deployment's allow-list",
        );
    }
    if !f.page.is_some_and(|p| p.human_agent) {
        return no(
            Rule::HumanAgentFeature,
            format!(
                "page {} does not have Meta's Human Agent feature (page setting human_agent)",
                f.page_id
            ),
        );
    }
    send(
        Rule::HumanAgentWindow,
        MessagingType::MessageTag,
        Some(HUMAN_AGENT),
    )
}

fn utility(f: &FollowUp, config: &PolicyConfig) -> FollowUpDecision {
    if config.allow_utility || f.page.is_some_and(|p| p.utility_messaging) {
        send(Rule::Utility, MessagingType::Utility, None)
    } else {
        no(
            Rule::UtilityDisabled,
            format!(
                "page {} has no utility messaging (page setting utility_messaging, Meta's \
                 page_utility_messaging permission)",
                f.page_id
            ),
        )
    }
}

/// Customer Matching: behind the Page's `pages_messaging_phone_number` setting; no window (the
/// person gets a message request).
fn phone_number(f: &FollowUp, config: &PolicyConfig) -> FollowUpDecision {
    if !(config.allow_phone_number || f.page.is_some_and(|p| p.phone_number_messaging)) {
        return no(
            Rule::PhoneNumberDisabled,
            format!(
                "page {} may not message phone numbers (page setting phone_number_messaging, \
                 Meta's pages_messaging_phone_number permission)",
                f.page_id
            ),
        );
    }
    match f.intent {
        Intent::Utility => utility(f, config),
        Intent::HumanAgent => no(
            Rule::HumanAgentWindow,
            "a phone number has no conversation yet: a human agent answers after the person wrote",
        ),
        Intent::Reply | Intent::Update => send(Rule::PhoneNumber, MessagingType::Update, None),
    }
}
