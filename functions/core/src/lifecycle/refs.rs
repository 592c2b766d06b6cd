//! Signed pass-through `ref` values for the Send to Messenger plugin (`data-ref`) and m.me
//! links (`?ref=`).
//!
//! The business puts a small payload (an order id, a campaign, its own user id) into a `ref`;
//! Meta hands it back in `messaging_optins` / `messaging_referrals` / Get Started postbacks.
//! Whoever holds the link can change it, so a ref we act on must be authenticated and must
//! expire. The payload is readable by anyone who sees the link: put identifiers in it, never
//! secrets. (An encrypted form existed once; nothing minted it, so it was removed. A `lcr1e_`
//! ref is refused as invalid.)
//!
//! # Format (version 1)
//! ```text
//! "lcr1s_" + base64url_nopad( key_id:u8 | expires_at:i64 BE | payload | tag16 )
//! tag16   = first 16 bytes of HMAC-SHA256(mac_key, "lcr1s_" | key_id | expires_at | payload)
//! mac_key = HMAC-SHA256(key, "lc-core/signed_ref/v1/mac")
//! ```
//! - Alphabet `[A-Za-z0-9_-]` only (m.me refs allow alphanumerics and `-_=`; no padding is
//!   emitted), total length at most [`MAX_REF_LEN`] = 250 characters, so a payload holds at
//!   most [`MAX_SIGNED_PAYLOAD`] = 158 bytes.
//! - The key id byte selects the key in a [`Keyring`], so keys can be rotated: mint with the new
//!   id, keep the old key in the keyring until its refs have expired.
//! - Expiry: a ref is valid while `now < expires_at`; at `now == expires_at` it is expired.
//! - Decoding is strict (canonical base64url, no padding), so every single-character change of
//!   the encoded part is rejected.
//! - The version and form are bound into the MAC: a ref cannot be re-labelled.
//!
//! # Outcomes
//! [`verify`] never panics and returns [`RefCheck`]: `Valid`, `Expired` (authentic but too old),
//! `Invalid` (has our prefix but was tampered with, truncated, made with an unknown key id or a
//! wrong key, or names an unsupported version or form) or `Opaque` (not our format at all: a
//! plain business ref that we cannot vouch for, to be treated as untrusted input).

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::digest::Key;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Longest ref this module produces or accepts.
pub const MAX_REF_LEN: usize = 250;
/// Longest payload [`mint`] accepts (keeps the ref within [`MAX_REF_LEN`]).
pub const MAX_SIGNED_PAYLOAD: usize = MAX_BODY_BYTES - HEADER_LEN - MAC_TAG_LEN;

const SIGNED_PREFIX: &str = "lcr1s_";
const PREFIX_LEN: usize = 6;
/// Most bytes whose unpadded base64 fits after the prefix: ceil(4n/3) <= 244 → n <= 183.
const MAX_BODY_BYTES: usize = (MAX_REF_LEN - PREFIX_LEN) * 3 / 4;
/// key id (1) + expires_at (8).
const HEADER_LEN: usize = 9;
const MAC_TAG_LEN: usize = 16;

const MAC_KEY_LABEL: &[u8] = b"lc-core/signed_ref/v1/mac";

/// Why a ref could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("payload is {len} bytes; at most {max} fit in a ref")]
    PayloadTooLong { len: usize, max: usize },
}

/// The result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefCheck {
    /// Authentic and not expired.
    Valid {
        payload: Vec<u8>,
        expires_at_secs: i64,
        key_id: u8,
    },
    /// Authentic, but `now >= expires_at`.
    Expired {
        payload: Vec<u8>,
        expires_at_secs: i64,
        key_id: u8,
    },
    /// Looks like ours but fails verification; the reason is a short stable string.
    Invalid(&'static str),
    /// Not our format: a plain business ref we cannot vouch for.
    Opaque,
}

/// Verification keys by key id. `Debug` shows key ids only.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<u8, [u8; 32]>,
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// Adds (or replaces) the key for `key_id`.
    pub fn insert(&mut self, key_id: u8, key: [u8; 32]) {
        self.keys.insert(key_id, key);
    }

    /// Builder form of [`Keyring::insert`].
    pub fn with_key(mut self, key_id: u8, key: [u8; 32]) -> Keyring {
        self.insert(key_id, key);
        self
    }

    /// The key for `key_id`, if any.
    pub fn get(&self, key_id: u8) -> Option<&[u8; 32]> {
        self.keys.get(&key_id)
    }

    /// The key new refs are minted with: the highest id (rotation adds a higher one).
    pub fn newest(&self) -> Option<(u8, &[u8; 32])> {
        self.keys.iter().next_back().map(|(id, k)| (*id, k))
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// The keyring in the secret's `ref_keys` (`{"1": "<base64 of 32 bytes>"}`): the one place
    /// keys are decoded, for minting (login page) and verifying (lifecycle). Invalid entries are
    /// skipped with a warning naming the key id, never the value.
    pub fn from_secrets(secrets: &crate::support::secret::Secrets) -> Keyring {
        Keyring::from_map(&secrets.ref_keys, "ref_keys")
    }

    /// The keyring in the secret's `external_id_keys`: what the business's backend signs the
    /// `external_id` of a login with.
    pub fn external_id_keys(secrets: &crate::support::secret::Secrets) -> Keyring {
        Keyring::from_map(&secrets.external_id_keys, "external_id_keys")
    }

    fn from_map(
        map: &BTreeMap<String, crate::support::secret::Secret>,
        field: &'static str,
    ) -> Keyring {
        use base64::engine::general_purpose::STANDARD;
        let mut ring = Keyring::new();
        for (id, value) in map {
            let key_id: Option<u8> = id.trim().parse().ok();
            let bytes = STANDARD
                .decode(value.expose().trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok());
            match (key_id, bytes) {
                (Some(k), Some(b)) => ring.insert(k, b),
                _ => {
                    tracing::warn!(field, key_id = %id, "key skipped: need a numeric id and 32 base64 bytes")
                }
            }
        }
        ring
    }
}

/// Mints a signed (readable, tamper-proof) ref. Fails only if `payload` is longer than
/// [`MAX_SIGNED_PAYLOAD`].
pub fn mint(
    keyring_key_id: u8,
    key: &[u8; 32],
    payload: &[u8],
    expires_at_secs: i64,
) -> Result<String, RefError> {
    if payload.len() > MAX_SIGNED_PAYLOAD {
        return Err(RefError::PayloadTooLong {
            len: payload.len(),
            max: MAX_SIGNED_PAYLOAD,
        });
    }
    let header = header(keyring_key_id, expires_at_secs);
    let tag = signed_tag(key, &header, payload);
    let mut body = Vec::with_capacity(HEADER_LEN + payload.len() + MAC_TAG_LEN);
    body.extend_from_slice(&header);
    body.extend_from_slice(payload);
    body.extend_from_slice(&tag);
    Ok(format!("{SIGNED_PREFIX}{}", URL_SAFE_NO_PAD.encode(body)))
}

/// Checks a ref received from Meta (see [`RefCheck`]). Never panics, whatever the input.
pub fn verify(raw_ref: &str, keys: &Keyring, now_secs: i64) -> RefCheck {
    match form_of(raw_ref) {
        Form::NotOurs => return RefCheck::Opaque,
        Form::UnsupportedVersion => return RefCheck::Invalid("unsupported version"),
        Form::Encrypted => return RefCheck::Invalid("encrypted refs are not supported"),
        Form::Signed => {}
    }
    if raw_ref.len() > MAX_REF_LEN {
        return RefCheck::Invalid("too long");
    }
    let Some(encoded) = raw_ref.get(PREFIX_LEN..) else {
        return RefCheck::Invalid("truncated");
    };
    let Ok(body) = URL_SAFE_NO_PAD.decode(encoded) else {
        return RefCheck::Invalid("bad encoding");
    };
    // Length checks are structural (split_*_chunk return None when too short): no slicing panics.
    let Some((header, rest)) = body.split_first_chunk::<HEADER_LEN>() else {
        return RefCheck::Invalid("truncated");
    };
    let [key_id, exp @ ..] = *header;
    let Some(key) = keys.get(key_id) else {
        return RefCheck::Invalid("unknown key id");
    };
    let Some((payload, tag)) = rest.split_last_chunk::<MAC_TAG_LEN>() else {
        return RefCheck::Invalid("truncated");
    };
    let expected = signed_tag(key, header, payload);
    if !bool::from(expected.ct_eq(tag)) {
        return RefCheck::Invalid("bad signature");
    }
    let payload = payload.to_vec();
    let expires_at_secs = i64::from_be_bytes(exp);
    if now_secs >= expires_at_secs {
        RefCheck::Expired {
            payload,
            expires_at_secs,
            key_id,
        }
    } else {
        RefCheck::Valid {
            payload,
            expires_at_secs,
            key_id,
        }
    }
}

enum Form {
    NotOurs,
    UnsupportedVersion,
    Signed,
    Encrypted,
}

/// Ours = `lcr<digit><s|e>_…`; version 1 signed is the only form supported.
fn form_of(raw: &str) -> Form {
    match raw.as_bytes() {
        [b'l', b'c', b'r', version, kind @ (b's' | b'e'), b'_', ..] if version.is_ascii_digit() => {
            match (version, kind) {
                (b'1', b's') => Form::Signed,
                (b'1', _) => Form::Encrypted,
                _ => Form::UnsupportedVersion,
            }
        }
        _ => Form::NotOurs,
    }
}

fn header(key_id: u8, expires_at_secs: i64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = key_id;
    h[1..].copy_from_slice(&expires_at_secs.to_be_bytes());
    h
}

fn signed_tag(key: &[u8; 32], header: &[u8; HEADER_LEN], payload: &[u8]) -> [u8; MAC_TAG_LEN] {
    let mac_key = hmac32(key, &[MAC_KEY_LABEL]);
    let full = hmac32(&mac_key, &[SIGNED_PREFIX.as_bytes(), header, payload]);
    let mut tag = [0u8; MAC_TAG_LEN];
    tag.copy_from_slice(&full[..MAC_TAG_LEN]);
    tag
}

/// HMAC-SHA256 with a 32-byte key, built without a fallible constructor (a 32-byte key is
/// zero-padded to the 64-byte block, exactly as `Hmac::new_from_slice` would do).
fn hmac32(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = Key::<HmacSha256>::default();
    block[..key.len()].copy_from_slice(key);
    let mut mac = <HmacSha256 as KeyInit>::new(&block);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: [u8; 32] = [0x11; 32];
    const K2: [u8; 32] = [0x22; 32];
    const NOW: i64 = 1_760_000_000;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    fn ring() -> Keyring {
        Keyring::new().with_key(1, K1).with_key(2, K2)
    }

    fn signed(payload: &[u8]) -> String {
        match mint(1, &K1, payload, NOW + 3600) {
            Ok(r) => r,
            Err(e) => panic!("mint: {e}"),
        }
    }

    /// Small deterministic PRNG (xorshift64*), enough for fuzz-like tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn is_valid(c: &RefCheck) -> bool {
        matches!(c, RefCheck::Valid { .. })
    }

    #[test]
    fn constants() {
        assert_eq!(MAX_BODY_BYTES, 183);
        assert_eq!(MAX_SIGNED_PAYLOAD, 158);
    }

    #[test]
    fn round_trip_signed() {
        let r = signed(b"order-123");
        assert!(r.starts_with("lcr1s_"));
        assert_eq!(
            verify(&r, &ring(), NOW),
            RefCheck::Valid {
                payload: b"order-123".to_vec(),
                expires_at_secs: NOW + 3600,
                key_id: 1,
            }
        );
    }

    #[test]
    fn round_trip_arbitrary_bytes_and_empty() {
        let all: Vec<u8> = (0..=255u8).collect();
        for payload in [&[][..], &all[..MAX_SIGNED_PAYLOAD], &[0xFF, 0x00, 0x80]] {
            for r in [signed(payload)] {
                match verify(&r, &ring(), NOW) {
                    RefCheck::Valid { payload: p, .. } => assert_eq!(p, payload),
                    other => panic!("{r}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn key_rotation() {
        let (Ok(old), Ok(new)) = (mint(1, &K1, b"a", NOW + 10), mint(2, &K2, b"b", NOW + 10))
        else {
            panic!("mint failed");
        };
        assert!(matches!(
            verify(&old, &ring(), NOW),
            RefCheck::Valid { key_id: 1, .. }
        ));
        assert!(matches!(
            verify(&new, &ring(), NOW),
            RefCheck::Valid { key_id: 2, .. }
        ));
        // Old key retired.
        let only_new = Keyring::new().with_key(2, K2);
        assert_eq!(
            verify(&old, &only_new, NOW),
            RefCheck::Invalid("unknown key id")
        );
    }

    #[test]
    fn expiry_boundary() {
        {
            let Ok(r) = mint(1, &K1, b"x", NOW) else {
                panic!("mint")
            };
            assert!(is_valid(&verify(&r, &ring(), NOW - 1)));
            assert_eq!(
                verify(&r, &ring(), NOW),
                RefCheck::Expired {
                    payload: b"x".to_vec(),
                    expires_at_secs: NOW,
                    key_id: 1,
                }
            );
            assert!(matches!(
                verify(&r, &ring(), NOW + 1),
                RefCheck::Expired { .. }
            ));
        }
    }

    #[test]
    fn extreme_expiry_values() {
        for exp in [i64::MIN, -1, 0, i64::MAX] {
            let Ok(r) = mint(1, &K1, b"x", exp) else {
                panic!("mint")
            };
            match verify(&r, &ring(), 0) {
                RefCheck::Valid {
                    expires_at_secs, ..
                }
                | RefCheck::Expired {
                    expires_at_secs, ..
                } => assert_eq!(expires_at_secs, exp),
                other => panic!("{other:?}"),
            }
        }
        let Ok(r) = mint(1, &K1, b"x", i64::MAX) else {
            panic!("mint")
        };
        assert!(is_valid(&verify(&r, &ring(), i64::MAX - 1)));
        assert!(!is_valid(&verify(&r, &ring(), i64::MAX)));
    }

    #[test]
    fn wrong_key_and_unknown_key_id() {
        let wrong = Keyring::new().with_key(1, K2);
        assert_eq!(
            verify(&signed(b"p"), &wrong, NOW),
            RefCheck::Invalid("bad signature")
        );
        let other_id = Keyring::new().with_key(9, K1);
        assert_eq!(
            verify(&signed(b"p"), &other_id, NOW),
            RefCheck::Invalid("unknown key id")
        );
        assert_eq!(
            verify(&signed(b"p"), &Keyring::new(), NOW),
            RefCheck::Invalid("unknown key id")
        );
    }

    #[test]
    fn every_single_character_change_is_rejected() {
        for r in [signed(b"order-42")] {
            let bytes = r.as_bytes();
            for i in 0..bytes.len() {
                for &c in ALPHABET {
                    if c == bytes[i] {
                        continue;
                    }
                    let mut m = bytes.to_vec();
                    m[i] = c;
                    let Ok(m) = String::from_utf8(m) else {
                        panic!("ascii")
                    };
                    let check = verify(&m, &ring(), NOW);
                    assert!(!is_valid(&check), "{m} accepted");
                    if i >= PREFIX_LEN {
                        assert!(matches!(check, RefCheck::Invalid(_)), "{m}: {check:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn prefix_swap_is_rejected() {
        let s = signed(b"order-42");
        let s_as_e = format!("lcr1e_{}", &s[PREFIX_LEN..]);
        assert_eq!(
            verify(&s_as_e, &ring(), NOW),
            RefCheck::Invalid("encrypted refs are not supported")
        );
        let v2 = format!("lcr2s_{}", &s[PREFIX_LEN..]);
        assert_eq!(
            verify(&v2, &ring(), NOW),
            RefCheck::Invalid("unsupported version")
        );
    }

    #[test]
    fn alphabet_and_length_limits() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for len in 0..=MAX_SIGNED_PAYLOAD {
            let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let r = signed(&payload);
            assert!(r.len() <= MAX_REF_LEN, "{} chars", r.len());
            assert!(r.bytes().all(|b| ALPHABET.contains(&b)), "{r}");
        }
        assert_eq!(signed(&[0; MAX_SIGNED_PAYLOAD]).len(), MAX_REF_LEN);
        assert_eq!(
            mint(1, &K1, &[0; MAX_SIGNED_PAYLOAD + 1], NOW),
            Err(RefError::PayloadTooLong {
                len: MAX_SIGNED_PAYLOAD + 1,
                max: MAX_SIGNED_PAYLOAD
            })
        );
        // Over-long input with our prefix is refused before decoding.
        let long = format!("lcr1s_{}", "A".repeat(MAX_REF_LEN));
        assert_eq!(verify(&long, &ring(), NOW), RefCheck::Invalid("too long"));
    }

    #[test]
    fn opaque_and_unsupported() {
        for r in [
            "",
            "summer_sale",
            "order-123",
            "lcr",
            "lcr1s",
            "lcr1x_abc",
            "LCR1s_abc",
            "lcrAs_abc",
            "xlcr1s_abc",
            "é漢字🚀",
            "lc\u{0}r1s_",
        ] {
            assert_eq!(verify(r, &ring(), NOW), RefCheck::Opaque, "{r:?}");
        }
        assert_eq!(
            verify("lcr9e_AAAA", &ring(), NOW),
            RefCheck::Invalid("unsupported version")
        );
        for r in [
            "lcr1s_",
            "lcr1e_",
            "lcr1s_AAAA",
            "lcr1s_A",
            "lcr1s_====",
            "lcr1e_é",
        ] {
            assert!(
                matches!(verify(r, &ring(), NOW), RefCheck::Invalid(_)),
                "{r:?}"
            );
        }
    }

    #[test]
    fn truncations_and_extensions_are_rejected() {
        for r in [signed(b"order-42")] {
            for cut in 0..r.len() {
                let t = &r[..cut];
                let check = verify(t, &ring(), NOW);
                if cut < PREFIX_LEN {
                    assert_eq!(check, RefCheck::Opaque, "{t}");
                } else {
                    assert!(matches!(check, RefCheck::Invalid(_)), "{t}: {check:?}");
                }
            }
            for &c in ALPHABET {
                let mut longer = r.clone();
                longer.push(c as char);
                assert!(matches!(
                    verify(&longer, &ring(), NOW),
                    RefCheck::Invalid(_)
                ));
            }
            for extra in ["=", "==", " ", "\n", ".", "é"] {
                let longer = format!("{r}{extra}");
                assert!(matches!(
                    verify(&longer, &ring(), NOW),
                    RefCheck::Invalid(_)
                ));
            }
        }
    }

    #[test]
    fn bit_flips_are_invalid() {
        for r in [signed(b"order-42")] {
            let Ok(body) = URL_SAFE_NO_PAD.decode(&r[PREFIX_LEN..]) else {
                panic!("decode")
            };
            for byte in 0..body.len() {
                for bit in 0..8 {
                    let mut b = body.clone();
                    b[byte] ^= 1 << bit;
                    let m = format!("{}{}", &r[..PREFIX_LEN], URL_SAFE_NO_PAD.encode(&b));
                    let check = verify(&m, &ring(), NOW);
                    assert!(
                        matches!(check, RefCheck::Invalid(_)),
                        "{byte}/{bit}: {check:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn random_inputs_never_panic_and_never_verify() {
        let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
        let chars: Vec<char> = "AZaz09-_=+/. \u{0}é漢🚀lcr1se".chars().collect();
        let valid = [signed(b"order-42"), signed(b"order-43")];
        for i in 0..20_000 {
            let s: String = match i % 4 {
                // Arbitrary strings.
                0 => (0..rng.below(300))
                    .map(|_| chars[rng.below(chars.len())])
                    .collect(),
                // Our prefix + random base64url text.
                1 | 2 => {
                    let prefix = if i % 4 == 1 { "lcr1s_" } else { "lcr1e_" };
                    let tail: String = (0..rng.below(260))
                        .map(|_| ALPHABET[rng.below(ALPHABET.len())] as char)
                        .collect();
                    format!("{prefix}{tail}")
                }
                // A valid ref with a few random edits.
                _ => {
                    let mut b = valid[i % 2].as_bytes().to_vec();
                    for _ in 0..1 + rng.below(3) {
                        let at = rng.below(b.len());
                        let c = ALPHABET[rng.below(ALPHABET.len())];
                        b[at] = c;
                    }
                    let Ok(s) = String::from_utf8(b) else {
                        panic!("ascii")
                    };
                    if valid.contains(&s) {
                        continue;
                    }
                    s
                }
            };
            assert!(!is_valid(&verify(&s, &ring(), NOW)), "{s:?}");
        }
    }

    #[test]
    fn hmac32_matches_hmac_crate() {
        let Ok(mut expected) = <HmacSha256 as KeyInit>::new_from_slice(&K1) else {
            panic!("hmac key")
        };
        expected.update(b"abc");
        let expected: [u8; 32] = expected.finalize().into_bytes().into();
        assert_eq!(hmac32(&K1, &[b"a", b"bc"]), expected);
    }

    #[test]
    fn keyring_debug_hides_keys() {
        let dbg = format!("{:?}", ring());
        assert!(dbg.contains("key_ids"));
        assert!(!dbg.contains("17"), "{dbg}"); // 0x11 = 17
        assert!(!dbg.contains("34"), "{dbg}"); // 0x22 = 34
    }
}
