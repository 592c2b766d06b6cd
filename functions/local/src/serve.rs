//! `serve` and `send`, and the pieces every command shares: settings, secrets, the Graph
//! simulator, the HTTP front door.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use graph_sim::{SimConfig, SimHandle};
use lc_api::Api;
use lc_core::lifecycle::processor::LifecycleConfig;
use lc_core::login::{Login, LoginConfig};
use lc_core::people::deletion::{DataDeletion, DeletionConfig};
use lc_core::people::People;
use lc_core::ports::SystemClock;
use lc_core::sending::sender::SenderConfig;
use lc_core::support::secret::{AppCredentials, Secret, Secrets};
use lc_core::webhook::signature::sign;
use sha2::{Digest, Sha256};

use crate::pipeline::{Backends, Pipeline, PipelineConfig};

pub const PAGE: &str = "1000000001";
pub const PAGE_TOKEN: &str = "local-page-token";
pub const APP_ID: &str = "1234567890";

/// Settings shared by the subcommands.
pub struct Settings {
    pub port: u16,
    pub aws_endpoint: Option<String>,
    pub graph_url: Option<String>,
    pub pages: usize,
    pub events_log: Option<std::path::PathBuf>,
    /// The events and outbound pollers' batching windows: zero unless `load` prices a run.
    pub events_window: Duration,
    pub outbound_window: Duration,
}

impl Settings {
    pub fn new(common: &crate::cli::Common, serve: &crate::cli::ServeArgs) -> Settings {
        Settings {
            port: serve.port,
            aws_endpoint: common.aws_endpoint.clone(),
            graph_url: common.graph_url.clone(),
            pages: serve.pages,
            events_log: common.events_log.clone(),
            events_window: Duration::ZERO,
            outbound_window: Duration::ZERO,
        }
    }
}

/// A fresh random value for local secrets, 128 bits from the OS (never used when deployed:
/// that is Secrets Manager). `label` only names the value in the error.
pub fn generated(label: &str) -> String {
    let mut bytes = [0u8; 16];
    if let Err(e) = getrandom::fill(&mut bytes) {
        // No OS randomness is a broken machine; a predictable secret would be worse than none.
        panic!("cannot generate the local {label}: {e}");
    }
    hex::encode(bytes)
}

/// Page ids for `n` pages: the default page first.
pub fn page_ids(n: usize) -> Vec<String> {
    (0..n.max(1))
        .map(|i| {
            if i == 0 {
                PAGE.to_string()
            } else {
                format!("{}", 2_000_000_000u64 + i as u64)
            }
        })
        .collect()
}

/// Local secrets: `LC_APP_SECRET` / `LC_VERIFY_TOKEN` if set, else generated.
pub fn local_secrets(pages: &[String]) -> (Secrets, bool) {
    let from_env = std::env::var("LC_APP_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    let generated_secret = from_env.is_none();
    let app_secret = from_env.unwrap_or_else(|| generated("app-secret"));
    let verify = std::env::var("LC_VERIFY_TOKEN")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| generated("verify-token"));
    let page_tokens: BTreeMap<String, Secret> = pages
        .iter()
        .map(|p| (p.clone(), Secret::new(format!("{PAGE_TOKEN}-{p}"))))
        .collect();
    (
        Secrets {
            apps: vec![AppCredentials {
                app_id: APP_ID.into(),
                app_secret: Secret::new(app_secret),
                client_token: Secret::new(generated("client-token")),
            }],
            verify_token: Secret::new(verify),
            page_tokens,
            ref_keys: BTreeMap::from([(
                "1".to_string(),
                Secret::new(base64_32(&generated("ref-key"))),
            )]),
            page_apps: BTreeMap::new(),
            // No local account sends through Instagram Login by default; a secrets file
            // (`LC_SECRETS_FILE`) may list some, and the simulator learns their tokens.
            instagram_tokens: BTreeMap::new(),
            external_id_keys: BTreeMap::from([(
                "1".to_string(),
                Secret::new(base64_32(&generated("external-id-key"))),
            )]),
        },
        generated_secret,
    )
}

/// 32 bytes as base64, from a hex seed (local ref-signing key).
fn base64_32(seed_hex: &str) -> String {
    use base64::Engine;
    let digest = Sha256::digest(seed_hex.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// The Graph simulator, configured with the same pages and tokens.
pub async fn start_sim(secrets: &Secrets, rate_limit_per_sec: u32) -> Result<SimHandle, String> {
    let mut config = SimConfig {
        app_id: APP_ID.into(),
        app_secret: secrets.apps[0].app_secret.expose().to_string(),
        rate_limit_per_sec,
        ..SimConfig::default()
    };
    for (page, token) in &secrets.page_tokens {
        config = config.with_page(page, token.expose());
    }
    let sim = graph_sim::start(config)
        .await
        .map_err(|e| format!("graph simulator: {e}"))?;
    // The Instagram-Login path: the simulator answers for graph.instagram.com too, and knows
    // each Instagram user token under the id the secret keys it by (the `/<IG_ID>/messages` node).
    for (ig_user_id, token) in &secrets.instagram_tokens {
        sim.register_instagram_token(graph_sim::InstagramTokenRegistration {
            token: token.expose().to_string(),
            ig_account_id: ig_user_id.clone(),
            expired: false,
        });
    }
    Ok(sim)
}

/// Everything `serve`, `demo` and `load` run: backends, simulator, pipeline, HTTP.
pub struct Stack {
    pub pipeline: Pipeline,
    pub sim: Option<SimHandle>,
    pub addr: SocketAddr,
    pub secrets: Arc<Secrets>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Stack {
    pub async fn start(
        settings: &Settings,
        secrets: Secrets,
        clock: Arc<dyn lc_core::ports::Clock>,
        sim_rate_limit: u32,
        run_id: &str,
    ) -> Result<Stack, String> {
        let secrets = Arc::new(secrets);
        let (sim, graph_url) = match &settings.graph_url {
            Some(url) => (None, url.clone()),
            None => {
                let sim = start_sim(&secrets, sim_rate_limit).await?;
                let url = sim.base_url();
                (Some(sim), url)
            }
        };
        let backends = match &settings.aws_endpoint {
            Some(endpoint) => Backends::aws(endpoint, run_id, 30).await?,
            None => Backends::memory(clock.clone(), 30_000),
        };
        let graph_url_for_login = graph_url.clone();
        let pipeline = Pipeline::new(
            backends,
            secrets.clone(),
            clock,
            PipelineConfig {
                graph_base_url: graph_url,
                graph_timeout: Duration::from_secs(5),
                lifecycle: LifecycleConfig::default(),
                sender: SenderConfig {
                    // The local sending processes (8 sender consumers, 8 events consumers
                    // sending inline, the deadline checks) share the simulator's per-Page rate,
                    // as the deployed functions share Meta's.
                    pacing: lc_core::sending::pacing::PacingConfig {
                        page_rate_per_sec: sim_rate_limit,
                        instances: 17,
                        ..Default::default()
                    },
                    ..SenderConfig::default()
                },
                poll: Duration::from_millis(20),
                workers: 8,
                events_window: settings.events_window,
                outbound_window: settings.outbound_window,
            },
        )?;
        // `serve`, `demo` and `load` never read the metrics back (the meter counts their EMF
        // documents as they are recorded); kept, they would grow for as long as it runs.
        pipeline.metrics.keep_none();
        let graph = lc_adapters::graph::GraphClient::new(lc_adapters::graph::GraphConfig::at(
            graph_url_for_login,
        ))
        .map_err(|e| e.to_string())?;
        let login = Arc::new(Login::new(
            Arc::new(graph),
            pipeline.backends.events.clone(),
            pipeline.backends.table.optins.clone(),
            Arc::new(secrets.clone()),
            pipeline.clock.clone(),
            pipeline.metrics.clone(),
            LoginConfig {
                default_page_id: PAGE.into(),
                app_id: APP_ID.into(),
                // Locally the sample page shows the whole Option 2 flow; deployed it is off
                // unless the DeriveLoginId parameter says otherwise.
                derive_login_id: true,
                ..LoginConfig::default()
            },
        ));
        if let Some(path) = &settings.events_log {
            spawn_events_log(pipeline.backends.published.clone(), path.clone())?;
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], settings.port));
        let listener =
            graph_sim::listen(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let people = Arc::new(People::new(
            pipeline.backends.table.clone(),
            pipeline.clock.clone(),
        ));
        let deletion = Arc::new(DataDeletion::new(
            pipeline.backends.table.clone(),
            Arc::new(secrets.clone()),
            pipeline.clock.clone(),
            DeletionConfig {
                default_page_id: PAGE.into(),
                public_base_url: Some(format!("http://{addr}")),
            },
        ));
        // Every Function URL on one port, as the Lambdas serve them: the same router. Locally
        // the people lookup and the messages endpoint are open (127.0.0.1 only); in AWS their
        // URLs take SigV4, checked before the Lambda runs.
        let app = Api::new()
            .intake(pipeline.intake.clone())
            .login(login)
            .people(people)
            .deletion(deletion)
            .messages(pipeline.followups.clone())
            .router()
            .layer(axum::middleware::from_fn(metered));
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "http server stopped");
            }
        });
        Ok(Stack {
            pipeline,
            sim,
            addr,
            secrets,
            server,
        })
    }

    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhook", self.addr)
    }

    pub fn messages_url(&self) -> String {
        format!("http://{}{}", self.addr, lc_api::messages::MESSAGES_PATH)
    }

    pub fn app_secret(&self) -> &str {
        self.secrets.apps[0].app_secret.expose()
    }
}

pub async fn serve(settings: Settings) -> Result<(), String> {
    crate::init_logs();
    let pages = page_ids(settings.pages);
    let (secrets, generated_secret) = local_secrets(&pages);
    let verify = secrets.verify_token.expose().to_string();
    let stack = Stack::start(
        &settings,
        secrets,
        Arc::new(SystemClock),
        300,
        &generated("run")[..8],
    )
    .await?;
    let sample = sample_optin();
    println!(
        "login-connect local runner ({})",
        stack.pipeline.backends.label
    );
    println!("  webhook:        {}", stack.webhook_url());
    println!("  login page:     http://{}/   (POST /login; the page loads Facebook's JS SDK from the internet)", stack.addr);
    println!(
        "  people:         http://{}/v1/people?login_id=...   data deletion: POST http://{}/data-deletion",
        stack.addr, stack.addr
    );
    if let Some(name) = &stack.pipeline.backends.bus_name {
        println!("  event bus: {name}");
    }
    if let Some(path) = &settings.events_log {
        println!(
            "  events log:     {} (one JSON line per published event)",
            path.display()
        );
    }
    match &stack.sim {
        Some(sim) => println!(
            "  graph sim:      {} (sent messages: {}/_sim/messages)",
            sim.base_url(),
            sim.base_url()
        ),
        None => println!(
            "  graph:          {}",
            settings.graph_url.as_deref().unwrap_or("")
        ),
    }
    if generated_secret {
        println!(
            "  app secret:     {}   (generated; set LC_APP_SECRET to fix it)",
            stack.app_secret()
        );
        println!("  verify token:   {verify}");
    } else {
        println!("  app secret and verify token: from LC_APP_SECRET / LC_VERIFY_TOKEN");
    }
    if let Some(sim) = &stack.sim {
        sim.register_login_id("sample-login-id", None, now_ms());
    }
    // A person who wrote a moment ago, so the printed follow-up has an open window.
    let now = now_ms();
    if let Err(e) = stack
        .pipeline
        .backends
        .table
        .people
        .record_user_message(PAGE, SAMPLE_PSID, now)
        .await
    {
        return Err(format!("seeding the sample person: {e}"));
    }
    if let Some(sim) = &stack.sim {
        sim.register_person(PAGE, SAMPLE_PSID, now);
    }
    println!(
        "  messages:       {}   (POST; SigV4 when deployed, none on 127.0.0.1)",
        stack.messages_url()
    );
    println!("  try a follow-up to the sample person (psid {SAMPLE_PSID}, wrote just now):");
    println!(
        "    curl -s -X POST {} -H 'content-type: application/json' \\\n      --data-binary '{}'",
        stack.messages_url(),
        sample_message(
            SAMPLE_PSID,
            "Your order has shipped.",
            &generated("key")[..12]
        )
    );
    println!("    (or: login-connect message --psid {SAMPLE_PSID} --text 'Hi again')");
    println!("  try a signed Login Connect opt-in:");
    println!(
        "    curl -s -X POST {} -H 'content-type: application/json' \\\n      -H 'x-hub-signature-256: {}' \\\n      --data-binary '{}'",
        stack.webhook_url(),
        sign(stack.app_secret(), sample.as_bytes()),
        sample
    );
    println!("  Ctrl-C stops.");
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}

/// Appends each published event to `path` as one JSON line (`detail-type` + `detail`), as it
/// is published.
fn spawn_events_log(
    bus: Arc<lc_core::memory::MemoryBus>,
    path: std::path::PathBuf,
) -> Result<(), String> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("--events-log {}: {e}", path.display()))?;
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            for e in bus.since(seen) {
                seen += 1;
                let line = serde_json::json!({
                    "detail-type": e.detail_type.as_str(),
                    "source": lc_core::bus::SOURCE,
                    "detail": e.detail,
                });
                if let Err(err) = writeln!(file, "{line}") {
                    tracing::warn!(error = %err, "events log not written");
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    Ok(())
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The person `serve` seeds: wrote to the default Page when the runner started.
pub const SAMPLE_PSID: &str = "7000000000000001";

/// A follow-up request body (what `message` and the printed curl send).
pub fn sample_message(psid: &str, text: &str, key: &str) -> String {
    serde_json::json!({
        "recipient": {"psid": psid},
        "page_id": PAGE,
        "message": {"text": text},
        "intent": "reply",
        "idempotency_key": key,
    })
    .to_string()
}

/// `message --psid … --text …`: one follow-up to the local endpoint; prints the answer.
pub async fn message(args: &crate::cli::MessageArgs) -> Result<(), String> {
    let key = args
        .key
        .clone()
        .unwrap_or_else(|| generated("idempotency-key")[..16].to_string());
    let mut body: serde_json::Value =
        serde_json::from_str(&sample_message(&args.psid, &args.text, &key))
            .map_err(|e| e.to_string())?;
    body["page_id"] = serde_json::json!(args.page);
    body["intent"] = serde_json::json!(args.intent);
    if let Some(agent) = &args.agent {
        body["author"] = serde_json::json!({"kind": "human", "id": agent});
    }
    let resp = reqwest::Client::new()
        .post(&args.url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| e.without_url().to_string())?;
    println!("{status} {text}");
    if status == 202 {
        Ok(())
    } else {
        Err(format!("messages answered {status}"))
    }
}

fn sample_optin() -> String {
    let now = now_ms();
    format!(
        r#"{{"object":"page","entry":[{{"id":"{PAGE}","time":{now},"messaging":[{{"recipient":{{"id":"{PAGE}"}},"timestamp":{now},"optin":{{"login_id":"sample-login-id"}}}}]}}]}}"#
    )
}

/// `send FILE [--url URL]`: signs the file's exact bytes with `LC_APP_SECRET` and posts them.
pub async fn send(args: &crate::cli::SendArgs) -> Result<(), String> {
    let file = args.file.display().to_string();
    let url = args.url.as_str();
    let secret = std::env::var("LC_APP_SECRET")
        .map_err(|_| "set LC_APP_SECRET to the secret the runner printed")?;
    let body = std::fs::read(&args.file).map_err(|e| format!("{file}: {e}"))?;
    let client = reqwest::Client::new();
    let (status, text) = post_signed(&client, url, &secret, body).await?;
    println!("{status} {text}");
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("webhook answered {status}"))
    }
}

/// POSTs a body signed the way Meta signs it.
pub async fn post_signed(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    body: Vec<u8>,
) -> Result<(u16, String), String> {
    let signature = sign(secret, &body);
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| e.without_url().to_string())?;
    Ok((status, text))
}

/// Each HTTP request is one invocation of the function whose Function URL serves its path
/// (for the cost line).
async fn metered(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    let function = if path.starts_with("/webhook") {
        "webhook"
    } else if path.starts_with("/login") {
        "login"
    } else if path.starts_with(lc_api::messages::MESSAGES_PATH) {
        "messages-api"
    } else {
        "people"
    };
    crate::meter::meter()
        .invoke(function, next.run(request))
        .await
}
