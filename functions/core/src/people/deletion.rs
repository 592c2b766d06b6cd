//! The person's data on request: Meta's data-deletion callback.
//!
//! A person removes the app in their Facebook settings and asks for their data to be deleted;
//! Meta POSTs `signed_request=<…>` (form-encoded) to the callback URL registered in the app
//! dashboard. We verify it with the app secrets ([`super::signed_request`]), delete everything
//! stored for that app-scoped user, and answer `{url, confirmation_code}`: the url shows the
//! request's status to the person.
//!
//! # What is found, and how
//! - Opt-ins by `login_id`: derived from the ASID for every Page this deployment serves (the
//!   secret's `page_tokens` and the default Page), when the app's `client_token` is in the
//!   secret (Meta's derivation, [`crate::login::login_id`]); and through the ASID's index
//!   items (`IDENT#asid#<app>#<asid>`), written by the login callback: found even without the
//!   derivation, and after a client token rotation.
//! - People: the PSID each opt-in linked, on its Page; through them, every other identifier
//!   they linked (a checkbox `user_ref`) and their Send-to-Messenger opt-in.
//! - Everything keyed under those: the person and their marketing tokens, each opt-in (with
//!   its history), the identity index items (`external_id`, ASID), and quarantined events that
//!   name one of the ids.
//!
//! Everything found is deleted, not anonymized: no record keeps an id of the person. The
//! receipt keeps only the code, the status, times and a count.
//!
//! Not reached: a first-message job still on the outbound queue or a deadline schedule (both
//! name the opt-in key and find nothing: the sender and the deadline check skip a missing
//! opt-in), quarantined events beyond the newest [`QUARANTINE_SCAN`] (they expire with their
//! TTL), and CloudWatch logs (ids are logged hashed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::linked_key;
use super::signed_request::{self, Refused};
use crate::lifecycle::optin::{optin_key, Optin};
use crate::login::login_id::derive_login_id;
use crate::ports::identity::{DeletionReceipt, DeletionStatus, IndexedId};
use crate::ports::{Clock, PortError, SecretSource, Table};
use crate::support::privacy::hash_id;
use crate::support::secret::{AppCredentials, Secrets};
use crate::webhook::{Identity, IdentityKind};

/// Larger callback bodies are refused (Meta's are a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 8 * 1024;
/// Quarantined records searched for the person's ids at most (oldest first).
pub const QUARANTINE_SCAN: usize = 1_000;
/// Rounds of "opt-ins -> people -> their other opt-ins": everything one hop away.
const ROUNDS: usize = 3;
/// Opt-ins and people one request may reach: far beyond one person, bounded anyway.
const MAX_REACH: usize = 200;

/// Settings of the callback.
#[derive(Debug, Clone, Default)]
pub struct DeletionConfig {
    /// A Page served here besides the secret's `page_tokens` (the login function's default).
    pub default_page_id: String,
    /// Where the status page is reached (`https://example.org`, no trailing path); unset: the
    /// request's own `Host` over https (a Lambda Function URL).
    pub public_base_url: Option<String>,
}

/// What `POST /data-deletion` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeletionAnswer {
    /// Done: the status is at the url with this code.
    Accepted {
        confirmation_code: String,
    },
    /// No `signed_request` field in a form body.
    BadRequest(&'static str),
    /// The signed request is malformed, forged or expired.
    Refused(Refused),
    TooLarge,
    /// Secrets or the table unavailable: Meta (or the person) may ask again.
    Unavailable,
}

/// What `GET /data-deletion/status` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusAnswer {
    Found(DeletionReceipt),
    NotFound,
    BadRequest(&'static str),
    Unavailable,
}

pub struct DataDeletion {
    table: Table,
    secrets: Arc<dyn SecretSource>,
    clock: Arc<dyn Clock>,
    config: DeletionConfig,
}

impl DataDeletion {
    pub fn new(
        table: Table,
        secrets: Arc<dyn SecretSource>,
        clock: Arc<dyn Clock>,
        config: DeletionConfig,
    ) -> Self {
        DataDeletion {
            table,
            secrets,
            clock,
            config,
        }
    }

    pub fn config(&self) -> &DeletionConfig {
        &self.config
    }

    /// The callback: `body` is the form-encoded POST body.
    pub async fn request(&self, body: &[u8]) -> DeletionAnswer {
        if body.len() > MAX_BODY_BYTES {
            return DeletionAnswer::TooLarge;
        }
        let Some(signed) = form_value(body, "signed_request") else {
            return DeletionAnswer::BadRequest("expected a form body with a signed_request field");
        };
        let Ok(secrets) = self.secrets.secrets().await else {
            return DeletionAnswer::Unavailable;
        };
        let now = self.clock.now_ms();
        let verified = match signed_request::verify(&signed, &secrets, now.div_euclid(1000)) {
            Ok(v) => v,
            Err(why) => {
                tracing::warn!(refused = ?why, "data-deletion request refused");
                return DeletionAnswer::Refused(why);
            }
        };
        let Some(app) = secrets.apps.iter().find(|a| a.app_id == verified.app_id) else {
            return DeletionAnswer::Unavailable;
        };
        let code = confirmation_code(app, &verified.user_id, verified.issued_at_secs);
        let user = hash_id(&verified.user_id);
        let mut receipt = DeletionReceipt {
            code: code.clone(),
            status: DeletionStatus::InProgress,
            requested_at_ms: now,
            completed_at_ms: None,
            items_deleted: 0,
        };
        if self.table.identities.put_receipt(&receipt).await.is_err() {
            return DeletionAnswer::Unavailable;
        }
        match self.erase(app, &verified.user_id, &secrets).await {
            Ok(items) => {
                receipt.status = DeletionStatus::Completed;
                receipt.completed_at_ms = Some(self.clock.now_ms());
                receipt.items_deleted = items;
                if self.table.identities.put_receipt(&receipt).await.is_err() {
                    // Everything is deleted; only the status page lags. Meta may ask again.
                    return DeletionAnswer::Unavailable;
                }
                tracing::info!(user = %user, app_id = %app.app_id, items, "data deleted on request");
                DeletionAnswer::Accepted {
                    confirmation_code: code,
                }
            }
            Err(e) => {
                tracing::error!(user = %user, error = %e, "data deletion incomplete; it runs again when asked again");
                DeletionAnswer::Unavailable
            }
        }
    }

    /// The status page's data.
    pub async fn status(&self, code: &str) -> StatusAnswer {
        if code.len() != 32 || !code.bytes().all(|b| b.is_ascii_hexdigit()) {
            return StatusAnswer::BadRequest("code must be the confirmation code (32 hex digits)");
        }
        match self
            .table
            .identities
            .get_receipt(&code.to_ascii_lowercase())
            .await
        {
            Ok(Some(r)) => StatusAnswer::Found(r),
            Ok(None) => StatusAnswer::NotFound,
            Err(_) => StatusAnswer::Unavailable,
        }
    }

    /// Deletes everything stored for `asid` of `app`: how many items.
    pub async fn erase(
        &self,
        app: &AppCredentials,
        asid: &str,
        secrets: &Secrets,
    ) -> Result<u32, PortError> {
        let ids = self.table.identities.as_ref();
        let mut reach = Reach::default();
        if !app.client_token.is_empty() {
            for page in served_pages(secrets, &self.config.default_page_id) {
                let login_id = derive_login_id(app.client_token.expose(), asid, &app.app_id, &page);
                reach.want_optin(optin_key(
                    &Identity::new(IdentityKind::LoginId, login_id),
                    "",
                ));
            }
        }
        let by_asid = IndexedId::Asid {
            app_id: app.app_id.clone(),
            asid: asid.to_string(),
        };
        let asid_pointers = ids.pointers(&by_asid).await?;
        for p in &asid_pointers {
            reach.want_optin(p.optin_key.clone());
        }
        for _ in 0..ROUNDS {
            for key in std::mem::take(&mut reach.wanted_optins) {
                if let Some(o) = self.table.optins.get_optin(&key).await? {
                    if let Some(psid) = &o.psid {
                        reach.want_person(&o.page_id, psid);
                    }
                    reach.optins.insert(key, o);
                }
            }
            for (page_id, psid) in std::mem::take(&mut reach.wanted_people) {
                reach.want_optin(optin_key(
                    &Identity::new(IdentityKind::Psid, &psid),
                    &page_id,
                ));
                if let Some(person) = self.table.people.get_person(&page_id, &psid).await? {
                    for key in person.linked.iter().filter_map(|t| linked_key(t)) {
                        reach.want_optin(key);
                    }
                }
                reach.people.insert((page_id, psid));
            }
        }

        let mut deleted: u32 = 0;
        let mut names: BTreeSet<String> = BTreeSet::from([asid.to_string()]);
        for (key, o) in &reach.optins {
            // The index item first: an opt-in deleted before its pointer would leave the
            // pointer unreachable by a second request.
            if let Some(x) = &o.external_id {
                ids.delete_pointer(&IndexedId::ExternalId(x.clone()), key)
                    .await?;
                deleted += 1;
            }
            names.insert(o.recipient.id.clone());
            names.extend(o.psid.clone());
            if ids.delete_optin(key).await? {
                deleted += 1;
            }
        }
        for (page_id, psid) in &reach.people {
            names.insert(psid.clone());
            let n = ids.delete_person(page_id, psid).await?;
            deleted = deleted.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        }
        for p in &asid_pointers {
            ids.delete_pointer(&by_asid, &p.optin_key).await?;
            deleted += 1;
        }
        let quarantine = self
            .table
            .quarantine
            .list_quarantined(QUARANTINE_SCAN)
            .await?;
        for record in quarantine {
            if names.iter().any(|n| names_id(&record.event_json, n)) {
                self.table.quarantine.delete_quarantined(&record.id).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

/// What a deletion reached.
#[derive(Default)]
struct Reach {
    optins: BTreeMap<String, Optin>,
    people: BTreeSet<(String, String)>,
    wanted_optins: BTreeSet<String>,
    wanted_people: BTreeSet<(String, String)>,
    asked: BTreeSet<String>,
}

impl Reach {
    fn want_optin(&mut self, key: String) {
        if self.asked.len() < MAX_REACH && self.asked.insert(key.clone()) {
            self.wanted_optins.insert(key);
        }
    }

    fn want_person(&mut self, page_id: &str, psid: &str) {
        let k = (page_id.to_string(), psid.to_string());
        if !self.people.contains(&k) && self.people.len() < MAX_REACH {
            self.wanted_people.insert(k);
        }
    }
}

/// The Pages this deployment serves: every Page with a token, and the default one.
fn served_pages(secrets: &Secrets, default_page_id: &str) -> BTreeSet<String> {
    let mut pages: BTreeSet<String> = secrets.page_tokens.keys().cloned().collect();
    if !default_page_id.is_empty() {
        pages.insert(default_page_id.to_string());
    }
    pages
}

/// Whether a stored JSON text names `id`: as a JSON string, or as a bare number (Meta has
/// sent numeric ids). Ids shorter than 5 characters are not searched: they match anything.
fn names_id(json: &str, id: &str) -> bool {
    if id.len() < 5 {
        return false;
    }
    if json.contains(&format!("\"{id}\"")) {
        return true;
    }
    let bare = format!(":{id}");
    json.match_indices(&bare).any(|(at, m)| {
        !json[at + m.len()..]
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
    })
}

/// 32 hex chars of HMAC-SHA256 under the app secret over the user and the request's time: the
/// same request asked again gets the same code, and nobody without the secret can compute the
/// code of another person's request.
pub fn confirmation_code(app: &AppCredentials, user_id: &str, issued_at_secs: i64) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(app.app_secret.expose().as_bytes())
    else {
        // HMAC takes a key of any length; kept total rather than panicking.
        return hash_id(user_id).repeat(3)[..32].to_string();
    };
    mac.update(b"login-connect/data-deletion/v1\0");
    mac.update(user_id.as_bytes());
    mac.update(b"\0");
    mac.update(issued_at_secs.to_string().as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// The value of `name` in a form-encoded body (`a=1&b=2`, `+` and `%XX` decoded).
pub fn form_value(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (percent_decode(k)? == name)
            .then(|| percent_decode(v))
            .flatten()
            .filter(|v| !v.is_empty())
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::secret::Secret;

    #[test]
    fn form_values() {
        assert_eq!(
            form_value(b"a=1&signed_request=x.y%3D&b=2", "signed_request").as_deref(),
            Some("x.y=")
        );
        assert_eq!(form_value(b"signed_request=", "signed_request"), None);
        assert_eq!(form_value(b"other=1", "signed_request"), None);
        assert_eq!(form_value(b"signed_request=%zz", "signed_request"), None);
        assert_eq!(form_value(b"signed_request=%4", "signed_request"), None);
        assert_eq!(form_value(&[0xff, b'='], "signed_request"), None);
        assert_eq!(form_value(b"a+b=c+d", "a b").as_deref(), Some("c d"));
    }

    #[test]
    fn ids_are_found_whole() {
        let json = r#"{"sender":{"id":"123456"},"n":1234567,"t":98765}"#;
        assert!(names_id(json, "123456"));
        assert!(names_id(json, "98765"));
        assert!(!names_id(json, "12345"));
        assert!(!names_id(json, "1234"), "too short to search");
    }

    #[test]
    fn codes_are_keyed_and_stable() {
        let app = |s: &str| AppCredentials {
            app_id: "1".into(),
            app_secret: Secret::new(s),
            client_token: Secret::default(),
        };
        let a = confirmation_code(&app("s1"), "42", 100);
        assert_eq!(a, confirmation_code(&app("s1"), "42", 100));
        assert_eq!(a.len(), 32);
        assert_ne!(a, confirmation_code(&app("s2"), "42", 100));
        assert_ne!(a, confirmation_code(&app("s1"), "43", 100));
        assert_ne!(a, confirmation_code(&app("s1"), "42", 101));
    }
}
