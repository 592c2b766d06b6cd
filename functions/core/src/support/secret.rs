//! Secrets: values that must never reach a log, a response or a panic message.
//!
//! The deployed service reads one JSON secret (AWS Secrets Manager); locally it comes from the
//! environment or a file. Its shape is [`Secrets`]; see the README for the documented JSON.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;

/// A secret string. `Debug` and `Display` print a fixed placeholder, never the value.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that needs it (an HMAC key, an HTTP query parameter).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time equality with an untrusted candidate.
    pub fn matches(&self, candidate: &str) -> bool {
        !self.0.is_empty() && bool::from(self.0.as_bytes().ct_eq(candidate.as_bytes()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One Meta app whose webhooks we accept (multi-app deployments list several).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppCredentials {
    pub app_id: String,
    pub app_secret: Secret,
    /// App Dashboard > Settings > Advanced > Client token; needed only for login_id derivation.
    #[serde(default)]
    pub client_token: Secret,
}

/// The whole secret document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    pub apps: Vec<AppCredentials>,
    pub verify_token: Secret,
    /// Page id -> Page access token.
    #[serde(default)]
    pub page_tokens: BTreeMap<String, Secret>,
    /// Instagram user id -> Instagram user access token, for the Instagram accounts whose
    /// config names that id in `instagram_login_user_id` (Instagram API with Instagram Login:
    /// `graph.instagram.com/<id>/messages`). Kept beside the Page tokens: the same secret, the
    /// same rotation, never logged.
    #[serde(default)]
    pub instagram_tokens: BTreeMap<String, Secret>,
    /// Key id -> base64 32-byte key, for signed `ref` values.
    #[serde(default)]
    pub ref_keys: BTreeMap<String, Secret>,
    /// Key id -> base64 32-byte key, shared with the business's backend: it signs the
    /// `external_id` it hands the login page (the same format as signed refs). A separate set,
    /// so a key that can mint plugin refs cannot vouch for a business's user id.
    #[serde(default)]
    pub external_id_keys: BTreeMap<String, Secret>,
    /// Page id -> the app id whose secret signs `appsecret_proof` for that Page's token. Needed
    /// only with several apps and proofs on, when the app that delivered an opt-in is not the
    /// one that owns the token.
    #[serde(default)]
    pub page_apps: BTreeMap<String, String>,
}

impl Secrets {
    /// Parses and validates the document. Errors name a field path and the expected type, never
    /// a value: serde's own messages quote what they found (`invalid type: string "..."`), and
    /// the secrets source logs a failed refresh every time it retries.
    pub fn from_json(text: &str) -> Result<Self, SecretsError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| SecretsError::Invalid(syntax_error(&e)))?;
        check_object(&value, "", DOCUMENT).map_err(SecretsError::Invalid)?;
        // The shape was checked above, so this should not fail; if the struct and DOCUMENT ever
        // drift apart, say so without serde's message, which could quote a value.
        let s: Secrets = serde_json::from_value(value).map_err(|_| {
            SecretsError::Invalid("the document does not match the expected shape".into())
        })?;
        s.validate()?;
        Ok(s)
    }

    /// A document that cannot verify any webhook is refused at load, not at the first request.
    pub fn validate(&self) -> Result<(), SecretsError> {
        if self.apps.is_empty() || self.apps.iter().any(|a| a.app_secret.is_empty()) {
            return Err(SecretsError::Invalid(
                "at least one app with a non-empty app_secret is required".into(),
            ));
        }
        if self.verify_token.is_empty() {
            return Err(SecretsError::Invalid("verify_token is empty".into()));
        }
        Ok(())
    }

    pub fn app_secrets(&self) -> impl Iterator<Item = &Secret> {
        self.apps.iter().map(|a| &a.app_secret)
    }

    /// The app whose secret proves calls with `page_id`'s token: the one `page_apps` names,
    /// else the app that delivered the event (`delivered_by`), else the only app. `None` when
    /// that cannot be told (several apps, no hint): an operator must say.
    pub fn proof_app(&self, page_id: &str, delivered_by: Option<&str>) -> Option<&AppCredentials> {
        let by_id = |id: &str| self.apps.iter().find(|a| a.app_id == id);
        if let Some(id) = self.page_apps.get(page_id) {
            return by_id(id);
        }
        if let Some(app) = delivered_by.and_then(by_id) {
            return Some(app);
        }
        match self.apps.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }
}

/// The expected shape of the secret document, as data: [`Secrets`] and [`AppCredentials`] field
/// by field. Unknown fields are ignored, as serde does.
const DOCUMENT: &[Field] = &[
    Field::required("apps", Shape::ObjectList(APP)),
    Field::required("verify_token", Shape::Str),
    Field::optional("page_tokens", Shape::StrMap),
    Field::optional("instagram_tokens", Shape::StrMap),
    Field::optional("ref_keys", Shape::StrMap),
    Field::optional("external_id_keys", Shape::StrMap),
    Field::optional("page_apps", Shape::StrMap),
];

const APP: &[Field] = &[
    Field::required("app_id", Shape::Str),
    Field::required("app_secret", Shape::Str),
    Field::optional("client_token", Shape::Str),
];

struct Field {
    name: &'static str,
    shape: Shape,
    required: bool,
}

impl Field {
    const fn required(name: &'static str, shape: Shape) -> Field {
        Field {
            name,
            shape,
            required: true,
        }
    }

    const fn optional(name: &'static str, shape: Shape) -> Field {
        Field {
            name,
            shape,
            required: false,
        }
    }
}

enum Shape {
    Str,
    /// An object whose values are all strings (keys are ids, values secrets).
    StrMap,
    /// An array of objects with these fields.
    ObjectList(&'static [Field]),
}

impl Shape {
    fn expected(&self) -> &'static str {
        match self {
            Shape::Str => "a string",
            Shape::StrMap => "an object of strings",
            Shape::ObjectList(_) => "an array of objects",
        }
    }
}

/// What a JSON value is, without what it holds.
fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong(path: &str, expected: &str, found: &Value) -> String {
    let path = if path.is_empty() { "document" } else { path };
    format!("{path}: expected {expected}, found {}", kind_of(found))
}

fn check_object(v: &Value, path: &str, fields: &[Field]) -> Result<(), String> {
    let Value::Object(map) = v else {
        return Err(wrong(path, "an object", v));
    };
    for field in fields {
        let at = if path.is_empty() {
            field.name.to_string()
        } else {
            format!("{path}.{}", field.name)
        };
        match map.get(field.name) {
            Some(value) => check(value, &at, &field.shape)?,
            None if field.required => {
                return Err(format!(
                    "{at}: missing, expected {}",
                    field.shape.expected()
                ))
            }
            None => {}
        }
    }
    Ok(())
}

fn check(v: &Value, path: &str, shape: &Shape) -> Result<(), String> {
    match (shape, v) {
        (Shape::Str, Value::String(_)) => Ok(()),
        (Shape::StrMap, Value::Object(map)) => match map.values().find(|v| !v.is_string()) {
            // Keys are not named: a misplaced secret may sit in a key as well as a value.
            Some(bad) => Err(format!(
                "{path}: every value must be a string, one is {}",
                kind_of(bad)
            )),
            None => Ok(()),
        },
        (Shape::ObjectList(fields), Value::Array(items)) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_object(item, &format!("{path}[{i}]"), fields)),
        _ => Err(wrong(path, shape.expected(), v)),
    }
}

/// serde_json's syntax messages are fixed texts today, but this error is logged on every
/// refresh, so only the category and position leave: never a message that could quote input.
fn syntax_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => "the document ends early",
        Category::Syntax => "the document is not valid JSON",
        Category::Io | Category::Data => "the document could not be read as JSON",
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretsError {
    /// The message never contains secret values: only field paths, expected types and
    /// positions (see [`Secrets::from_json`]).
    #[error("secrets document invalid: {0}")]
    Invalid(String),
    #[error("secrets unavailable: {0}")]
    Unavailable(String),
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_proof_app_is_named_delivered_or_the_only_one() {
        let app = |id: &str| AppCredentials {
            app_id: id.into(),
            app_secret: Secret::new(format!("secret-{id}")),
            client_token: Secret::default(),
        };
        let mut s = Secrets {
            apps: vec![app("1")],
            ..Secrets::default()
        };
        let id = |s: &Secrets, page: &str, by: Option<&str>| {
            s.proof_app(page, by).map(|a| a.app_id.clone())
        };
        assert_eq!(id(&s, "P", None).as_deref(), Some("1"), "the only app");
        s.apps.push(app("2"));
        assert_eq!(id(&s, "P", None), None, "two apps, no hint: unknown");
        assert_eq!(
            id(&s, "P", Some("2")).as_deref(),
            Some("2"),
            "the delivering app"
        );
        assert_eq!(id(&s, "P", Some("9")), None, "an app we do not hold");
        s.page_apps.insert("P".into(), "1".into());
        assert_eq!(id(&s, "P", Some("2")).as_deref(), Some("1"), "named wins");
    }
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret([redacted]) [redacted]");
        let doc = Secrets {
            apps: vec![AppCredentials {
                app_id: "1".into(),
                app_secret: s,
                client_token: Secret::new("ct"),
            }],
            verify_token: Secret::new("vt"),
            ..Default::default()
        };
        let dbg = format!("{doc:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("\"vt\"") && !dbg.contains("ct\""));
    }

    #[test]
    fn matches_is_exact() {
        let s = Secret::new("abc");
        assert!(s.matches("abc"));
        assert!(!s.matches("abcd"));
        assert!(!s.matches(""));
        assert!(
            !Secret::new("").matches(""),
            "an empty secret matches nothing"
        );
    }

    const MARKER: &str = "MARKER-9f2c";
    /// For number positions: a numeric secret (a verify token can be digits only).
    const NUMBER_MARKER: &str = "918273645";

    /// A valid document with the marker in every string value it has.
    fn marked() -> Value {
        serde_json::json!({
            "apps": [{"app_id": format!("{MARKER}-id"), "app_secret": format!("{MARKER}-secret"),
                      "client_token": format!("{MARKER}-ct")}],
            "verify_token": format!("{MARKER}-vt"),
            "page_tokens": {"10": format!("{MARKER}-pt")},
            "instagram_tokens": {"178": format!("{MARKER}-igt")},
            "ref_keys": {"k1": format!("{MARKER}-rk")},
            "external_id_keys": {"k1": format!("{MARKER}-xk")}
        })
    }

    /// Every place a secret value can sit, as a JSON pointer into [`marked`].
    const POSITIONS: &[&str] = &[
        "/apps/0/app_id",
        "/apps/0/app_secret",
        "/apps/0/client_token",
        "/verify_token",
        "/page_tokens/10",
        "/instagram_tokens/178",
        "/ref_keys/k1",
        "/external_id_keys/k1",
    ];

    /// Values of the wrong type, each carrying the marker somewhere serde would quote it.
    fn wrong_values() -> Vec<Value> {
        let number: u64 = NUMBER_MARKER.parse().expect("digits");
        vec![
            serde_json::json!(number),
            serde_json::json!([MARKER]),
            serde_json::json!({ "value": MARKER }),
            serde_json::json!({ MARKER: MARKER }),
            serde_json::json!([[{ "deeper": MARKER }]]),
            serde_json::json!(true),
            Value::Null,
        ]
    }

    fn assert_no_marker(doc: &str, err: &SecretsError) {
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(
                !shown.contains(MARKER) && !shown.contains(NUMBER_MARKER),
                "{shown:?} echoes a value of {doc}"
            );
        }
    }

    fn malformed_documents() -> Vec<String> {
        let mut docs = Vec::new();
        // A wrong type in every field position.
        for pos in POSITIONS {
            for bad in wrong_values() {
                let mut doc = marked();
                *doc.pointer_mut(pos).expect("position") = bad;
                docs.push(doc.to_string());
            }
        }
        // A marker string where a container belongs.
        for pos in [
            "/apps",
            "/apps/0",
            "/page_tokens",
            "/instagram_tokens",
            "/ref_keys",
            "/external_id_keys",
        ] {
            let mut doc = marked();
            *doc.pointer_mut(pos).expect("position") = serde_json::json!(MARKER);
            docs.push(doc.to_string());
        }
        // Missing required fields, the marker everywhere else.
        for pos in [
            "/apps/0/app_id",
            "/apps/0/app_secret",
            "/verify_token",
            "/apps",
        ] {
            let mut doc = marked();
            let (parent, name) = pos.rsplit_once('/').expect("pointer");
            let parent = if parent.is_empty() { "" } else { parent };
            doc.pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .expect("object")
                .remove(name);
            docs.push(doc.to_string());
        }
        // Extra nesting: the whole document one level down, or apps as an object.
        docs.push(serde_json::json!({ "secrets": marked() }).to_string());
        docs.push(serde_json::json!([marked()]).to_string());
        let mut doc = marked();
        doc["apps"] = serde_json::json!({ "0": marked()["apps"][0].clone() });
        docs.push(doc.to_string());
        // Not a document at all.
        docs.push(serde_json::json!(MARKER).to_string());
        // Invalid JSON with the marker inside a string, at and around the fault.
        let text = marked().to_string();
        docs.push(text[..text.len() / 2].to_string());
        docs.push(text.replace(&format!("\"{MARKER}-vt\""), &format!("\"{MARKER}-vt")));
        docs.push(text.replace(&format!("{MARKER}-vt"), &format!("{MARKER}\\q-vt")));
        docs.push(text.replace(&format!("{MARKER}-vt"), &format!("{MARKER}\u{1}-vt")));
        docs.push(text.replace(&format!("\"{MARKER}-vt\""), &format!("{MARKER}-vt")));
        docs.push(format!("{text} {MARKER}"));
        docs.push(text.replacen(':', &format!(":{MARKER}"), 1));
        // Valid shape, empty secrets: refused by validation.
        let mut doc = marked();
        doc["apps"][0]["app_secret"] = serde_json::json!("");
        docs.push(doc.to_string());
        docs
    }

    #[test]
    fn a_malformed_document_never_echoes_its_values() {
        let valid = marked().to_string();
        Secrets::from_json(&valid).expect("the marked document itself is valid");
        let docs = malformed_documents();
        assert!(docs.len() > 50, "{}", docs.len());
        for doc in &docs {
            let err = Secrets::from_json(doc).expect_err(doc);
            assert_no_marker(doc, &err);
        }
    }

    #[test]
    fn errors_name_the_path_and_the_expected_type() {
        let cases: &[(&str, &str)] = &[
            (r#""x""#, "document: expected an object, found a string"),
            (
                r#"{"verify_token":"v"}"#,
                "apps: missing, expected an array of objects",
            ),
            (
                r#"{"apps":{},"verify_token":"v"}"#,
                "apps: expected an array of objects, found an object",
            ),
            (
                r#"{"apps":["s"],"verify_token":"v"}"#,
                "apps[0]: expected an object, found a string",
            ),
            (
                r#"{"apps":[{"app_id":"1","app_secret":"s"},{"app_id":"2","app_secret":7}],"verify_token":"v"}"#,
                "apps[1].app_secret: expected a string, found a number",
            ),
            (
                r#"{"apps":[{"app_secret":"s"}],"verify_token":"v"}"#,
                "apps[0].app_id: missing, expected a string",
            ),
            (
                r#"{"apps":[{"app_id":"1","app_secret":"s","client_token":null}],"verify_token":"v"}"#,
                "apps[0].client_token: expected a string, found null",
            ),
            (
                r#"{"apps":[{"app_id":"1","app_secret":"s"}]}"#,
                "verify_token: missing, expected a string",
            ),
            (
                r#"{"apps":[{"app_id":"1","app_secret":"s"}],"verify_token":"v","page_tokens":{"1":"t","2":[]}}"#,
                "page_tokens: every value must be a string, one is an array",
            ),
            (
                r#"{"apps":[{"app_id":"1","app_secret":"s"}],"verify_token":"v","ref_keys":"k"}"#,
                "ref_keys: expected an object of strings, found a string",
            ),
            (
                r#"{"apps":[{"app_id":"1","#,
                "the document ends early (line 1, column 23)",
            ),
            (
                r#"{"apps" "x"}"#,
                "the document is not valid JSON (line 1, column 9)",
            ),
        ];
        for (doc, want) in cases {
            let got = Secrets::from_json(doc).expect_err(doc).to_string();
            assert_eq!(got, format!("secrets document invalid: {want}"), "{doc}");
        }
        // Unknown fields stay ignored, as before.
        let ok = r#"{"apps":[{"app_id":"1","app_secret":"s","note":1}],"verify_token":"v","x":[]}"#;
        assert!(Secrets::from_json(ok).is_ok());
    }

    #[test]
    fn parses_and_validates_the_document() {
        let ok = r#"{"apps":[{"app_id":"1","app_secret":"s"}],"verify_token":"v",
                     "page_tokens":{"10":"t"}}"#;
        let s = Secrets::from_json(ok).unwrap();
        assert_eq!(s.page_tokens["10"].expose(), "t");
        assert!(s.instagram_tokens.is_empty(), "optional: absent is none");
        let ig = r#"{"apps":[{"app_id":"1","app_secret":"s"}],"verify_token":"v",
                     "instagram_tokens":{"178":"IGt"}}"#;
        let s = Secrets::from_json(ig).unwrap();
        assert_eq!(s.instagram_tokens["178"].expose(), "IGt");
        assert!(Secrets::from_json(r#"{"apps":[],"verify_token":"v"}"#).is_err());
        let err =
            Secrets::from_json(r#"{"apps":[{"app_id":"1","app_secret":"s3cr3t"}]}"#).unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"));
    }
}
