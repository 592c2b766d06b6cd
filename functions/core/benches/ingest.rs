//! CPU per event of the webhook hot path, against a floor.
//!
//! Path: what the webhook function does per request before the SQS call:
//! `signature::verify` + `split_body` + `ingest::encode` (outputs dropped inside the timed loop,
//! as the handler drops them after sending).
//!
//! Floor: the least work any handler must do on the same bytes: HMAC-SHA256 of the body, then a
//! typed parse (`serde_json::from_slice::<Envelope>` and `MessagingItem::parse` on every item).
//!
//! Cases: (a) a ~1 KB single-event body (a Messenger text message with a quick_reply, escaped
//! unicode and `\/`, and the built-in NLP block Meta attaches), (b) a 20-event batched body (4
//! entries x 5 messaging items of mixed kinds).
//!
//! Criterion measures the four combinations (Throughput::Elements = events). Criterion does not
//! hand back numbers, so the bench then times path and floor itself (median of 7 rounds of
//! >= 200 ms each, path and floor rounds alternating) and ends stdout with:
//!
//! ```text
//! ingest per_event_ns=<n> floor_ns=<n> ratio=<x>
//! ingest batch20 per_event_ns=<n> floor_ns=<n> ratio=<x>
//! ```
//!
//! In test mode (`cargo bench -- --test`, `cargo test --benches`) the manual timing is one
//! iteration, so those numbers are meaningless there.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use lc_core::ports::OutMessage;
use lc_core::support::secret::Secret;
use lc_core::webhook::intake::encode;
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
        assert_eq!(
            path(&case.body, &case.header, &secrets).len() as u64,
            events
        );
        assert_eq!(floor(&case.body, APP_SECRET.as_bytes()).1 as u64, events);
        case
    }
}

/// verify + split_body + encode: the webhook's per-request CPU before the SQS call.
fn path(body: &[u8], header: &str, secrets: &[Secret]) -> Vec<OutMessage> {
    if verify(Some(header), false, body, secrets).is_err() {
        panic!("signature refused");
    }
    let events = match split_body(body, RECEIVED_AT_MS) {
        SplitOutcome::Events(events) => events,
        SplitOutcome::Quarantined { reason, .. } => panic!("quarantined: {reason}"),
    };
    match encode(&events) {
        Ok(messages) => messages,
        Err(e) => panic!("encode: {e}"),
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

fn main() {
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
}
