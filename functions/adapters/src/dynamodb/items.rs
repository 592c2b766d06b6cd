//! Items <-> domain records. A malformed item is `Rejected`, naming its key and attribute,
//! never a panic.
//!
//! # Item shapes
//!
//! Attribute names are flat snake_case, readable in the console. Times are epoch milliseconds
//! (`N`, names ending in `_ms`) except the table's TTL attribute `expires_at` (epoch seconds).
//! Flags are `BOOL`. An absent value is an absent attribute, never `NULL` (a `NULL` is read as
//! absent).
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | opt-in | `OPTIN#<kind>#<id>` (PSID / IGSID: `OPTIN#<kind>#<page_id>#<id>`) | `OPTIN` | `recipient_kind` (`login_id`, `user_ref`, `psid`, `igsid`), `recipient_id`, `page_id`, `object`, `entry_point` (`login_connect`, `send_to_messenger`, `checkbox`), `source` (`webhook`, `login`, `reply`), `opted_in_at_ms`, `deadline_at_ms`, `state` (`pending`, `sending`, `sent`, `answered`, `failed`, `expired`, `opted_out`), `attempts`, `lease_until_ms`, `job_enqueued`, `job_claim_until_ms`, `schedule_name`, `created_by`, `updated_at_ms`; optional `last_error`, `message_id`, `sent_at_ms`, `psid`, `answered_at_ms`, `reference_raw`, `reference_status`, `reference_payload` |
//! | person | `PSID#<page_id>#<psid>` | `PERSON` | `page_id`, `psid`; optional `login_id`, `user_ref`, `linked_at_ms`, `last_user_message_at_ms`, `opted_out_at_ms`, `opted_out_reason`, `referral_at_ms`, `referral_reference`, `referral_source`, `referral_ad_id` |
//! | marketing token | `PSID#<page_id>#<psid>` | `TOKEN#<topic>` | `page_id`, `psid`, `topic`, `status` (`active`, `stopped`), `status_at_ms`; optional `token`, `token_expires_at_ms` |
//! | page config | `PAGE#<page_id>` | `CONFIG` | see below |
//! | quarantined event | `QUARANTINE` | `<received_at_ms, 13 digits>#<event key>` | `reason`, `received_at_ms`, `event_json`, `expires_at` (TTL: received + 90 days, epoch seconds) |
//!
//! The person and its tokens share a partition: one `Query` on `pk` reads them all. People and
//! tokens are only ever written by conditional updates (see `people.rs`); only their reading
//! shape lives here.
//!
//! ## Page config (edited by hand in the console)
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `page_id` | `S` | the Page id (optional: the key says it) |
//! | `paused` | `BOOL` | `true`: no first message goes out from this Page (absent = `false`) |
//! | `paused_reason` | `S` | why (a Graph error, or an operator's note) |
//! | `paused_at_ms` | `N` | when it was paused, epoch ms |
//! | `pause_event_at_ms` | `N` | event time of the last pause/unpause written by the functions: an event older than this is ignored. Leave it alone when pausing by hand (a webhook event newer than it can still unpause) |
//! | `first_message` | `S` | JSON of the first message: `{"text": "...", "quick_replies": [...]}`; validated when used |
//!
//! To pause a Page by hand: create or edit `pk = PAGE#<page_id>`, `sk = CONFIG`, set `paused`
//! to `true` and `paused_reason` to a note.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use lc_core::lifecycle::optin::{EntryPoint, Optin, OptinSource, OptinState, RefInfo};
use lc_core::ports::store::{
    MarketingToken, PageConfig, Person, QuarantinedRecord, ReferralInfo, TokenStatus,
};
use lc_core::ports::PortError;
use lc_core::webhook::{Identity, IdentityKind};

use super::expr::{b, n, s};
use super::keys::{page_key, OPTIN_SK, QUARANTINE_PK, TOKEN_SK_PREFIX, TTL};

pub(super) type Item = HashMap<String, AttributeValue>;

/// How long a quarantined event is kept (TTL), in seconds.
const QUARANTINE_TTL_SECS: i64 = 90 * 24 * 60 * 60;

struct Reader<'a> {
    item: &'a Item,
}

impl<'a> Reader<'a> {
    fn new(item: &'a Item) -> Self {
        Reader { item }
    }

    fn key(&self) -> String {
        let part = |k: &str| match self.item.get(k) {
            Some(AttributeValue::S(v)) => v.clone(),
            _ => "?".to_string(),
        };
        format!("{}/{}", part("pk"), part("sk"))
    }

    fn bad(&self, attr: &str, why: &str) -> PortError {
        PortError::Rejected(format!(
            "malformed item {} in DynamoDB: attribute {attr}: {why}",
            self.key()
        ))
    }

    /// The attribute, unless absent or `NULL`.
    fn get(&self, attr: &str) -> Option<&'a AttributeValue> {
        match self.item.get(attr) {
            None | Some(AttributeValue::Null(_)) => None,
            Some(v) => Some(v),
        }
    }

    fn opt_s(&self, attr: &str) -> Result<Option<String>, PortError> {
        match self.get(attr) {
            None => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
            Some(_) => Err(self.bad(attr, "not a string (S)")),
        }
    }

    fn s(&self, attr: &str) -> Result<String, PortError> {
        self.opt_s(attr)?.ok_or_else(|| self.bad(attr, "missing"))
    }

    fn opt_i64(&self, attr: &str) -> Result<Option<i64>, PortError> {
        match self.get(attr) {
            None => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| self.bad(attr, "not an integer")),
            Some(_) => Err(self.bad(attr, "not a number (N)")),
        }
    }

    fn i64(&self, attr: &str) -> Result<i64, PortError> {
        self.opt_i64(attr)?.ok_or_else(|| self.bad(attr, "missing"))
    }

    fn u32(&self, attr: &str) -> Result<u32, PortError> {
        u32::try_from(self.i64(attr)?).map_err(|_| self.bad(attr, "out of range"))
    }

    fn opt_bool(&self, attr: &str) -> Result<Option<bool>, PortError> {
        match self.get(attr) {
            None => Ok(None),
            Some(AttributeValue::Bool(v)) => Ok(Some(*v)),
            Some(_) => Err(self.bad(attr, "not a boolean (BOOL)")),
        }
    }

    fn bool(&self, attr: &str) -> Result<bool, PortError> {
        self.opt_bool(attr)?
            .ok_or_else(|| self.bad(attr, "missing"))
    }

    fn parsed<T>(&self, attr: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, PortError> {
        let v = self.s(attr)?;
        parse(&v).ok_or_else(|| self.bad(attr, "unknown value"))
    }
}

fn identity_kind(s: &str) -> Option<IdentityKind> {
    Some(match s {
        "psid" => IdentityKind::Psid,
        "igsid" => IdentityKind::Igsid,
        "user_ref" => IdentityKind::UserRef,
        "login_id" => IdentityKind::LoginId,
        _ => return None,
    })
}

fn token_status(s: &str) -> Option<TokenStatus> {
    match s {
        "active" => Some(TokenStatus::Active),
        "stopped" => Some(TokenStatus::Stopped),
        _ => None,
    }
}

pub(super) fn optin_from(item: Item) -> Result<Optin, PortError> {
    let r = Reader::new(&item);
    let reference = match r.opt_s("reference_raw")? {
        None => None,
        Some(raw) => Some(RefInfo {
            raw,
            status: r.s("reference_status")?,
            payload: r.opt_s("reference_payload")?,
        }),
    };
    Ok(Optin {
        recipient: Identity::new(
            r.parsed("recipient_kind", identity_kind)?,
            r.s("recipient_id")?,
        ),
        page_id: r.s("page_id")?,
        object: r.s("object")?,
        entry_point: r.parsed("entry_point", EntryPoint::parse)?,
        source: r.parsed("source", OptinSource::parse)?,
        opted_in_at_ms: r.i64("opted_in_at_ms")?,
        deadline_at_ms: r.i64("deadline_at_ms")?,
        state: r.parsed("state", OptinState::parse)?,
        attempts: r.u32("attempts")?,
        lease_until_ms: r.i64("lease_until_ms")?,
        job_enqueued: r.bool("job_enqueued")?,
        job_claim_until_ms: r.i64("job_claim_until_ms")?,
        schedule_name: r.s("schedule_name")?,
        last_error: r.opt_s("last_error")?,
        message_id: r.opt_s("message_id")?,
        sent_at_ms: r.opt_i64("sent_at_ms")?,
        psid: r.opt_s("psid")?,
        answered_at_ms: r.opt_i64("answered_at_ms")?,
        reference,
        created_by: r.s("created_by")?,
        updated_at_ms: r.i64("updated_at_ms")?,
    })
}

pub(super) fn person_from(item: Item, page_id: &str, psid: &str) -> Result<Person, PortError> {
    let r = Reader::new(&item);
    let referral = match r.opt_i64("referral_at_ms")? {
        None => None,
        Some(at_ms) => Some(ReferralInfo {
            reference: r.opt_s("referral_reference")?,
            source: r.opt_s("referral_source")?,
            ad_id: r.opt_s("referral_ad_id")?,
            at_ms,
        }),
    };
    Ok(Person {
        page_id: r.opt_s("page_id")?.unwrap_or_else(|| page_id.to_string()),
        psid: r.opt_s("psid")?.unwrap_or_else(|| psid.to_string()),
        login_id: r.opt_s("login_id")?,
        user_ref: r.opt_s("user_ref")?,
        linked_at_ms: r.opt_i64("linked_at_ms")?,
        last_user_message_at_ms: r.opt_i64("last_user_message_at_ms")?,
        opted_out_at_ms: r.opt_i64("opted_out_at_ms")?,
        opted_out_reason: r.opt_s("opted_out_reason")?,
        referral,
    })
}

pub(super) fn token_from(item: Item) -> Result<MarketingToken, PortError> {
    let r = Reader::new(&item);
    let topic = match r.opt_s("topic")? {
        Some(t) => t,
        None => r
            .s("sk")?
            .strip_prefix(TOKEN_SK_PREFIX)
            .map(str::to_string)
            .ok_or_else(|| r.bad("sk", "not a token sort key"))?,
    };
    Ok(MarketingToken {
        topic,
        token: r.opt_s("token")?,
        status: r.parsed("status", token_status)?,
        expires_at_ms: r.opt_i64("token_expires_at_ms")?,
        status_at_ms: r.i64("status_at_ms")?,
    })
}

pub(super) fn page_from(item: Item, page_id: &str) -> Result<PageConfig, PortError> {
    let r = Reader::new(&item);
    Ok(PageConfig {
        page_id: r.opt_s("page_id")?.unwrap_or_else(|| page_id.to_string()),
        paused: r.opt_bool("paused")?.unwrap_or(false),
        paused_reason: r.opt_s("paused_reason")?,
        paused_at_ms: r.opt_i64("paused_at_ms")?,
        pause_event_at_ms: r.opt_i64("pause_event_at_ms")?,
        first_message: r.opt_s("first_message")?,
    })
}

pub(super) fn quarantined_from(item: Item) -> Result<QuarantinedRecord, PortError> {
    let r = Reader::new(&item);
    Ok(QuarantinedRecord {
        id: r.s("sk")?,
        reason: r.s("reason")?,
        received_at_ms: r.i64("received_at_ms")?,
        event_json: r.s("event_json")?,
    })
}

pub(super) fn optin_item(o: &Optin) -> Item {
    let mut i = Item::new();
    let mut put = |k: &str, v: AttributeValue| {
        i.insert(k.to_string(), v);
    };
    put("pk", s(o.key()));
    put("sk", s(OPTIN_SK));
    put("recipient_kind", s(o.recipient.kind.as_str()));
    put("recipient_id", s(&o.recipient.id));
    put("page_id", s(&o.page_id));
    put("object", s(&o.object));
    put("entry_point", s(o.entry_point.as_str()));
    put("source", s(o.source.as_str()));
    put("opted_in_at_ms", n(o.opted_in_at_ms));
    put("deadline_at_ms", n(o.deadline_at_ms));
    put("state", s(o.state.as_str()));
    put("attempts", n(i64::from(o.attempts)));
    put("lease_until_ms", n(o.lease_until_ms));
    put("job_enqueued", b(o.job_enqueued));
    put("job_claim_until_ms", n(o.job_claim_until_ms));
    put("schedule_name", s(&o.schedule_name));
    put("created_by", s(&o.created_by));
    put("updated_at_ms", n(o.updated_at_ms));
    if let Some(v) = &o.last_error {
        put("last_error", s(v));
    }
    if let Some(v) = &o.message_id {
        put("message_id", s(v));
    }
    if let Some(v) = o.sent_at_ms {
        put("sent_at_ms", n(v));
    }
    if let Some(v) = &o.psid {
        put("psid", s(v));
    }
    if let Some(v) = o.answered_at_ms {
        put("answered_at_ms", n(v));
    }
    if let Some(r) = &o.reference {
        put("reference_raw", s(&r.raw));
        put("reference_status", s(&r.status));
        if let Some(p) = &r.payload {
            put("reference_payload", s(p));
        }
    }
    i
}

pub(super) fn page_item(p: &PageConfig) -> Item {
    let (pk, sk) = page_key(&p.page_id);
    let mut i = Item::new();
    i.insert("pk".into(), s(pk));
    i.insert("sk".into(), s(sk));
    i.insert("page_id".into(), s(&p.page_id));
    i.insert("paused".into(), b(p.paused));
    if let Some(v) = &p.paused_reason {
        i.insert("paused_reason".into(), s(v));
    }
    if let Some(v) = p.paused_at_ms {
        i.insert("paused_at_ms".into(), n(v));
    }
    if let Some(v) = p.pause_event_at_ms {
        i.insert("pause_event_at_ms".into(), n(v));
    }
    if let Some(v) = &p.first_message {
        i.insert("first_message".into(), s(v));
    }
    i
}

pub(super) fn quarantined_item(r: &QuarantinedRecord) -> Item {
    let mut i = Item::new();
    i.insert("pk".into(), s(QUARANTINE_PK));
    i.insert("sk".into(), s(&r.id));
    i.insert("reason".into(), s(&r.reason));
    i.insert("received_at_ms".into(), n(r.received_at_ms));
    i.insert("event_json".into(), s(&r.event_json));
    i.insert(
        TTL.into(),
        n(r.received_at_ms.div_euclid(1000) + QUARANTINE_TTL_SECS),
    );
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamodb::expr::{b, n, s};
    use lc_core::lifecycle::optin::OptinSource;

    fn sample() -> Optin {
        let mut o = Optin::pending(
            Identity::new(IdentityKind::LoginId, "L1"),
            "100",
            "page",
            EntryPoint::LoginConnect,
            OptinSource::Webhook,
            1_000,
            "optin:h1",
            1_500,
        );
        o.reference = Some(RefInfo {
            raw: "r".into(),
            status: "opaque".into(),
            payload: None,
        });
        o.message_id = Some("m_1".into());
        o
    }

    #[test]
    fn optin_round_trips_through_an_item() {
        let o = sample();
        let item = optin_item(&o);
        assert_eq!(item.get("pk"), Some(&s("OPTIN#login_id#L1")));
        assert_eq!(item.get("job_enqueued"), Some(&b(false)));
        assert!(!item.contains_key("psid"), "absent, not NULL");
        assert!(!item.contains_key("reference_payload"));
        assert_eq!(optin_from(item), Ok(o));
    }

    #[test]
    fn malformed_items_are_rejected_naming_the_key() {
        let mut item = optin_item(&sample());
        item.insert("state".into(), s("flying"));
        let err = optin_from(item).unwrap_err();
        assert!(
            matches!(&err, PortError::Rejected(m) if m.contains("OPTIN#login_id#L1/OPTIN") && m.contains("state")),
            "{err}"
        );
        let mut item = optin_item(&sample());
        item.insert("attempts".into(), s("1"));
        assert!(matches!(optin_from(item), Err(PortError::Rejected(_))));
        let mut item = optin_item(&sample());
        item.insert("attempts".into(), n(-1));
        assert!(matches!(optin_from(item), Err(PortError::Rejected(_))));
        let mut item = optin_item(&sample());
        item.remove("deadline_at_ms");
        assert!(
            matches!(optin_from(item), Err(PortError::Rejected(m)) if m.contains("deadline_at_ms"))
        );
        let mut item = optin_item(&sample());
        item.insert("psid".into(), AttributeValue::Null(true));
        assert_eq!(
            optin_from(item).map(|o| o.psid),
            Ok(None),
            "NULL reads as absent"
        );
    }

    #[test]
    fn hand_written_page_config_is_read_leniently() {
        let mut item = Item::new();
        item.insert("pk".into(), s("PAGE#100"));
        item.insert("sk".into(), s("CONFIG"));
        item.insert("first_message".into(), s(r#"{"text":"hi"}"#));
        let p = page_from(item.clone(), "100").unwrap();
        assert_eq!(p.page_id, "100");
        assert!(!p.paused);
        assert_eq!(p.first_message.as_deref(), Some(r#"{"text":"hi"}"#));
        item.insert("paused".into(), s("yes"));
        assert!(
            matches!(page_from(item.clone(), "100"), Err(PortError::Rejected(m)) if m.contains("PAGE#100/CONFIG"))
        );
        let full = PageConfig {
            page_id: "100".into(),
            paused: true,
            paused_reason: Some("r".into()),
            paused_at_ms: Some(5),
            pause_event_at_ms: Some(5),
            first_message: Some("{}".into()),
        };
        assert_eq!(page_from(page_item(&full), "100"), Ok(full));
    }

    #[test]
    fn quarantine_ttl_is_90_days_in_seconds() {
        let r = QuarantinedRecord {
            id: "0000000001000#k".into(),
            reason: "x".into(),
            received_at_ms: 1_700_000_000_123,
            event_json: "{}".into(),
        };
        let item = quarantined_item(&r);
        assert_eq!(
            item.get("expires_at"),
            Some(&n(1_700_000_000 + 90 * 86_400))
        );
        assert_eq!(quarantined_from(item), Ok(r));
    }
}
