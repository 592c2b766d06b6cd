//! `lc-fuzz`: fuzzes the webhook path (lc-core's `Intake`) on stable Rust.
//!
//! ```text
//! lc-fuzz [--execs N] [--seed S] [--threads T] [--fixtures DIR] [--crash-dir DIR]
//! lc-fuzz --seed S --index I      # re-run one execution, verbosely
//! lc-fuzz --replay FILE           # one body from a file, correctly signed, verbosely
//! ```
//!
//! Each execution generates one input from `(seed, index)` (so any finding can be re-run from
//! those two numbers), drives the real `Intake` with it, and checks:
//! - `panics`: nothing panics (caught with `catch_unwind`);
//! - `unsigned_accepted`: a body without a true signature of a configured secret is refused and
//!   queues nothing, and the handshake never echoes a challenge without the right token;
//! - `signed_lost`: a correctly signed body within the size limit is accepted, and its queue
//!   messages account for it: one event per item with the item's bytes, or quarantine parts
//!   that reassemble to the exact body. The queue applies SQS's acceptance rules (message size,
//!   characters), so a message SQS would refuse is a loss, not a pass.
//!
//! The last line is `fuzz execs=<n> panics=<n> unsigned_accepted=<n> signed_lost=<n>`; the exit
//! code is 1 when any count but `execs` is not zero.

mod check;
mod gen;
mod rng;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use check::{Finding, Harness, Kind, Report, Tally};
use gen::{Corpus, Input};

/// Findings printed to stderr per kind, and saved to the crash directory per kind.
const PRINT_PER_KIND: usize = 5;
const SAVE_PER_KIND: usize = 50;

struct Args {
    execs: u64,
    seed: u64,
    threads: usize,
    fixtures: PathBuf,
    crash_dir: PathBuf,
    index: Option<u64>,
    replay: Option<PathBuf>,
}

fn usage() -> ! {
    eprintln!(
        "usage: lc-fuzz [--execs N] [--seed S] [--threads T] [--fixtures DIR] [--crash-dir DIR]\n       \
         lc-fuzz --seed S --index I | --replay FILE"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut a = Args {
        execs: 200_000,
        seed: 1,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        fixtures: root.join("functions/core/tests/fixtures/webhooks"),
        crash_dir: root.join("target/fuzz-crashes"),
        index: None,
        replay: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        let num = |v: String| {
            v.replace('_', "")
                .parse::<u64>()
                .unwrap_or_else(|_| usage())
        };
        match flag.as_str() {
            "--execs" => a.execs = num(value()),
            "--seed" => a.seed = num(value()),
            "--threads" => a.threads = (num(value()) as usize).max(1),
            "--fixtures" => a.fixtures = value().into(),
            "--crash-dir" => a.crash_dir = value().into(),
            "--index" => a.index = Some(num(value())),
            "--replay" => a.replay = Some(value().into()),
            _ => usage(),
        }
    }
    a
}

fn main() -> ExitCode {
    let args = parse_args();
    check::install_panic_hook();
    if let Some(file) = &args.replay {
        let body = std::fs::read(file).unwrap_or_else(|e| {
            eprintln!("lc-fuzz: {}: {e}", file.display());
            std::process::exit(2)
        });
        return one(&Input::signed("replay", body));
    }
    let corpus = match Corpus::load(&args.fixtures) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("lc-fuzz: fixtures: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(index) = args.index {
        let max = Harness::new().max_body();
        return one(&gen::generate(args.seed, index, &corpus, max));
    }
    run(&args, corpus)
}

/// One execution, described in full.
fn one(input: &Input) -> ExitCode {
    let mut h = Harness::new();
    let r = h.exec(input);
    println!(
        "input: strategy={} bytes={} two_apps={} header_kind={} signed={:?} sha1={}",
        input.strategy,
        input.body.len(),
        input.two_apps,
        input.header_kind,
        input.signed,
        input.has_sha1
    );
    println!(
        "header: {:?}",
        input.header.as_deref().map(|h| check::truncate(h, 120))
    );
    println!(
        "body (hex, first 256 bytes): {}",
        hex_head(&input.body, 256)
    );
    if let Some(v) = &input.verify {
        println!("verify: {v:?}");
    }
    println!("receipt: {:?}", r.receipt);
    println!("outcome: {}", r.outcome);
    println!(
        "queued: {} message(s), bytes {:?}",
        r.message_sizes.len(),
        &r.message_sizes[..r.message_sizes.len().min(20)]
    );
    for why in r.refusals.iter().take(5) {
        println!("queue refused: {} ({})", why.class, why.detail);
    }
    for f in &r.findings {
        println!("FINDING {}: {}", f.kind.as_str(), f.reason);
    }
    final_line(&h.tally)
}

fn hex_head(b: &[u8], n: usize) -> String {
    let mut s = hex::encode(&b[..b.len().min(n)]);
    if b.len() > n {
        s.push('…');
    }
    s
}

struct Shared {
    corpus: Arc<Corpus>,
    done: AtomicU64,
    printed: [AtomicUsize; 3],
    saved: [AtomicUsize; 3],
}

fn slot(kind: Kind) -> usize {
    match kind {
        Kind::Panic => 0,
        Kind::UnsignedAccepted => 1,
        Kind::SignedLost => 2,
    }
}

fn run(args: &Args, corpus: Arc<Corpus>) -> ExitCode {
    let shared = Arc::new(Shared {
        corpus,
        done: AtomicU64::new(0),
        printed: Default::default(),
        saved: Default::default(),
    });
    let threads = args.threads.min(args.execs.max(1) as usize);
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let shared = shared.clone();
            let (seed, execs, crash_dir) = (args.seed, args.execs, args.crash_dir.clone());
            std::thread::Builder::new()
                .name(format!("fuzz-{t}"))
                .spawn(move || worker(t as u64, threads as u64, seed, execs, &shared, &crash_dir))
                .expect("spawn a fuzz thread")
        })
        .collect();
    // Progress on stderr while the workers run.
    let mut last = Instant::now();
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        if last.elapsed() >= Duration::from_secs(15) {
            last = Instant::now();
            let done = shared.done.load(Ordering::Relaxed);
            eprintln!(
                "fuzz progress: {done}/{} execs, {:.0}/s",
                args.execs,
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let mut total = Tally::default();
    for h in handles {
        match h.join() {
            Ok(t) => total.add(&t),
            Err(_) => {
                eprintln!("lc-fuzz: a worker thread died (a bug in the harness, not the intake)");
                return ExitCode::from(2);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // Per core from the CPU time the process got (other work on the machine slows the wall
    // clock, not this figure); None where /proc is missing.
    let per_cpu_sec = cpu_seconds()
        .map(|cpu| format!("{:.0}", total.execs as f64 / cpu.max(1e-9)))
        .unwrap_or_else(|| "?".into());
    eprintln!(
        "fuzz stats: seed={} threads={threads} secs={secs:.1} execs_per_sec={:.0} per_cpu_sec={per_cpu_sec} \
         accepted={} (quarantined={} empty={}) unauthorized={} too_large={} not_queued={} \
         messages={} max_message_bytes={} verify={} (echoed={} refused_valid={}) \
         slowest_exec_ms={:.1} (index {})",
        args.seed,
        total.execs as f64 / secs,
        total.accepted,
        total.accepted_quarantined,
        total.accepted_empty,
        total.unauthorized,
        total.too_large,
        total.not_queued,
        total.messages,
        total.max_message_bytes,
        total.verify_calls,
        total.verify_echoed,
        total.verify_refused_valid,
        total.slowest_ns as f64 / 1e6,
        total.slowest_index,
    );
    let all_ns: u64 = total.by_strategy.iter().map(|s| s.2).sum::<u64>().max(1);
    let mut by: Vec<_> = total.by_strategy.clone();
    by.sort_by_key(|s| std::cmp::Reverse(s.2));
    let parts: Vec<String> = by
        .iter()
        .map(|(name, n, ns)| {
            format!(
                "{name}={n} ({:.0}% of time, {:.1} us/exec)",
                *ns as f64 * 100.0 / all_ns as f64,
                *ns as f64 / 1e3 / (*n).max(1) as f64
            )
        })
        .collect();
    eprintln!("fuzz strategies: {}", parts.join(" "));
    let mut classes = total.classes.clone();
    classes.sort_by(|a, b| {
        (slot(a.0), std::cmp::Reverse(a.2)).cmp(&(slot(b.0), std::cmp::Reverse(b.2)))
    });
    for (kind, class, n, index) in &classes {
        eprintln!(
            "fuzz finding {} x{n}: {class} (first: --seed {} --index {index})",
            kind.as_str(),
            args.seed
        );
    }
    if total.panics + total.unsigned_accepted + total.signed_lost > 0 {
        eprintln!(
            "fuzz: findings saved under {} (re-run one: lc-fuzz --seed {} --index I)",
            args.crash_dir.display(),
            args.seed
        );
    }
    final_line(&total)
}

fn worker(t: u64, threads: u64, seed: u64, execs: u64, shared: &Shared, crash_dir: &Path) -> Tally {
    let mut h = Harness::new();
    let max = h.max_body();
    let mut index = t;
    let mut since = 0u64;
    while index < execs {
        let input = gen::generate(seed, index, &shared.corpus, max);
        let start = Instant::now();
        let r = h.exec(&input);
        let ns = start.elapsed().as_nanos() as u64;
        h.tally.timed(input.strategy, 1, ns);
        if ns > h.tally.slowest_ns {
            h.tally.slowest_ns = ns;
            h.tally.slowest_index = index;
        }
        for f in &r.findings {
            h.tally.classify(f.kind, &f.class, 1, index);
            found(shared, crash_dir, seed, index, &input, &r, f);
        }
        index += threads;
        since += 1;
        if since == 1024 {
            shared.done.fetch_add(since, Ordering::Relaxed);
            since = 0;
        }
    }
    shared.done.fetch_add(since, Ordering::Relaxed);
    h.tally
}

fn found(
    shared: &Shared,
    crash_dir: &Path,
    seed: u64,
    index: u64,
    input: &Input,
    r: &Report,
    f: &Finding,
) {
    let k = slot(f.kind);
    if shared.printed[k].fetch_add(1, Ordering::Relaxed) < PRINT_PER_KIND {
        eprintln!(
            "FOUND {} seed={seed} index={index} strategy={} header={} bytes={}: {}\n  body(hex)={}",
            f.kind.as_str(),
            input.strategy,
            input.header_kind,
            input.body.len(),
            f.reason,
            hex_head(&input.body, 64)
        );
    }
    if shared.saved[k].fetch_add(1, Ordering::Relaxed) < SAVE_PER_KIND {
        let name = format!("{}-seed{seed}-index{index}", f.kind.as_str());
        let meta = format!(
            "kind: {}\nreason: {}\nseed: {seed}\nindex: {index}\nstrategy: {}\nheader_kind: {}\n\
             header: {:?}\nhas_sha1: {}\ntwo_apps: {}\nbytes: {}\nreceipt: {:?}\noutcome: {}\n\
             rerun: lc-fuzz --seed {seed} --index {index}\n",
            f.kind.as_str(),
            f.reason,
            input.strategy,
            input.header_kind,
            input.header,
            input.has_sha1,
            input.two_apps,
            input.body.len(),
            r.receipt,
            r.outcome
        );
        let saved = std::fs::create_dir_all(crash_dir)
            .and_then(|_| std::fs::write(crash_dir.join(format!("{name}.body")), &input.body))
            .and_then(|_| std::fs::write(crash_dir.join(format!("{name}.txt")), meta));
        if let Err(e) = saved {
            eprintln!("lc-fuzz: saving {name}: {e}");
        }
    }
}

/// User plus system CPU time of this process, in seconds (Linux `/proc/self/stat`, 100 Hz).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the name.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

fn final_line(t: &Tally) -> ExitCode {
    println!(
        "fuzz execs={} panics={} unsigned_accepted={} signed_lost={}",
        t.execs, t.panics, t.unsigned_accepted, t.signed_lost
    );
    if t.panics + t.unsigned_accepted + t.signed_lost > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
