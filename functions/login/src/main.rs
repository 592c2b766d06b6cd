//! The login Lambda: the login page and callback on the service's router (the login part only).

use std::sync::Arc;

use lc_adapters::env::{self, ConfigError};
use lc_adapters::graph::GraphClient;
use lc_adapters::{aws, telemetry, wiring};
use lc_api::Api;
use lc_core::login::{Login, LoginConfig, DEFAULT_SDK_URL};
use lc_core::ports::{NoMetrics, SystemClock};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init("login");
    let sdk = aws::load_config().await;
    let queue = wiring::queue(&sdk, "EVENTS_QUEUE_URL")?;
    let store = wiring::store(&sdk, None)?;
    let secrets = env::secret_source(&sdk)?;
    let graph = GraphClient::from_env()?;
    let config = LoginConfig {
        default_page_id: env::required("LC_DEFAULT_PAGE_ID")?,
        allowed_origins: env::optional("LC_ALLOWED_ORIGINS")
            .map(|list| {
                list.split(',')
                    .map(|o| o.trim().to_string())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        derive_login_id: flag("LC_DERIVE_LOGIN_ID", true)?,
        app_id: env::optional("LC_APP_ID").unwrap_or_default(),
        sdk_url: env::optional("LC_SDK_URL").unwrap_or_else(|| DEFAULT_SDK_URL.to_string()),
        graph_version: graph.config().api_version.clone(),
    };
    let login = Login::new(
        Arc::new(graph),
        Arc::new(queue),
        Arc::new(store),
        secrets,
        Arc::new(SystemClock),
        // TODO(obs): Emf + invocation::http
        Arc::new(NoMetrics),
        config,
    );
    let router = Api::new().login(Arc::new(login)).router();
    // TODO(obs): Emf + invocation::http
    lambda_http::run(router).await
}

/// A boolean setting: true/false, 1/0, yes/no, on/off; unset keeps the default.
fn flag(name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match env::optional(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) => match v.as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::Invalid(
                name,
                format!("expected true or false, got {v:?}"),
            )),
        },
    }
}
