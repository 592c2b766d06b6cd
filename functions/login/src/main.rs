//! The login Lambda: the login page and callback on the service's router (the login part only).

use std::sync::Arc;

use lc_adapters::env;
use lc_adapters::graph::GraphClient;
use lc_adapters::{aws, invocation, metrics::Emf, telemetry, wiring};
use lc_api::Api;
use lc_core::login::{Login, LoginConfig, DEFAULT_MAX_TOKEN_AGE_MS, DEFAULT_SDK_URL};
use lc_core::ports::SystemClock;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init("login");
    let sdk = aws::load_config().await?;
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
        // Off unless asked for: the derivation is Meta's sample, not its documentation.
        derive_login_id: env::flag("LC_DERIVE_LOGIN_ID", false)?,
        app_id: env::optional("LC_APP_ID").unwrap_or_default(),
        sdk_url: env::optional("LC_SDK_URL").unwrap_or_else(|| DEFAULT_SDK_URL.to_string()),
        graph_version: graph.config().api_version.clone(),
        // How recent the user token must be for a login to start the clock (evidence that the
        // grant happened in this login, not a replayed session).
        max_token_age_ms: i64::from(env::parse_or::<u32>(
            "LC_LOGIN_MAX_TOKEN_AGE_SECS",
            u32::try_from(DEFAULT_MAX_TOKEN_AGE_MS / 1000).unwrap_or(600),
        )?) * 1000,
    };
    let login = Login::new(
        Arc::new(graph),
        Arc::new(queue),
        Arc::new(store),
        secrets,
        Arc::new(SystemClock),
        Arc::new(Emf),
        config,
    );
    let router = Api::new().login(Arc::new(login)).router();
    lambda_http::run(invocation::http(router)).await
}
