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
//! | `/v1/people` | `GET` | people | the identity lookup ([`people`]); `AWS_IAM` on its Function URL |
//! | `/data-deletion` | `POST` | deletion | Meta's data-deletion callback ([`deletion`]) |
//! | `/data-deletion/status` | `GET` | deletion | the request's status page |
//! | `/v1/messages` | `POST` | messages | the business's follow-ups: 202, 400, 409, 413, 422, 503 ([`messages`]) |
//!
//! A Lambda mounts only the parts it has; a path no mounted part serves answers 404 with the
//! fixed body of the part that owns the Function URL root, as each function always did.

pub mod deletion;
pub mod login;
pub mod messages;
pub mod page;
pub mod people;
pub mod webhook;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use lc_core::login::Login;
use lc_core::people::deletion::DataDeletion;
use lc_core::people::People;
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
    people: Option<Arc<People>>,
    deletion: Option<Arc<DataDeletion>>,
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

    /// The people lookup at `/v1/people` (the business's backend, SigV4 in AWS).
    pub fn people(mut self, people: Arc<People>) -> Self {
        self.people = Some(people);
        self
    }

    /// Meta's data-deletion callback and its status page.
    pub fn deletion(mut self, deletion: Arc<DataDeletion>) -> Self {
        self.deletion = Some(deletion);
        self
    }

    /// The business's follow-ups at `POST /v1/messages`.
    pub fn messages(mut self, followups: Arc<FollowUps>) -> Self {
        self.messages = Some(followups);
        self
    }

    pub fn router(self) -> Router {
        let mut router = Router::new();
        // Which part's 404 the unknown paths get: the one that owns the Function URL.
        let people_own_root =
            self.intake.is_none() && (self.people.is_some() || self.deletion.is_some());
        if let Some(people) = self.people {
            router = router.merge(people::routes(people));
        }
        if let Some(deletion) = self.deletion {
            router = router.merge(deletion::routes(deletion));
        }
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
        } else if people_own_root {
            router.fallback(people::not_found)
        } else {
            router.fallback(webhook::not_found)
        };
        router.layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
    }
}
