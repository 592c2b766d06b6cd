//! The people Lambda: one small binary for the person's identities, deployed twice because the
//! two audiences authenticate differently (a Function URL has one auth type):
//!
//! - `LC_API_PARTS=people`: `GET /v1/people` for the business's backend, on a Function URL with
//!   `AuthType: AWS_IAM` (SigV4), with a role that can only read the table.
//! - `LC_API_PARTS=deletion`: Meta's data-deletion callback and the person's status page, on a
//!   Function URL with `AuthType: NONE` (Meta signs the body with the app secret), with a role
//!   that may delete the person's items and read the secret.
//!
//! Both mount their part of the shared `lc-api` router; `people,deletion` mounts both (local
//! use). Settings: `TABLE_NAME`, the retention variables (`wiring::retention`), and for the
//! callback `LC_SECRET_ID`, `LC_DEFAULT_PAGE_ID` (a Page served besides the secret's
//! `page_tokens`) and optionally `LC_PUBLIC_URL` (the base of the status url; default the
//! request's Host).

use std::sync::Arc;

use lc_adapters::env::{self, ConfigError};
use lc_adapters::{aws, invocation, telemetry, wiring};
use lc_api::Api;
use lc_core::people::deletion::{DataDeletion, DeletionConfig};
use lc_core::people::People;
use lc_core::ports::{SystemClock, Table};

/// Which parts `LC_API_PARTS` names (default: the lookup).
fn parts() -> Result<(bool, bool), ConfigError> {
    let raw = env::optional("LC_API_PARTS").unwrap_or_else(|| "people".into());
    let (mut people, mut deletion) = (false, false);
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "people" => people = true,
            "deletion" => deletion = true,
            _ => {
                return Err(ConfigError::Invalid(
                    "LC_API_PARTS",
                    "expected people, deletion or both (comma-separated)".into(),
                ))
            }
        }
    }
    if !people && !deletion {
        return Err(ConfigError::Invalid("LC_API_PARTS", "names no part".into()));
    }
    Ok((people, deletion))
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (people, deletion) = parts()?;
    telemetry::init(if people { "people" } else { "data-deletion" });
    let sdk = aws::load_config().await?;
    let table = Table::new(Arc::new(wiring::store(&sdk, None)?));
    let mut api = Api::new();
    if people {
        api = api.people(Arc::new(People::new(table.clone(), Arc::new(SystemClock))));
    }
    if deletion {
        let config = DeletionConfig {
            default_page_id: env::optional("LC_DEFAULT_PAGE_ID").unwrap_or_default(),
            public_base_url: env::optional("LC_PUBLIC_URL"),
        };
        api = api.deletion(Arc::new(DataDeletion::new(
            table,
            env::secret_source(&sdk)?,
            Arc::new(SystemClock),
            config,
        )));
    }
    lambda_http::run(invocation::http(api.router())).await
}
