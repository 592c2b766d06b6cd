//! The command line: every flag typed and checked by clap (an unknown flag is an error, not
//! silently ignored).

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "login-connect",
    version,
    about = "login-connect on this machine: the whole service on in-memory adapters and a Graph \
             simulator (no AWS account, no Docker), or on the AWS adapters against moto."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub common: Common,
}

/// Flags every command takes.
#[derive(Debug, Clone, Default, Args)]
pub struct Common {
    /// Use the AWS adapters against this endpoint (moto) instead of memory.
    #[arg(long, global = true, value_name = "URL")]
    pub aws_endpoint: Option<String>,
    /// A real Graph base URL instead of the built-in simulator.
    #[arg(long, global = true, value_name = "URL")]
    pub graph_url: Option<String>,
    /// Append every event published on the bus to FILE, one JSON line each.
    #[arg(long, global = true, value_name = "FILE")]
    pub events_log: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run until Ctrl-C; prints the URLs, the secrets and a signed curl.
    Serve(ServeArgs),
    /// Play the whole story, checking every step; exit 0 only if every step held.
    Demo,
    /// Sign FILE's exact bytes with LC_APP_SECRET and POST them to the webhook.
    Send(SendArgs),
    /// Signed opt-ins through the webhook until every first message reached the simulator.
    Load(LoadArgs),
    /// POST one follow-up to a running `serve` (`/v1/messages`) and print the answer.
    Message(MessageArgs),
    /// A simulated day of opt-ins (and the day after) through the real domain code, the
    /// in-memory backends and the Graph simulator with Meta's per-Page rate, with a Meta
    /// outage; prints one `scale ...` line and fails if an opt-in was late or lost.
    Scale(ScaleArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Pages configured (the first is the default Page).
    #[arg(long, default_value_t = 1)]
    pub pages: usize,
}

impl Default for ServeArgs {
    fn default() -> Self {
        ServeArgs {
            port: 8080,
            pages: 1,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// The body to sign and post (e.g. a fixture from functions/core/tests/fixtures/webhooks/).
    pub file: std::path::PathBuf,
    /// The webhook URL.
    #[arg(long, default_value = "http://127.0.0.1:8080/webhook")]
    pub url: String,
}

#[derive(Debug, Clone, Args)]
pub struct MessageArgs {
    /// The person's PSID on the Page.
    #[arg(long)]
    pub psid: String,
    /// The message text.
    #[arg(long)]
    pub text: String,
    /// The Page (default: the runner's default Page).
    #[arg(long, default_value = crate::serve::PAGE)]
    pub page: String,
    /// reply, update, human_agent (needs --agent) or utility.
    #[arg(long, default_value = "reply")]
    pub intent: String,
    /// The human agent who wrote it (sent as author {kind: human, id}).
    #[arg(long)]
    pub agent: Option<String>,
    /// The idempotency key (default: a fresh random one).
    #[arg(long)]
    pub key: Option<String>,
    /// The endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8080/v1/messages")]
    pub url: String,
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Opt-ins to send.
    #[arg(long, default_value_t = 1000)]
    pub optins: usize,
    /// Requests in flight at once (closed loop).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Pages the opt-ins are spread over.
    #[arg(long, default_value_t = 20)]
    pub pages: usize,
    /// Open loop: start an opt-in every 1/R s whatever is still in flight (replaces
    /// `--concurrency`); latency counts from each opt-in's scheduled start, so a stall shows.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Opt-ins per webhook POST, each its own entry, as Meta batches deliveries under load
    /// (1-1000).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Also print latency per window of this many ms, by when the opt-ins started.
    #[arg(long)]
    pub windows: Option<u64>,
    /// Also post a delivery and a read per opt-in, as Meta does for a Page subscribed to
    /// `message_deliveries` and `message_reads` (priced in the cost line).
    #[arg(long)]
    pub receipts: bool,
}

/// `scale`: defaults are the template's (reserved concurrency, batch size, margin, queues).
#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// Opt-ins in the simulated day.
    #[arg(long, default_value_t = 100_000)]
    pub optins: usize,
    /// Pages (Zipf weights: the first is the biggest).
    #[arg(long, default_value_t = 10)]
    pub pages: usize,
    /// Peak arrival rate over the day's mean rate.
    #[arg(long, default_value_t = 10.0)]
    pub peak_ratio: f64,
    /// Hours the arrival curve spans (24 = a day; fewer squeezes the same day into less time).
    #[arg(long, default_value_t = 24.0)]
    pub arrival_hours: f64,
    /// Hour of the simulated day at which Meta starts answering 5xx.
    #[arg(long, default_value_t = 16.0)]
    pub outage_start_hour: f64,
    /// How long Meta answers 5xx (0 = no outage).
    #[arg(long, default_value_t = 6.0)]
    pub outage_hours: f64,
    /// Simulated milliseconds per step (one invocation per function instance per step).
    #[arg(long, default_value_t = 250)]
    pub step_ms: i64,
    /// Webhook requests per second (Function URL: 10 x reserved concurrency).
    #[arg(long, default_value_t = 500)]
    pub webhook_rps: u32,
    /// Events function instances (its reserved concurrency).
    #[arg(long, default_value_t = 20)]
    pub events_instances: usize,
    /// Sender function instances (its reserved concurrency).
    #[arg(long, default_value_t = 10)]
    pub sender_instances: usize,
    /// Deadline function instances (its reserved concurrency).
    #[arg(long, default_value_t = 10)]
    pub deadline_instances: usize,
    /// LC_SENDING_INSTANCES: the processes sharing a Page's rate.
    #[arg(long, default_value_t = 20)]
    pub pacing_instances: u32,
    /// The sender slows a Page when Meta's usage headers pass this percentage (above 100:
    /// only Meta's explicit regain-access and retry-after times are honoured).
    #[arg(long, default_value_t = 80)]
    pub pace_threshold_percent: u32,
    /// Meta's per-Page send rate (the simulator enforces it).
    #[arg(long, default_value_t = 300)]
    pub page_rate: u32,
    /// EventBridge Scheduler target invocations per second.
    #[arg(long, default_value_t = 1_000)]
    pub scheduler_tps: u32,
    /// SQS event source batch size.
    #[arg(long, default_value_t = 10)]
    pub batch_size: usize,
    /// The deadline check fires this long before the deadline.
    #[arg(long, default_value_t = 3_600)]
    pub deadline_margin_secs: i64,
    /// Outbound queue maxReceiveCount.
    #[arg(long, default_value_t = 100)]
    pub outbound_max_receives: u32,
    /// SQS in-flight limit of a standard queue (received, not deleted, still hidden).
    #[arg(long, default_value_t = 120_000)]
    pub max_in_flight: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_flags_are_errors() {
        assert!(Cli::try_parse_from(["login-connect", "load", "--optinz", "5"]).is_err());
        assert!(Cli::try_parse_from(["login-connect", "serve", "--port", "x"]).is_err());
    }

    #[test]
    fn defaults_and_global_flags() {
        let cli = Cli::try_parse_from(["login-connect", "demo", "--aws-endpoint", "http://x"])
            .expect("parses");
        assert!(matches!(cli.command, Some(Command::Demo)));
        assert_eq!(cli.common.aws_endpoint.as_deref(), Some("http://x"));
        let cli = Cli::try_parse_from(["login-connect"]).expect("serve by default");
        assert!(cli.command.is_none());
        let cli = Cli::try_parse_from(["login-connect", "load", "--optins", "5"]).expect("parses");
        match cli.command {
            Some(Command::Load(a)) => assert_eq!((a.optins, a.concurrency), (5, 32)),
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["login-connect", "message", "--psid", "7", "--text", "hi"])
            .expect("parses");
        match cli.command {
            Some(Command::Message(a)) => {
                assert_eq!((a.psid.as_str(), a.text.as_str()), ("7", "hi"));
                assert_eq!(
                    (a.page.as_str(), a.intent.as_str()),
                    (crate::serve::PAGE, "reply")
                );
                assert!(a.url.ends_with("/v1/messages"));
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["login-connect", "message", "--text", "hi"]).is_err());
    }
}
