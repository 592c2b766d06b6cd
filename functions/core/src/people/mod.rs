//! One identity per person: the lookup the business's backend calls (`GET /v1/people`), and the
//! person's data on request (Meta's data-deletion callback, [`deletion`]).
//!
//! A person reaches the table through several ids: the `login_id` (Login Connect), a
//! `user_ref` (checkbox plugin), the PSID once they reply, the ASID the login callback saw, and
//! the business's own `external_id` (signed, [`external_id`]). The opt-in and the person items
//! hold them; the identity index ([`crate::ports::identity`]) finds opt-ins by the two that are
//! not keys.
//!
//! # What a lookup reads
//! | by | requests |
//! |---|---|
//! | `login_id`, `user_ref` | 1 `GetItem` (the opt-in) + 1 per PSID it has (the person) + 1 per further identifier the person linked |
//! | `psid` + `page_id` | 1 `GetItem` (the person) + 1 (its Send-to-Messenger opt-in) + 1 per identifier it linked |
//! | `external_id` | 1 `Query` (its pointers) + 1 `GetItem` per opt-in + 1 per person |
//!
//! Every read is strongly consistent; nothing is written.

pub mod deletion;
pub mod external_id;
pub mod signed_request;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::lifecycle::optin::{optin_key, GenerationOutcome, Optin, DAY_MS};
use crate::ports::identity::{valid_external_id, IndexedId};
use crate::ports::store::Person;
use crate::ports::{Clock, PortError, Table};
use crate::support::time::format_rfc3339_ms;
use crate::webhook::{Identity, IdentityKind};

/// Opt-ins one answer holds at most (pointers, linked identifiers): the answer stays small and
/// a lookup's reads stay bounded.
pub const MAX_OPTINS: usize = 50;

/// Longest id accepted in a query (Meta's ids are decimal strings well below this).
const MAX_QUERY_ID_LEN: usize = 256;

/// Which identity a lookup starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeopleQuery {
    ExternalId(String),
    LoginId(String),
    UserRef(String),
    /// A PSID means something only on its Page.
    Psid {
        page_id: String,
        psid: String,
    },
}

/// A parsed `GET /v1/people` query: one identity, optionally narrowed to one Page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub query: PeopleQuery,
    pub page_id: Option<String>,
}

impl Lookup {
    /// From the query string's pairs: exactly one of `external_id`, `psid` (with `page_id`),
    /// `login_id`, `user_ref`; `page_id` narrows the others. Reasons are fixed texts.
    pub fn parse(pairs: &[(String, String)]) -> Result<Lookup, &'static str> {
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in pairs {
            match k.as_str() {
                "external_id" | "psid" | "login_id" | "user_ref" | "page_id" => {}
                _ => return Err(
                    "unknown query parameter: use external_id, psid, login_id, user_ref, page_id",
                ),
            }
            if seen.insert(k.as_str(), v.as_str()).is_some() {
                return Err("a query parameter is repeated");
            }
            if v.is_empty() || v.len() > MAX_QUERY_ID_LEN || v.chars().any(char::is_control) {
                return Err("a query parameter is empty, too long or not text");
            }
        }
        let page_id = seen.remove("page_id").map(str::to_string);
        if page_id
            .as_deref()
            .is_some_and(|p| !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err("page_id must be a numeric Page id");
        }
        let (name, value) = match (seen.len(), seen.into_iter().next()) {
            (1, Some(one)) => one,
            (0, _) => {
                return Err(
                    "name one identity: external_id, psid (with page_id), login_id or user_ref",
                )
            }
            _ => return Err("name exactly one identity: external_id, psid, login_id or user_ref"),
        };
        let value = value.to_string();
        let query = match name {
            "external_id" if valid_external_id(&value) => PeopleQuery::ExternalId(value),
            "external_id" => return Err("external_id is not a valid id"),
            "login_id" => PeopleQuery::LoginId(value),
            "user_ref" => PeopleQuery::UserRef(value),
            _ => match &page_id {
                Some(p) => PeopleQuery::Psid {
                    page_id: p.clone(),
                    psid: value,
                },
                None => return Err("a psid needs its page_id"),
            },
        };
        Ok(Lookup { query, page_id })
    }
}

/// What the lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum LookupAnswer {
    /// `{"people": [...]}`: one entry per person (Page + PSID), and one per opt-in whose person
    /// has not replied yet.
    Found(Value),
    NotFound,
}

/// The lookup over the table.
pub struct People {
    table: Table,
    clock: Arc<dyn Clock>,
}

impl People {
    pub fn new(table: Table, clock: Arc<dyn Clock>) -> Self {
        People { table, clock }
    }

    pub async fn lookup(&self, lookup: &Lookup) -> Result<LookupAnswer, PortError> {
        let mut found = Found::default();
        match &lookup.query {
            PeopleQuery::ExternalId(x) => {
                let pointers = self
                    .table
                    .identities
                    .pointers(&IndexedId::ExternalId(x.clone()))
                    .await?;
                for p in pointers {
                    found.want_optin(p.optin_key);
                }
            }
            PeopleQuery::LoginId(id) => found.want_optin(key_of(IdentityKind::LoginId, id, "")),
            PeopleQuery::UserRef(id) => found.want_optin(key_of(IdentityKind::UserRef, id, "")),
            PeopleQuery::Psid { page_id, psid } => {
                found.want_person(page_id, psid);
                found.want_optin(key_of(IdentityKind::Psid, psid, page_id));
            }
        }
        // Opt-ins lead to people (their PSID), people to further opt-ins (what they linked):
        // two rounds reach everything one hop away, and the caps bound the reads.
        for _ in 0..2 {
            self.read_wanted(&mut found, lookup.page_id.as_deref())
                .await?;
        }
        let now = self.clock.now_ms();
        let people = found.group(now);
        if people.is_empty() {
            return Ok(LookupAnswer::NotFound);
        }
        Ok(LookupAnswer::Found(json!({ "people": people })))
    }

    async fn read_wanted(&self, found: &mut Found, page: Option<&str>) -> Result<(), PortError> {
        for key in std::mem::take(&mut found.wanted_optins) {
            if found.optins.len() >= MAX_OPTINS {
                break;
            }
            if let Some(o) = self.table.optins.get_optin(&key).await? {
                if page.is_some_and(|p| p != o.page_id) {
                    continue;
                }
                if let Some(psid) = &o.psid {
                    found.want_person(&o.page_id, psid);
                }
                found.optins.insert(key, o);
            }
        }
        for (page_id, psid) in std::mem::take(&mut found.wanted_people) {
            if page.is_some_and(|p| p != page_id) {
                continue;
            }
            if let Some(person) = self.table.people.get_person(&page_id, &psid).await? {
                for tag in &person.linked {
                    if let Some(key) = linked_key(tag) {
                        found.want_optin(key);
                    }
                }
                found.people.insert((page_id, psid), person);
            }
        }
        Ok(())
    }
}

/// The opt-in key of an identity (a PSID's with its Page).
fn key_of(kind: IdentityKind, id: &str, page_id: &str) -> String {
    optin_key(&Identity::new(kind, id), page_id)
}

/// The opt-in key of a person's `linked` entry (`login_id:<id>` / `user_ref:<id>`).
pub(crate) fn linked_key(tag: &str) -> Option<String> {
    let (kind, id) = tag.split_once(':')?;
    let kind = match kind {
        "login_id" => IdentityKind::LoginId,
        "user_ref" => IdentityKind::UserRef,
        _ => return None,
    };
    Some(key_of(kind, id, ""))
}

/// What a lookup read, and what it still wants to read.
#[derive(Default)]
struct Found {
    optins: BTreeMap<String, Optin>,
    people: BTreeMap<(String, String), Person>,
    wanted_optins: BTreeSet<String>,
    wanted_people: BTreeSet<(String, String)>,
    asked_optins: BTreeSet<String>,
    asked_people: BTreeSet<(String, String)>,
}

impl Found {
    fn want_optin(&mut self, key: String) {
        if self.asked_optins.len() < MAX_OPTINS && self.asked_optins.insert(key.clone()) {
            self.wanted_optins.insert(key);
        }
    }

    fn want_person(&mut self, page_id: &str, psid: &str) {
        let k = (page_id.to_string(), psid.to_string());
        if self.asked_people.len() < MAX_OPTINS && self.asked_people.insert(k.clone()) {
            self.wanted_people.insert(k);
        }
    }

    /// One entry per person, with the opt-ins that are theirs; then one per opt-in no person
    /// holds yet.
    fn group(&self, now_ms: i64) -> Vec<Value> {
        let mut claimed: BTreeSet<&str> = BTreeSet::new();
        let mut out = Vec::new();
        for ((page_id, psid), person) in &self.people {
            let mine: Vec<&Optin> = self
                .optins
                .iter()
                .filter(|(key, o)| {
                    (o.psid.as_deref() == Some(psid.as_str()) && o.page_id == *page_id)
                        || person
                            .linked
                            .iter()
                            .any(|t| linked_key(t).as_deref() == Some(key.as_str()))
                        || **key == key_of(IdentityKind::Psid, psid, page_id)
                })
                .map(|(key, o)| {
                    claimed.insert(key.as_str());
                    o
                })
                .collect();
            out.push(person_entry(Some(person), &mine, now_ms));
        }
        for (key, o) in &self.optins {
            if !claimed.contains(key.as_str()) {
                out.push(person_entry(None, &[o], now_ms));
            }
        }
        out
    }
}

fn at(ms: Option<i64>) -> Value {
    ms.map(|t| json!(format_rfc3339_ms(t)))
        .unwrap_or(Value::Null)
}

/// One person: their identities, 24-hour window, opt-out, last referral and opt-ins.
fn person_entry(person: Option<&Person>, optins: &[&Optin], now_ms: i64) -> Value {
    let mut ids = BTreeMap::new();
    let mut put = |k: &str, v: Option<&String>| {
        if let Some(v) = v {
            ids.entry(k.to_string()).or_insert_with(|| json!(v));
        }
    };
    if let Some(p) = person {
        put("psid", Some(&p.psid));
        put("login_id", p.login_id.as_ref());
        put("user_ref", p.user_ref.as_ref());
        put("external_id", p.external_id.as_ref());
    }
    for o in optins {
        let kind = o.recipient.kind.as_str();
        put(kind, Some(&o.recipient.id));
        put("psid", o.psid.as_ref());
        put("external_id", o.external_id.as_ref());
        put("asid", o.asid.as_ref());
    }
    let page_id = person
        .map(|p| p.page_id.clone())
        .or_else(|| optins.first().map(|o| o.page_id.clone()))
        .unwrap_or_default();
    let last = person.and_then(|p| p.last_user_message_at_ms);
    let until = last.map(|t| t + DAY_MS);
    json!({
        "page_id": page_id,
        "identities": ids,
        "linked": person.map(|p| p.linked.clone()).unwrap_or_default(),
        "window": {
            "open": until.is_some_and(|u| u > now_ms),
            "until": at(until),
            "last_user_message_at": at(last),
        },
        "opted_out": person.and_then(|p| p.opted_out_at_ms).map(|t| json!({
            "at": format_rfc3339_ms(t),
            "reason": person.and_then(|p| p.opted_out_reason.clone()),
        })),
        "last_referral": person.and_then(|p| p.referral.as_ref()).map(|r| json!({
            "ref": r.reference,
            "source": r.source,
            "ad_id": r.ad_id,
            "at": format_rfc3339_ms(r.at_ms),
        })),
        "optins": optins.iter().map(|o| optin_entry(o)).collect::<Vec<_>>(),
    })
}

/// One opt-in: its current generation and the outcomes of the earlier ones.
fn optin_entry(o: &Optin) -> Value {
    json!({
        "recipient": {"kind": o.recipient.kind.as_str(), "id": o.recipient.id},
        "entry_point": o.entry_point.as_str(),
        "source": o.source.as_str(),
        "generation": o.generation,
        "state": o.state.as_str(),
        "opted_in_at": format_rfc3339_ms(o.opted_in_at_ms),
        "deadline_at": format_rfc3339_ms(o.deadline_at_ms),
        "sent_at": at(o.sent_at_ms),
        "answered_at": at(o.answered_at_ms),
        "message_id": o.message_id,
        "last_error": o.last_error,
        "ref": o.reference.as_ref().map(|r| json!({"status": r.status, "payload": r.payload})),
        "history": o.history.iter().map(history_entry).collect::<Vec<_>>(),
    })
}

fn history_entry(h: &GenerationOutcome) -> Value {
    json!({
        "generation": h.generation,
        "source": h.source.as_str(),
        "state": h.state.as_str(),
        "opted_in_at": format_rfc3339_ms(h.opted_in_at_ms),
        "closed_at": format_rfc3339_ms(h.closed_at_ms),
        "sent_at": at(h.sent_at_ms),
        "answered_at": at(h.answered_at_ms),
        "message_id": h.message_id,
        "last_error": h.last_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<Lookup, &'static str> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Lookup::parse(&pairs)
    }

    #[test]
    fn one_identity_per_query() {
        assert_eq!(
            q(&[("login_id", "L1")]).unwrap().query,
            PeopleQuery::LoginId("L1".into())
        );
        assert_eq!(
            q(&[("psid", "P"), ("page_id", "100")]).unwrap().query,
            PeopleQuery::Psid {
                page_id: "100".into(),
                psid: "P".into()
            }
        );
        let x = q(&[("external_id", "u-1"), ("page_id", "100")]).unwrap();
        assert_eq!(x.query, PeopleQuery::ExternalId("u-1".into()));
        assert_eq!(x.page_id.as_deref(), Some("100"));
        for bad in [
            &[][..],
            &[("page_id", "100")],
            &[("psid", "P")],
            &[("login_id", "L"), ("user_ref", "U")],
            &[("login_id", "L"), ("login_id", "M")],
            &[("login_id", "")],
            &[("external_id", "a#b")],
            &[("user_ref", "U"), ("page_id", "x")],
            &[("nickname", "x")],
        ] {
            assert!(q(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn linked_tags_name_opt_in_keys() {
        assert_eq!(
            linked_key("login_id:L1").as_deref(),
            Some("OPTIN#login_id#L1")
        );
        assert_eq!(
            linked_key("user_ref:U:2").as_deref(),
            Some("OPTIN#user_ref#U:2")
        );
        assert_eq!(linked_key("psid:1"), None);
        assert_eq!(linked_key("nothing"), None);
    }
}
