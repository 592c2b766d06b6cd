//! The invocation being handled: its Lambda request id, X-Ray trace id and whether it is the
//! process's cold start, for the log lines (`telemetry`) and the EMF documents (`metrics`)
//! written during it.
//!
//! Taken from the Lambda context and held in a `tokio` task-local for the duration of the
//! handler, not in a process-global: concurrent invocations (tests, Lambda's multi-concurrency)
//! each log their own ids, and nothing is left behind when a handler returns early or errs.
//! (The EMF totals are still per process: under multi-concurrency one invocation's flush
//! would carry another's points.) A task
//! spawned inside a handler does not inherit it (its lines carry no request id).
//!
//! ```ignore
//! // SQS consumers, the deadline function
//! lambda_runtime::run(service_fn(|e: LambdaEvent<SqsEvent>| {
//!     invocation::run(&e.context, handle(e.payload))
//! }))
//! // HTTP functions
//! lambda_http::run(invocation::http(router))
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// One Lambda invocation, as the logs and metrics name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub request_id: String,
    pub xray_trace_id: Option<String>,
    /// The first invocation of this process (it paid for the init).
    pub cold_start: bool,
}

tokio::task_local! {
    static CURRENT: Arc<Invocation>;
}

/// Set when the process's first invocation begins.
static STARTED: AtomicBool = AtomicBool::new(false);

impl Invocation {
    fn begin(ctx: &lambda_runtime::Context, started: &AtomicBool) -> Invocation {
        Invocation {
            request_id: ctx.request_id.clone(),
            xray_trace_id: ctx.xray_trace_id.clone().filter(|t| sampled(t)),
            cold_start: !started.swap(true, Ordering::Relaxed),
        }
    }
}

/// Whether X-Ray keeps this trace (`Sampled=1`). Lambda passes a trace header to every
/// invocation, active tracing or not; an unsampled one points at nothing in X-Ray, and in
/// every log line it was a sixth of what an opt-in logs (~120 bytes a line), so it is kept
/// only when it leads somewhere.
pub fn sampled(trace: &str) -> bool {
    trace.split(';').any(|part| part.trim() == "Sampled=1")
}

/// Runs one invocation of a `lambda_runtime` handler with `ctx`'s ids in scope, then writes
/// the metrics it recorded (tagged with its request id). The future does not borrow `ctx`, so
/// `run(&event.context, handle(event.payload))` needs no clone (`use<F>` keeps it so in
/// edition 2024, where a returned future would otherwise capture the borrow).
pub fn run<F: Future>(
    ctx: &lambda_runtime::Context,
    fut: F,
) -> impl Future<Output = F::Output> + use<F> {
    flushed(Invocation::begin(ctx, &STARTED), fut)
}

async fn flushed<F: Future>(invocation: Invocation, fut: F) -> F::Output {
    let invocation = Arc::new(invocation);
    CURRENT
        .scope(invocation.clone(), async move {
            let out = fut.await;
            crate::metrics::flush(Some(&invocation.request_id));
            out
        })
        .await
}

/// `router` with every request run as an invocation: the Lambda context `lambda_http` puts in
/// the request's extensions is scoped like [`run`], and the metrics are written once the
/// response is ready. A request without a context (the local runner, tests) passes through
/// untouched. Call it on the finished router: axum layers only wrap the routes already added.
pub fn http(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::from_fn(track))
}

async fn track(request: Request, next: Next) -> Response {
    let Some(ctx) = request.extensions().get::<lambda_http::Context>() else {
        return next.run(request).await;
    };
    let invocation = Invocation::begin(ctx, &STARTED);
    flushed(invocation, next.run(request)).await
}

/// The invocation this task is handling, if any.
pub fn current() -> Option<Arc<Invocation>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// Whether a line written now belongs to the cold start: inside an invocation, that
/// invocation's flag; outside, `true` until the first invocation begins (the init lines).
pub fn cold_start() -> bool {
    current().map_or_else(|| !STARTED.load(Ordering::Relaxed), |i| i.cold_start)
}

/// Who invoked, as far as the Lambda context tells: the account (from the function's ARN), the
/// request id, and a Cognito identity when the caller came through the AWS mobile SDKs. The
/// context carries no IAM principal: a console *Test* (or `aws lambda invoke`) is named by
/// CloudTrail's `Invoke` data event for this request id, when the trail logs Lambda data
/// events (docs/operations/README.md says how).
pub fn caller(ctx: &lambda_runtime::Context) -> lc_core::operations::Caller {
    // arn:aws:lambda:<region>:<account>:function:<name>
    let account = ctx
        .invoked_function_arn
        .split(':')
        .nth(4)
        .filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string);
    lc_core::operations::Caller {
        account,
        request_id: ctx.request_id.clone(),
        identity: ctx.identity.as_ref().map(|i| i.identity_id.clone()),
    }
}

/// Runs `fut` as the given invocation, without flushing metrics (tests that format lines and
/// must not touch the process's cold-start flag or recorder; the local runner, whose log
/// lines then carry the ids a deployed function's would).
pub async fn scoped<F: Future>(invocation: Invocation, fut: F) -> F::Output {
    CURRENT.scope(Arc::new(invocation), fut).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{self, LogFormat};
    use crate::test_support::{lines, Buffer};
    use lambda_http::tower::ServiceExt;
    use lc_core::ports::{Metric, Metrics};

    fn ctx(request_id: &str) -> lambda_runtime::Context {
        let mut c = lambda_runtime::Context::default();
        c.request_id = request_id.to_string();
        c.xray_trace_id = Some(format!(
            "Root=1-{request_id};Parent=53995c3f42cd8ad8;Sampled=1"
        ));
        c
    }

    #[test]
    fn only_a_sampled_trace_is_kept() {
        let started = AtomicBool::new(true);
        let mut c = ctx("r");
        assert!(Invocation::begin(&c, &started).xray_trace_id.is_some());
        c.xray_trace_id = Some("Root=1-a;Parent=b;Sampled=0;Lineage=1:c:0".into());
        assert_eq!(Invocation::begin(&c, &started).xray_trace_id, None);
        c.xray_trace_id = Some("Root=1-a;Parent=b".into());
        assert_eq!(Invocation::begin(&c, &started).xray_trace_id, None);
    }

    fn router() -> axum::Router {
        axum::Router::new().route(
            "/hook",
            axum::routing::post(|| async {
                tracing::info!(outcome = "accepted", "webhook handled");
                crate::metrics::Emf.record(Metric::Quarantined(2));
                "ok"
            }),
        )
    }

    fn post(ctx: Option<lambda_runtime::Context>) -> axum::http::Request<axum::body::Body> {
        let mut req = axum::http::Request::post("/hook")
            .body(axum::body::Body::empty())
            .unwrap();
        if let Some(c) = ctx {
            req.extensions_mut().insert(c);
        }
        req
    }

    /// Nothing is to be flushed: `run`/`http` wrote the invocation's metrics already.
    fn assert_flushed() {
        let mut rest = Vec::new();
        crate::metrics::flush_to(&mut rest, None).unwrap();
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }

    /// The only test that starts invocations through the public API: the cold start is once
    /// per process. It holds the process lock so the EMF test's points are not flushed here.
    /// Its flushes write one EMF line per invocation to the test's stdout.
    #[tokio::test]
    async fn invocations_carry_the_lambda_ids_and_the_cold_start_once() {
        let _process = crate::process_lock().lock().await;
        crate::metrics::install_for_tests();
        let buf = Buffer::default();
        let _log = tracing::subscriber::set_default(telemetry::subscriber(
            "sender",
            LogFormat::Json,
            "info",
            buf.clone(),
        ));

        tracing::info!("initialised");
        assert!(current().is_none());

        let got = run(&ctx("req-1"), async {
            tracing::info!(record = 1, "job settled");
            // Concurrent branches of one handler, as `for_each_record` runs records.
            futures::future::join_all((0..2).map(|i| async move {
                tracing::warn!(record = i, "record retried");
                current().map(|c| c.request_id.clone())
            }))
            .await
        })
        .await;
        assert_eq!(got, [Some("req-1".into()), Some("req-1".into())]);

        let response = http(router())
            .oneshot(post(Some(ctx("req-2"))))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_flushed();

        // The local runner: no Lambda context, no invocation, and nothing flushed.
        let response = http(router()).oneshot(post(None)).await.unwrap();
        assert_eq!(response.status(), 200);
        let mut pending = Vec::new();
        crate::metrics::flush_to(&mut pending, None).unwrap();
        assert!(
            String::from_utf8_lossy(&pending).contains("\"QuarantinedEvents\":2"),
            "{}",
            String::from_utf8_lossy(&pending)
        );

        // The shape `main` uses for lambda_runtime functions.
        let handler = |n: u32| async move {
            tracing::info!(n, "record handled");
            crate::metrics::Emf.record(Metric::PagePaused);
            Ok::<u32, lambda_runtime::Error>(n + 1)
        };
        let service = lambda_runtime::service_fn(|e: lambda_runtime::LambdaEvent<u32>| {
            run(&e.context, handler(e.payload))
        });
        let out = service
            .oneshot(lambda_runtime::LambdaEvent::new(41, ctx("req-3")))
            .await
            .unwrap();
        assert_eq!(out, 42);
        assert_flushed();
        tracing::info!("between invocations");
        assert!(current().is_none());

        let got = lines(&buf);
        let at = |message: &str| -> Vec<&serde_json::Value> {
            got.iter().filter(|l| l["message"] == message).collect()
        };
        let init = at("initialised")[0];
        assert_eq!(init["cold_start"], true, "init is part of the cold start");
        assert!(init.get("function_request_id").is_none());

        let first: Vec<_> = at("job settled")
            .into_iter()
            .chain(at("record retried"))
            .collect();
        assert_eq!(first.len(), 3, "{got:#?}");
        for l in first {
            assert_eq!(l["function_request_id"], "req-1", "{l}");
            assert_eq!(
                l["xray_trace_id"],
                "Root=1-req-1;Parent=53995c3f42cd8ad8;Sampled=1"
            );
            assert_eq!(l["cold_start"], true, "{l}");
        }

        let handled = at("webhook handled");
        assert_eq!(handled.len(), 2, "{got:#?}");
        assert_eq!(handled[0]["function_request_id"], "req-2");
        assert_eq!(handled[0]["cold_start"], false, "second invocation");
        assert!(handled[1].get("function_request_id").is_none());
        assert_eq!(handled[1]["cold_start"], false);

        let third = at("record handled")[0];
        assert_eq!(third["function_request_id"], "req-3");
        assert_eq!(third["cold_start"], false);

        let after = at("between invocations")[0];
        assert_eq!(after["cold_start"], false, "the cold start is over");
        assert!(after.get("function_request_id").is_none());
    }

    #[test]
    fn the_caller_is_the_account_and_the_request() {
        let mut c = ctx("req-9");
        c.invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:lc-ops".into();
        let who = caller(&c);
        assert_eq!(who.account.as_deref(), Some("123456789012"));
        assert_eq!(who.request_id, "req-9");
        assert_eq!(who.identity, None);
        assert_eq!(caller(&ctx("req-10")).account, None, "no ARN, no account");
    }

    #[tokio::test]
    async fn the_task_local_is_per_task() {
        let mine = Invocation {
            request_id: "req-a".into(),
            xray_trace_id: None,
            cold_start: false,
        };
        let other = tokio::spawn(async { current() });
        scoped(mine.clone(), async {
            assert_eq!(current().as_deref(), Some(&mine));
        })
        .await;
        assert!(other.await.unwrap().is_none());
        assert!(current().is_none());
    }
}
