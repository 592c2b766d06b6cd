//! `load --optins N --concurrency C`: signed opt-ins through the webhook endpoint until every
//! first message reached the simulator. Latency is webhook POST to message accepted by the
//! simulator. `--rate R` is the open-loop mode: an opt-in starts every 1/R s whatever is still
//! in flight, and its latency counts from its scheduled start (no coordinated omission). With `--aws-endpoint`, also the cost per opt-in from the counted AWS requests.
//!
//! `duplicates=` counts send *attempts* beyond the first per login_id at the simulator, which
//! runs with `allow_repeat_login_id_sends` on: a second send shows up whatever Meta's
//! one-message rule would have answered to it.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{header, Request, Uri};
use graph_sim::LoginIdTally;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lc_core::ports::SystemClock;
use lc_core::webhook::signature::sign;

use crate::cli::{Common, LoadArgs, ServeArgs};
use crate::cost;
use crate::serve::{generated, local_secrets, now_ms, page_ids, Settings, Stack};

pub async fn load(common: &Common, args: &LoadArgs) -> Result<(), String> {
    let optins = args.optins;
    let concurrency = args.concurrency.max(1);
    let pages = page_ids(args.pages);
    let mut settings = Settings::new(
        common,
        &ServeArgs {
            port: 0,
            pages: args.pages,
        },
    );
    if settings.aws_endpoint.is_some() {
        // A priced run batches as the deployed event sources do: the bill counts receives,
        // deletes and invocations per batch.
        let deployed = cost::Deployed::from_template()?;
        let window = |f: &str| {
            Duration::from_secs(
                deployed
                    .batching_windows
                    .get(f)
                    .copied()
                    .unwrap_or(0)
                    .into(),
            )
        };
        settings.events_window = window("EventsFunction");
        settings.outbound_window = window("SenderFunction");
    }
    let (secrets, _) = local_secrets(&pages);
    let run = generated("load")[..8].to_string();
    let stack = Stack::start(&settings, secrets, Arc::new(SystemClock), 1_000_000, &run).await?;
    let sim = stack
        .sim
        .as_ref()
        .ok_or("load needs the built-in Graph simulator")?;
    // Nobody reads the business's events in a run (unless `--events-log` writes them out).
    if settings.events_log.is_none() {
        stack.pipeline.backends.published.keep_only_counts();
    }
    // The opt-in table grows once, not by doubling (and rehashing) under its lock mid-run.
    if let Some(store) = &stack.pipeline.backends.memory_store {
        store.reserve_optins(optins);
    }
    // A second message to a login_id is accepted and counted instead of refused.
    sim.update_config(graph_sim::ConfigUpdate {
        allow_repeat_login_id_sends: Some(true),
        ..graph_sim::ConfigUpdate::default()
    });
    // Attempts and first acceptances per login_id are all a run reads: the simulator keeps
    // those instead of every message and attempt (~1 KB a send, never freed, zeroed fresh by
    // the kernel on the cores being measured).
    sim.keep_login_id_tally_only();
    let mode = match args.rate {
        Some(r) => format!("open loop at {r}/s"),
        None => format!("concurrency {concurrency}"),
    };
    eprintln!(
        "load: {optins} opt-ins, {mode}, {} pages, {}, {} cores",
        pages.len(),
        stack.pipeline.backends.label,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // What setting up cost (tables, queues, Page items) is not the opt-ins' cost.
    let baseline = stack.pipeline.requests();
    crate::meter::meter().reset();
    let t0 = now_ms();
    let login_ids: Vec<String> = (0..optins).map(|i| format!("load-{run}-{i}")).collect();
    for (i, id) in login_ids.iter().enumerate() {
        sim.register_login_id(id, Some(&pages[i % pages.len()]), t0);
    }
    let started: Arc<Vec<AtomicU64>> = Arc::new((0..optins).map(|_| AtomicU64::new(0)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    // Open loop has as many requests in flight as the latency makes: a pool capped at
    // `--concurrency` closed every connection beyond it after one request, and opened a new
    // one for the next (a TCP handshake and teardown per opt-in, on the same 2 cores).
    let idle = if args.rate.is_some() {
        usize::MAX
    } else {
        concurrency
    };
    // hyper's pooled client, not reqwest: the generator stands in for Meta, and reqwest's own
    // layers (redirects, retries, URL conversions) were ~4% of a flood's CPU on the same 2
    // cores as the service.
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(idle)
        .build(connector);
    // Parsed once: `post(&str)` parsed the URL on every request (3% of the run's CPU).
    let url: Uri = stack.webhook_url().parse().map_err(|e| format!("{e}"))?;
    let secret = stack.app_secret().to_string();
    let batch = args.batch.clamp(1, MAX_BATCH);
    let posts = optins.div_ceil(batch);
    let gen = Arc::new(Generator {
        login_ids,
        pages,
        batch,
        started: started.clone(),
        receipts: args.receipts,
    });
    let wall = Instant::now();
    let wall_ms = now_ms();
    let cpu_at_start = process_cpu();
    let mut workers = Vec::new();
    let post = Arc::new(Poster {
        client,
        url,
        secret,
        retries: retries.clone(),
    });
    if let Some(rate) = args.rate.filter(|r| *r > 0.0) {
        // Open loop: one dispatcher starts opt-in i at wall + i / rate; a batch goes out when
        // its last opt-in is due, so the earlier ones' wait for it counts in their latency.
        let (next, gen, post) = (next.clone(), gen.clone(), post.clone());
        let base_ms = now_ms();
        workers.push(tokio::spawn(async move {
            let mut inflight = Vec::new();
            for k in 0..posts {
                let last = ((k + 1) * gen.batch).min(gen.login_ids.len()) - 1;
                let due = |i: usize| Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until((wall + due(last)).into()).await;
                next.store(k + 1, Ordering::Relaxed);
                let body = gen.body(k, |i| base_ms + due(i).as_millis() as i64);
                let (post, gen) = (post.clone(), gen.clone());
                inflight.push(tokio::spawn(async move { gen.post(&post, k, body).await }));
            }
            for t in inflight {
                let _ = t.await;
            }
        }));
    } else {
        for _ in 0..concurrency {
            let (next, gen, post) = (next.clone(), gen.clone(), post.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= posts {
                        return;
                    }
                    let ts = now_ms();
                    gen.post(&post, k, gen.body(k, |_| ts)).await;
                }
            }));
        }
    }

    let tty = std::io::stderr().is_terminal();
    let mut last = (0u64, Instant::now());
    loop {
        // Progress is the simulator's accepted counter: a counter read. The tally would give
        // the distinct login_ids directly, but walking it under the lock every send takes,
        // ten times a second, stalls every send (7% of the CPU in the profile, when it was
        // the attempt log). A duplicate inflates the counter, so reaching `optins` is only a
        // candidate end, confirmed with the exact count once.
        let accepted = sim.accepted_count();
        if tty {
            let posted = (next.load(Ordering::Relaxed) * batch).min(optins);
            eprint!("\r  posted {posted}/{optins}  sent {accepted}/{optins}   ");
        }
        if accepted >= optins as u64 {
            // Distinct login_ids with an accepted message (a duplicate is not progress).
            if sim.login_ids_accepted() >= optins {
                break;
            }
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
    // The whole process (generator, service, simulator) from the first POST to the last first
    // message: the steadier figure on a shared machine, where the wall time also says how
    // much CPU the run was given.
    let cpu = process_cpu()
        .zip(cpu_at_start)
        .map(|(end, start)| end.saturating_sub(start));
    if args.receipts {
        receipts_settled(&stack, optins).await?;
    }

    let Tally { first, duplicates } = tally(sim.login_id_tally());
    let index: HashMap<&str, usize> = gen
        .login_ids
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
    if let Some(ms) = args.windows.filter(|ms| *ms > 0) {
        print_windows(&first, &index, &started, t0, ms);
    }
    latencies.sort_unstable();
    let pct = |p: f64| -> i64 {
        if latencies.is_empty() {
            return 0;
        }
        latencies[((latencies.len() - 1) as f64 * p).round() as usize]
    };
    let sent = first.len();
    // To the last first message the simulator accepted, not to when the progress loop above
    // (10 a second) noticed it: up to 100 ms more, 8% of a 1.2 s flood.
    let span = first
        .values()
        .max()
        .map(|last| Duration::from_millis((last - wall_ms).max(1) as u64))
        .unwrap_or(elapsed);
    let cpu_per_optin = cpu
        .map(|d| format!(" cpu_us_per_optin={}", d.as_micros() / sent.max(1) as u128))
        .unwrap_or_default();
    println!(
        "load optins={optins} sent={sent} lost={} duplicates={duplicates} throughput_per_s={:.1} p50_ms={} p99_ms={}{cpu_per_optin}",
        optins.saturating_sub(sent),
        sent as f64 / span.as_secs_f64().max(0.001),
        pct(0.50),
        pct(0.99)
    );
    let retried = retries.load(Ordering::Relaxed);
    if retried > 0 {
        eprintln!("load: {retried} webhook POSTs were retried");
    }
    if settings.aws_endpoint.is_some() {
        settled(&stack).await;
        let mut requests = stack.pipeline.requests();
        for (k, v) in &baseline {
            if let Some(n) = requests.get_mut(k) {
                *n = n.saturating_sub(*v);
            }
        }
        println!(
            "{}",
            cost::report(&requests, &crate::meter::meter().snapshot(), sent.max(1))?
        );
    }
    if sent == optins && duplicates == 0 {
        Ok(())
    } else {
        Err("some opt-ins were lost or duplicated".into())
    }
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat` (Linux; `None`
/// elsewhere). Clock ticks are 10 ms: fine for runs of a second or more.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here (0-based 11, 12).
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux Lambda or CI machine we run on.
    Some(Duration::from_millis(ticks * 10))
}

/// Waits until the invocations that sent the last first messages have finished (their
/// `sent` records, schedule deletes and `FirstMessageSent` events come after the send) and
/// their batches are settled: no invocation running and no request but the pollers' empty
/// receives for 200 ms, at most 10 s. Counted at the last first message, a 20-opt-in run
/// priced 35 of its 40 bus events and 19 of its 20 schedule deletes.
async fn settled(stack: &Stack) {
    let busy = || {
        let mut requests = stack.pipeline.requests();
        requests.retain(|k, _| !k.starts_with("sqs.ReceiveMessage"));
        requests
    };
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut last = (busy(), Instant::now());
    while Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = busy();
        if crate::meter::meter().running() > 0 || now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= Duration::from_millis(200) {
            return;
        }
    }
    eprintln!("load: the pipeline was still busy 10 s after the last first message");
}

/// A signed webhook POST with up to 5 tries (Meta retries a refused delivery too).
struct Poster {
    client: Client<HttpConnector, Full<Bytes>>,
    url: Uri,
    secret: String,
    retries: Arc<AtomicUsize>,
}

impl Poster {
    /// The generator shares the 2 cores with the service, so it does the least it can: the
    /// body is signed once (not per try), shared (`Bytes`) between tries, and the answer's
    /// body is drained without being decoded into a `String`.
    async fn send(&self, body: String) {
        let signature = sign(&self.secret, body.as_bytes());
        let body = Bytes::from(body);
        for attempt in 0..5 {
            let request = Request::post(self.url.clone())
                .header(header::CONTENT_TYPE, "application/json")
                .header("x-hub-signature-256", &signature)
                .body(Full::new(body.clone()));
            let status = match request {
                Ok(request) => match self.client.request(request).await {
                    // Read to the end so the connection goes back to the pool for the next POST.
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        resp.into_body().collect().await.map(|_| status).ok()
                    }
                    Err(_) => None,
                },
                Err(_) => None,
            };
            match status {
                Some(200) => return,
                _ => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
            }
        }
    }
}

/// Meta's webhook batches up to 1,000 events in one POST.
const MAX_BATCH: usize = 1000;

/// What the generator posts: opt-in i for `login_ids[i]` on Page `i % pages`, `batch` per POST.
struct Generator {
    login_ids: Vec<String>,
    pages: Vec<String>,
    batch: usize,
    /// When each opt-in started (ms), for its latency.
    started: Arc<Vec<AtomicU64>>,
    /// After each POST of opt-ins, a POST of their deliveries and one of their reads.
    receipts: bool,
}

impl Generator {
    /// POST `k`'s body (an entry per opt-in, as Meta batches them); `start(i)` is opt-in i's
    /// start, noted and used as its timestamp.
    fn body(&self, k: usize, start: impl Fn(usize) -> i64) -> String {
        let to = ((k + 1) * self.batch).min(self.login_ids.len());
        let entries: Vec<String> = (k * self.batch..to)
            .map(|i| {
                let ts = start(i);
                self.started[i].store(ts as u64, Ordering::Relaxed);
                optin_entry(&self.pages[i % self.pages.len()], &self.login_ids[i], ts)
            })
            .collect();
        format!(r#"{{"object":"page","entry":[{}]}}"#, entries.join(","))
    }

    /// POST `k`'s opt-ins, then (with `receipts`) what Meta sends a Page subscribed to
    /// `message_deliveries` and `message_reads` once their first messages are delivered and
    /// read: a delivery and a read per opt-in, a POST of each.
    async fn post(&self, post: &Poster, k: usize, body: String) {
        post.send(body).await;
        if self.receipts {
            for receipt in [
                r#""delivery":{"mids":["m-{i}"],"watermark":{ts}}"#,
                r#""read":{"watermark":{ts}}"#,
            ] {
                post.send(self.receipts_body(k, receipt)).await;
            }
        }
    }

    /// POST `k`'s receipts of one kind, `event` with `{i}` and `{ts}` to fill in; the person is
    /// a PSID of the generator's own (a receipt changes no state).
    fn receipts_body(&self, k: usize, event: &str) -> String {
        let to = ((k + 1) * self.batch).min(self.login_ids.len());
        let ts = now_ms();
        let entries: Vec<String> = (k * self.batch..to)
            .map(|i| {
                let page = &self.pages[i % self.pages.len()];
                let event = event.replace("{i}", &i.to_string()).replace("{ts}", &ts.to_string());
                format!(
                    r#"{{"id":"{page}","time":{ts},"messaging":[{{"sender":{{"id":"psid-{i}"}},"recipient":{{"id":"{page}"}},"timestamp":{ts},{event}}}]}}"#
                )
            })
            .collect();
        format!(r#"{{"object":"page","entry":[{}]}}"#, entries.join(","))
    }
}

/// Waits until every receipt posted went through the events function onto the bus (so the
/// cost line counts their whole path), unless `DeliveryRead` is switched off and the webhook
/// skipped them; prints what happened to them.
async fn receipts_settled(stack: &Stack, optins: usize) -> Result<(), String> {
    let posted = 2 * optins;
    let skipped = lc_adapters::wiring::bus_off()
        .map_err(|e| e.to_string())?
        .contains(&lc_core::bus::DetailType::DeliveryRead);
    let expected = if skipped { 0 } else { posted };
    let bus = &stack.pipeline.backends.published;
    let (mut forwarded, mut last) = (0, Instant::now());
    while forwarded < expected {
        let n = bus.count_of(lc_core::bus::DetailType::DeliveryRead);
        if n > forwarded {
            forwarded = n;
            last = Instant::now();
        } else if last.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "receipts: {forwarded} of {expected} reached the bus"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "load receipts posted={posted} forwarded={forwarded} skipped_at_webhook={}",
        posted - forwarded
    );
    Ok(())
}

/// Latency by when opt-ins started, per window of `ms`: where a p99 comes from (a stall at
/// the start, a pause mid-run, a backlog draining).
fn print_windows(
    first: &HashMap<String, i64>,
    index: &HashMap<&str, usize>,
    started: &[AtomicU64],
    t0: i64,
    ms: u64,
) {
    let mut windows: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for (id, at) in first {
        if let Some(i) = index.get(id.as_str()) {
            let s = started[*i].load(Ordering::Relaxed) as i64;
            windows
                .entry((s - t0) / ms as i64)
                .or_default()
                .push(at - s);
        }
    }
    for (w, mut v) in windows {
        v.sort_unstable();
        eprintln!(
            "load window_start_ms={} optins={} p50_ms={} p99_ms={} max_ms={}",
            w * ms as i64,
            v.len(),
            v[v.len() / 2],
            v[(v.len() - 1) * 99 / 100],
            v[v.len() - 1]
        );
    }
}

fn optin_entry(page: &str, login_id: &str, ts: i64) -> String {
    format!(
        r#"{{"id":"{page}","time":{ts},"messaging":[{{"recipient":{{"id":"{page}"}},"timestamp":{ts},"optin":{{"login_id":"{login_id}"}}}}]}}"#
    )
}

/// What the simulator saw for the login_ids of a run.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    /// login_id -> when its first message was accepted (sim clock).
    first: HashMap<String, i64>,
    /// Send attempts beyond the first per login_id, whatever their outcome.
    duplicates: usize,
}

fn tally(per_login_id: HashMap<String, LoginIdTally>) -> Tally {
    let duplicates = per_login_id
        .values()
        .map(|t| t.attempts.saturating_sub(1) as usize)
        .sum();
    let first = per_login_id
        .into_iter()
        .filter_map(|(id, t)| t.first_accepted_at_ms.map(|at| (id, at)))
        .collect();
    Tally { first, duplicates }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_count_attempts_not_accepted_messages() {
        let entry = |attempts, first_accepted_at_ms| LoginIdTally {
            attempts,
            first_accepted_at_ms,
        };
        let per_login_id = HashMap::from([
            // Accepted, then refused by Meta's one-message rule: still a second send by us.
            ("a".to_string(), entry(2, Some(1))),
            ("b".to_string(), entry(2, Some(3))),
            ("c".to_string(), entry(1, Some(5))),
            // Never accepted: lost, not a duplicate.
            ("d".to_string(), entry(1, None)),
        ]);
        let t = tally(per_login_id);
        assert_eq!(t.duplicates, 2);
        assert_eq!(t.first.len(), 3);
        assert_eq!(
            t.first["b"], 3,
            "latency runs to the first accepted message"
        );
    }

    #[test]
    fn a_batch_is_an_entry_per_optin_and_the_last_post_takes_the_rest() {
        let gen = Generator {
            login_ids: (0..5).map(|i| format!("l{i}")).collect(),
            pages: vec!["p0".into(), "p1".into()],
            batch: 2,
            started: Arc::new((0..5).map(|_| AtomicU64::new(0)).collect()),
            receipts: true,
        };
        let second = gen.body(1, |i| 1_000 + i as i64);
        let events = match lc_core::webhook::normalize::split_body(second.as_bytes(), 0) {
            lc_core::webhook::normalize::SplitOutcome::Events(events) => events,
            other => panic!("the webhook's parser refused the body: {other:?}"),
        };
        let accounts: Vec<&str> = events.iter().map(|e| e.account_id.as_str()).collect();
        assert_eq!(accounts, ["p0", "p1"], "opt-ins 2 and 3, each on its Page");
        assert!(second.contains(r#""login_id":"l2""#) && second.contains(r#""login_id":"l3""#));
        let times: Vec<u64> = gen
            .started
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .collect();
        assert_eq!(
            times,
            [0, 0, 1_002, 1_003, 0],
            "only this POST's opt-ins started"
        );

        let last = gen.body(2, |_| 7);
        assert_eq!(last.matches("login_id").count(), 1, "{last}");
        assert!(last.contains(r#""login_id":"l4""#));

        let receipts = gen.receipts_body(1, r#""delivery":{"mids":["m-{i}"],"watermark":{ts}}"#);
        let events = lc_core::webhook::normalize::split_body(receipts.as_bytes(), 0).into_events();
        let seen: Vec<_> = events
            .iter()
            .map(|e| (e.kind, e.account_id.as_str()))
            .collect();
        use lc_core::webhook::EventKind::Delivery;
        assert_eq!(seen, [(Delivery, "p0"), (Delivery, "p1")], "{receipts}");
        assert!(receipts.contains(r#""mids":["m-3"]"#), "{receipts}");
    }
}
