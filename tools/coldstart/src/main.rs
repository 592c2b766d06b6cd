//! `coldstart`: cold-start time of each Lambda binary, beside a hello-world `lambda_runtime`.
//!
//! ```text
//! coldstart --bin-dir DIR [--runs 20] [--timeout-ms 5000] [--hello hello] [--secrets-manager] [NAME...]
//! ```
//!
//! For each run a fresh Lambda Runtime API emulator listens on `127.0.0.1:0`; the binary is
//! started with `AWS_LAMBDA_RUNTIME_API` pointing at it and dummy configuration (local secrets,
//! `AWS_ENDPOINT_URL` on an unused 127.0.0.1 port, so nothing leaves the machine). The time from
//! just before exec to the moment the request line `GET /2018-06-01/runtime/invocation/next`
//! arrives is the run's init time; the child is then killed. Runs are interleaved (one round is
//! hello, then every function once) so background load hits all binaries alike. Each function
//! prints one line on stdout:
//!
//! ```text
//! coldstart <function> init_ms=<median> hello_ms=<median> ratio=<init/hello> zip_bytes=<n>
//! ```
//!
//! `zip_bytes` is the binary zipped as `bootstrap` (deflate, level 9, with python3's zipfile:
//! the same measure `.ci/run` prints for the `sam build` artefacts). Spread and notes go to
//! stderr. `--secrets-manager` adds one line per function named `<function>+sm`, run as
//! deployed: `LC_SECRET_ID` set and a fake Secrets Manager on 127.0.0.1 (plain HTTP) answering
//! `GetSecretValue`, which shows what fetching the secret costs before the first `/next`.
//! `--no-zip` skips zipping (prints `zip_bytes=0`).
//!
//! Exit status: 0 when every function that has a binary reached `/next` in every run; 1 when a
//! run failed (its output is shown); 2 on bad arguments. A missing binary is skipped with a note.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
const DEFAULT_NAMES: &[&str] = &["webhook", "events", "sender", "deadline", "login"];
const USAGE: &str = "usage: coldstart --bin-dir DIR [--runs 20] [--timeout-ms 5000] [--hello hello] [--secrets-manager] [--no-zip] [NAME...]";

/// What the emulator's acceptor saw first.
enum Seen {
    /// The first request was `GET .../invocation/next`, at this instant. The connection is kept
    /// open until the child is killed, so the runtime never sees an error before it dies.
    Next(Instant, TcpStream),
    /// The first request was something else (an init error report, typically).
    Other(String),
}

struct Args {
    bin_dir: PathBuf,
    runs: usize,
    timeout: Duration,
    hello: String,
    secrets_manager: bool,
    zip: bool,
    names: Vec<String>,
}

/// One binary to measure, under one configuration.
struct Target {
    label: String,
    path: PathBuf,
    secret_id: bool,
    times: Vec<Duration>,
    failure: Option<String>,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse_args(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("coldstart: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("coldstart: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(argv: Vec<String>) -> Result<Args, String> {
    let mut args = Args {
        bin_dir: PathBuf::new(),
        runs: 20,
        timeout: Duration::from_secs(5),
        hello: "hello".into(),
        secrets_manager: false,
        zip: true,
        names: Vec::new(),
    };
    let mut bin_dir = None;
    let mut it = argv.into_iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} needs a value"));
        match a.as_str() {
            "--bin-dir" => bin_dir = Some(PathBuf::from(value("--bin-dir")?)),
            "--runs" => {
                args.runs = value("--runs")?
                    .parse()
                    .map_err(|e| format!("--runs: {e}"))?;
                if args.runs == 0 {
                    return Err("--runs must be at least 1".into());
                }
            }
            "--timeout-ms" => {
                let ms: u64 = value("--timeout-ms")?
                    .parse()
                    .map_err(|e| format!("--timeout-ms: {e}"))?;
                if ms == 0 {
                    return Err("--timeout-ms must be greater than 0".into());
                }
                args.timeout = Duration::from_millis(ms);
            }
            "--hello" => args.hello = value("--hello")?,
            "--secrets-manager" => args.secrets_manager = true,
            "--no-zip" => args.zip = false,
            f if f.starts_with('-') => return Err(format!("unknown option {f}")),
            name => args.names.push(name.to_string()),
        }
    }
    args.bin_dir = bin_dir.ok_or("--bin-dir is required")?;
    if args.names.is_empty() {
        args.names = DEFAULT_NAMES.iter().map(|s| s.to_string()).collect();
    }
    Ok(args)
}

fn run(args: &Args) -> Result<bool, String> {
    let hello_path = args.bin_dir.join(&args.hello);
    if !hello_path.is_file() {
        return Err(format!(
            "no hello binary at {} (build it: cargo build --release -p lc-coldstart)",
            hello_path.display()
        ));
    }
    let mut targets = vec![Target::new(args.hello.clone(), hello_path, false)];
    for name in &args.names {
        let path = args.bin_dir.join(name);
        if !path.is_file() {
            eprintln!("note: {name}: no binary at {}, skipped", path.display());
            continue;
        }
        targets.push(Target::new(name.clone(), path.clone(), false));
        if args.secrets_manager {
            targets.push(Target::new(format!("{name}+sm"), path, true));
        }
    }
    if targets.len() == 1 {
        return Err("no function binary to measure".into());
    }

    // Addresses that must not answer: where the SDK would send AWS calls by default.
    let dead_endpoint = unused_port()?;
    let fake_sm = if args.secrets_manager {
        Some(FakeSecretsManager::start()?)
    } else {
        None
    };
    let base_env = base_env(&format!("http://{dead_endpoint}"));

    let started = Instant::now();
    for round in 0..args.runs {
        for t in targets.iter_mut().filter(|t| t.failure.is_none()) {
            let mut env = base_env.clone();
            if t.secret_id {
                if let Some(sm) = &fake_sm {
                    env.retain(|(k, _)| {
                        !matches!(
                            k.as_str(),
                            "LC_APP_SECRET" | "LC_VERIFY_TOKEN" | "AWS_ENDPOINT_URL"
                        )
                    });
                    env.push(("LC_SECRET_ID".into(), "login-connect/coldstart".into()));
                    env.push(("AWS_ENDPOINT_URL".into(), format!("http://{}", sm.addr)));
                }
            }
            match run_once(&t.path, &env, args.timeout) {
                Ok(d) => t.times.push(d),
                Err(e) => {
                    eprintln!("note: {} run {}: {e}", t.label, round + 1);
                    t.failure = Some(e);
                }
            }
        }
    }
    if let Some(sm) = fake_sm {
        sm.stop();
    }
    eprintln!(
        "# {} rounds of {} binaries in {:.1} s",
        args.runs,
        targets.len(),
        started.elapsed().as_secs_f64()
    );

    let hello = &targets[0];
    if hello.failure.is_some() || hello.times.is_empty() {
        return Err(format!("{} never reached /next", hello.label));
    }
    let hello_ms = median_ms(&hello.times);
    let mut zips: Vec<(PathBuf, u64)> = Vec::new();
    let mut zip_of = |path: &Path| -> u64 {
        if !args.zip {
            return 0;
        }
        if let Some((_, z)) = zips.iter().find(|(p, _)| p == path) {
            return *z;
        }
        let z = zip_bytes(path).unwrap_or_else(|e| {
            eprintln!("note: {}: zip size unknown: {e}", path.display());
            0
        });
        zips.push((path.to_path_buf(), z));
        z
    };
    eprintln!("# {} zip_bytes={}", spread(hello), zip_of(&hello.path));
    let mut ok = true;
    let mut lines = Vec::new();
    for t in &targets[1..] {
        if t.failure.is_some() {
            ok = false;
            continue;
        }
        eprintln!("# {}", spread(t));
        let init_ms = median_ms(&t.times);
        lines.push(format!(
            "coldstart {} init_ms={init_ms:.2} hello_ms={hello_ms:.2} ratio={:.2} zip_bytes={}",
            t.label,
            init_ms / hello_ms,
            zip_of(&t.path)
        ));
    }
    for line in lines {
        println!("{line}");
    }
    Ok(ok)
}

impl Target {
    fn new(label: String, path: PathBuf, secret_id: bool) -> Self {
        Target {
            label,
            path,
            secret_id,
            times: Vec::new(),
            failure: None,
        }
    }
}

/// The environment every binary gets (and nothing else: the parent's is cleared, so no AWS
/// profile, endpoint or credentials of this shell leak in). A superset of what each function
/// reads at init; every value is a dummy.
fn base_env(aws_endpoint: &str) -> Vec<(String, String)> {
    let account = "123456789012";
    let region = "us-east-1";
    let queue = |name: &str| format!("http://sqs.{region}.localhost/{account}/{name}");
    let mut env: Vec<(String, String)> = [
        ("AWS_LAMBDA_FUNCTION_NAME", "coldstart".to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2025/01/01/[$LATEST]coldstart".into(),
        ),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/coldstart".into()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("AWS_REGION", region.into()),
        ("AWS_DEFAULT_REGION", region.into()),
        ("AWS_ACCESS_KEY_ID", "AKIDCOLDSTART".into()),
        ("AWS_SECRET_ACCESS_KEY", "coldstart-secret-key".into()),
        ("AWS_SESSION_TOKEN", "coldstart-session-token".into()),
        ("AWS_ENDPOINT_URL", aws_endpoint.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/nonexistent/coldstart/config".into()),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/coldstart/credentials".into(),
        ),
        ("LAMBDA_TASK_ROOT", "/var/task".into()),
        ("TZ", ":UTC".into()),
        ("LOG_LEVEL", "info".into()),
        ("LC_APP_SECRET", "coldstart-app-secret".into()),
        ("LC_VERIFY_TOKEN", "coldstart-verify-token".into()),
        ("LC_APP_ID", "1234567890".into()),
        ("LC_DEFAULT_PAGE_ID", "100000000000001".into()),
        ("LC_GRAPH_BASE_URL", aws_endpoint.into()),
        ("LC_GRAPH_INSTAGRAM_BASE_URL", aws_endpoint.into()),
        ("TABLE_NAME", "coldstart-table".into()),
        ("EVENTS_QUEUE_URL", queue("events")),
        ("OUTBOUND_QUEUE_URL", queue("outbound")),
        ("OUTBOUND_DLQ_URL", queue("outbound-dlq")),
        ("SCHEDULE_GROUP", "coldstart".into()),
        ("EVENT_BUS_NAME", "coldstart".into()),
        (
            "DEADLINE_FUNCTION_ARN",
            format!("arn:aws:lambda:{region}:{account}:function:deadline"),
        ),
        (
            "SCHEDULER_ROLE_ARN",
            format!("arn:aws:iam::{account}:role/coldstart-scheduler"),
        ),
        (
            "SCHEDULER_DLQ_ARN",
            format!("arn:aws:sqs:{region}:{account}:scheduler-dlq"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Ok(path) = std::env::var("PATH") {
        env.push(("PATH".into(), path));
    }
    env
}

/// One cold start: exec the binary, wait for its first request, kill it.
fn run_once(bin: &Path, env: &[(String, String)], timeout: Duration) -> Result<Duration, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel();
    let acceptor = thread::spawn(move || accept_first(listener, tx));

    let start = Instant::now();
    let mut child = Command::new(bin)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;

    let outcome = loop {
        match rx.recv_timeout(Duration::from_millis(10)) {
            Ok(Seen::Next(at, stream)) => break Ok((at.duration_since(start), Some(stream))),
            Ok(Seen::Other(line)) => {
                break Err(format!("first request was {line:?}, not GET /next"))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err("the emulator stopped before any request".into())
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(status)) = child.try_wait() {
                    // It may have sent its request just before exiting.
                    if let Ok(Seen::Next(at, stream)) = rx.recv_timeout(Duration::from_millis(50)) {
                        break Ok((at.duration_since(start), Some(stream)));
                    }
                    break Err(format!("exited ({status}) before GET /next"));
                }
                if start.elapsed() > timeout {
                    break Err(format!("no GET /next within {} ms", timeout.as_millis()));
                }
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    if outcome.is_err() {
        // Unblock the acceptor if nothing ever connected.
        let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
    }
    let _ = acceptor.join();
    match outcome {
        Ok((d, stream)) => {
            drop(stream);
            Ok(d)
        }
        Err(e) => {
            let mut out = String::new();
            for pipe in [
                child.stdout.take().map(|p| Box::new(p) as Box<dyn Read>),
                child.stderr.take().map(|p| Box::new(p) as Box<dyn Read>),
            ]
            .into_iter()
            .flatten()
            {
                let mut text = String::new();
                let _ = pipe.take(64 * 1024).read_to_string(&mut text);
                out.push_str(&text);
            }
            let tail: Vec<&str> = out.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            if tail.is_empty() {
                Err(e)
            } else {
                Err(format!("{e}\n    {}", tail.join("\n    ")))
            }
        }
    }
}

/// The emulator: accepts one connection and reads its request line.
fn accept_first(listener: TcpListener, tx: mpsc::Sender<Seen>) {
    let Ok((stream, _)) = listener.accept() else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut line = String::new();
    let _ = BufReader::new(read_half).read_line(&mut line);
    let at = Instant::now();
    let mut parts = line.split_whitespace();
    let seen = match (parts.next(), parts.next()) {
        (Some("GET"), Some(path)) if path == NEXT_PATH => Seen::Next(at, stream),
        _ => Seen::Other(line.trim_end().to_string()),
    };
    let _ = tx.send(seen);
}

/// A 127.0.0.1 port nothing listens on: connections to it are refused at once.
fn unused_port() -> Result<SocketAddr, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map_err(|e| e.to_string())
}

fn median_ms(times: &[Duration]) -> f64 {
    let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    }
}

fn spread(t: &Target) -> String {
    let mut ms: Vec<f64> = t.times.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let p90 = ms[((ms.len() * 9).div_ceil(10)).saturating_sub(1)];
    format!(
        "{} runs={} min_ms={:.2} median_ms={:.2} p90_ms={p90:.2} max_ms={:.2}",
        t.label,
        ms.len(),
        ms[0],
        median_ms(&t.times),
        ms[ms.len() - 1]
    )
}

/// The binary zipped as `bootstrap`, deflate level 9: the measure `.ci/run` uses.
fn zip_bytes(path: &Path) -> Result<u64, String> {
    const SCRIPT: &str = "import io, sys, zipfile\n\
        buf = io.BytesIO()\n\
        with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED, compresslevel=9) as z:\n    \
        z.write(sys.argv[1], 'bootstrap')\n\
        print(len(buf.getvalue()))\n";
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "python3: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("python3 printed no size: {e}"))
}

/// A Secrets Manager stand-in over plain HTTP on 127.0.0.1: answers every request with one
/// `GetSecretValue` result. Each connection gets a thread; `stop` ends the accept loop.
struct FakeSecretsManager {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

impl FakeSecretsManager {
    fn start() -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = conn {
                    thread::spawn(move || serve_secret(stream));
                }
            }
        });
        Ok(FakeSecretsManager { addr, stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        let _ = self.thread.join();
    }
}

fn serve_secret(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    let secret = r#"{"apps":[{"app_id":"1234567890","app_secret":"coldstart-app-secret","client_token":"ct"}],"verify_token":"coldstart-verify-token","page_tokens":{"100000000000001":"page-token"},"ref_keys":{}}"#;
    let body = format!(
        r#"{{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:login-connect/coldstart-AbCdEf","Name":"login-connect/coldstart","VersionId":"00000000-0000-0000-0000-000000000000","SecretString":{},"VersionStages":["AWSCURRENT"],"CreatedDate":1.7e9}}"#,
        serde_json::Value::String(secret.into())
    );
    // Keep-alive: answer requests until the client goes away.
    loop {
        let mut content_length = 0usize;
        let mut first = true;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if first {
                first = false;
                continue;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-length") {
                    content_length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut sink = vec![0u8; content_length];
        if reader.read_exact(&mut sink).is_err() {
            return;
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-requestid: coldstart\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median_ms(&ms(&[9, 1, 5])), 5.0);
        assert_eq!(median_ms(&ms(&[4, 1, 3, 2])), 2.5);
    }

    #[test]
    fn defaults_and_flags() {
        let a = parse_args(vec!["--bin-dir".into(), "d".into()]).unwrap();
        assert_eq!(a.runs, 20);
        assert_eq!(a.timeout, Duration::from_secs(5));
        assert_eq!(a.names, DEFAULT_NAMES);
        let a = parse_args(
            ["--runs", "3", "--bin-dir", "d", "events", "--no-zip"]
                .map(String::from)
                .to_vec(),
        )
        .unwrap();
        assert_eq!(
            (a.runs, a.zip, a.names.as_slice()),
            (3, false, &["events".to_string()][..])
        );
        assert!(
            parse_args(vec!["events".into()]).is_err(),
            "--bin-dir is required"
        );
        assert!(parse_args(["--bin-dir", "d", "--bogus"].map(String::from).to_vec()).is_err());
    }
}
