//! The messaging policy, as a table: one row per rule, per window boundary and per order-of-rules
//! case, each naming the rule its decision must carry (written from DESIGN.md §2 and
//! meta-platform.md §1.4, §3.3, §4, not from the implementation).

use std::collections::HashSet;

use lc_core::lifecycle::optin::{EntryPoint, Optin, OptinSource, OptinState, DAY_MS};
use lc_core::ports::graph::{MessagingType, Recipient};
use lc_core::ports::store::{MarketingToken, PageConfig, Person, TokenStatus};
use lc_core::sending::policy::{
    decide, decide_followup, Attempt, Channel, Decision, FollowUp, FollowUpDecision,
    FollowUpRecipient, Intent, PolicyConfig, Rule,
};
use lc_core::webhook::{Identity, IdentityKind};
use MessagingType::{MessageTag, Response, Update, Utility};

const PAGE: &str = "100";
const OTHER_PAGE: &str = "200";
const LOGIN_ID: &str = "L1";
const USER_REF: &str = "U1";
const PSID: &str = "7001";
const TOKEN: &str = "nm-token-1";
/// Opt-in time, and the person's last message, in every row.
const T0: i64 = 1_700_000_000_000;
const SEC: i64 = 1_000;
const WEEK: i64 = 7 * DAY_MS;

#[derive(Debug, Clone, Copy)]
enum Expect {
    Allow(&'static str),
    Refuse(&'static str),
}

impl Expect {
    fn rule(self) -> &'static str {
        match self {
            Expect::Allow(r) | Expect::Refuse(r) => r,
        }
    }
}

use Expect::{Allow, Refuse};

struct Row {
    name: &'static str,
    now_ms: i64,
    page_id: &'static str,
    recipient: Recipient,
    messaging_type: MessagingType,
    tag: Option<&'static str>,
    page: Option<PageConfig>,
    optin: Option<Optin>,
    person: Option<Person>,
    token: Option<MarketingToken>,
    first_message: bool,
    config: PolicyConfig,
    expect: Expect,
    /// A refusal's reason must contain this.
    reason_contains: &'static str,
}

// ---- records ------------------------------------------------------------------------------

fn optin_for(kind: IdentityKind, id: &str, state: OptinState) -> Optin {
    let entry_point = match kind {
        IdentityKind::LoginId => EntryPoint::LoginConnect,
        IdentityKind::UserRef => EntryPoint::Checkbox,
        IdentityKind::Psid | IdentityKind::Igsid => EntryPoint::SendToMessenger,
    };
    let mut o = Optin::pending(
        Identity::new(kind, id),
        PAGE,
        "page",
        entry_point,
        OptinSource::Webhook,
        T0,
        "optin:test",
        T0,
    );
    o.state = state;
    o
}

fn login_optin(state: OptinState) -> Optin {
    optin_for(IdentityKind::LoginId, LOGIN_ID, state)
}

fn plugin_optin(state: OptinState) -> Optin {
    optin_for(IdentityKind::Psid, PSID, state)
}

fn person(last_user_message_at_ms: Option<i64>) -> Person {
    Person {
        page_id: PAGE.into(),
        psid: PSID.into(),
        last_user_message_at_ms,
        ..Person::default()
    }
}

fn opted_out_person() -> Person {
    Person {
        opted_out_at_ms: Some(T0 - SEC),
        opted_out_reason: Some("blocked".into()),
        ..person(Some(T0))
    }
}

fn paused_page() -> PageConfig {
    PageConfig {
        page_id: PAGE.into(),
        paused: true,
        paused_reason: Some("policy_enforcement: block".into()),
        paused_at_ms: Some(T0),
        ..PageConfig::default()
    }
}

fn active_page() -> PageConfig {
    PageConfig {
        page_id: PAGE.into(),
        ..PageConfig::default()
    }
}

fn token(status: TokenStatus, expires_at_ms: Option<i64>) -> MarketingToken {
    MarketingToken {
        topic: "deals".into(),
        token: Some(TOKEN.into()),
        status,
        expires_at_ms,
        status_at_ms: T0,
    }
}

// ---- row templates (each a valid, allowed send unless a row changes it) --------------------

fn base(name: &'static str, recipient: Recipient, expect: Expect) -> Row {
    Row {
        name,
        now_ms: T0 + SEC,
        page_id: PAGE,
        recipient,
        messaging_type: Update,
        tag: None,
        page: Some(active_page()),
        optin: None,
        person: None,
        token: None,
        first_message: false,
        config: PolicyConfig::default(),
        expect,
        reason_contains: "",
    }
}

/// First message to a `login_id`, one second after the opt-in.
fn login(name: &'static str, expect: Expect) -> Row {
    Row {
        optin: Some(login_optin(OptinState::Pending)),
        ..base(name, Recipient::LoginId(LOGIN_ID.into()), expect)
    }
}

/// First message to a PSID that opted in with the Send-to-Messenger plugin.
fn plugin(name: &'static str, expect: Expect) -> Row {
    Row {
        optin: Some(plugin_optin(OptinState::Pending)),
        first_message: true,
        ..base(name, Recipient::Id(PSID.into()), expect)
    }
}

/// A message to a PSID who last wrote at `T0`.
fn psid(name: &'static str, expect: Expect) -> Row {
    Row {
        person: Some(person(Some(T0))),
        ..base(name, Recipient::Id(PSID.into()), expect)
    }
}

/// `HUMAN_AGENT` to a PSID who last wrote at `T0`.
fn human_agent(name: &'static str, expect: Expect) -> Row {
    Row {
        messaging_type: MessageTag,
        tag: Some("HUMAN_AGENT"),
        ..psid(name, expect)
    }
}

/// A marketing message to an active token expiring in 30 days.
fn marketing(name: &'static str, expect: Expect) -> Row {
    Row {
        token: Some(token(TokenStatus::Active, Some(T0 + 30 * DAY_MS))),
        person: Some(person(None)),
        ..base(name, Recipient::NotificationToken(TOKEN.into()), expect)
    }
}

fn phone(name: &'static str, expect: Expect) -> Row {
    base(
        name,
        Recipient::PhoneNumber {
            number: "+1(212)555-2368".into(),
            name: None,
        },
        expect,
    )
}

fn rows() -> Vec<Row> {
    vec![
        // ---- 1. page paused ----
        Row {
            page: Some(paused_page()),
            reason_contains: "policy_enforcement: block",
            ..login(
                "paused page refuses a valid first message",
                Refuse("page_paused"),
            )
        },
        Row {
            page: Some(paused_page()),
            person: Some(opted_out_person()),
            ..login("paused page beats opted out", Refuse("page_paused"))
        },
        Row {
            page: Some(paused_page()),
            tag: Some("HUMAN_AGENT"),
            ..login("paused page beats a tag on login_id", Refuse("page_paused"))
        },
        Row {
            page: Some(paused_page()),
            ..psid(
                "paused page beats the standard window",
                Refuse("page_paused"),
            )
        },
        Row {
            page: Some(paused_page()),
            ..marketing("paused page beats marketing", Refuse("page_paused"))
        },
        Row {
            page: Some(paused_page()),
            config: PolicyConfig {
                allow_phone_number: true,
                ..PolicyConfig::default()
            },
            ..phone(
                "paused page beats an enabled phone number",
                Refuse("page_paused"),
            )
        },
        Row {
            page: Some(PageConfig {
                paused_reason: None,
                ..paused_page()
            }),
            ..psid("paused page without a reason", Refuse("page_paused"))
        },
        Row {
            page: None,
            ..login("no page config is not a pause", Allow("first_message"))
        },
        // ---- 2. opted out ----
        Row {
            person: Some(opted_out_person()),
            reason_contains: "blocked",
            ..login("opted out beats a valid first message", Refuse("opted_out"))
        },
        Row {
            optin: Some(login_optin(OptinState::OptedOut)),
            ..login("opt-in closed as opted out", Refuse("opted_out"))
        },
        Row {
            person: Some(opted_out_person()),
            ..psid("opted out inside the standard window", Refuse("opted_out"))
        },
        Row {
            person: Some(opted_out_person()),
            ..human_agent("opted out beats HUMAN_AGENT", Refuse("opted_out"))
        },
        Row {
            person: Some(opted_out_person()),
            messaging_type: Utility,
            config: PolicyConfig {
                allow_utility: true,
                ..PolicyConfig::default()
            },
            ..psid("opted out beats an enabled UTILITY", Refuse("opted_out"))
        },
        Row {
            person: Some(opted_out_person()),
            ..plugin(
                "opted out beats a plugin first message",
                Refuse("opted_out"),
            )
        },
        Row {
            person: Some(opted_out_person()),
            ..marketing(
                "opted out beats an active marketing token",
                Refuse("opted_out"),
            )
        },
        Row {
            person: Some(opted_out_person()),
            config: PolicyConfig {
                allow_phone_number: true,
                ..PolicyConfig::default()
            },
            ..phone(
                "opted out beats an enabled phone number",
                Refuse("opted_out"),
            )
        },
        // ---- 3. login_id / user_ref first message ----
        login("first message to login_id (UPDATE)", Allow("first_message")),
        Row {
            messaging_type: Response,
            ..login(
                "first message to login_id (RESPONSE)",
                Allow("first_message"),
            )
        },
        Row {
            optin: Some(login_optin(OptinState::Sending)),
            ..login(
                "first message by the claim holder (sending)",
                Allow("first_message"),
            )
        },
        Row {
            recipient: Recipient::UserRef(USER_REF.into()),
            optin: Some(optin_for(
                IdentityKind::UserRef,
                USER_REF,
                OptinState::Pending,
            )),
            ..login("first message to user_ref", Allow("first_message"))
        },
        Row {
            optin: None,
            ..login("login_id without an opt-in", Refuse("unknown_optin"))
        },
        Row {
            optin: Some(optin_for(IdentityKind::LoginId, "L2", OptinState::Pending)),
            ..login(
                "login_id with another login_id's opt-in",
                Refuse("unknown_optin"),
            )
        },
        Row {
            optin: Some(optin_for(
                IdentityKind::UserRef,
                LOGIN_ID,
                OptinState::Pending,
            )),
            ..login(
                "login_id with a user_ref opt-in of the same value",
                Refuse("unknown_optin"),
            )
        },
        Row {
            recipient: Recipient::UserRef(USER_REF.into()),
            ..login("user_ref with a login_id opt-in", Refuse("unknown_optin"))
        },
        Row {
            tag: Some("HUMAN_AGENT"),
            ..login(
                "tag on login_id within the window",
                Refuse("no_tag_on_first_message"),
            )
        },
        Row {
            tag: Some("HUMAN_AGENT"),
            messaging_type: MessageTag,
            ..login(
                "MESSAGE_TAG + tag on login_id",
                Refuse("no_tag_on_first_message"),
            )
        },
        Row {
            messaging_type: MessageTag,
            ..login(
                "MESSAGE_TAG type on login_id",
                Refuse("no_tag_on_first_message"),
            )
        },
        Row {
            messaging_type: Utility,
            config: PolicyConfig {
                allow_utility: true,
                ..PolicyConfig::default()
            },
            ..login(
                "UTILITY type on login_id",
                Refuse("no_tag_on_first_message"),
            )
        },
        Row {
            recipient: Recipient::UserRef(USER_REF.into()),
            optin: Some(optin_for(
                IdentityKind::UserRef,
                USER_REF,
                OptinState::Pending,
            )),
            tag: Some("ACCOUNT_UPDATE"),
            ..login("tag on user_ref", Refuse("no_tag_on_first_message"))
        },
        Row {
            tag: Some("HUMAN_AGENT"),
            page_id: OTHER_PAGE,
            ..login("tag beats bound page", Refuse("no_tag_on_first_message"))
        },
        Row {
            page_id: OTHER_PAGE,
            page: None,
            ..login("first message from another page", Refuse("bound_page"))
        },
        Row {
            page_id: OTHER_PAGE,
            page: None,
            optin: Some(login_optin(OptinState::Sent)),
            ..login("bound page beats once", Refuse("bound_page"))
        },
        Row {
            optin: Some(login_optin(OptinState::Sent)),
            ..login("second first message (sent)", Refuse("first_message_once"))
        },
        Row {
            optin: Some(login_optin(OptinState::Answered)),
            ..login(
                "first message after the reply (answered)",
                Refuse("first_message_once"),
            )
        },
        Row {
            optin: Some(Optin {
                message_id: Some("m_1".into()),
                ..login_optin(OptinState::Sending)
            }),
            ..login("message id already recorded", Refuse("first_message_once"))
        },
        Row {
            optin: Some(login_optin(OptinState::Sent)),
            now_ms: T0 + 2 * DAY_MS,
            ..login("once beats the window", Refuse("first_message_once"))
        },
        Row {
            optin: Some(login_optin(OptinState::Expired)),
            ..login("expired opt-in", Refuse("optin_closed"))
        },
        Row {
            optin: Some(login_optin(OptinState::Failed)),
            ..login("failed opt-in", Refuse("optin_closed"))
        },
        Row {
            optin: Some(login_optin(OptinState::Expired)),
            now_ms: T0 + 2 * DAY_MS,
            ..login("closed beats the window", Refuse("optin_closed"))
        },
        Row {
            now_ms: T0 + DAY_MS - SEC,
            ..login("login_id at 23:59:59", Allow("first_message"))
        },
        Row {
            now_ms: T0 + DAY_MS - 1,
            ..login("login_id at 24 h - 1 ms", Allow("first_message"))
        },
        Row {
            now_ms: T0 + DAY_MS,
            ..login(
                "login_id at exactly 24:00:00",
                Refuse("first_message_window"),
            )
        },
        Row {
            now_ms: T0 + DAY_MS + 1,
            ..login("login_id at 24 h + 1 ms", Refuse("first_message_window"))
        },
        Row {
            recipient: Recipient::UserRef(USER_REF.into()),
            optin: Some(optin_for(
                IdentityKind::UserRef,
                USER_REF,
                OptinState::Pending,
            )),
            now_ms: T0 + DAY_MS - 1,
            ..login("user_ref at 24 h - 1 ms", Allow("first_message"))
        },
        Row {
            recipient: Recipient::UserRef(USER_REF.into()),
            optin: Some(optin_for(
                IdentityKind::UserRef,
                USER_REF,
                OptinState::Pending,
            )),
            now_ms: T0 + DAY_MS,
            ..login("user_ref at exactly 24 h", Refuse("first_message_window"))
        },
        Row {
            optin: Some(Optin {
                deadline_at_ms: T0 + 2 * DAY_MS,
                ..login_optin(OptinState::Pending)
            }),
            now_ms: T0 + DAY_MS,
            ..login(
                "a stored deadline past 24 h does not extend it",
                Refuse("first_message_window"),
            )
        },
        Row {
            person: Some(person(Some(T0 + DAY_MS))),
            now_ms: T0 + DAY_MS + SEC,
            ..login(
                "a recent user message does not reopen login_id",
                Refuse("first_message_window"),
            )
        },
        // ---- 4. PSID: plugin first message ----
        plugin("plugin first message", Allow("plugin_first_message")),
        Row {
            optin: Some(optin_for(IdentityKind::Igsid, PSID, OptinState::Pending)),
            ..plugin(
                "plugin first message to an IGSID",
                Allow("plugin_first_message"),
            )
        },
        Row {
            now_ms: T0 + DAY_MS - SEC,
            ..plugin("plugin at 23:59:59", Allow("plugin_first_message"))
        },
        Row {
            now_ms: T0 + DAY_MS - 1,
            ..plugin("plugin at 24 h - 1 ms", Allow("plugin_first_message"))
        },
        Row {
            now_ms: T0 + DAY_MS,
            ..plugin("plugin at exactly 24 h", Refuse("first_message_window"))
        },
        Row {
            now_ms: T0 + DAY_MS + 1,
            ..plugin("plugin at 24 h + 1 ms", Refuse("first_message_window"))
        },
        Row {
            tag: Some("HUMAN_AGENT"),
            messaging_type: MessageTag,
            person: Some(person(Some(T0))),
            ..plugin(
                "tag on a plugin first message",
                Refuse("no_tag_on_first_message"),
            )
        },
        Row {
            page_id: OTHER_PAGE,
            page: None,
            ..plugin(
                "plugin first message from another page",
                Refuse("bound_page"),
            )
        },
        Row {
            optin: Some(plugin_optin(OptinState::Sent)),
            ..plugin("second plugin first message", Refuse("first_message_once"))
        },
        Row {
            optin: Some(plugin_optin(OptinState::Expired)),
            ..plugin("expired plugin opt-in", Refuse("optin_closed"))
        },
        Row {
            optin: Some(optin_for(IdentityKind::Psid, "7002", OptinState::Pending)),
            ..plugin("plugin opt-in of another PSID", Refuse("unknown_optin"))
        },
        Row {
            optin: None,
            reason_contains: "never wrote",
            ..plugin(
                "first message without an opt-in falls to the window",
                Refuse("standard_window"),
            )
        },
        Row {
            first_message: false,
            optin: Some(plugin_optin(OptinState::Sent)),
            ..psid(
                "a later message to a plugin PSID uses the window",
                Allow("standard_window"),
            )
        },
        // ---- 4. PSID: RESPONSE / UPDATE ----
        psid(
            "UPDATE inside the standard window",
            Allow("standard_window"),
        ),
        Row {
            messaging_type: Response,
            ..psid(
                "RESPONSE inside the standard window",
                Allow("standard_window"),
            )
        },
        Row {
            now_ms: T0 + DAY_MS - SEC,
            ..psid("standard window at 23:59:59", Allow("standard_window"))
        },
        Row {
            now_ms: T0 + DAY_MS - 1,
            ..psid("standard window at 24 h - 1 ms", Allow("standard_window"))
        },
        Row {
            now_ms: T0 + DAY_MS,
            ..psid(
                "standard window at exactly 24:00:00",
                Refuse("standard_window"),
            )
        },
        Row {
            now_ms: T0 + DAY_MS + 1,
            messaging_type: Response,
            ..psid("standard window at 24 h + 1 ms", Refuse("standard_window"))
        },
        Row {
            person: None,
            reason_contains: "never wrote",
            ..psid("no person record", Refuse("standard_window"))
        },
        Row {
            person: Some(person(None)),
            reason_contains: "never wrote",
            ..psid("person who never wrote", Refuse("standard_window"))
        },
        Row {
            person: Some(Person {
                psid: "7002".into(),
                ..person(Some(T0))
            }),
            ..psid(
                "another PSID's record opens no window",
                Refuse("standard_window"),
            )
        },
        Row {
            person: Some(Person {
                page_id: OTHER_PAGE.into(),
                ..person(Some(T0))
            }),
            ..psid(
                "another page's record opens no window",
                Refuse("standard_window"),
            )
        },
        Row {
            now_ms: T0 + 2 * SEC,
            config: PolicyConfig {
                standard_window_ms: SEC,
                ..PolicyConfig::default()
            },
            ..psid("configured standard window", Refuse("standard_window"))
        },
        // ---- 4. PSID: MESSAGE_TAG ----
        Row {
            messaging_type: MessageTag,
            ..psid("MESSAGE_TAG without a tag", Refuse("tag_missing"))
        },
        Row {
            messaging_type: MessageTag,
            tag: Some("  "),
            ..psid("MESSAGE_TAG with a blank tag", Refuse("tag_missing"))
        },
        Row {
            tag: Some("CUSTOMER_FEEDBACK"),
            ..human_agent(
                "tag not on the default allow-list",
                Refuse("tag_not_allowed"),
            )
        },
        Row {
            tag: Some("POST_PURCHASE_UPDATE"),
            reason_contains: "retired",
            ..human_agent("retired tag, not on the allow-list", Refuse("retired_tag"))
        },
        Row {
            config: PolicyConfig {
                allowed_tags: vec![],
                ..PolicyConfig::default()
            },
            ..human_agent(
                "HUMAN_AGENT removed from the allow-list",
                Refuse("tag_not_allowed"),
            )
        },
        // Meta retired the three update tags on 2026-04-27 (meta-platform.md §0): refused before
        // Meta is called, even where an operator left them on the allow-list.
        Row {
            tag: Some("POST_PURCHASE_UPDATE"),
            now_ms: T0 + 30 * DAY_MS,
            config: PolicyConfig {
                allowed_tags: vec!["HUMAN_AGENT".into(), "POST_PURCHASE_UPDATE".into()],
                ..PolicyConfig::default()
            },
            reason_contains: "retired",
            ..human_agent(
                "retired POST_PURCHASE_UPDATE on the allow-list",
                Refuse("retired_tag"),
            )
        },
        Row {
            tag: Some("confirmed_event_update"),
            config: PolicyConfig {
                allowed_tags: vec!["CONFIRMED_EVENT_UPDATE".into()],
                ..PolicyConfig::default()
            },
            reason_contains: "retired",
            ..human_agent(
                "retired CONFIRMED_EVENT_UPDATE, any case",
                Refuse("retired_tag"),
            )
        },
        Row {
            tag: Some("ACCOUNT_UPDATE"),
            person: None,
            config: PolicyConfig {
                allowed_tags: vec!["Account_Update".into()],
                ..PolicyConfig::default()
            },
            reason_contains: "retired",
            ..human_agent("retired ACCOUNT_UPDATE", Refuse("retired_tag"))
        },
        Row {
            tag: Some("FUTURE_TAG"),
            now_ms: T0 + 30 * DAY_MS,
            config: PolicyConfig {
                allowed_tags: vec!["HUMAN_AGENT".into(), "FUTURE_TAG".into()],
                ..PolicyConfig::default()
            },
            ..human_agent(
                "allowed tag other than HUMAN_AGENT, no window",
                Allow("message_tag"),
            )
        },
        Row {
            tag: Some("future_tag"),
            person: None,
            config: PolicyConfig {
                allowed_tags: vec!["Future_Tag".into()],
                ..PolicyConfig::default()
            },
            ..human_agent("allowed tag compared upper-case", Allow("message_tag"))
        },
        human_agent("HUMAN_AGENT inside 7 days", Allow("human_agent_window")),
        Row {
            tag: Some("human_agent"),
            ..human_agent("HUMAN_AGENT in lower case", Allow("human_agent_window"))
        },
        Row {
            now_ms: T0 + 3 * DAY_MS,
            ..human_agent(
                "HUMAN_AGENT outside 24 h, inside 7 days",
                Allow("human_agent_window"),
            )
        },
        Row {
            now_ms: T0 + WEEK - SEC,
            ..human_agent("HUMAN_AGENT at 7 d - 1 s", Allow("human_agent_window"))
        },
        Row {
            now_ms: T0 + WEEK - 1,
            ..human_agent("HUMAN_AGENT at 7 d - 1 ms", Allow("human_agent_window"))
        },
        Row {
            now_ms: T0 + WEEK,
            ..human_agent("HUMAN_AGENT at exactly 7 d", Refuse("human_agent_window"))
        },
        Row {
            now_ms: T0 + WEEK + 1,
            ..human_agent("HUMAN_AGENT at 7 d + 1 ms", Refuse("human_agent_window"))
        },
        Row {
            person: None,
            reason_contains: "never wrote",
            ..human_agent(
                "HUMAN_AGENT to someone who never wrote",
                Refuse("human_agent_window"),
            )
        },
        // ---- 4. PSID: UTILITY ----
        Row {
            messaging_type: Utility,
            ..psid("UTILITY disabled by default", Refuse("utility_disabled"))
        },
        Row {
            messaging_type: Utility,
            person: None,
            config: PolicyConfig {
                allow_utility: true,
                ..PolicyConfig::default()
            },
            ..psid("UTILITY enabled", Allow("utility"))
        },
        // ---- 5. marketing messages ----
        marketing("marketing to an active token", Allow("marketing")),
        Row {
            token: Some(token(TokenStatus::Active, None)),
            now_ms: T0 + 400 * DAY_MS,
            ..marketing("marketing to a token without expiry", Allow("marketing"))
        },
        Row {
            token: None,
            ..marketing("marketing without a stored token", Refuse("unknown_token"))
        },
        Row {
            token: Some(MarketingToken {
                token: Some("nm-token-2".into()),
                ..token(TokenStatus::Active, None)
            }),
            ..marketing("marketing with another token", Refuse("unknown_token"))
        },
        Row {
            token: Some(MarketingToken {
                token: None,
                ..token(TokenStatus::Active, None)
            }),
            ..marketing(
                "marketing with a token record naming no token",
                Refuse("unknown_token"),
            )
        },
        Row {
            token: Some(token(TokenStatus::Stopped, Some(T0 + 30 * DAY_MS))),
            ..marketing("marketing after STOP", Refuse("marketing_stopped"))
        },
        Row {
            token: Some(token(TokenStatus::Stopped, Some(T0))),
            now_ms: T0 + DAY_MS,
            ..marketing("stopped beats expired", Refuse("marketing_stopped"))
        },
        Row {
            token: Some(token(TokenStatus::Active, Some(T0 + DAY_MS))),
            now_ms: T0 + DAY_MS - 1,
            ..marketing("marketing token 1 ms before expiry", Allow("marketing"))
        },
        Row {
            token: Some(token(TokenStatus::Active, Some(T0 + DAY_MS))),
            now_ms: T0 + DAY_MS,
            ..marketing(
                "marketing token at exactly its expiry",
                Refuse("marketing_token_expired"),
            )
        },
        Row {
            token: Some(token(TokenStatus::Active, Some(T0 + DAY_MS))),
            now_ms: T0 + DAY_MS + 1,
            tag: Some("HUMAN_AGENT"),
            ..marketing("expired beats a tag", Refuse("marketing_token_expired"))
        },
        Row {
            tag: Some("HUMAN_AGENT"),
            ..marketing("tag on marketing", Refuse("no_tag_on_marketing"))
        },
        Row {
            messaging_type: MessageTag,
            ..marketing(
                "MESSAGE_TAG type on marketing",
                Refuse("no_tag_on_marketing"),
            )
        },
        // ---- 6. phone number ----
        phone(
            "phone number disabled by default",
            Refuse("phone_number_disabled"),
        ),
        Row {
            config: PolicyConfig {
                allow_phone_number: true,
                ..PolicyConfig::default()
            },
            ..phone("phone number enabled", Allow("phone_number"))
        },
    ]
}

#[test]
fn policy_table() {
    let rows = rows();
    let mut names = HashSet::new();
    let mut failures = Vec::new();
    for row in &rows {
        assert!(names.insert(row.name), "duplicate row name: {}", row.name);
        let attempt = Attempt {
            now_ms: row.now_ms,
            page_id: row.page_id,
            recipient: &row.recipient,
            messaging_type: row.messaging_type,
            tag: row.tag,
            page: row.page.as_ref(),
            optin: row.optin.as_ref(),
            person: row.person.as_ref(),
            token: row.token.as_ref(),
            first_message: row.first_message,
        };
        let decision = decide(&attempt, &row.config);
        let ok = match (row.expect, &decision) {
            (Allow(rule), Decision::Allow { rule: got }) => got.as_str() == rule,
            (Refuse(rule), Decision::Refuse { rule: got, reason }) => {
                got.as_str() == rule && !reason.is_empty() && reason.contains(row.reason_contains)
            }
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{}: expected {:?}, got {:?}",
                row.name, row.expect, decision
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn every_rule_has_a_stable_unique_name_and_a_row() {
    let mut seen = HashSet::new();
    for rule in Rule::ALL {
        let name = rule.as_str();
        assert!(seen.insert(name), "duplicate rule name {name}");
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{name} is not snake_case"
        );
        assert_eq!(rule.to_string(), name);
    }
    let covered: HashSet<&str> = rows()
        .iter()
        .map(|r| r.expect.rule())
        .chain(followup_rows().iter().map(|r| r.expect.rule()))
        .collect();
    let untested: Vec<&str> = seen.difference(&covered).copied().collect();
    assert!(untested.is_empty(), "rules without a row: {untested:?}");
    let unknown: Vec<&str> = covered.difference(&seen).copied().collect();
    assert!(unknown.is_empty(), "rows naming no rule: {unknown:?}");
}

#[test]
fn default_config() {
    let c = PolicyConfig::default();
    assert_eq!(c.allowed_tags, vec!["HUMAN_AGENT".to_string()]);
    assert_eq!(c.standard_window_ms, DAY_MS);
    assert_eq!(c.human_agent_window_ms, 7 * DAY_MS);
    assert!(!c.allow_utility && !c.allow_phone_number);
}

// ---- Follow-ups (decide_followup): the policy picks the messaging_type from the intent ------

#[derive(Debug, Clone, Copy)]
enum FExpect {
    /// Allowed with this rule, messaging_type and tag.
    Send(&'static str, MessagingType, Option<&'static str>),
    Refuse(&'static str),
}

impl FExpect {
    fn rule(self) -> &'static str {
        match self {
            FExpect::Send(r, ..) | FExpect::Refuse(r) => r,
        }
    }
}

use FExpect::{Refuse as No, Send};

#[derive(Debug, Clone, Copy)]
enum FTo {
    Scoped,
    Unlinked(IdentityKind),
    Phone,
    Unknown(&'static str),
}

struct FRow {
    name: &'static str,
    now_ms: i64,
    channel: Channel,
    to: FTo,
    intent: Intent,
    human_author: Option<bool>,
    tag: Option<&'static str>,
    text_chars: usize,
    page: Option<PageConfig>,
    person: Option<Person>,
    optin: Option<Optin>,
    config: PolicyConfig,
    expect: FExpect,
    reason_contains: &'static str,
    /// For refusals: the window-closed time and the human-agent-until time it must carry.
    window_closed_at_ms: Option<i64>,
    human_agent_until_ms: Option<i64>,
}

fn agent_page() -> PageConfig {
    PageConfig {
        human_agent: true,
        ..active_page()
    }
}

/// A reply to a PSID who last wrote at `T0`, one second later.
fn f(name: &'static str, intent: Intent, expect: FExpect) -> FRow {
    FRow {
        name,
        now_ms: T0 + SEC,
        channel: Channel::Messenger,
        to: FTo::Scoped,
        intent,
        human_author: None,
        tag: None,
        text_chars: 5,
        page: Some(active_page()),
        person: Some(person(Some(T0))),
        optin: None,
        config: PolicyConfig::default(),
        expect,
        reason_contains: "",
        window_closed_at_ms: None,
        human_agent_until_ms: None,
    }
}

/// A human agent's reply (the Page has the feature) at `now_ms`.
fn agent(name: &'static str, now_ms: i64, expect: FExpect) -> FRow {
    FRow {
        now_ms,
        human_author: Some(true),
        page: Some(agent_page()),
        ..f(name, Intent::HumanAgent, expect)
    }
}

fn linked_optin(state: OptinState, psid: Option<&str>) -> Optin {
    Optin {
        psid: psid.map(str::to_string),
        ..login_optin(state)
    }
}

fn followup_rows() -> Vec<FRow> {
    use MessagingType::{MessageTag as Tagged, Response as Resp, Update as Upd, Utility as Util};
    vec![
        // ---- the 24-hour window ----
        f(
            "reply inside 24 h",
            Intent::Reply,
            Send("standard_window", Resp, None),
        ),
        f(
            "update inside 24 h",
            Intent::Update,
            Send("standard_window", Upd, None),
        ),
        FRow {
            now_ms: T0 + DAY_MS - SEC,
            ..f(
                "reply at 23:59:59",
                Intent::Reply,
                Send("standard_window", Resp, None),
            )
        },
        FRow {
            now_ms: T0 + DAY_MS - 1,
            ..f(
                "reply at 24 h - 1 ms",
                Intent::Reply,
                Send("standard_window", Resp, None),
            )
        },
        FRow {
            now_ms: T0 + DAY_MS,
            window_closed_at_ms: Some(T0 + DAY_MS),
            human_agent_until_ms: Some(T0 + WEEK),
            reason_contains: "human agent",
            ..f(
                "reply at exactly 24:00:00",
                Intent::Reply,
                No("standard_window"),
            )
        },
        FRow {
            now_ms: T0 + DAY_MS + 1,
            window_closed_at_ms: Some(T0 + DAY_MS),
            ..f("reply at 24 h + 1 ms", Intent::Reply, No("standard_window"))
        },
        FRow {
            now_ms: T0 + 25 * 60 * 60 * SEC,
            window_closed_at_ms: Some(T0 + DAY_MS),
            human_agent_until_ms: Some(T0 + WEEK),
            ..f("update 25 h later", Intent::Update, No("standard_window"))
        },
        FRow {
            now_ms: T0 + WEEK + DAY_MS,
            window_closed_at_ms: Some(T0 + DAY_MS),
            human_agent_until_ms: None,
            ..f(
                "reply after 8 days: no human agent hint",
                Intent::Reply,
                No("standard_window"),
            )
        },
        FRow {
            person: Some(person(None)),
            reason_contains: "never wrote",
            ..f(
                "reply to someone who never wrote",
                Intent::Reply,
                No("standard_window"),
            )
        },
        FRow {
            person: None,
            reason_contains: "never wrote",
            ..f(
                "reply without a person record",
                Intent::Reply,
                No("standard_window"),
            )
        },
        FRow {
            person: Some(Person {
                page_id: OTHER_PAGE.into(),
                ..person(Some(T0))
            }),
            ..f(
                "another page's record opens no window",
                Intent::Reply,
                No("standard_window"),
            )
        },
        // ---- HUMAN_AGENT: 24 h to 7 days, a human, the Page's feature ----
        agent(
            "human agent inside 24 h goes as RESPONSE",
            T0 + SEC,
            Send("standard_window", Resp, None),
        ),
        FRow {
            page: Some(active_page()),
            ..agent(
                "human agent inside 24 h needs no feature",
                T0 + SEC,
                Send("standard_window", Resp, None),
            )
        },
        agent(
            "human agent on day 3",
            T0 + 3 * DAY_MS,
            Send("human_agent_window", Tagged, Some("HUMAN_AGENT")),
        ),
        agent(
            "human agent at exactly 24 h",
            T0 + DAY_MS,
            Send("human_agent_window", Tagged, Some("HUMAN_AGENT")),
        ),
        agent(
            "human agent at 7 d - 1 s",
            T0 + WEEK - SEC,
            Send("human_agent_window", Tagged, Some("HUMAN_AGENT")),
        ),
        agent(
            "human agent at 7 d - 1 ms",
            T0 + WEEK - 1,
            Send("human_agent_window", Tagged, Some("HUMAN_AGENT")),
        ),
        FRow {
            window_closed_at_ms: Some(T0 + WEEK),
            ..agent(
                "human agent at exactly 7 d",
                T0 + WEEK,
                No("human_agent_window"),
            )
        },
        FRow {
            window_closed_at_ms: Some(T0 + WEEK),
            ..agent(
                "human agent at 7 d + 1 ms",
                T0 + WEEK + 1,
                No("human_agent_window"),
            )
        },
        FRow {
            human_author: Some(false),
            reason_contains: "human",
            ..agent(
                "bot-authored human agent on day 3",
                T0 + 3 * DAY_MS,
                No("human_agent_author"),
            )
        },
        FRow {
            human_author: Some(false),
            ..agent(
                "bot-authored human agent inside 24 h",
                T0 + SEC,
                No("human_agent_author"),
            )
        },
        FRow {
            human_author: None,
            ..agent(
                "human agent without an author",
                T0 + 3 * DAY_MS,
                No("human_agent_author"),
            )
        },
        FRow {
            page: Some(active_page()),
            reason_contains: "Human Agent feature",
            ..agent(
                "human agent on day 3 without the Page's feature",
                T0 + 3 * DAY_MS,
                No("human_agent_feature"),
            )
        },
        FRow {
            page: None,
            ..agent(
                "human agent on day 3, no page config",
                T0 + 3 * DAY_MS,
                No("human_agent_feature"),
            )
        },
        FRow {
            config: PolicyConfig {
                allowed_tags: vec![],
                ..PolicyConfig::default()
            },
            ..agent(
                "human agent on day 3, HUMAN_AGENT off the allow-list",
                T0 + 3 * DAY_MS,
                No("tag_not_allowed"),
            )
        },
        FRow {
            tag: Some("HUMAN_AGENT"),
            ..agent(
                "the HUMAN_AGENT tag with intent human_agent",
                T0 + 3 * DAY_MS,
                Send("human_agent_window", Tagged, Some("HUMAN_AGENT")),
            )
        },
        FRow {
            now_ms: T0 + 3 * DAY_MS,
            window_closed_at_ms: Some(T0 + DAY_MS),
            human_agent_until_ms: Some(T0 + WEEK),
            ..f(
                "a bot's reply on day 3",
                Intent::Reply,
                No("standard_window"),
            )
        },
        // ---- retired and unknown tags ----
        FRow {
            tag: Some("CONFIRMED_EVENT_UPDATE"),
            reason_contains: "retired",
            ..f("CONFIRMED_EVENT_UPDATE", Intent::Update, No("retired_tag"))
        },
        FRow {
            tag: Some("post_purchase_update"),
            reason_contains: "retired",
            ..f(
                "POST_PURCHASE_UPDATE, any case",
                Intent::Update,
                No("retired_tag"),
            )
        },
        FRow {
            tag: Some("ACCOUNT_UPDATE"),
            now_ms: T0 + 3 * DAY_MS,
            reason_contains: "retired",
            ..f(
                "ACCOUNT_UPDATE outside the window",
                Intent::Update,
                No("retired_tag"),
            )
        },
        FRow {
            tag: Some("ACCOUNT_UPDATE"),
            config: PolicyConfig {
                allowed_tags: vec!["ACCOUNT_UPDATE".into()],
                ..PolicyConfig::default()
            },
            ..f(
                "a retired tag on the allow-list",
                Intent::Update,
                No("retired_tag"),
            )
        },
        FRow {
            tag: Some("ISSUE_RESOLUTION"),
            ..f("an unknown tag", Intent::Reply, No("tag_not_allowed"))
        },
        // ---- Instagram ----
        FRow {
            channel: Channel::Instagram,
            text_chars: 1000,
            ..f(
                "Instagram text of 1000 characters",
                Intent::Reply,
                Send("standard_window", Resp, None),
            )
        },
        FRow {
            channel: Channel::Instagram,
            text_chars: 1001,
            reason_contains: "1000",
            ..f(
                "Instagram text of 1001 characters",
                Intent::Reply,
                No("instagram_text_limit"),
            )
        },
        FRow {
            text_chars: 1001,
            ..f(
                "Messenger text of 1001 characters",
                Intent::Reply,
                Send("standard_window", Resp, None),
            )
        },
        FRow {
            channel: Channel::Instagram,
            page: Some(PageConfig {
                utility_messaging: true,
                ..active_page()
            }),
            ..f(
                "utility on Instagram",
                Intent::Utility,
                No("instagram_utility"),
            )
        },
        FRow {
            channel: Channel::Instagram,
            ..agent(
                "Instagram human agent on day 3",
                T0 + 3 * DAY_MS,
                Send("human_agent_window", Tagged, Some("HUMAN_AGENT")),
            )
        },
        FRow {
            channel: Channel::Instagram,
            now_ms: T0 + DAY_MS,
            window_closed_at_ms: Some(T0 + DAY_MS),
            ..f(
                "Instagram reply at exactly 24 h",
                Intent::Reply,
                No("standard_window"),
            )
        },
        // ---- utility templates ----
        FRow {
            now_ms: T0 + 30 * DAY_MS,
            page: Some(PageConfig {
                utility_messaging: true,
                ..active_page()
            }),
            ..f(
                "utility 30 days later, Page enabled",
                Intent::Utility,
                Send("utility", Util, None),
            )
        },
        FRow {
            now_ms: T0 + 30 * DAY_MS,
            config: PolicyConfig {
                allow_utility: true,
                ..PolicyConfig::default()
            },
            ..f(
                "utility, deployment enabled",
                Intent::Utility,
                Send("utility", Util, None),
            )
        },
        FRow {
            person: None,
            page: Some(PageConfig {
                utility_messaging: true,
                ..active_page()
            }),
            ..f(
                "utility to someone who never wrote",
                Intent::Utility,
                Send("utility", Util, None),
            )
        },
        f(
            "utility, not enabled",
            Intent::Utility,
            No("utility_disabled"),
        ),
        // ---- login_id / user_ref: only the one first message ----
        FRow {
            to: FTo::Unlinked(IdentityKind::LoginId),
            person: None,
            optin: Some(login_optin(OptinState::Sent)),
            reason_contains: "wait for the person's reply",
            ..f(
                "login_id after its first message",
                Intent::Update,
                No("login_id_once"),
            )
        },
        FRow {
            to: FTo::Unlinked(IdentityKind::LoginId),
            person: None,
            optin: Some(login_optin(OptinState::Pending)),
            ..f(
                "login_id before its first message",
                Intent::Reply,
                No("login_id_once"),
            )
        },
        FRow {
            to: FTo::Unlinked(IdentityKind::UserRef),
            person: None,
            optin: Some(optin_for(IdentityKind::UserRef, USER_REF, OptinState::Sent)),
            ..f(
                "user_ref after its first message",
                Intent::Update,
                No("login_id_once"),
            )
        },
        FRow {
            to: FTo::Unlinked(IdentityKind::LoginId),
            person: None,
            optin: Some(login_optin(OptinState::Sent)),
            page: Some(PageConfig {
                utility_messaging: true,
                ..active_page()
            }),
            ..f(
                "utility to a login_id",
                Intent::Utility,
                No("login_id_once"),
            )
        },
        FRow {
            optin: Some(linked_optin(OptinState::Answered, Some(PSID))),
            ..f(
                "login_id whose person replied: its PSID's window",
                Intent::Reply,
                Send("standard_window", Resp, None),
            )
        },
        FRow {
            to: FTo::Unlinked(IdentityKind::LoginId),
            person: None,
            optin: Some(login_optin(OptinState::OptedOut)),
            ..f(
                "login_id opted out beats once",
                Intent::Update,
                No("opted_out"),
            )
        },
        // ---- unknown recipients, opt-outs, pauses ----
        FRow {
            to: FTo::Unknown("an external_id needs the identity link"),
            person: None,
            reason_contains: "identity link",
            ..f(
                "external_id without the identity link",
                Intent::Reply,
                No("unknown_recipient"),
            )
        },
        FRow {
            person: Some(opted_out_person()),
            reason_contains: "blocked",
            ..f("opted-out person", Intent::Reply, No("opted_out"))
        },
        FRow {
            person: Some(opted_out_person()),
            ..agent(
                "opted out beats human agent",
                T0 + 3 * DAY_MS,
                No("opted_out"),
            )
        },
        FRow {
            page: Some(paused_page()),
            reason_contains: "policy_enforcement",
            ..f("paused page", Intent::Reply, No("page_paused"))
        },
        FRow {
            page: Some(paused_page()),
            person: Some(opted_out_person()),
            ..f(
                "paused page beats opted out",
                Intent::Reply,
                No("page_paused"),
            )
        },
        FRow {
            page: Some(paused_page()),
            to: FTo::Unknown("nobody"),
            ..f(
                "paused page beats an unknown recipient",
                Intent::Reply,
                No("page_paused"),
            )
        },
        FRow {
            tag: Some("POST_PURCHASE_UPDATE"),
            to: FTo::Unknown("nobody"),
            ..f(
                "a retired tag beats an unknown recipient",
                Intent::Reply,
                No("retired_tag"),
            )
        },
        // ---- phone numbers (Customer Matching) ----
        FRow {
            to: FTo::Phone,
            person: None,
            ..f(
                "phone number, not enabled",
                Intent::Update,
                No("phone_number_disabled"),
            )
        },
        FRow {
            to: FTo::Phone,
            person: None,
            page: Some(PageConfig {
                phone_number_messaging: true,
                ..active_page()
            }),
            ..f(
                "phone number, Page enabled",
                Intent::Update,
                Send("phone_number", Upd, None),
            )
        },
        FRow {
            to: FTo::Phone,
            person: None,
            human_author: Some(true),
            page: Some(PageConfig {
                phone_number_messaging: true,
                ..agent_page()
            }),
            ..f(
                "human agent to a phone number",
                Intent::HumanAgent,
                No("human_agent_window"),
            )
        },
    ]
}

#[test]
fn followup_policy_table() {
    let rows = followup_rows();
    let mut names = HashSet::new();
    let mut failures = Vec::new();
    for row in &rows {
        assert!(names.insert(row.name), "duplicate row name: {}", row.name);
        let recipient = match row.to {
            FTo::Scoped => FollowUpRecipient::Scoped(PSID),
            FTo::Unlinked(kind) => FollowUpRecipient::Unlinked(kind),
            FTo::Phone => FollowUpRecipient::PhoneNumber,
            FTo::Unknown(why) => FollowUpRecipient::Unknown(why),
        };
        let decision = decide_followup(
            &FollowUp {
                now_ms: row.now_ms,
                page_id: PAGE,
                channel: row.channel,
                recipient,
                intent: row.intent,
                human_author: row.human_author,
                tag: row.tag,
                text_chars: row.text_chars,
                page: row.page.as_ref(),
                person: row.person.as_ref(),
                optin: row.optin.as_ref(),
            },
            &row.config,
        );
        let ok = match (row.expect, &decision) {
            (
                Send(rule, messaging_type, tag),
                FollowUpDecision::Send {
                    rule: got,
                    messaging_type: got_type,
                    tag: got_tag,
                },
            ) => got.as_str() == rule && *got_type == messaging_type && *got_tag == tag,
            (No(rule), FollowUpDecision::Refuse(r)) => {
                r.rule.as_str() == rule
                    && !r.reason.is_empty()
                    && r.reason.contains(row.reason_contains)
                    && (row.window_closed_at_ms.is_none()
                        || r.window_closed_at_ms == row.window_closed_at_ms)
                    && (row.human_agent_until_ms.is_none()
                        || r.human_agent_until_ms == row.human_agent_until_ms)
            }
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{}: expected {:?}, got {:?}",
                row.name, row.expect, decision
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}
