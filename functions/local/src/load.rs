//! `load --optins N --concurrency C`: signed opt-ins through the webhook endpoint until every
//! first message reached the simulator. Latency is webhook POST to message accepted by the
//! simulator. With `--aws-endpoint`, also the cost per opt-in from the counted AWS requests.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lc_core::ports::SystemClock;

use crate::cli::{Common, LoadArgs, ServeArgs};
use crate::cost;
use crate::serve::{generated, local_secrets, now_ms, page_ids, post_signed, Settings, Stack};

pub async fn load(common: &Common, args: &LoadArgs) -> Result<(), String> {
    let optins = args.optins;
    let concurrency = args.concurrency.max(1);
    let pages = page_ids(args.pages);
    let settings = Settings::new(
        common,
        &ServeArgs {
            port: 0,
            pages: args.pages,
        },
    );
    let (secrets, _) = local_secrets(&pages);
    let run = generated("load")[..8].to_string();
    let stack = Stack::start(&settings, secrets, Arc::new(SystemClock), 1_000_000, &run).await?;
    let sim = stack
        .sim
        .as_ref()
        .ok_or("load needs the built-in Graph simulator")?;
    eprintln!(
        "load: {optins} opt-ins, concurrency {concurrency}, {} pages, {}, {} cores",
        pages.len(),
        stack.pipeline.backends.label,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    let t0 = now_ms();
    let login_ids: Vec<String> = (0..optins).map(|i| format!("load-{run}-{i}")).collect();
    for (i, id) in login_ids.iter().enumerate() {
        sim.register_login_id(id, Some(&pages[i % pages.len()]), t0);
    }
    let started: Arc<Vec<AtomicU64>> = Arc::new((0..optins).map(|_| AtomicU64::new(0)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .map_err(|e| e.to_string())?;
    let url = stack.webhook_url();
    let secret = stack.app_secret().to_string();
    let login_ids = Arc::new(login_ids);
    let pages = Arc::new(pages);
    let wall = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, secret) = (client.clone(), url.clone(), secret.clone());
        let (next, started, retries, login_ids, pages) = (
            next.clone(),
            started.clone(),
            retries.clone(),
            login_ids.clone(),
            pages.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= login_ids.len() {
                    return;
                }
                let page = &pages[i % pages.len()];
                let ts = now_ms();
                let body = format!(
                    r#"{{"object":"page","entry":[{{"id":"{page}","time":{ts},"messaging":[{{"recipient":{{"id":"{page}"}},"timestamp":{ts},"optin":{{"login_id":"{}"}}}}]}}]}}"#,
                    login_ids[i]
                );
                started[i].store(ts as u64, Ordering::Relaxed);
                for attempt in 0..5 {
                    match post_signed(&client, &url, &secret, body.clone().into_bytes()).await {
                        Ok((200, _)) => break,
                        _ => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                        }
                    }
                }
            }
        }));
    }

    let tty = std::io::stderr().is_terminal();
    let mut last = (0u64, Instant::now());
    loop {
        let accepted = sim.stats().accepted;
        if tty {
            let posted = next.load(Ordering::Relaxed).min(optins);
            eprint!("\r  posted {posted}/{optins}  sent {accepted}/{optins}   ");
        }
        if accepted >= optins as u64 {
            break;
        }
        if accepted != last.0 {
            last = (accepted, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            eprintln!("\nload: no progress for 30 s; stopping");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if tty {
        eprintln!();
    }
    for w in workers {
        let _ = w.await;
    }
    let elapsed = wall.elapsed();

    let mut first: HashMap<String, i64> = HashMap::new();
    let mut total = 0usize;
    for m in sim.messages() {
        if let Some(id) = m.recipient.get("login_id").and_then(|v| v.as_str()) {
            total += 1;
            first.entry(id.to_string()).or_insert(m.at_ms);
        }
    }
    let index: HashMap<&str, usize> = login_ids
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let mut latencies: Vec<i64> = first
        .iter()
        .filter_map(|(id, at)| {
            index
                .get(id.as_str())
                .map(|i| at - started[*i].load(Ordering::Relaxed) as i64)
        })
        .collect();
    latencies.sort_unstable();
    let pct = |p: f64| -> i64 {
        if latencies.is_empty() {
            return 0;
        }
        latencies[((latencies.len() - 1) as f64 * p).round() as usize]
    };
    let sent = first.len();
    println!(
        "load optins={optins} sent={sent} lost={} duplicates={} throughput_per_s={:.1} p50_ms={} p99_ms={}",
        optins.saturating_sub(sent),
        total - sent,
        sent as f64 / elapsed.as_secs_f64().max(0.001),
        pct(0.50),
        pct(0.99)
    );
    let retried = retries.load(Ordering::Relaxed);
    if retried > 0 {
        eprintln!("load: {retried} webhook POSTs were retried");
    }
    if settings.aws_endpoint.is_some() {
        println!("{}", cost::line(&stack.pipeline.requests(), sent.max(1))?);
    }
    if sent == optins && total == sent {
        Ok(())
    } else {
        Err("some opt-ins were lost or duplicated".into())
    }
}
