//! Helpers shared by the integration tests that came after `http_api.rs`:
//! a simulator with two Pages and one HTTP client, and Graph-error asserts.

#![allow(dead_code)]

use graph_sim::{SimConfig, SimHandle};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

pub const PAGE_A: &str = "1001";
pub const TOKEN_A: &str = "PAGE_TOKEN_A";
pub const PAGE_B: &str = "1002";
pub const TOKEN_B: &str = "PAGE_TOKEN_B";

/// A simulator plus one HTTP client for the whole test (proxies from the
/// environment are ignored).
pub struct Sim {
    pub h: SimHandle,
    pub client: reqwest::Client,
}

impl std::ops::Deref for Sim {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.h
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub async fn sim() -> Sim {
    sim_with(SimConfig::default()).await
}

pub async fn sim_with(config: SimConfig) -> Sim {
    Sim {
        h: graph_sim::start(config.with_page(PAGE_A, TOKEN_A).with_page(PAGE_B, TOKEN_B))
            .await
            .unwrap(),
        client: client(),
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn err(&self) -> (i64, Option<i64>) {
        let e = &self.body["error"];
        assert!(
            e.is_object(),
            "expected an error, got {} {}",
            self.status,
            self.body
        );
        (e["code"].as_i64().unwrap(), e["error_subcode"].as_i64())
    }

    #[track_caller]
    pub fn assert_err(&self, code: i64, subcode: Option<i64>) {
        assert_eq!(self.status, 400, "{}", self.body);
        assert_eq!(self.err(), (code, subcode), "{}", self.body);
        assert_eq!(self.body["error"]["type"], "OAuthException");
        assert!(self.body["error"]["fbtrace_id"].is_string());
    }

    /// The error message, for rules that share a code.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }

    #[track_caller]
    pub fn assert_ok(&self) {
        assert_eq!(self.status, 200, "{}", self.body);
        assert!(
            self.body["message_id"]
                .as_str()
                .is_some_and(|m| m.starts_with("m_")),
            "{}",
            self.body
        );
    }
}

pub async fn post_raw(sim: &Sim, path_and_query: &str, body: String) -> Resp {
    let r = sim
        .client
        .post(format!("{}{}", sim.base_url(), path_and_query))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    to_resp(r).await
}

pub async fn to_resp(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.json().await.unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
    }
}

pub async fn post(sim: &Sim, path_and_query: &str, body: &Value) -> Resp {
    post_raw(sim, path_and_query, body.to_string()).await
}

pub async fn get(sim: &Sim, path_and_query: &str) -> Resp {
    let r = sim
        .client
        .get(format!("{}{}", sim.base_url(), path_and_query))
        .send()
        .await
        .unwrap();
    to_resp(r).await
}

/// `POST /v25.0/me/messages?access_token=TOKEN` (tokens here are URL-safe).
pub async fn send(sim: &Sim, token: &str, body: &Value) -> Resp {
    post(
        sim,
        &format!("/v25.0/me/messages?access_token={token}"),
        body,
    )
    .await
}

pub fn text_to(recipient: Value, messaging_type: &str) -> Value {
    json!({"messaging_type": messaging_type, "recipient": recipient, "message": {"text": "Welcome"}})
}

pub fn login(id: &str) -> Value {
    text_to(json!({"login_id": id}), "UPDATE")
}

pub fn user_ref(r: &str) -> Value {
    text_to(json!({"user_ref": r}), "UPDATE")
}

pub fn psid(id: &str, messaging_type: &str) -> Value {
    text_to(json!({"id": id}), messaging_type)
}

pub fn tagged(recipient: Value, tag: &str) -> Value {
    json!({"messaging_type": "MESSAGE_TAG", "tag": tag, "recipient": recipient, "message": {"text": "x"}})
}

pub fn phone() -> Value {
    text_to(json!({"phone_number": "+15550100"}), "UPDATE")
}
