//! The axum router: Graph endpoints and `/_sim/` admin endpoints.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::config::{Faults, LostAnswerFaults};
use crate::state::{SendInput, SimResponse, State as SimState};
use crate::types::{
    ClockUpdate, ConfigUpdate, InstagramPersonRegistration, InstagramTokenRegistration,
    LoginConnect, LoginIdRegistration, LoseNextAnswers, NotificationTokenRegistration, OptOut,
    PageFeaturesUpdate, PageRegistration, PersonRegistration, UserRefRegistration,
    UserTokenRegistration,
};

pub(crate) type Shared = Arc<Mutex<SimState>>;

pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, SimState> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/{version}/{node}/messages", post(send))
        .route("/{version}/debug_token", get(debug_token))
        .route("/_sim/pages", post(admin_pages))
        .route("/_sim/login_ids", post(admin_login_ids))
        .route("/_sim/user_refs", post(admin_user_refs))
        .route("/_sim/people", post(admin_people))
        .route("/_sim/opt_outs", post(admin_opt_outs))
        .route("/_sim/tokens", post(admin_tokens))
        .route("/_sim/user_tokens", post(admin_user_tokens))
        .route("/_sim/login_connect", post(admin_login_connect))
        .route(
            "/_sim/page_features",
            get(admin_get_page_features).post(admin_page_features),
        )
        .route("/_sim/instagram_tokens", post(admin_instagram_tokens))
        .route("/_sim/instagram_people", post(admin_instagram_people))
        .route("/_sim/faults", get(admin_get_faults).post(admin_faults))
        .route(
            "/_sim/lose_next",
            get(admin_get_lose_next).post(admin_lose_next),
        )
        .route("/_sim/clock", get(admin_get_clock).post(admin_clock))
        .route("/_sim/config", get(admin_get_config).post(admin_config))
        .route("/_sim/messages", get(admin_messages))
        .route("/_sim/attempts", get(admin_attempts))
        .route("/_sim/stats", get(admin_stats))
        .route("/_sim/reset", post(admin_reset))
        .fallback(fallback)
        .with_state(shared)
}

fn to_response(r: SimResponse) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, Json(r.body)).into_response();
    for (name, value) in r.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

fn graph_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = json!({"error": {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "SimTraceStatic",
    }});
    (status, Json(body)).into_response()
}

fn query_map(uri: &Uri) -> Option<HashMap<String, String>> {
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .ok()
        .map(|q| q.0)
}

fn bad_query() -> Response {
    graph_error(
        StatusCode::BAD_REQUEST,
        100,
        "(#100) The query string is not valid",
    )
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

async fn add_latency(shared: &Shared) {
    let latency = lock(shared).faults().latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
}

async fn send(
    State(shared): State<Shared>,
    path: Result<Path<(String, String)>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(Path((version, node))) = path else {
        return graph_error(StatusCode::BAD_REQUEST, 2500, "Unknown path components");
    };
    // A bad query string is still an attempt (it got past routing): the
    // state answers it and logs it like any other refusal.
    let query = query_map(&uri);
    let token = query
        .as_ref()
        .and_then(|q| q.get("access_token").cloned())
        .or_else(|| bearer(&headers));
    let input = SendInput {
        version: &version,
        node: &node,
        token: token.as_deref(),
        appsecret_proof: query
            .as_ref()
            .and_then(|q| q.get("appsecret_proof"))
            .map(String::as_str),
        query_ok: query.is_some(),
        body: &body,
    };

    add_latency(&shared).await;
    // Decide and record under one lock, then hold the answer (if a timeout
    // was injected) without the lock, so other sends keep flowing.
    let plan = {
        let mut st = lock(&shared);
        let now = st.now_ms();
        st.process_send(now, &input)
    };
    if plan.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(plan.delay_ms)).await;
    }
    to_response(plan.response)
}

async fn debug_token(
    State(shared): State<Shared>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Ok(Path(version)) = path else {
        return graph_error(StatusCode::BAD_REQUEST, 2500, "Unknown path components");
    };
    let Some(query) = query_map(&uri) else {
        return bad_query();
    };
    let access_token = query
        .get("access_token")
        .cloned()
        .or_else(|| bearer(&headers));
    add_latency(&shared).await;
    let mut st = lock(&shared);
    let now = st.now_ms();
    let (status, body) = st.debug_token(
        now,
        &version,
        access_token.as_deref(),
        query.get("input_token").map(String::as_str),
    );
    to_response(SimResponse {
        status,
        body,
        headers: Vec::new(),
    })
}

async fn fallback(uri: Uri) -> Response {
    graph_error(
        StatusCode::BAD_REQUEST,
        2500,
        &format!("Unknown path components: {}", uri.path()),
    )
}

// ----- admin ----------------------------------------------------------------

fn admin_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid body: {e}"))
}

fn ok() -> Response {
    Json(json!({"ok": true})).into_response()
}

/// Parses the body and applies `f` to the locked state.
fn admin<T: DeserializeOwned>(
    shared: &Shared,
    body: &Bytes,
    f: impl FnOnce(&mut SimState, T) -> Result<Value, String>,
) -> Response {
    match parse::<T>(body).and_then(|t| f(&mut lock(shared), t)) {
        Ok(v) => Json(v).into_response(),
        Err(e) => admin_error(StatusCode::BAD_REQUEST, e),
    }
}

fn ok_value() -> Result<Value, String> {
    Ok(json!({"ok": true}))
}

async fn admin_pages(State(s): State<Shared>, body: Bytes) -> Response {
    admin(&s, &body, |st, r: PageRegistration| {
        st.register_page(&r);
        ok_value()
    })
}

async fn admin_login_ids(State(s): State<Shared>, body: Bytes) -> Response {
    admin(&s, &body, |st, r: LoginIdRegistration| {
        st.register_login_id(&r);
        ok_value()
    })
}

async fn admin_user_refs(State(s): State<Shared>, body: Bytes) -> Response {
    admin(&s, &body, |st, r: UserRefRegistration| {
        st.register_user_ref(&r);
        ok_value()
    })
}

async fn admin_people(State(s): State<Shared>, body: Bytes) -> Response {
    admin(&s, &body, |st, r: PersonRegistration| {
        st.register_person(&r);
        ok_value()
    })
}

async fn admin_opt_outs(State(s): State<Shared>, body: Bytes) -> Response {
    admin(&s, &body, |st, r: OptOut| {
        st.opt_out(&r).and_then(|()| ok_value())
    })
}

async fn admin_tokens(State(s): State<Shared>, body: Bytes) -> Response {
    admin(&s, &body, |st, r: NotificationTokenRegistration| {
        st.register_notification_token(&r);
        ok_value()
    })
}

async fn admin_login_connect(State(s): State<Shared>, body: Bytes) -> Response {
    admin(&s, &body, |st, r: LoginConnect| {
        let login_id = st.login_connect(&r);
        Ok(json!({ "login_id": login_id }))
    })
}

async fn admin_user_tokens(State(s): State<Shared>, body: Bytes) -> Response {
    admin(&s, &body, |st, r: UserTokenRegistration| {
        st.register_user_token(&r);
        ok_value()
    })
}

async fn admin_page_features(State(s): State<Shared>, body: Bytes) -> Response {
    admin(&s, &body, |st, u: PageFeaturesUpdate| {
        Ok(json!(st.update_page_features(&u)))
    })
}

async fn admin_get_page_features(State(s): State<Shared>) -> Response {
    Json(json!(lock(&s).all_page_features())).into_response()
}

async fn admin_instagram_tokens(State(s): State<Shared>, body: Bytes) -> Response {
    admin(&s, &body, |st, r: InstagramTokenRegistration| {
        st.register_instagram_token(&r);
        ok_value()
    })
}

async fn admin_instagram_people(State(s): State<Shared>, body: Bytes) -> Response {
    admin(&s, &body, |st, r: InstagramPersonRegistration| {
        st.register_instagram_person(&r);
        ok_value()
    })
}

/// `POST /_sim/faults` body: `Faults` and `LostAnswerFaults` in one flat
/// object, every field optional (missing = default), so older bodies work.
#[derive(serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FaultsBody {
    error_5xx_ratio: f64,
    timeout_ratio: f64,
    timeout_ms: u64,
    latency_ms: u64,
    seed: u64,
    lost_answer_5xx_ratio: f64,
    lost_answer_timeout_ratio: f64,
}

impl Default for FaultsBody {
    fn default() -> Self {
        let (f, l) = (Faults::default(), LostAnswerFaults::default());
        Self {
            error_5xx_ratio: f.error_5xx_ratio,
            timeout_ratio: f.timeout_ratio,
            timeout_ms: f.timeout_ms,
            latency_ms: f.latency_ms,
            seed: f.seed,
            lost_answer_5xx_ratio: l.lost_answer_5xx_ratio,
            lost_answer_timeout_ratio: l.lost_answer_timeout_ratio,
        }
    }
}

async fn admin_faults(State(s): State<Shared>, body: Bytes) -> Response {
    admin(&s, &body, |st, b: FaultsBody| {
        let faults = Faults {
            error_5xx_ratio: b.error_5xx_ratio,
            timeout_ratio: b.timeout_ratio,
            timeout_ms: b.timeout_ms,
            latency_ms: b.latency_ms,
            seed: b.seed,
        };
        let lost = LostAnswerFaults {
            lost_answer_5xx_ratio: b.lost_answer_5xx_ratio,
            lost_answer_timeout_ratio: b.lost_answer_timeout_ratio,
        };
        st.set_all_faults(faults, lost)?;
        Ok(st.faults_value())
    })
}

async fn admin_get_faults(State(s): State<Shared>) -> Response {
    Json(lock(&s).faults_value()).into_response()
}

async fn admin_lose_next(State(s): State<Shared>, body: Bytes) -> Response {
    admin(&s, &body, |st, r: LoseNextAnswers| {
        Ok(json!({"pending": st.lose_next(r.count, r.kind)}))
    })
}

async fn admin_get_lose_next(State(s): State<Shared>) -> Response {
    Json(json!({"pending": lock(&s).pending_lost_answers()})).into_response()
}

async fn admin_clock(State(s): State<Shared>, body: Bytes) -> Response {
    admin(&s, &body, |st, c: ClockUpdate| {
        st.update_clock(&c);
        Ok(st.clock_value())
    })
}

async fn admin_get_clock(State(s): State<Shared>) -> Response {
    Json(lock(&s).clock_value()).into_response()
}

async fn admin_config(State(s): State<Shared>, body: Bytes) -> Response {
    admin(&s, &body, |st, c: ConfigUpdate| {
        st.update_config(&c);
        Ok(st.effective_config())
    })
}

async fn admin_get_config(State(s): State<Shared>) -> Response {
    Json(lock(&s).effective_config()).into_response()
}

async fn admin_messages(State(s): State<Shared>) -> Response {
    Json(json!(lock(&s).messages())).into_response()
}

async fn admin_attempts(State(s): State<Shared>) -> Response {
    Json(json!(lock(&s).attempts())).into_response()
}

async fn admin_stats(State(s): State<Shared>) -> Response {
    Json(json!(lock(&s).stats())).into_response()
}

async fn admin_reset(State(s): State<Shared>) -> Response {
    lock(&s).reset();
    ok()
}
