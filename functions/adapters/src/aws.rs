//! Shared AWS plumbing: configuration loading and error classification.

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use lc_core::ports::PortError;

use crate::env::ConfigError;

/// Loads the SDK configuration from the environment (region, credentials, and
/// `AWS_ENDPOINT_URL` when set), with the HTTPS client of [`crate::tls::aws_http_client`]: the
/// Amazon Trust Services roots compiled in, unless `LC_TLS_NATIVE_ROOTS=true`. Call once per
/// cold start; every SDK client built from the result shares that HTTPS client.
pub async fn load_config() -> Result<aws_config::SdkConfig, ConfigError> {
    let trust = crate::tls::TrustSource::from_env()?;
    let http = crate::tls::aws_http_client(trust)
        .map_err(|e| ConfigError::Invalid(crate::tls::NATIVE_ROOTS_VAR, e))?;
    Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await)
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
