//! Shared AWS plumbing: configuration loading and error classification.

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use lc_core::ports::PortError;

use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::Region;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};

use crate::env::{optional, ConfigError};

/// Loads the SDK configuration from the environment (region, credentials, and
/// `AWS_ENDPOINT_URL` when set), with the HTTPS client of [`crate::tls::aws_http_client`]: the
/// Amazon Trust Services roots compiled in, unless `LC_TLS_NATIVE_ROOTS=true`. Call once per
/// cold start; every SDK client built from the result shares that HTTPS client.
pub async fn load_config() -> Result<aws_config::SdkConfig, ConfigError> {
    let trust = crate::tls::TrustSource::from_env()?;
    let http = crate::tls::aws_http_client(trust)
        .map_err(|e| ConfigError::Invalid(crate::tls::NATIVE_ROOTS_VAR, e))?;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if on_lambda_with_env_credentials() {
        // Lambda puts the role's credentials and the region in the environment and has no
        // profile file. Both would win in the default chains anyway (the environment comes
        // first); naming them skips building the rest of the chains (IMDS, ECS, SSO, web
        // identity, profile providers) and reading ~/.aws/config and ~/.aws/credentials.
        loader = loader
            .credentials_provider(EnvironmentVariableCredentialsProvider::new())
            .profile_files(
                EnvConfigFiles::builder()
                    .with_contents(EnvConfigFileKind::Config, "")
                    .build(),
            );
        if let Some(region) = optional("AWS_REGION") {
            loader = loader.region(Region::new(region));
        }
    }
    Ok(loader.load().await)
}

/// Running in Lambda (`AWS_LAMBDA_FUNCTION_NAME`) with credentials in the environment
/// (`AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`), as Lambda always provides them.
fn on_lambda_with_env_credentials() -> bool {
    [
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ]
    .iter()
    .all(|name| optional(name).is_some())
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
