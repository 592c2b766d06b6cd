//! SDK errors -> [`PortError`]. A conditional check failure is not an error to the ports:
//! callers look for it first (see [`condition_failed_put`], [`condition_failed_update`]).

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;

pub(super) use crate::aws::{error_code, port_error};

use super::items::Item;

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
