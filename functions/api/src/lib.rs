//! Every HTTP endpoint of the service as one axum [`Router`]: the Lambdas run it with
//! `lambda_http::run(router)`, the local runner with `axum::serve`, tests with
//! `tower::ServiceExt::oneshot`. Handlers only translate: the decisions are `lc-core`'s
//! ([`Intake`], [`Login`]); statuses, fixed bodies, CORS and HTML are decided here from them.
//!
//! | path | method | part | answer |
//! |---|---|---|---|
//! | `/webhook` (and `/` without a login part) | `GET` | intake | Meta's handshake: the challenge, or 403 |
//! | same | `POST` | intake | 200 `EVENT_RECEIVED` once queued; 401, 413, 500, 503 ([`webhook`]) |
//! | `/` | `GET` | login | the sample page ([`page`]) |
//! | `/login` | `POST` | login | the login callback ([`login`]) |
//! | `/`, `/login` | `OPTIONS` | login | CORS preflight |
//! | `/v1/messages` | `POST` | messages | the business's follow-ups: 202, 400, 409, 413, 422, 503 ([`messages`]) |
//!
//! A Lambda mounts only the parts it has; a path no mounted part serves answers 404 with the
//! fixed body of the part that owns the Function URL root, as each function always did.

pub mod login;
pub mod messages;
pub mod page;
pub mod webhook;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use lc_core::login::Login;
use lc_core::sending::followup::FollowUps;
use lc_core::webhook::intake::Intake;

/// Lambda never delivers a larger request, so no deployed function sees one; below it, each
/// part's own limit answers with its fixed 413 body (axum's default of 2 MB would answer
/// larger-but-allowed webhook bodies with its own text instead).
pub const MAX_REQUEST_BYTES: usize = 6 * 1024 * 1024;

/// The parts a process serves. Later endpoints become further optional parts.
#[derive(Default, Clone)]
pub struct Api {
    intake: Option<Arc<Intake>>,
    login: Option<Arc<Login>>,
    messages: Option<Arc<FollowUps>>,
}

impl Api {
    pub fn new() -> Self {
        Self::default()
    }

    /// Meta's webhook at `/webhook`, and at `/` unless the login part owns the root.
    pub fn intake(mut self, intake: Arc<Intake>) -> Self {
        self.intake = Some(intake);
        self
    }

    /// The login page at `/` and the login callback at `/login`.
    pub fn login(mut self, login: Arc<Login>) -> Self {
        self.login = Some(login);
        self
    }

    /// The business's follow-ups at `POST /v1/messages`.
    pub fn messages(mut self, followups: Arc<FollowUps>) -> Self {
        self.messages = Some(followups);
        self
    }

    pub fn router(self) -> Router {
        let mut router = Router::new();
        if let Some(followups) = self.messages {
            router = router.merge(messages::routes(followups));
        }
        if let Some(intake) = self.intake {
            router = router.merge(webhook::routes(intake, self.login.is_none()));
        }
        let login_owns_root = self.login.is_some();
        if let Some(login) = self.login {
            router = router.merge(login::routes(login));
        }
        let router = if login_owns_root {
            router.fallback(login::not_found)
        } else {
            router.fallback(webhook::not_found)
        };
        router.layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
    }
}
