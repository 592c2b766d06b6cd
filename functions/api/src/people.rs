//! The people lookup (`GET /v1/people`) for the business's backend, mapped from
//! [`People`]'s answers. In AWS it is served on its own Function URL with `AuthType: AWS_IAM`:
//! the caller signs with SigV4 and Lambda refuses anything unsigned before this code runs;
//! this router does no authentication of its own (locally it is open on 127.0.0.1).
//!
//! # Answers
//! | status | body | when |
//! |---|---|---|
//! | 200 | `{"people":[…]}` | found (see `docs/people.md` for the entry shape) |
//! | 400 | `{"error":"bad_request","detail"}` | not exactly one of `external_id`, `psid` (+ `page_id`), `login_id`, `user_ref`; a bad `page_id` |
//! | 404 | `{"error":"not_found"}` | nobody under that id (or not on that Page) |
//! | 405 | `{"error":"method_not_allowed"}` | not `GET` |
//! | 503 | `{"error":"unavailable","detail"}` | the table could not be read: retry |
//!
//! Answers are `no-store`: they hold a person's identities.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use lc_core::people::{Lookup, LookupAnswer, People};

pub const PEOPLE_PATH: &str = "/v1/people";

pub const BODY_NOT_FOUND: &str = "{\"error\":\"not_found\"}";
pub const BODY_METHOD: &str = "{\"error\":\"method_not_allowed\"}";
pub const BODY_UNAVAILABLE: &str =
    "{\"error\":\"unavailable\",\"detail\":\"temporarily unavailable, please retry\"}";

pub(crate) fn routes(people: Arc<People>) -> Router {
    let route = || get(lookup).fallback(method_not_allowed);
    Router::new()
        .route(PEOPLE_PATH, route())
        .route("/v1/people/", route())
        .with_state(people)
}

async fn lookup(
    State(people): State<Arc<People>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let Ok(Query(pairs)) = query else {
        return bad_request("the query string could not be read");
    };
    let lookup = match Lookup::parse(&pairs) {
        Ok(l) => l,
        Err(why) => return bad_request(why),
    };
    // Which identity was asked for, never its value.
    let by = match &lookup.query {
        lc_core::people::PeopleQuery::ExternalId(_) => "external_id",
        lc_core::people::PeopleQuery::LoginId(_) => "login_id",
        lc_core::people::PeopleQuery::UserRef(_) => "user_ref",
        lc_core::people::PeopleQuery::Psid { .. } => "psid",
    };
    match people.lookup(&lookup).await {
        Ok(LookupAnswer::Found(v)) => {
            let n = v["people"].as_array().map_or(0, Vec::len);
            tracing::info!(outcome = "found", by, people = n, "people lookup");
            json(StatusCode::OK, v.to_string())
        }
        Ok(LookupAnswer::NotFound) => {
            tracing::info!(outcome = "not_found", by, "people lookup");
            json(StatusCode::NOT_FOUND, BODY_NOT_FOUND)
        }
        Err(e) => {
            tracing::error!(outcome = "unavailable", by, error = %e, "people lookup failed");
            json(StatusCode::SERVICE_UNAVAILABLE, BODY_UNAVAILABLE)
        }
    }
}

fn bad_request(why: &'static str) -> Response {
    tracing::info!(outcome = "bad_request", why, "people lookup");
    let body = serde_json::json!({"error": "bad_request", "detail": why});
    json(StatusCode::BAD_REQUEST, body.to_string())
}

async fn method_not_allowed() -> Response {
    let mut resp = json(StatusCode::METHOD_NOT_ALLOWED, BODY_METHOD);
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET"));
    resp
}

pub(crate) async fn not_found() -> Response {
    json(StatusCode::NOT_FOUND, BODY_NOT_FOUND)
}

/// Answers that must not be cached or sniffed (they carry a person's identities).
pub(crate) fn json(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "no-store"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body.into(),
    )
        .into_response()
}
