//! SDK errors -> [`PortError`], classified the way the SDK's own retry layer classifies them.
//!
//! By the time an error reaches us the SDK has already retried it (standard mode) and given up;
//! the question left is whether the *message* is worth retrying later (`Unavailable`: SQS
//! redelivers) or never will succeed (`Rejected`). A hand list of codes missed some
//! (`TransactionInProgressException`), so the answer comes from what the SDK itself knows:
//! - the codes its AWS error-code classifier treats as throttling or transient
//!   ([`THROTTLING_ERRORS`], [`TRANSIENT_ERRORS`]: throttling,
//!   `ProvisionedThroughputExceededException`, `RequestLimitExceeded`,
//!   `TransactionInProgressException`, ...);
//! - errors the service model marks retryable ([`ProvideErrorKind::retryable_error_kind`], e.g.
//!   `ReplicatedWriteConflictException`);
//! - any 5xx answer (`InternalServerError`, `ServiceUnavailable`, ...);
//! - timeouts, connection failures and unreadable responses.
//!
//! A conditional check failure is not an error to the ports: callers look for it first (see
//! [`condition_failed_put`], [`condition_failed_update`]).

use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_smithy_types::retry::ProvideErrorKind;
use lc_core::ports::PortError;

use super::items::Item;

/// Maps an SDK error to a port error. Only the operation name and the service's error code and
/// message go into the text: never request contents.
pub(super) fn port_error<E>(op: &str, err: &SdkError<E>) -> PortError
where
    E: ProvideErrorMetadata + ProvideErrorKind,
{
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = ProvideErrorMetadata::code(e).unwrap_or("Unknown");
            let text = format!("{op}: {code}: {}", e.message().unwrap_or(""));
            if retryable(e, se.raw().status().is_server_error()) {
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

fn retryable<E>(err: &E, server_error: bool) -> bool
where
    E: ProvideErrorMetadata + ProvideErrorKind,
{
    let code = ProvideErrorMetadata::code(err);
    server_error
        || err.retryable_error_kind().is_some()
        || code.is_some_and(|c| THROTTLING_ERRORS.contains(&c) || TRANSIENT_ERRORS.contains(&c))
}

/// The service error code, when there is one.
pub(super) fn error_code<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Option<&str> {
    err.as_service_error().and_then(ProvideErrorMetadata::code)
}

/// `Some(old)` when the put failed its condition; `old` is the item DynamoDB returned with the
/// failure (`ReturnValuesOnConditionCheckFailure`), if it did.
pub(super) fn condition_failed_put(err: &SdkError<PutItemError>) -> Option<Option<Item>> {
    match err.as_service_error() {
        Some(PutItemError::ConditionalCheckFailedException(c)) => Some(c.item().cloned()),
        _ => None,
    }
}

/// Like [`condition_failed_put`], for an update.
pub(super) fn condition_failed_update(err: &SdkError<UpdateItemError>) -> Option<Option<Item>> {
    match err.as_service_error() {
        Some(UpdateItemError::ConditionalCheckFailedException(c)) => Some(c.item().cloned()),
        _ => None,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_sdk_dynamodb::types::error::{
        ConditionalCheckFailedException, InternalServerError,
        ProvisionedThroughputExceededException, ReplicatedWriteConflictException,
        RequestLimitExceeded,
    };
    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    pub(in super::super) fn response(status: u16) -> HttpResponse {
        HttpResponse::new(
            StatusCode::try_from(status).expect("valid status"),
            SdkBody::empty(),
        )
    }

    pub(in super::super) fn meta(code: &str) -> ErrorMetadata {
        ErrorMetadata::builder()
            .code(code)
            .message("details")
            .build()
    }

    /// An error DynamoDB answered with `code` and `status` that the SDK models for no
    /// operation (e.g. a code newer than the SDK): only its metadata speaks.
    fn unmodeled(code: &str, status: u16) -> SdkError<GetItemError> {
        SdkError::service_error(GetItemError::generic(meta(code)), response(status))
    }

    fn classify(err: &SdkError<GetItemError>) -> PortError {
        port_error("GetItem", err)
    }

    #[test]
    fn throttling_and_transient_codes_are_unavailable() {
        for code in [
            "TransactionInProgressException",
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "RequestLimitExceeded",
            "LimitExceededException",
            "RequestTimeoutException",
        ] {
            let err = classify(&unmodeled(code, 400));
            assert!(
                matches!(&err, PortError::Unavailable(m) if m == &format!("GetItem: {code}: details")),
                "{code}: {err:?}"
            );
        }
    }

    #[test]
    fn modeled_throttling_errors_are_unavailable() {
        let pte = GetItemError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder()
                .message("slow down")
                .meta(meta("ProvisionedThroughputExceededException"))
                .build(),
        );
        let err = classify(&SdkError::service_error(pte, response(400)));
        assert!(matches!(err, PortError::Unavailable(_)), "{err:?}");

        let rle = GetItemError::RequestLimitExceeded(
            RequestLimitExceeded::builder()
                .meta(meta("RequestLimitExceeded"))
                .build(),
        );
        let err = classify(&SdkError::service_error(rle, response(400)));
        assert!(matches!(err, PortError::Unavailable(_)), "{err:?}");
    }

    #[test]
    fn errors_the_model_marks_retryable_are_unavailable() {
        // Modeled @retryable, and in none of the SDK's code lists.
        let conflict = PutItemError::ReplicatedWriteConflictException(
            ReplicatedWriteConflictException::builder()
                .meta(meta("ReplicatedWriteConflictException"))
                .build(),
        );
        assert!(conflict.retryable_error_kind().is_some());
        let err = port_error("PutItem", &SdkError::service_error(conflict, response(400)));
        assert!(matches!(err, PortError::Unavailable(_)), "{err:?}");
    }

    #[test]
    fn server_errors_are_unavailable_whatever_their_code() {
        let ise = GetItemError::InternalServerError(
            InternalServerError::builder()
                .message("oops")
                .meta(meta("InternalServerError"))
                .build(),
        );
        let err = classify(&SdkError::service_error(ise, response(500)));
        assert_eq!(
            err,
            PortError::Unavailable("GetItem: InternalServerError: details".into())
        );
        for (code, status) in [
            ("ServiceUnavailable", 503),
            ("InternalFailure", 500),
            ("SomethingNew", 502),
        ] {
            let err = classify(&unmodeled(code, status));
            assert!(matches!(err, PortError::Unavailable(_)), "{code}: {err:?}");
        }
    }

    #[test]
    fn client_errors_are_rejected() {
        for code in [
            "ValidationException",
            "ResourceNotFoundException",
            "AccessDeniedException",
            "UnrecognizedClientException",
            "SerializationException",
        ] {
            let err = classify(&unmodeled(code, 400));
            assert!(matches!(err, PortError::Rejected(_)), "{code}: {err:?}");
        }
        let err = classify(&SdkError::service_error(
            GetItemError::generic(ErrorMetadata::builder().build()),
            response(400),
        ));
        assert_eq!(err, PortError::Rejected("GetItem: Unknown: ".into()));
    }

    #[test]
    fn transport_failures_are_unavailable_and_unbuildable_requests_rejected() {
        let timeout: SdkError<GetItemError> = SdkError::timeout_error("deadline");
        assert_eq!(
            classify(&timeout),
            PortError::Unavailable("GetItem: timeout".into())
        );
        let dispatch: SdkError<GetItemError> =
            SdkError::dispatch_failure(ConnectorError::io("connection reset".into()));
        assert!(matches!(classify(&dispatch), PortError::Unavailable(_)));
        let response_error: SdkError<GetItemError> =
            SdkError::response_error("truncated body", response(200));
        assert!(matches!(
            classify(&response_error),
            PortError::Unavailable(_)
        ));
        let construction: SdkError<GetItemError> = SdkError::construction_failure("no table");
        assert!(matches!(classify(&construction), PortError::Rejected(_)));
    }

    #[test]
    fn a_failed_condition_is_recognised_with_the_item_it_returned() {
        let old = Item::from([("pk".to_string(), AttributeValue::S("OPTIN#x".into()))]);
        let ccf = |item: Option<Item>| {
            ConditionalCheckFailedException::builder()
                .set_item(item)
                .meta(meta("ConditionalCheckFailedException"))
                .build()
        };
        let put = SdkError::service_error(
            PutItemError::ConditionalCheckFailedException(ccf(Some(old.clone()))),
            response(400),
        );
        assert_eq!(condition_failed_put(&put), Some(Some(old.clone())));
        let update = SdkError::service_error(
            UpdateItemError::ConditionalCheckFailedException(ccf(None)),
            response(400),
        );
        assert_eq!(condition_failed_update(&update), Some(None));
        // Not a condition failure: the caller maps it with `port_error`.
        let throttled = SdkError::service_error(
            UpdateItemError::generic(meta("ThrottlingException")),
            response(400),
        );
        assert_eq!(condition_failed_update(&throttled), None);
        assert_eq!(error_code(&throttled), Some("ThrottlingException"));
    }
}
