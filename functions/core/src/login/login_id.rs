//! Login Connect "Option 2": compute a user's `login_id` server-side instead of waiting for the
//! `messaging_optins` webhook.
//!
//! ```text
//! login_id = lowercase_hex( HMAC-SHA256( key = <App Client Token> (UTF-8 bytes),
//!                                        msg = "umc_" + ASID + "_" + APP_ID + "_" + PAGE_ID ) )
//! ```
//!
//! **Provenance: unconfirmed.** This derivation comes from Meta's official *sample*
//! (`fbsamples/fblogin-sample`, `loginconnect_directintegrator/app.js`, function
//! `generateLoginID`; the Client Token is that sample's `CLIENT_TOKEN` setting), not from Meta's
//! documentation, whose "Option 2" text could not be read. An earlier SHA-1/app-secret variant in
//! the same sample was replaced by this one in September 2021. In the two-app setup (Login app +
//! Messenger app) it is not confirmed which app's ID and Client Token go in; most likely the Login
//! app's, because the ASID is scoped to it. Callers must therefore use it behind a setting (off
//! by default) and keep the webhook path (Option 1) as the reference.
//!
//! Security: the ASID must come from a server-side check of the user's access token
//! (`GET /me` or `/debug_token`), never from a value the browser posted, as the sample does.
//!
//! The function is a pure derivation: inputs are used byte-for-byte, with no trimming or
//! validation, so callers validate (ASID, app id and page id are decimal strings in practice).

use hmac::digest::{Key, KeyInit};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Derives the Login Connect `login_id` for a user (see the module doc for provenance).
///
/// `client_token` is the App Client Token (App Dashboard → Settings → Advanced), `asid` the
/// user's app-scoped user ID, `app_id` the app ID and `page_id` the Page the user consented to.
/// Returns 64 lowercase hex characters.
pub fn derive_login_id(client_token: &str, asid: &str, app_id: &str, page_id: &str) -> String {
    let mut mac = hmac_from_key(client_token.as_bytes());
    // Fed piecewise: identical to MAC-ing "umc_{asid}_{app_id}_{page_id}" in one go.
    for part in [
        "umc_".as_bytes(),
        asid.as_bytes(),
        b"_",
        app_id.as_bytes(),
        b"_",
        page_id.as_bytes(),
    ] {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// HMAC-SHA256 keyed with a key of any length, without a fallible constructor: the key is
/// reduced to one SHA-256 block exactly as RFC 2104 does (hashed when longer than the block,
/// zero-padded otherwise), so the result equals `Hmac::new_from_slice(key)`.
fn hmac_from_key(key: &[u8]) -> HmacSha256 {
    let mut block = Key::<HmacSha256>::default();
    if key.len() > block.len() {
        let digest = Sha256::digest(key);
        block[..digest.len()].copy_from_slice(&digest);
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    <HmacSha256 as KeyInit>::new(&block)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Second, independent implementation: RFC 2104 written out by hand on top of `sha2`.
    fn reference_hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
        const BLOCK: usize = 64;
        let mut k = [0u8; BLOCK];
        if key.len() > BLOCK {
            let h = Sha256::digest(key);
            k[..32].copy_from_slice(&h);
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let mut inner = Sha256::new();
        inner.update(k.map(|b| b ^ 0x36));
        inner.update(msg);
        let inner_hash = inner.finalize();
        let mut outer = Sha256::new();
        outer.update(k.map(|b| b ^ 0x5c));
        outer.update(inner_hash);
        outer.finalize().into()
    }

    fn reference_login_id(token: &str, asid: &str, app: &str, page: &str) -> String {
        let msg = format!("umc_{asid}_{app}_{page}");
        hex::encode(reference_hmac_sha256(token.as_bytes(), msg.as_bytes()))
    }

    /// (client_token, asid, app_id, page_id, expected) — expected values computed on this
    /// machine with Python's `hmac.new(token.encode(), msg.encode(), hashlib.sha256).hexdigest()`.
    const PYTHON_VECTORS: &[(&str, &str, &str, &str, &str)] = &[
        (
            "abc123clienttoken",
            "1234567890",
            "111",
            "222",
            "e3e10b7d0b39737814df10f1f5e8c79d36b5dfc415db89aeea9f90d1b3d3010b",
        ),
        (
            "",
            "",
            "",
            "",
            "03d5cb3ab2d801f2ea6128741650e372ccce0a5bba531da90ab8a22ca6763b24",
        ),
        (
            "tok",
            "é漢字🚀",
            "app",
            "page",
            "b04c55af719cf38676411c1b6506e62a91ce074794e544f4cca96d1aee8af76e",
        ),
        (
            "clé🔑",
            "1",
            "2",
            "3",
            "7207a8a4ac3b86c4ccb35a815369090a19a904012c25ae9be3873976775654a2",
        ),
        (
            "0123456789abcdef0123456789abcdef",
            "3141592653589793",
            "987654321012345",
            "112233445566778",
            "85e63d6c0bd48fce24b37294c1bfb1ca8bab2e412ef62ec2f6376dc3d817cf7b",
        ),
    ];

    #[test]
    fn matches_python_vectors() {
        for (token, asid, app, page, expected) in PYTHON_VECTORS {
            assert_eq!(
                derive_login_id(token, asid, app, page),
                *expected,
                "{token:?}"
            );
        }
    }

    #[test]
    fn key_exactly_one_block_and_longer_than_a_block() {
        let k64 = "K".repeat(64);
        let k100 = "K".repeat(100);
        assert_eq!(
            derive_login_id(&k64, "10", "20", "30"),
            "90064e1ec7a4c2116d240e6ccf757c45cde572da23ccfc53356c175fbc493e4f"
        );
        assert_eq!(
            derive_login_id(&k100, "10", "20", "30"),
            "15f6ede8dba1fbc889fd6106d19e103e1e80cd83ae7cc59de6ed78fb21ab4eb8"
        );
    }

    #[test]
    fn matches_hand_written_rfc2104_for_many_inputs() {
        let tokens = [
            String::new(),
            "t".into(),
            "x".repeat(63),
            "x".repeat(64),
            "x".repeat(65),
            "x".repeat(200),
            "ключ-🔑".into(),
        ];
        let ids = ["", "0", "1234567890123456", "é", "_", "a_b"];
        for token in &tokens {
            for asid in ids {
                for page in ids {
                    assert_eq!(
                        derive_login_id(token, asid, "42", page),
                        reference_login_id(token, asid, "42", page),
                        "token={token:?} asid={asid:?} page={page:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn equals_hmac_crate_with_slice_key() {
        // Guards hmac_from_key's block reduction against the crate's own key handling.
        for len in [0usize, 1, 32, 63, 64, 65, 128, 1000] {
            let key = vec![0xA5u8; len];
            let Ok(mut expected) = <HmacSha256 as KeyInit>::new_from_slice(&key) else {
                panic!("hmac rejected a {len}-byte key");
            };
            expected.update(b"umc_1_2_3");
            let mut ours = hmac_from_key(&key);
            ours.update(b"umc_1_2_3");
            assert_eq!(
                ours.finalize().into_bytes(),
                expected.finalize().into_bytes()
            );
        }
    }

    #[test]
    fn output_is_64_lowercase_hex() {
        let id = derive_login_id("token", "1", "2", "3");
        assert_eq!(id.len(), 64);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn every_input_matters() {
        let base = derive_login_id("token", "1", "2", "3");
        assert_ne!(base, derive_login_id("token2", "1", "2", "3"));
        assert_ne!(base, derive_login_id("token", "9", "2", "3"));
        assert_ne!(base, derive_login_id("token", "1", "9", "3"));
        assert_ne!(base, derive_login_id("token", "1", "2", "9"));
        // The "_" separators are not escaped: these two collide by construction, as in Meta's
        // sample. Real ids are decimal strings, so this cannot happen with valid input.
        assert_eq!(
            derive_login_id("token", "1_2", "3", "4"),
            derive_login_id("token", "1", "2_3", "4")
        );
    }
}
