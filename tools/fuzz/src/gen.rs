//! Input generation: bodies (fixtures as they are and mutated, splices, JSON from a small
//! grammar, extreme shapes, random bytes, sizes up to just over the body limit) and every
//! signature header variant. An input is a pure function of `(seed, index)`.

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::rng::Rng;

/// The first app's secret (both configurations have it).
pub const SECRET_A: &str = "fuzz-app-secret-a";
/// The second app's secret (only the two-app configuration has it); longer than SHA-256's
/// block, so HMAC hashes the key first: the other key path.
pub const SECRET_B: &str =
    "fuzz-app-secret-b-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const VERIFY_TOKEN: &str = "fuzz-verify-token";

/// HMAC-SHA256, computed here rather than with the code under test.
pub fn hmac(key: &[u8], body: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    m.update(body);
    m.finalize().into_bytes().into()
}

/// The webhook fixtures (bodies only, not their expectations).
pub struct Corpus {
    pub fixtures: Vec<Vec<u8>>,
}

impl Corpus {
    pub fn load(dir: &Path) -> std::io::Result<Corpus> {
        let mut names: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                (name.ends_with(".json") && !name.ends_with(".expected.json"))
                    || name.ends_with(".bin")
            })
            .collect();
        names.sort();
        let fixtures = names
            .iter()
            .map(std::fs::read)
            .collect::<std::io::Result<Vec<_>>>()?;
        if fixtures.is_empty() {
            return Err(std::io::Error::other(format!(
                "no webhook fixtures in {}",
                dir.display()
            )));
        }
        Ok(Corpus { fixtures })
    }

    fn pick<'a>(&'a self, rng: &mut Rng) -> &'a [u8] {
        rng.pick(&self.fixtures).as_slice()
    }
}

/// Whether a header proves the body, as generated (the checker decides independently too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    /// `sha256=<lower-case hex>` of a configured secret, as Meta sends it: must be accepted.
    Canonical,
    /// A true digest in an unusual spelling (upper-case hex, surrounding spaces, repeated):
    /// accepting or refusing are both fine, but an accepted body must not be lost.
    Variant,
    /// Anything else: must be refused.
    No,
}

/// `GET` handshake parameters.
#[derive(Debug, Clone)]
pub struct VerifyInput {
    pub mode: Option<String>,
    pub token: Option<String>,
    pub challenge: Option<String>,
}

pub struct Input {
    pub strategy: &'static str,
    pub body: Vec<u8>,
    /// `false`: the intake knows SECRET_A only; `true`: SECRET_A and SECRET_B.
    pub two_apps: bool,
    pub header: Option<String>,
    pub has_sha1: bool,
    pub header_kind: &'static str,
    pub signed: Signed,
    /// Lower-case hex HMAC of the body under each configured secret (the checker's oracle).
    pub true_digests: Vec<String>,
    pub verify: Option<VerifyInput>,
}

impl Input {
    /// An input whose header is what Meta would send for `body` under SECRET_A.
    pub fn signed(strategy: &'static str, body: Vec<u8>) -> Input {
        let digest = hex::encode(hmac(SECRET_A.as_bytes(), &body));
        Input {
            strategy,
            header: Some(format!("sha256={digest}")),
            body,
            two_apps: false,
            has_sha1: false,
            header_kind: "signed",
            signed: Signed::Canonical,
            true_digests: vec![digest],
            verify: None,
        }
    }
}

pub fn generate(seed: u64, index: u64, corpus: &Corpus, max_body: usize) -> Input {
    let mut rng = Rng::for_exec(seed, index);
    let (strategy, body) = body(&mut rng, corpus, max_body);
    let two_apps = rng.one_in(2);
    let mut true_digests = vec![hex::encode(hmac(SECRET_A.as_bytes(), &body))];
    if two_apps {
        true_digests.push(hex::encode(hmac(SECRET_B.as_bytes(), &body)));
    }
    let h = header(&mut rng, &body, &true_digests);
    let verify = rng.one_in(8).then(|| verify_input(&mut rng));
    Input {
        strategy,
        body,
        two_apps,
        header: h.value,
        has_sha1: h.sha1,
        header_kind: h.kind,
        signed: h.signed,
        true_digests,
        verify,
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------

/// Mutations never grow a body past this (huge bodies come from their own generator).
const MUTATION_CAP: usize = 32 * 1024;

fn body(rng: &mut Rng, corpus: &Corpus, max: usize) -> (&'static str, Vec<u8>) {
    // Weights per 10,000: big inputs are rare because each costs as much as thousands of
    // small ones; they still run thousands of times in a 10M-execution run.
    match rng.below(10_000) {
        0 => ("huge", huge(rng, corpus, max)),
        1..=2 => ("large", large(rng, corpus)),
        3..=563 => ("fixture", corpus.pick(rng).to_vec()),
        564..=4563 => {
            let mut b = corpus.pick(rng).to_vec();
            mutate(rng, &mut b, corpus);
            ("mutated", b)
        }
        4564..=5163 => {
            let (a, c) = (corpus.pick(rng), corpus.pick(rng));
            let mut b = splice(rng, a, c);
            if rng.one_in(2) {
                mutate(rng, &mut b, corpus);
            }
            ("spliced", b)
        }
        5164..=7663 => {
            let mut b = Vec::with_capacity(512);
            envelope(rng, &mut b);
            if rng.one_in(4) {
                mutate(rng, &mut b, corpus);
            }
            ("grammar", b)
        }
        7664..=7723 => ("extreme", extreme(rng, corpus)),
        _ => ("random", random_bytes(rng, 4096)),
    }
}

/// Bytes that matter to a JSON parser or a UTF-8 decoder.
const INTERESTING_BYTES: &[u8] = &[
    b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b' ', b'\n', b'\t', b'0', b'9', b'-', b'.',
    b'e', b'u', b'n', 0, 0x01, 0x1f, 0x7f, 0x80, 0xbf, 0xc0, 0xc2, 0xe0, 0xed, 0xef, 0xf0, 0xf4,
    0xf5, 0xfe, 0xff,
];

/// Tokens inserted or substituted as they are (some valid JSON, some not).
const TOKENS: &[&str] = &[
    "\\u0000",
    "\\ud800",
    "\\udc00",
    "\\ud83d\\ude00",
    "\\uffff",
    "\\ufffe",
    "\\/",
    "\\\\",
    "\\\"",
    "\\u00e9",
    "\\x",
    "\\u12",
    "\"",
    "null",
    "true",
    "-0",
    "1e309",
    "18446744073709551616",
    "-9223372036854775809",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "[]",
    "{}",
    "\"messaging\":[",
    "\"standby\":[{}],",
    "\"changes\":null,",
    "\"entry\":[],",
    "\"object\":\"instagram\",",
    "\"timestamp\":\"1527459824\",",
    "\"optin\":{\"login_id\":\"L\"},",
    "\"message\":5,",
    "\u{FEFF}",
    "\u{FFFF}",
    "\u{FFFE}",
    "\u{2028}",
    "😀",
    "é",
    "\r\n",
];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "1527459824",
    "1527459824.5",
    "1700000000000",
    "99999999999",
    "100000000000",
    "9007199254740992",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "123456789012345678901234567890123456789012345678901234567890",
    "1e308",
    "1e309",
    "-1e309",
    "1e-400",
    "1.5",
    "0.0",
    "1E3",
    "4e15",
    "-1.7976931348623157e308",
    "00",
    "01",
    "1.",
    "-",
    "+1",
    ".5",
];

/// String contents (between the quotes), escapes included.
const STRINGS: &[&str] = &[
    "",
    "page",
    "instagram",
    "m_1",
    "login-1",
    "106000000000001",
    "\\u0000",
    "\\u0000\\u001f",
    "\\ud800",
    "\\udc00",
    "\\ud800\\u0041",
    "\\ud83d\\ude00",
    "\\uffff",
    "\\ufffe",
    "\\u00e9",
    "\\/",
    "\\\\",
    "\\\"",
    "\\n\\r\\t\\b\\f",
    "1527459824",
    "1700000000000",
    " 1527459824 ",
    "1527459824.5",
    "-1",
    "0",
    "1e3",
    "NaN",
    "Infinity",
    "true",
    "null",
    "\u{FEFF}",
    "\u{FFFF}",
    "\u{FFFE}",
    "😀",
    "é",
    "\u{85}\u{2028}",
    "\\x00",
    "\\u12",
    "\t",
    "\u{1}",
];

fn mutate(rng: &mut Rng, b: &mut Vec<u8>, corpus: &Corpus) {
    let rounds = 1 + rng.len_log(15);
    for _ in 0..rounds {
        mutate_once(rng, b, corpus);
    }
}

fn mutate_once(rng: &mut Rng, b: &mut Vec<u8>, corpus: &Corpus) {
    let n = b.len();
    let at = |rng: &mut Rng| if n == 0 { 0 } else { rng.below(n + 1) };
    match rng.below(16) {
        0 if n > 0 => {
            let i = rng.below(n);
            b[i] ^= 1 << rng.below(8);
        }
        1 if n > 0 => {
            let i = rng.below(n);
            b[i] = *rng.pick(INTERESTING_BYTES);
        }
        2 => {
            let i = at(rng);
            let t = rng.pick(TOKENS).as_bytes();
            b.splice(i..i, t.iter().copied());
        }
        3 if n > 0 => {
            let i = rng.below(n);
            let len = 1 + rng.len_log((n - i - 1).min(64));
            b.drain(i..(i + len).min(n));
        }
        4 if n > 0 && n < MUTATION_CAP => {
            let i = rng.below(n);
            let len = 1 + rng.len_log((n - i - 1).min(256));
            let piece = b[i..(i + len).min(n)].to_vec();
            let cap = if rng.one_in(8) { 50 } else { 3 };
            let times = 1 + rng.len_log(cap);
            let to = at(rng);
            for _ in 0..times {
                if b.len() + piece.len() > MUTATION_CAP {
                    break;
                }
                b.splice(to..to, piece.iter().copied());
            }
        }
        5 => {
            if let Some((s, e)) = find_number(b, at(rng)) {
                let with = rng.pick(NUMBERS).as_bytes();
                b.splice(s..e, with.iter().copied());
            }
        }
        6 => {
            if let Some((s, e)) = find_string(b, at(rng)) {
                let mut with = Vec::new();
                string_content(rng, &mut with);
                b.splice(s..e, with);
            }
        }
        7 => swap_string_number(rng, b),
        8 if n > 0 => b.truncate(rng.below(n)),
        9 => nest(rng, b),
        10 => {
            let i = if rng.one_in(2) { 0 } else { at(rng) };
            b.splice(i..i, [0xEF, 0xBB, 0xBF]);
        }
        11 => {
            let i = at(rng);
            let bad: &[&[u8]] = &[
                &[0xff],
                &[0xc0, 0x80],
                &[0xed, 0xa0, 0x80],
                &[0xe2, 0x82],
                &[0xf4, 0x90, 0x80, 0x80],
                &[0x80],
            ];
            b.splice(i..i, rng.pick(bad).iter().copied());
        }
        12 => {
            if let Some((s, e)) = find_string(b, at(rng)) {
                b.splice(s..e, rng.pick(KEYS).bytes());
            }
        }
        13 => {
            let other = corpus.pick(rng);
            if !other.is_empty() && n < MUTATION_CAP {
                let s = rng.below(other.len());
                let e = s + rng.len_log(other.len() - s);
                let i = at(rng);
                b.splice(i..i, other[s..e].iter().copied());
            }
        }
        14 => repeat_value(rng, b),
        _ => {
            // Whitespace JSON allows (and some it does not) at a random place.
            let i = at(rng);
            let ws: &[&[u8]] = &[b" ", b"\n", b"\r\n", b"\t", b"\x0b", b"\x0c", b"\xc2\xa0"];
            b.splice(i..i, rng.pick(ws).iter().copied());
        }
    }
}

/// The number (a run of number characters around a digit) at or after `from`.
fn find_number(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let i = (from..b.len()).find(|&i| b[i].is_ascii_digit())?;
    let is_num = |c: u8| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E');
    let mut s = i;
    while s > 0 && is_num(b[s - 1]) {
        s -= 1;
    }
    let mut e = i;
    while e < b.len() && is_num(b[e]) {
        e += 1;
    }
    Some((s, e))
}

/// The contents (without quotes) of the string starting at or after `from`.
fn find_string(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let q = (from..b.len()).find(|&i| b[i] == b'"')?;
    let mut i = q + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some((q + 1, i)),
            _ => i += 1,
        }
    }
    None
}

/// `"123"` -> `123`, or `123` -> `"123"`.
fn swap_string_number(rng: &mut Rng, b: &mut Vec<u8>) {
    let from = rng.below(b.len() + 1);
    if rng.one_in(2) {
        if let Some((s, e)) = find_string(b, from) {
            if s > 0 && e < b.len() && e > s && b[s..e].iter().all(u8::is_ascii_digit) {
                b.remove(e);
                b.remove(s - 1);
            }
        }
    } else if let Some((s, e)) = find_number(b, from) {
        b.insert(e, b'"');
        b.insert(s, b'"');
    }
}

/// End (exclusive) of the object or array opening at `start`, skipping strings.
fn matching_close(b: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            match c {
                b'\\' => i += 1,
                b'"' => in_str = false,
                _ => {}
            }
        } else {
            match c {
                b'"' => in_str = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    None
}

fn open_at(b: &[u8], from: usize) -> Option<usize> {
    (from..b.len()).find(|&i| b[i] == b'{' || b[i] == b'[')
}

/// Wraps a value (or the whole body) in `k` arrays: around the recursion limit and far past it.
fn nest(rng: &mut Rng, b: &mut Vec<u8>) {
    let k = *rng.pick(&[1usize, 2, 10, 64, 100, 126, 127, 128, 129, 200, 1000, 5000]);
    let from = rng.below(b.len() + 1);
    let (s, e) = match open_at(b, from).and_then(|s| Some((s, matching_close(b, s)?))) {
        Some(r) if !rng.one_in(4) => r,
        _ => (0, b.len()),
    };
    let balanced = !rng.one_in(8);
    if balanced {
        b.splice(e..e, std::iter::repeat_n(b']', k));
    }
    b.splice(s..s, std::iter::repeat_n(b'[', k));
}

/// Repeats one object or array k times (a huge `messaging` array, say).
fn repeat_value(rng: &mut Rng, b: &mut Vec<u8>) {
    let from = rng.below(b.len() + 1);
    let Some(s) = open_at(b, from) else { return };
    let Some(e) = matching_close(b, s) else {
        return;
    };
    let piece = b[s..e].to_vec();
    let cap = if rng.one_in(16) { 1000 } else { 20 };
    let times = 1 + rng.len_log(cap);
    let mut add = Vec::new();
    for _ in 0..times {
        if b.len() + add.len() + piece.len() + 1 > MUTATION_CAP {
            break;
        }
        add.push(b',');
        add.extend_from_slice(&piece);
    }
    b.splice(e..e, add);
}

fn splice(rng: &mut Rng, a: &[u8], c: &[u8]) -> Vec<u8> {
    let i = rng.below(a.len() + 1);
    let j = rng.below(c.len() + 1);
    let mut out = a[..i].to_vec();
    out.extend_from_slice(&c[j..]);
    out
}

// ---------------------------------------------------------------------------------------------
// JSON from a small grammar
// ---------------------------------------------------------------------------------------------

const KEYS: &[&str] = &[
    "object",
    "entry",
    "id",
    "time",
    "messaging",
    "standby",
    "changes",
    "sender",
    "recipient",
    "timestamp",
    "message",
    "mid",
    "text",
    "is_echo",
    "app_id",
    "metadata",
    "quick_reply",
    "payload",
    "reply_to",
    "attachments",
    "type",
    "url",
    "sticker_id",
    "postback",
    "title",
    "referral",
    "ref",
    "source",
    "ad_id",
    "optin",
    "login_id",
    "user_ref",
    "notification_messages_token",
    "notification_messages_status",
    "token_expiry_timestamp",
    "delivery",
    "mids",
    "watermark",
    "read",
    "reaction",
    "emoji",
    "action",
    "account_linking",
    "status",
    "authorization_code",
    "policy_enforcement",
    "reason",
    "pass_thread_control",
    "take_thread_control",
    "request_thread_control",
    "new_owner_app_id",
    "previous_owner_app_id",
    "app_roles",
    "messaging_feedback",
    "response_feedback",
    "field",
    "value",
    "from",
    "created_time",
    "prior_message",
    "identifier",
    "comment_id",
    "x",
];

const EVENT_KEYS: &[&str] = &[
    "message",
    "postback",
    "optin",
    "referral",
    "delivery",
    "read",
    "reaction",
    "account_linking",
    "policy_enforcement",
    "policy-enforcement",
    "pass_thread_control",
    "take_thread_control",
    "request_thread_control",
    "app_roles",
    "messaging_feedback",
    "response_feedback",
    "message_edit",
    "unknown_future_event",
];

fn ws(rng: &mut Rng, out: &mut Vec<u8>) {
    if rng.one_in(12) {
        out.extend_from_slice(rng.pick::<&[u8]>(&[b" ", b"\n  ", b"\t", b"\r\n"]));
    }
}

fn key(rng: &mut Rng, out: &mut Vec<u8>, name: &str) {
    ws(rng, out);
    out.push(b'"');
    if rng.one_in(200) {
        // The same key spelled with an escape: equal to serde, different bytes.
        out.extend_from_slice(b"\\u00");
        out.extend_from_slice(format!("{:02x}", name.as_bytes()[0]).as_bytes());
        out.extend_from_slice(&name.as_bytes()[1..]);
    } else {
        out.extend_from_slice(name.as_bytes());
    }
    out.extend_from_slice(b"\":");
    ws(rng, out);
}

fn string_content(rng: &mut Rng, out: &mut Vec<u8>) {
    match rng.below(10) {
        0..=5 => out.extend_from_slice(rng.pick(STRINGS).as_bytes()),
        6 => {
            let unit = *rng.pick(&["a", "é", "\\u0000", "\\/", "😀", "\\\"", "\u{FFFF}", "\\n"]);
            let cap = if rng.one_in(16) { 20_000 } else { 200 };
            let n = rng.len_log(cap);
            for _ in 0..n {
                out.extend_from_slice(unit.as_bytes());
            }
        }
        _ => {
            let n = rng.range(1, 20);
            for _ in 0..n {
                out.push(*rng.pick(b"abcdefghijklmnopqrstuvwxyz0123456789_-"));
            }
        }
    }
}

fn string(rng: &mut Rng, out: &mut Vec<u8>) {
    out.push(b'"');
    string_content(rng, out);
    out.push(b'"');
}

fn number(rng: &mut Rng, out: &mut Vec<u8>) {
    if rng.one_in(2) {
        out.extend_from_slice(rng.pick(NUMBERS).as_bytes());
    } else {
        let digits = rng.range(1, 20);
        for i in 0..digits {
            let d = if i == 0 {
                rng.range(1, 9)
            } else {
                rng.below(10)
            };
            out.push(b'0' + d as u8);
        }
    }
}

/// An id: a string or an integer, sometimes something else entirely.
fn id(rng: &mut Rng, out: &mut Vec<u8>) {
    match rng.below(10) {
        0..=5 => {
            out.push(b'"');
            number(rng, out);
            out.push(b'"');
        }
        6..=7 => number(rng, out),
        8 => string(rng, out),
        _ => value(rng, out, 3),
    }
}

fn timestamp(rng: &mut Rng, out: &mut Vec<u8>) {
    match rng.below(8) {
        0..=2 => out.extend_from_slice(b"1700000000000"),
        3 => out.extend_from_slice(b"\"1527459824\""),
        4 => out.extend_from_slice(b"1527459824"),
        5 => number(rng, out),
        6 => string(rng, out),
        _ => value(rng, out, 3),
    }
}

fn value(rng: &mut Rng, out: &mut Vec<u8>, depth: u32) {
    let pick = if depth >= 4 {
        rng.below(5)
    } else {
        rng.below(7)
    };
    match pick {
        0 => out.extend_from_slice(rng.pick::<&[u8]>(&[b"null", b"true", b"false"])),
        1 | 2 => number(rng, out),
        3 | 4 => string(rng, out),
        5 => {
            out.push(b'[');
            let n = rng.len_log(4);
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                value(rng, out, depth + 1);
            }
            out.push(b']');
        }
        _ => object(rng, out, depth + 1),
    }
}

fn object(rng: &mut Rng, out: &mut Vec<u8>, depth: u32) {
    out.push(b'{');
    let n = rng.len_log(5);
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        let name = rng_key(rng);
        key(rng, out, name);
        value(rng, out, depth + 1);
    }
    out.push(b'}');
}

fn rng_key(rng: &mut Rng) -> &'static str {
    rng.pick::<&str>(KEYS)
}

fn party(rng: &mut Rng, out: &mut Vec<u8>) {
    match rng.below(8) {
        0..=4 => {
            out.push(b'{');
            key(rng, out, "id");
            id(rng, out);
            out.push(b'}');
        }
        5 => {
            out.push(b'{');
            key(rng, out, "user_ref");
            string(rng, out);
            out.push(b'}');
        }
        _ => value(rng, out, 2),
    }
}

fn item(rng: &mut Rng, out: &mut Vec<u8>) {
    if rng.one_in(20) {
        value(rng, out, 1);
        return;
    }
    out.push(b'{');
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
    };
    if !rng.one_in(4) {
        sep(out);
        key(rng, out, "sender");
        party(rng, out);
    }
    if !rng.one_in(4) {
        sep(out);
        key(rng, out, "recipient");
        party(rng, out);
    }
    if !rng.one_in(3) {
        sep(out);
        key(rng, out, "timestamp");
        timestamp(rng, out);
    }
    let events = if rng.one_in(10) { rng.below(3) } else { 1 };
    for _ in 0..events {
        sep(out);
        let name = *rng.pick(EVENT_KEYS);
        key(rng, out, name);
        if rng.one_in(10) {
            value(rng, out, 2);
        } else {
            object(rng, out, 1);
        }
    }
    out.push(b'}');
}

fn change(rng: &mut Rng, out: &mut Vec<u8>) {
    if rng.one_in(10) {
        value(rng, out, 1);
        return;
    }
    out.push(b'{');
    key(rng, out, "field");
    string(rng, out);
    out.push(b',');
    key(rng, out, "value");
    object(rng, out, 1);
    out.push(b'}');
}

fn array(rng: &mut Rng, out: &mut Vec<u8>, max: usize, f: fn(&mut Rng, &mut Vec<u8>)) {
    if rng.one_in(30) {
        value(rng, out, 3);
        return;
    }
    out.push(b'[');
    let n = rng.len_log(max);
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        f(rng, out);
    }
    out.push(b']');
}

fn entry(rng: &mut Rng, out: &mut Vec<u8>) {
    if rng.one_in(30) {
        value(rng, out, 2);
        return;
    }
    out.push(b'{');
    key(rng, out, "id");
    id(rng, out);
    if !rng.one_in(4) {
        out.push(b',');
        key(rng, out, "time");
        timestamp(rng, out);
    }
    for (name, f) in [
        ("messaging", item as fn(&mut Rng, &mut Vec<u8>)),
        ("standby", item),
        ("changes", change),
    ] {
        let chance = if name == "messaging" { 1 } else { 4 };
        if rng.one_in(chance) {
            out.push(b',');
            key(rng, out, name);
            let cap = if rng.one_in(20) { 300 } else { 4 };
            array(rng, out, cap, f);
        }
    }
    if rng.one_in(10) {
        out.push(b',');
        let name = rng_key(rng);
        key(rng, out, name);
        value(rng, out, 2);
    }
    out.push(b'}');
}

/// `{"object": ..., "entry": [...]}`, with parts missing, wrong or repeated now and then.
fn envelope(rng: &mut Rng, out: &mut Vec<u8>) {
    ws(rng, out);
    out.push(b'{');
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
    };
    if !rng.one_in(20) {
        sep(out);
        key(rng, out, "object");
        match rng.below(10) {
            0..=5 => out.extend_from_slice(b"\"page\""),
            6..=7 => out.extend_from_slice(b"\"instagram\""),
            8 => string(rng, out),
            _ => value(rng, out, 2),
        }
    }
    if !rng.one_in(20) {
        sep(out);
        key(rng, out, "entry");
        let cap = if rng.one_in(10) { 20 } else { 3 };
        array(rng, out, cap, entry);
    }
    if rng.one_in(15) {
        sep(out);
        let name = rng_key(rng);
        key(rng, out, name);
        value(rng, out, 2);
    }
    out.push(b'}');
    ws(rng, out);
}

// ---------------------------------------------------------------------------------------------
// Extreme shapes, random bytes, large and huge bodies
// ---------------------------------------------------------------------------------------------

const ENVELOPE_HEAD: &[u8] =
    br#"{"object":"page","entry":[{"id":"106000000000001","time":1700000000000,"messaging":["#;
const ENVELOPE_TAIL: &[u8] = b"]}]}";

fn extreme(rng: &mut Rng, corpus: &Corpus) -> Vec<u8> {
    let depth = *rng.pick(&[127usize, 128, 129, 200, 1000, 10_000, 100_000]);
    match rng.below(8) {
        0 => {
            // Deep arrays, alone or as an item.
            let mut b = Vec::new();
            let as_item = rng.one_in(2);
            if as_item {
                b.extend_from_slice(ENVELOPE_HEAD);
            }
            b.extend(std::iter::repeat_n(b'[', depth));
            if !rng.one_in(4) {
                b.extend(std::iter::repeat_n(b']', depth));
            }
            if as_item {
                b.extend_from_slice(ENVELOPE_TAIL);
            }
            b
        }
        1 => {
            // Deep objects inside an item's event.
            let depth = depth.min(20_000);
            let mut b = ENVELOPE_HEAD.to_vec();
            b.extend_from_slice(br#"{"sender":{"id":"1"},"message":"#);
            for _ in 0..depth {
                b.extend_from_slice(br#"{"a":"#);
            }
            b.extend_from_slice(b"1");
            b.extend(std::iter::repeat_n(b'}', depth));
            b.push(b'}');
            b.extend_from_slice(ENVELOPE_TAIL);
            b
        }
        2 => {
            // A huge messaging array of small items.
            let n = rng.len_log(5_000);
            let unit: &[u8] = rng.pick::<&[u8]>(&[
                b"{}",
                b"null",
                b"1",
                br#"{"recipient":{"id":"1"},"optin":{"login_id":"L"}}"#,
                br#"{"sender":{"id":"7"},"timestamp":1,"message":{"mid":"m"}}"#,
            ]);
            let mut b = ENVELOPE_HEAD.to_vec();
            for i in 0..n {
                if i > 0 {
                    b.push(b',');
                }
                b.extend_from_slice(unit);
            }
            b.extend_from_slice(ENVELOPE_TAIL);
            b
        }
        3 => {
            // A very long string in an item.
            let n = rng.len_log(30_000);
            let unit = *rng.pick(&["a", "\\u0000", "\\/", "é", "\\ud83d\\ude00", "\u{FFFE}"]);
            let mut b = ENVELOPE_HEAD.to_vec();
            b.extend_from_slice(br#"{"sender":{"id":"7"},"message":{"mid":"m_long","text":""#);
            for _ in 0..n {
                b.extend_from_slice(unit.as_bytes());
            }
            b.extend_from_slice(br#""}}"#);
            b.extend_from_slice(ENVELOPE_TAIL);
            b
        }
        4 => {
            // Byte order marks and leading junk before a real body.
            let mut b = rng
                .pick(&[
                    &b"\xEF\xBB\xBF"[..],
                    b"\xFE\xFF",
                    b"\xFF\xFE",
                    b" \n\t",
                    b"\0",
                ])
                .to_vec();
            b.extend_from_slice(corpus.pick(rng));
            b
        }
        5 => {
            // A fixture in UTF-16 (what a wrong re-encoding would make of it).
            let f = corpus.pick(rng);
            let mut b = Vec::with_capacity(f.len() * 2);
            for &c in f {
                b.extend_from_slice(&[c, 0]);
            }
            b
        }
        6 => {
            // Top-level values that are not an object.
            let mut b = Vec::new();
            match rng.below(4) {
                0 => array(rng, &mut b, 10, item),
                1 => string(rng, &mut b),
                2 => number(rng, &mut b),
                _ => b.extend_from_slice(rng.pick::<&[u8]>(&[b"null", b"true", b"{}", b"[]", b""])),
            }
            b
        }
        _ => {
            // Two bodies back to back (trailing characters).
            let mut b = corpus.pick(rng).to_vec();
            b.extend_from_slice(corpus.pick(rng));
            b
        }
    }
}

fn random_bytes(rng: &mut Rng, max: usize) -> Vec<u8> {
    let n = rng.len_log(max);
    let mode = rng.below(5);
    let mut b = Vec::with_capacity(n);
    for _ in 0..n {
        b.push(match mode {
            0 => rng.byte(),
            1 => 0x20 + rng.below(95) as u8,
            2 => rng.below(0x80) as u8,
            3 => *rng.pick(b"{}[]\",:0123456789abcdefnrtu\\ -.eE"),
            _ => *rng.pick(INTERESTING_BYTES),
        });
    }
    if mode == 4 && rng.one_in(2) {
        // Random characters, always valid UTF-8.
        b.clear();
        for _ in 0..n / 2 {
            let c = char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{FFFD}');
            let mut buf = [0; 4];
            b.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    b
}

/// Fills `b` up to `size` bytes in one of several ways.
fn fill(rng: &mut Rng, corpus: &Corpus, size: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(size + 64);
    match rng.below(10) {
        0 => (0..size).for_each(|_| b.push(rng.byte())),
        1 => (0..size).for_each(|_| b.push(1 + rng.below(0x1f) as u8)),
        2 => (0..size).for_each(|_| b.push(*rng.pick(b"\"\\"))),
        3 => {
            // One message whose text fills the body.
            b.extend_from_slice(ENVELOPE_HEAD);
            b.extend_from_slice(br#"{"sender":{"id":"7"},"timestamp":1700000000001,"message":{"mid":"m_big","text":""#);
            let unit = *rng.pick(&[&b"a"[..], b"\\u0000", b"\\\"", "é".as_bytes()]);
            let tail = br#""}}]}]}"#;
            while b.len() + unit.len() + tail.len() <= size {
                b.extend_from_slice(unit);
            }
            b.extend_from_slice(tail);
        }
        4 => {
            // Many small items. `{}` only up to 128 KiB: a 1 MiB body of them is 350,000
            // events, seconds of work for one execution (`--replay` such a body to see it).
            b.extend_from_slice(ENVELOPE_HEAD);
            let optin: &[u8] = br#"{"recipient":{"id":"1"},"optin":{"login_id":"L"}}"#;
            let unit = if size > 128 * 1024 || rng.one_in(2) {
                optin
            } else {
                b"{}"
            };
            while b.len() + unit.len() + 1 + ENVELOPE_TAIL.len() <= size {
                if b.len() > ENVELOPE_HEAD.len() {
                    b.push(b',');
                }
                b.extend_from_slice(unit);
            }
            b.extend_from_slice(ENVELOPE_TAIL);
        }
        5 => {
            // Deep nesting all the way.
            b.extend(std::iter::repeat_n(b'[', size / 2));
            b.extend(std::iter::repeat_n(b']', size / 2));
        }
        6 => {
            // One field the event repeats (object, mid, sender id, entry id) fills the body.
            let which = rng.below(4);
            let head: &[u8] = match which {
                0 => br#"{"object":""#,
                1 => br#"{"object":"page","entry":[{"id":"1","messaging":[{"sender":{"id":"7"},"message":{"mid":""#,
                2 => br#"{"object":"page","entry":[{"id":"1","messaging":[{"recipient":{"id":"1"},"sender":{"id":""#,
                _ => br#"{"object":"page","entry":[{"id":""#,
            };
            let tail: &[u8] = match which {
                0 => br#"","entry":[{"id":"1","messaging":[{}]}]}"#,
                1 => br#""}}]}]}"#,
                2 => br#""},"read":{}}]}]}"#,
                _ => br#"","messaging":[{}]}]}"#,
            };
            b.extend_from_slice(head);
            while b.len() + tail.len() < size {
                b.push(b'x');
            }
            b.extend_from_slice(tail);
        }
        7 => {
            // A real body padded with whitespace (still valid JSON).
            b.extend_from_slice(corpus.pick(rng));
            while b.len() < size {
                b.push(b' ');
            }
        }
        8 => {
            b.push(b'"');
            while b.len() + 1 < size {
                b.push(b'x');
            }
            b.push(b'"');
        }
        _ => {
            // Printable ASCII that is not JSON.
            (0..size).for_each(|_| b.push(0x20 + rng.below(95) as u8));
        }
    }
    b.truncate(size);
    b
}

/// 8 KiB to 320 KiB.
fn large(rng: &mut Rng, corpus: &Corpus) -> Vec<u8> {
    let size = rng.range(8 * 1024, 320 * 1024);
    fill(rng, corpus, size)
}

/// Around the configured limit: just under, at, just over, or anywhere in its upper half.
fn huge(rng: &mut Rng, corpus: &Corpus, max: usize) -> Vec<u8> {
    let size = match rng.below(6) {
        0 => max - 1,
        1 => max,
        2 => max + 1,
        3 => max + 1 + rng.below(100),
        4 => max - rng.below(1000),
        _ => rng.range(max / 2, max),
    };
    let mut b = fill(rng, corpus, size);
    b.resize(size, b' ');
    b
}

// ---------------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------------

struct Header {
    value: Option<String>,
    sha1: bool,
    kind: &'static str,
    signed: Signed,
}

/// `digests`: the body's true digests, SECRET_A's first (and SECRET_B's when configured).
fn header(rng: &mut Rng, body: &[u8], digests: &[String]) -> Header {
    let two_apps = digests.len() > 1;
    let digest = |key: &str, body: &[u8]| hex::encode(hmac(key.as_bytes(), body));
    let a = digests[0].as_str();
    let good = || format!("sha256={a}");
    let h = |value: Option<String>, sha1: bool, kind: &'static str, signed: Signed| Header {
        value,
        sha1,
        kind,
        signed,
    };
    match rng.below(100) {
        0..=34 => h(Some(good()), false, "signed", Signed::Canonical),
        35..=42 => {
            // The second app's secret: valid only where it is configured.
            let v = match digests.get(1) {
                Some(d) => format!("sha256={d}"),
                None => format!("sha256={}", digest(SECRET_B, body)),
            };
            let signed = if two_apps {
                Signed::Canonical
            } else {
                Signed::No
            };
            h(Some(v), rng.one_in(3), "second_app", signed)
        }
        43..=50 => h(Some(good()), true, "signed_and_sha1", Signed::Canonical),
        51..=53 => {
            let g = good();
            let v = format!("sha256={}", g["sha256=".len()..].to_uppercase());
            h(Some(v), false, "upper_hex", Signed::Variant)
        }
        54..=55 => {
            let pad = *rng.pick(&[" ", "  ", "\t", " \t "]);
            let v = match rng.below(3) {
                0 => format!("{pad}{}", good()),
                1 => format!("{}{pad}", good()),
                _ => format!("{pad}{}{pad}", good()),
            };
            h(Some(v), false, "spaces_around", Signed::Variant)
        }
        56 => {
            let g = good();
            let v = format!("{g},{g}");
            h(Some(v), false, "repeated", Signed::Variant)
        }
        57..=61 => h(None, false, "missing", Signed::No),
        62..=66 => h(None, true, "sha1_only", Signed::No),
        67..=68 => {
            let v = format!("sha1={}", &a[..40]);
            h(Some(v), rng.one_in(2), "sha1_in_256", Signed::No)
        }
        69..=72 => {
            let key = *rng.pick(&[
                "app-secret-3",
                "fuzz-app-secret-A",
                "fuzz-app-secret-a ",
                "fuzz-app-secret-",
                "",
            ]);
            let v = format!("sha256={}", digest(key, body));
            h(Some(v), rng.one_in(4), "wrong_key", Signed::No)
        }
        73..=76 => {
            let mut other = body.to_vec();
            match rng.below(4) {
                0 if !other.is_empty() => {
                    let i = rng.below(other.len());
                    other[i] ^= 1 << rng.below(8);
                }
                1 => other.push(b'\n'),
                2 if !other.is_empty() => {
                    other.pop();
                }
                _ => other.insert(0, b' '),
            }
            let v = format!("sha256={}", digest(SECRET_A, &other));
            h(Some(v), false, "other_body", Signed::No)
        }
        77..=79 => {
            let mut g = good();
            let cut = rng.range(1, 64);
            g.truncate(g.len() - cut);
            h(Some(g), false, "truncated", Signed::No)
        }
        80..=82 => {
            let mut g = good();
            for _ in 0..rng.range(1, 64) {
                g.push(*rng.pick(b"0123456789abcdef") as char);
            }
            h(Some(g), false, "too_long", Signed::No)
        }
        83..=85 => {
            let g = good();
            let i = rng.range("sha256=".len(), g.len() - 1);
            let with = *rng.pick(&["g", "G", " ", "-", "x", "\u{ff10}", "\u{0301}", "0x"]);
            let v = format!("{}{with}{}", &g[..i], &g[i + 1..]);
            h(Some(v), false, "not_hex", Signed::No)
        }
        86..=88 => {
            let mut g = good().into_bytes();
            let i = rng.range("sha256=".len(), g.len() - 1);
            let c = g[i];
            g[i] = if c == b'0' { b'1' } else { b'0' };
            let v = String::from_utf8(g).expect("ascii");
            h(Some(v), false, "flipped_digit", Signed::No)
        }
        89..=92 => {
            let hexd = a;
            let prefix = *rng.pick(&[
                "SHA256=",
                "sha256:",
                "sha-256=",
                "sha512=",
                "sha256 =",
                "sha256= ",
                "sha1=",
                "",
                "=",
                "sha256==",
                "sha256=sha256=",
            ]);
            let v = format!("{prefix}{hexd}");
            h(Some(v), false, "wrong_prefix", Signed::No)
        }
        93 => h(Some(String::new()), false, "empty", Signed::No),
        94 => h(Some("sha256=".into()), false, "prefix_only", Signed::No),
        95 => {
            // The right digest next to something else.
            let v = format!("sha256={a}x");
            h(Some(v), false, "digest_plus", Signed::No)
        }
        96 => {
            // All-zero and all-f digests.
            let c = *rng.pick(&["0", "f", "F"]);
            let v = format!("sha256={}", c.repeat(64));
            h(Some(v), rng.one_in(2), "constant", Signed::No)
        }
        _ => {
            let n = rng.len_log(200);
            let v: String = (0..n)
                .map(|_| char::from(0x20 + rng.below(95) as u8))
                .collect();
            h(Some(v), rng.one_in(2), "garbage", Signed::No)
        }
    }
}

fn verify_input(rng: &mut Rng) -> VerifyInput {
    let opt = |rng: &mut Rng, choices: &[&str]| -> Option<String> {
        if rng.one_in(8) {
            None
        } else {
            Some(rng.pick(choices).to_string())
        }
    };
    let mode = opt(
        rng,
        &[
            "subscribe",
            "subscribe",
            "Subscribe",
            "subscribe ",
            "",
            "unsubscribe",
            "subscribe\0",
        ],
    );
    let token = if rng.one_in(3) {
        Some(VERIFY_TOKEN.to_string())
    } else {
        opt(
            rng,
            &[
                "",
                "fuzz-verify-toke",
                "fuzz-verify-tokenn",
                "FUZZ-VERIFY-TOKEN",
                " fuzz-verify-token",
                "fuzz-verify-token\0",
                "fuzz-verify-tokeN",
                SECRET_A,
                "null",
            ],
        )
    };
    let challenge = match rng.below(8) {
        0 => None,
        1 => Some(String::new()),
        2 => Some("x".repeat(256)),
        3 => Some("x".repeat(257)),
        4 => Some("é".repeat(rng.range(127, 129))),
        5 => Some("<script>alert(1)</script>\r\n".into()),
        _ => Some(rng.next_u64().to_string()),
    };
    VerifyInput {
        mode,
        token,
        challenge,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Corpus {
        Corpus {
            fixtures: vec![
                br#"{"object":"page","entry":[{"id":"1","time":1,"messaging":[{"sender":{"id":"2"},"timestamp":"3","message":{"mid":"m","text":"a\/b"}}]}]}"#.to_vec(),
                b"\xff\xfe".to_vec(),
            ],
        }
    }

    #[test]
    fn same_seed_and_index_same_input() {
        let c = corpus();
        for i in 0..500 {
            let a = generate(42, i, &c, 4096);
            let b = generate(42, i, &c, 4096);
            assert_eq!(a.body, b.body);
            assert_eq!(a.header, b.header);
            assert_eq!(a.has_sha1, b.has_sha1);
        }
    }

    #[test]
    fn canonical_headers_are_true_signatures() {
        let c = corpus();
        let mut seen = 0;
        for i in 0..2000 {
            let input = generate(7, i, &c, 4096);
            if input.signed == Signed::Canonical {
                let key = if input.header_kind == "second_app" {
                    SECRET_B
                } else {
                    SECRET_A
                };
                let want = format!("sha256={}", hex::encode(hmac(key.as_bytes(), &input.body)));
                assert_eq!(input.header.as_deref(), Some(want.as_str()));
                seen += 1;
            }
        }
        assert!(seen > 500);
    }

    #[test]
    fn huge_bodies_straddle_the_limit() {
        let c = corpus();
        let mut rng = Rng::for_exec(1, 1);
        for _ in 0..200 {
            let b = huge(&mut rng, &c, 10_000);
            assert!((5_000..=10_101).contains(&b.len()), "{}", b.len());
        }
    }

    #[test]
    fn hmac_matches_a_known_vector() {
        // RFC 4231 test case 2.
        let got = hex::encode(hmac(b"Jefe", b"what do ya want for nothing?"));
        assert_eq!(
            got,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
