//! Shared AWS plumbing: configuration loading and error classification.

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use lc_core::ports::PortError;

/// Loads the SDK configuration from the environment (region, credentials, and
/// `AWS_ENDPOINT_URL` when set). Call once per cold start.
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// Error codes that mean "try again later" across SQS, DynamoDB, Scheduler and Secrets Manager.
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "RequestThrottled",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "InternalServerException",
    "InternalServiceError",
    "KMS.ThrottlingException",
    "AWS.SimpleQueueService.ServiceUnavailable",
];

/// Maps an SDK error to a port error. Only the operation name and the service's error code
/// and message go into the text: never request contents.
pub fn port_error<E, R>(op: &str, err: &SdkError<E, R>) -> PortError
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown");
            let msg = se.err().message().unwrap_or("");
            let text = format!("{op}: {code}: {msg}");
            if RETRYABLE_CODES.contains(&code) {
                PortError::Unavailable(text)
            } else {
                PortError::Rejected(text)
            }
        }
        SdkError::ConstructionFailure(_) => {
            PortError::Rejected(format!("{op}: request could not be built"))
        }
        SdkError::TimeoutError(_) => PortError::Unavailable(format!("{op}: timeout")),
        SdkError::DispatchFailure(_) => PortError::Unavailable(format!("{op}: dispatch failure")),
        SdkError::ResponseError(_) => PortError::Unavailable(format!("{op}: unreadable response")),
        _ => PortError::Unavailable(format!("{op}: unexpected SDK error")),
    }
}

/// The service error code, when there is one (to match `ConflictException` and the like).
pub fn error_code<E, R>(err: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    }
}
