//! The follow-up Lambdas: `messages-api` serves `POST /v1/messages` on a Function URL with
//! `AuthType: AWS_IAM` (it decides and queues, nothing more), `messages-worker` consumes the
//! FIFO requests queue and sends. Both run [`FollowUps`] from `lc-core`, wired here once.

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lc_adapters::graph::GraphClient;
use lc_adapters::lambda_sqs::consume_fifo;
use lc_adapters::{env, metrics::Emf, wiring};
use lc_core::consumer::Settling;
use lc_core::ports::{SecretSource, SystemClock, Table, VisibilityControl};
use lc_core::sending::followup::{FollowUpConfig, FollowUpPorts, FollowUps};
use lc_core::support::secret::{Secrets, SecretsError};

/// The endpoint holds no secrets (it never calls Graph): asking is a wiring bug, said plainly.
pub struct NoSecrets;

#[async_trait]
impl SecretSource for NoSecrets {
    async fn secrets(&self) -> Result<Arc<Secrets>, SecretsError> {
        Err(SecretsError::Unavailable(
            "the messages endpoint holds no secrets; only the worker sends".into(),
        ))
    }
}

/// Which function is being wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Api,
    Worker,
}

/// [`FollowUps`] from the environment: `TABLE_NAME`, `REQUESTS_QUEUE_URL`, `EVENT_BUS_NAME`,
/// the sender's settings (`LC_ALLOWED_TAGS`, `LC_APPSECRET_PROOF`, `LC_FUNCTION_TIMEOUT_SECS`,
/// ...) and, for the worker, the secret (`LC_SECRET_ID`) and Graph settings.
pub async fn followups(
    sdk: &aws_config::SdkConfig,
    role: Role,
) -> Result<FollowUps, lambda_runtime::Error> {
    let graph = GraphClient::from_env()?;
    let secrets: Arc<dyn SecretSource> = match role {
        Role::Api => Arc::new(NoSecrets),
        Role::Worker => env::secret_source(sdk)?,
    };
    let sender = wiring::sender_config(&graph)?;
    Ok(FollowUps::new(
        FollowUpPorts {
            table: Table::new(Arc::new(wiring::store(sdk, None)?)),
            requests: Arc::new(wiring::queue(sdk, "REQUESTS_QUEUE_URL")?),
            bus: Arc::new(wiring::bus(sdk)?),
            graph: Arc::new(graph),
            secrets,
            clock: Arc::new(SystemClock),
            metrics: Arc::new(Emf),
        },
        FollowUpConfig::from_sender(&sender),
    ))
}

/// One FIFO batch: each group's records in order, a kept record holding the rest of its group.
/// No dead-letter queue is wired: a FIFO DLQ takes no ungrouped copy, so poison messages reach
/// it through the queue's redrive policy.
pub async fn handle(
    followups: &FollowUps,
    queue: &dyn VisibilityControl,
    event: SqsEvent,
) -> SqsBatchResponse {
    let via = Settling {
        queue: Some(queue),
        dead_letters: None,
        // FIFO: a copy would lose its place in the person's group.
        requeue: None,
    };
    consume_fifo(event, via, |body| async move {
        followups.handle_message(&body).await
    })
    .await
}
