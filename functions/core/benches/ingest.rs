//! CPU per event of the webhook hot path, against a floor and against a Node.js peer.
//!
//! Path: what the webhook function does per request before the SQS call:
//! `signature::verify` + `intake::encode_body` (the queue messages of `split_body`'s events as
//! `intake::encode` writes them, written straight from the items, whose heads `webhook::head`
//! reads without building the model; outputs dropped inside the timed loop, as the handler
//! drops them after sending).
//!
//! Floor: the least work any handler must do on the same bytes: HMAC-SHA256 of the body, then a
//! typed parse (`serde_json::from_slice::<Envelope>` and `MessagingItem::parse` on every item).
//!
//! Cases: (a) a ~1 KB single-event body (a Messenger text message with a quick_reply, escaped
//! unicode and `\/`, and the built-in NLP block Meta attaches), (b) a 20-event batched body (4
//! entries x 5 messaging items of mixed kinds). When the peer bodies are present
//! (`../shared/peers/*.json` beside the repo root, or `$LC_PEERS_DIR`), each of them is a case
//! too, and if `node` runs, the Node.js peer (`node-ingest.js`: what a webhook written like
//! Meta's Express samples does) is timed on the same bytes in the same run, its runs
//! interleaved with ours.
//!
//! Criterion measures the four combinations of (a) and (b) (Throughput::Elements = events).
//! Criterion does not hand back numbers, so the bench then times path and floor itself (median of
//! 7 rounds of >= 200 ms each, path and floor rounds alternating) and ends stdout with:
//!
//! ```text
//! ingest per_event_ns=<n> floor_ns=<n> ratio=<x>
//! ingest batch20 per_event_ns=<n> floor_ns=<n> ratio=<x>
//! ingest <peer body> per_event_ns=<n> floor_ns=<n> ratio=<x>          (per peer body)
//! ingest peer <peer body> ours_ns=<n> node_ns=<n> node_over_ours=<x>  (per peer body, with node)
//! ingest vs floor: single=<x>x batch20=<x>x <peer body>=<x>x ... (goal <= 1.25x)
//! ingest vs node: <peer body>=<x>x ... cheaper per event (goal >= 3.0x)
//! ```
//!
//! Every figure is wall time on a machine that may be shared: the rounds alternate so that
//! what is compared sees the same load, and medians are taken. The ratios are the result;
//! the ns are only comparable within one run.
//!
//! In test mode (`cargo bench -- --test`, `cargo test --benches`) the manual timing is one
//! iteration, so those numbers are meaningless there, and the peer is not run.
//!
//! Profiling: `LC_INGEST_LOOP=<case>:<path|floor>:<iterations>` (case `single`, `batch20` or a
//! peer body's name) runs only that loop and exits, e.g. under
//! `valgrind --tool=callgrind` (instruction counts do not care about the machine's load).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use lc_core::ports::OutMessage;
use lc_core::support::secret::Secret;
use lc_core::webhook::intake::{encode, encode_body};
use lc_core::webhook::model::{Envelope, MessagingItem};
use lc_core::webhook::signature::{sign, verify};
use lc_core::webhook::{split_body, EventKind, SplitOutcome};

type HmacSha256 = Hmac<Sha256>;

const APP_SECRET: &str = "3f9c1e7a5b2d48c0a6e1f7b93d2c5e84";
const RECEIVED_AT_MS: i64 = 1_717_171_718_000;

const PAGE_A: &str = "107318224521398";
const PAGE_B: &str = "112905637718204";
const APP_ID: &str = "1517776481860111";

/// Manual timing: rounds, and the shortest a counted round may be.
const ROUNDS: usize = 7;
const MIN_ROUND: Duration = Duration::from_millis(200);
const WARM_UP: Duration = Duration::from_millis(300);
/// Peer bodies: (path, floor) measured this many times, each followed by one Node run.
const PEER_REPEATS: usize = 5;
/// Issue 15's goals, printed beside the summary: path within this much of the floor, and this
/// many times cheaper per event than the Node peer.
const GOAL_VS_FLOOR: f64 = 1.25;
const GOAL_VS_NODE: f64 = 3.0;
/// Events the Node peer processes per run (its own warm-up comes on top).
const PEER_EVENTS_PER_RUN: u64 = 200_000;

// ---------------------------------------------------------------------------------------------
// Bodies, written the way Meta serializes them: `/` as `\/`, non-ASCII as `\uXXXX`.
// ---------------------------------------------------------------------------------------------

/// A message id shaped like Meta's (`m_` + ~90 base64url characters), deterministic per seed.
fn mid(seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut s = String::from("m_");
    for _ in 0..90 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(char::from(ALPHABET[(x % 64) as usize]));
    }
    s
}

fn psid(i: u64) -> String {
    format!("{}", 6_512_378_890_142_257u64 + i * 7_919)
}

/// The NLP block Meta adds to text messages when built-in NLP is on.
const NLP: &str = concat!(
    r#""nlp":{"intents":[{"id":"1298317460906331","name":"confirm_optin","confidence":0.9731}],"#,
    r#""entities":{"wit$url:url":[{"id":"2210658122494813","name":"wit$url","role":"url","#,
    r#""start":52,"end":82,"body":"https:\/\/shop.example.com\/suivi","confidence":0.9512,"#,
    r#""entities":[],"value":"https:\/\/shop.example.com\/suivi","type":"value"}]},"#,
    r#""traits":{"wit$sentiment":[{"id":"5ac2b50a-44e4-466e-9d49-bad6bd40092c","#,
    r#""value":"positive","confidence":0.7318}]},"#,
    r#""detected_locales":[{"locale":"fr_XX","confidence":0.9811}]}"#,
);

/// A text message answering a quick reply, with unicode, escaped slashes and the NLP block.
fn quick_reply_message(page: &str, user: &str, ts: i64, seed: u64) -> String {
    format!(
        concat!(
            r#"{{"sender":{{"id":"{user}"}},"recipient":{{"id":"{page}"}},"timestamp":{ts},"#,
            r#""message":{{"mid":"{mid}","#,
            r#""text":"Oui \ud83d\udc4d je veux suivre ma commande n\u00b0 4521 sur https:\/\/shop.example.com\/suivi \u00e0 chaque \u00e9tape","#,
            r#""quick_reply":{{"payload":"{{\"action\":\"optin_confirm\",\"flow\":\"login_connect\",\"topic\":\"order_updates\"}}"}},"#,
            "{nlp}}}}}"
        ),
        user = user,
        page = page,
        ts = ts,
        mid = mid(seed),
        nlp = NLP,
    )
}

/// One messaging item of the batch; `k` picks the kind.
fn batch_item(k: usize, page: &str, user: &str, ts: i64, seed: u64) -> String {
    let m = mid(seed);
    match k % 8 {
        0 => quick_reply_message(page, user, ts, seed),
        1 => format!(
            r#"{{"sender":{{"id":"{user}"}},"recipient":{{"id":"{page}"}},"timestamp":{ts},"message":{{"mid":"{m}","text":"Bonjour, o\u00f9 en est ma livraison ? \u2014 merci \ud83d\ude4f"}}}}"#
        ),
        2 => format!(
            r#"{{"sender":{{"id":"{user}"}},"recipient":{{"id":"{page}"}},"timestamp":{ts},"delivery":{{"mids":["{m}"],"watermark":{w}}}}}"#,
            w = ts - 5
        ),
        3 => format!(
            r#"{{"sender":{{"id":"{user}"}},"recipient":{{"id":"{page}"}},"timestamp":{ts},"read":{{"watermark":{w}}}}}"#,
            w = ts - 9
        ),
        4 => format!(
            r#"{{"sender":{{"id":"{user}"}},"recipient":{{"id":"{page}"}},"timestamp":{ts},"postback":{{"title":"Commencer","payload":"GET_STARTED","mid":"{m}"}}}}"#
        ),
        5 => format!(
            r#"{{"sender":{{"id":"{user}"}},"recipient":{{"id":"{page}"}},"timestamp":{ts},"optin":{{"type":"notification_messages","payload":"order_updates","notification_messages_token":"7441803712283316{seed}","notification_messages_frequency":"DAILY","notification_messages_timezone":"Europe\/Paris","token_expiry_timestamp":1725000000000,"user_token_status":"NOT_REFRESHED","title":"Suivi de commande \u00e0 jour"}}}}"#
        ),
        6 => format!(
            r#"{{"sender":{{"id":"{user}"}},"recipient":{{"id":"{page}"}},"timestamp":{ts},"reaction":{{"mid":"{m}","action":"react","emoji":"\u2764\ufe0f","reaction":"love"}}}}"#
        ),
        _ => format!(
            r#"{{"sender":{{"id":"{page}"}},"recipient":{{"id":"{user}"}},"timestamp":{ts},"message":{{"mid":"{m}","is_echo":true,"app_id":{APP_ID},"metadata":"lc:welcome:v2","text":"Merci ! Vous recevrez vos alertes ici \ud83d\udd14 https:\/\/shop.example.com\/aide"}}}}"#
        ),
    }
}

/// (a): one entry, one ~1 KB text message.
fn single_body() -> String {
    let ts = 1_717_171_716_987i64;
    let body = format!(
        r#"{{"object":"page","entry":[{{"id":"{PAGE_A}","time":{t},"messaging":[{item}]}}]}}"#,
        t = ts + 136,
        item = quick_reply_message(PAGE_A, &psid(0), ts, 1),
    );
    assert!(
        (900..=1200).contains(&body.len()),
        "case (a) should be ~1 KB, is {} bytes",
        body.len()
    );
    body
}

/// (b): 4 entries (two pages, twice each) of 5 messaging items each, kinds cycling.
fn batch_body() -> String {
    let mut entries = Vec::new();
    let mut k = 0usize;
    for e in 0..4u64 {
        let page = if e % 2 == 0 { PAGE_A } else { PAGE_B };
        let base = 1_717_171_700_000i64 + (e as i64) * 1_250;
        let items: Vec<String> = (0..5u64)
            .map(|i| {
                let item = batch_item(
                    k,
                    page,
                    &psid(e * 5 + i),
                    base + (i as i64) * 37,
                    100 + k as u64,
                );
                k += 1;
                item
            })
            .collect();
        entries.push(format!(
            r#"{{"id":"{page}","time":{t},"messaging":[{items}]}}"#,
            t = base + 400,
            items = items.join(","),
        ));
    }
    format!(r#"{{"object":"page","entry":[{}]}}"#, entries.join(","))
}

// ---------------------------------------------------------------------------------------------
// The two measured functions
// ---------------------------------------------------------------------------------------------

struct Case {
    body: Vec<u8>,
    header: String,
    events: u64,
}

impl Case {
    fn new(body: String) -> Case {
        let body = body.into_bytes();
        let header = sign(APP_SECRET, &body);
        let events = match split_body(&body, RECEIVED_AT_MS) {
            SplitOutcome::Events(events) => {
                assert!(
                    events.iter().all(|e| e.kind != EventKind::Malformed),
                    "a bench item is malformed"
                );
                events.len() as u64
            }
            SplitOutcome::Quarantined { reason, .. } => panic!("bench body quarantined: {reason}"),
        };
        let case = Case {
            body,
            header,
            events,
        };
        let secrets = [Secret::new(APP_SECRET)];
        let messages = path(&case.body, &case.header, &secrets);
        let general = match split_body(&case.body, RECEIVED_AT_MS) {
            SplitOutcome::Events(events) => encode(&events).expect("encode"),
            SplitOutcome::Quarantined { .. } => unreachable!("checked above"),
        };
        assert_eq!(
            messages, general,
            "encode_body differs from encode(split_body)"
        );
        assert_eq!(messages.len() as u64, events);
        assert_eq!(floor(&case.body, APP_SECRET.as_bytes()).1 as u64, events);
        case
    }
}

/// verify + encode_body: the webhook's per-request CPU before the SQS call (`Intake::receive`
/// writes the messages of a body like these with `encode_body`, which is byte for byte
/// `encode(split_body(..))` without building the events; `Case::new` checks that too).
fn path(body: &[u8], header: &str, secrets: &[Secret]) -> Vec<OutMessage> {
    if verify(Some(header), false, body, secrets).is_err() {
        panic!("signature refused");
    }
    match encode_body(body, RECEIVED_AT_MS, None) {
        Some(messages) => messages,
        None => panic!("not on the usual path (quarantined or oversized)"),
    }
}

/// HMAC-SHA256 of the bytes + typed parse of the envelope and every messaging item.
fn floor(body: &[u8], key: &[u8]) -> ([u8; 32], usize) {
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(body);
    let tag: [u8; 32] = mac.finalize().into_bytes().into();
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) => panic!("envelope: {e}"),
    };
    let mut items = 0;
    for entry in &envelope.entry {
        for raw in entry.messaging.iter().chain(&entry.standby) {
            match MessagingItem::parse(raw) {
                Ok(item) => {
                    black_box(&item);
                }
                Err(e) => panic!("item: {e}"),
            }
            items += 1;
        }
    }
    (tag, items)
}

// ---------------------------------------------------------------------------------------------
// Criterion
// ---------------------------------------------------------------------------------------------

fn bench_ingest(c: &mut Criterion) {
    let secrets = [Secret::new(APP_SECRET)];
    let key = APP_SECRET.as_bytes();
    for (group_name, case) in [
        ("ingest_single_1kb", Case::new(single_body())),
        ("ingest_batch20", Case::new(batch_body())),
    ] {
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(case.events));
        group.bench_function("path", |b| {
            b.iter(|| {
                path(
                    black_box(&case.body),
                    black_box(&case.header),
                    black_box(&secrets),
                )
            })
        });
        group.bench_function("floor", |b| {
            b.iter(|| floor(black_box(&case.body), black_box(key)))
        });
        group.finish();
    }
}

criterion_group!(benches, bench_ingest);

// ---------------------------------------------------------------------------------------------
// Manual timing
// ---------------------------------------------------------------------------------------------

/// Iterations of `f` that take about [`MIN_ROUND`] (after [`WARM_UP`] of running it).
fn calibrate(f: &mut impl FnMut()) -> u64 {
    let warm = Instant::now();
    let mut n = 0u64;
    while warm.elapsed() < WARM_UP {
        f();
        n += 1;
    }
    let estimate = warm.elapsed().as_secs_f64() / n as f64;
    ((MIN_ROUND.as_secs_f64() * 1.1 / estimate).ceil() as u64).max(1)
}

/// Runs `f` `iters` times; per-iteration ns, or `None` (with `iters` raised) when the round was
/// shorter than [`MIN_ROUND`].
fn round(f: &mut impl FnMut(), iters: &mut u64) -> Option<f64> {
    let t = Instant::now();
    for _ in 0..*iters {
        f();
    }
    let elapsed = t.elapsed();
    if elapsed < MIN_ROUND {
        let scale = MIN_ROUND.as_secs_f64() * 1.1 / elapsed.as_secs_f64().max(1e-9);
        *iters = ((*iters as f64) * scale).ceil() as u64;
        return None;
    }
    Some(elapsed.as_nanos() as f64 / *iters as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median per-iteration ns of `a` and of `b`: [`ROUNDS`] rounds of at least [`MIN_ROUND`] each,
/// alternating a and b so both see the same machine load (the box is shared). `quick`: one
/// iteration each (test mode).
fn median_ns_pair(quick: bool, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    if quick {
        let t = Instant::now();
        a();
        let a_ns = t.elapsed().as_nanos() as f64;
        let t = Instant::now();
        b();
        return (a_ns, t.elapsed().as_nanos() as f64);
    }
    let (mut a_iters, mut b_iters) = (calibrate(&mut a), calibrate(&mut b));
    let (mut a_ns, mut b_ns) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
    while a_ns.len() < ROUNDS || b_ns.len() < ROUNDS {
        if a_ns.len() < ROUNDS {
            a_ns.extend(round(&mut a, &mut a_iters));
        }
        if b_ns.len() < ROUNDS {
            b_ns.extend(round(&mut b, &mut b_iters));
        }
    }
    (median(a_ns), median(b_ns))
}

/// (path ns per event, floor ns per event) of one case.
fn time_case(quick: bool, case: &Case) -> (f64, f64) {
    let secrets = [Secret::new(APP_SECRET)];
    let key = APP_SECRET.as_bytes();
    let (path_ns, floor_ns) = median_ns_pair(
        quick,
        || {
            black_box(path(
                black_box(&case.body),
                black_box(&case.header),
                black_box(&secrets),
            ));
        },
        || {
            black_box(floor(black_box(&case.body), black_box(key)));
        },
    );
    let events = case.events as f64;
    (path_ns / events, floor_ns / events)
}

/// The peer bodies and the Node script: `$LC_PEERS_DIR`, else `../shared/peers/` beside the
/// repo root.
fn peers_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("LC_PEERS_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/peers"),
    };
    dir.is_dir().then_some(dir)
}

/// The peer bodies present (`*.json` in [`peers_dir`]), by name, sorted.
fn peer_bodies(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix(".json")?
                .to_owned();
            Some((name, path))
        })
        .collect();
    out.sort();
    out
}

/// One run of the Node peer on `body`: its per-event ns, or why not.
fn node_per_event_ns(script: &Path, body: &Path, events: u64) -> Result<f64, String> {
    let iterations = (PEER_EVENTS_PER_RUN / events.max(1)).max(1000);
    let out = Command::new("node")
        .arg(script)
        .arg(body)
        .arg(iterations.to_string())
        .output()
        .map_err(|e| format!("node: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "node exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Option<f64> {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.parse().ok())
    };
    let (Some(ns), Some(node_events)) = (field("per_event_ns="), field("events=")) else {
        return Err(format!("unexpected peer output {:?}", text.trim()));
    };
    if node_events as u64 != events {
        return Err(format!(
            "the peer counts {node_events} events, we count {events}"
        ));
    }
    Ok(ns)
}

/// `LC_INGEST_LOOP=<case>:<path|floor>:<iterations>`: only that loop, for a profiler.
fn profile_loop(spec: &str, cases: &[(String, Case)]) {
    let mut parts = spec.split(':');
    let (Some(name), Some(which), Some(iters)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("LC_INGEST_LOOP wants <case>:<path|floor>:<iterations>, got {spec:?}");
    };
    let Some((_, case)) = cases.iter().find(|(n, _)| n == name) else {
        let names: Vec<&str> = cases.iter().map(|(n, _)| n.as_str()).collect();
        panic!("no case {name:?}; cases: {names:?}");
    };
    let iters: u64 = iters.parse().expect("iterations");
    let secrets = [Secret::new(APP_SECRET)];
    for _ in 0..iters {
        match which {
            "path" => {
                black_box(path(
                    black_box(&case.body),
                    black_box(&case.header),
                    black_box(&secrets),
                ));
            }
            "floor" => {
                black_box(floor(
                    black_box(&case.body),
                    black_box(APP_SECRET.as_bytes()),
                ));
            }
            other => panic!("{other:?}: path or floor"),
        }
    }
    eprintln!("{name} {which} x{iters}: {} events each", case.events);
}

fn main() {
    let peers = peers_dir();
    let peer_cases: Vec<(String, PathBuf, Case)> = peers
        .as_deref()
        .map(peer_bodies)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, file)| {
            let body = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let body = String::from_utf8(body).expect("peer bodies are UTF-8");
            (name, file, Case::new(body))
        })
        .collect();

    if let Ok(spec) = std::env::var("LC_INGEST_LOOP") {
        let mut cases = vec![
            ("single".to_owned(), Case::new(single_body())),
            ("batch20".to_owned(), Case::new(batch_body())),
        ];
        cases.extend(peer_cases.into_iter().map(|(n, _, c)| (n, c)));
        profile_loop(&spec, &cases);
        return;
    }

    benches();
    Criterion::default().configure_from_args().final_summary();

    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has("--list") {
        return;
    }
    // As criterion decides: without `--bench` (cargo test --benches) or with `--test`, test mode.
    let quick = has("--test") || !has("--bench");

    let single = Case::new(single_body());
    let batch = Case::new(batch_body());
    eprintln!(
        "ingest manual timing{}: (a) {} bytes / {} event, (b) {} bytes / {} events",
        if quick {
            " (test mode: 1 iteration)"
        } else {
            ""
        },
        single.body.len(),
        single.events,
        batch.body.len(),
        batch.events,
    );
    let (a_path, a_floor) = time_case(quick, &single);
    let (b_path, b_floor) = time_case(quick, &batch);

    // Peer bodies: path and floor, then one Node run, repeated, so all see the same load.
    let script = peers.as_ref().map(|d| d.join("node-ingest.js"));
    match &peers {
        None => {
            eprintln!("ingest peer: no ../shared/peers/ beside the repo root (nor $LC_PEERS_DIR)")
        }
        Some(d) if quick => eprintln!("ingest peer: {} (test mode: Node not run)", d.display()),
        Some(d) => eprintln!("ingest peer: {}", d.display()),
    }
    let mut node_ok = !quick;
    let mut peer_lines = Vec::new();
    // The summary: path over floor per case, and Node over ours per peer body.
    let mut vs_floor = vec![
        ("single".to_owned(), a_path / a_floor),
        ("batch20".to_owned(), b_path / b_floor),
    ];
    let mut vs_node = Vec::new();
    for (name, file, case) in &peer_cases {
        let (mut paths, mut floors, mut nodes) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..if quick { 1 } else { PEER_REPEATS } {
            let (p, f) = time_case(quick, case);
            paths.push(p);
            floors.push(f);
            if let (true, Some(script)) = (node_ok, &script) {
                match node_per_event_ns(script, file, case.events) {
                    Ok(ns) => nodes.push(ns),
                    Err(why) => {
                        eprintln!("ingest peer: Node not measured: {why}");
                        node_ok = false;
                    }
                }
            }
        }
        let (p, f) = (median(paths), median(floors));
        vs_floor.push((name.clone(), p / f));
        peer_lines.push(format!(
            "ingest {name} per_event_ns={p:.0} floor_ns={f:.0} ratio={:.2}",
            p / f
        ));
        if node_ok && !nodes.is_empty() {
            let n = median(nodes);
            vs_node.push((name.clone(), n / p));
            peer_lines.push(format!(
                "ingest peer {name} ours_ns={p:.0} node_ns={n:.0} node_over_ours={:.2}",
                n / p
            ));
        }
    }

    println!(
        "ingest per_event_ns={:.0} floor_ns={:.0} ratio={:.2}",
        a_path,
        a_floor,
        a_path / a_floor
    );
    println!(
        "ingest batch20 per_event_ns={:.0} floor_ns={:.0} ratio={:.2}",
        b_path,
        b_floor,
        b_path / b_floor
    );
    for line in peer_lines {
        println!("{line}");
    }
    let list = |ratios: &[(String, f64)]| -> String {
        let parts: Vec<String> = ratios
            .iter()
            .map(|(name, x)| format!("{name}={x:.2}x"))
            .collect();
        parts.join(" ")
    };
    println!(
        "ingest vs floor: {} (goal <= {GOAL_VS_FLOOR:.2}x)",
        list(&vs_floor)
    );
    if vs_node.is_empty() {
        println!("ingest vs node: not measured (see stderr)");
    } else {
        println!(
            "ingest vs node: {} cheaper per event (goal >= {GOAL_VS_NODE:.1}x)",
            list(&vs_node)
        );
    }
}
