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
//! Windows are half-open: `[start, start + window)`. A message at exactly the end is refused.

use std::fmt;

use crate::lifecycle::optin::{Optin, OptinState, DAY_MS};
use crate::ports::graph::{MessagingType, Recipient};
use crate::ports::store::{MarketingToken, PageConfig, Person, TokenStatus};
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
}

impl Rule {
    /// Every rule, in declaration order.
    pub const ALL: [Rule; 24] = [
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
    // 1. Page paused.
    if let Some(page) = a.page.filter(|p| p.paused) {
        return refuse(
            Rule::PagePaused,
            format!(
                "page is paused: {}",
                page.paused_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            ),
        );
    }

    // 2. Opted out: never, whatever the type or tag.
    if let Some(person) = a.person {
        if person.opted_out_at_ms.is_some() {
            return refuse(
                Rule::OptedOut,
                format!(
                    "person opted out: {}",
                    person
                        .opted_out_reason
                        .as_deref()
                        .unwrap_or("no reason recorded")
                ),
            );
        }
    }
    if a.optin.is_some_and(|o| o.state == OptinState::OptedOut) {
        return refuse(Rule::OptedOut, "opt-in closed as opted out");
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

/// A tag as Meta compares it: trimmed, upper-case; blank counts as none.
fn normalized_tag(tag: Option<&str>) -> Option<String> {
    tag.map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_uppercase)
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
