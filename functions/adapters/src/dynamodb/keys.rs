//! The table's key schema (`pk` / `sk`, both strings) and how each item is addressed.

/// The partition key attribute.
pub(super) const PK: &str = "pk";
/// The sort key attribute.
pub(super) const SK: &str = "sk";
/// The table's TTL attribute (epoch seconds).
pub(super) const TTL: &str = "expires_at";

pub(super) const OPTIN_SK: &str = "OPTIN";
pub(super) const PERSON_SK: &str = "PERSON";
pub(super) const PAGE_SK: &str = "CONFIG";
pub(super) const TOKEN_SK_PREFIX: &str = "TOKEN#";
/// The partition quarantined events were written to before sharding: still read and cleaned,
/// never written.
pub(super) const QUARANTINE_PK: &str = "QUARANTINE";
/// Quarantined events are spread over `QUARANTINE#0` .. `QUARANTINE#15` by a hash of their id:
/// one partition takes about 1,000 writes a second, and a burst of unparseable events (a Meta
/// schema change) can exceed that. Listing reads every shard and merges them by id.
pub(super) const QUARANTINE_SHARDS: u8 = 16;
pub(super) const RECEIPT_SK: &str = "RECEIPT";

/// `pk` and `sk` of one item.
pub(super) type Key = (String, String);

/// The opt-in's `pk` is its domain key (`Optin::key`): the store does not re-derive it.
pub(super) fn optin_key(key: &str) -> Key {
    (key.to_string(), OPTIN_SK.to_string())
}

/// The person and its marketing tokens share this partition: one `Query` reads them all.
pub(super) fn person_pk(page_id: &str, psid: &str) -> String {
    format!("PSID#{page_id}#{psid}")
}

pub(super) fn person_key(page_id: &str, psid: &str) -> Key {
    (person_pk(page_id, psid), PERSON_SK.to_string())
}

pub(super) fn token_key(page_id: &str, psid: &str, topic: &str) -> Key {
    (
        person_pk(page_id, psid),
        format!("{TOKEN_SK_PREFIX}{topic}"),
    )
}

pub(super) fn page_key(page_id: &str) -> Key {
    (format!("PAGE#{page_id}"), PAGE_SK.to_string())
}

/// The shard partition of a quarantined record: a stable hash of its id.
pub(super) fn quarantine_pk(id: &str) -> String {
    use sha2::{Digest, Sha256};
    let shard = Sha256::digest(id.as_bytes())[0] % QUARANTINE_SHARDS;
    format!("{QUARANTINE_PK}#{shard}")
}

/// Every partition a quarantined record may be in: the shards, then the legacy partition.
pub(super) fn quarantine_partitions() -> Vec<String> {
    (0..QUARANTINE_SHARDS)
        .map(|n| format!("{QUARANTINE_PK}#{n}"))
        .chain(std::iter::once(QUARANTINE_PK.to_string()))
        .collect()
}

/// A pointer of the identity index: the identity's partition, the opt-in key.
pub(super) fn pointer_key(partition: String, optin_key: &str) -> Key {
    (partition, optin_key.to_string())
}

pub(super) fn receipt_key(code: &str) -> Key {
    (format!("DELETION#{code}"), RECEIPT_SK.to_string())
}

/// The table's one secondary index, sparse: only items that carry [`OPS_PK`] are in it: the
/// opt-ins still owed a first message (`UNSENT#<shard>`, sorted by opt-in time) and the Pages
/// paused now ([`PAUSED_PK`], sorted by pause time). The operations sweep reads it every
/// minute; nothing else is in it, so its size and cost follow the backlog, not the traffic.
pub(super) const OPS_INDEX: &str = "ops";
pub(super) const OPS_PK: &str = "ops_pk";
pub(super) const OPS_SK: &str = "ops_sk";
/// The index partition of the paused Pages.
pub(super) const PAUSED_PK: &str = "PAUSED";
/// The owed opt-ins are spread over this many index partitions, so no one index key takes
/// every opt-in's write (a partition key value takes about 1,000 writes/s).
pub(super) const UNSENT_SHARDS: u32 = 8;

/// The index partition of an owed opt-in: `UNSENT#<0..UNSENT_SHARDS>`, by a hash of its key.
pub(super) fn unsent_pk(optin_key: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in optin_key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    unsent_shard_pk(h % UNSENT_SHARDS)
}

pub(super) fn unsent_shard_pk(shard: u32) -> String {
    format!("UNSENT#{shard}")
}

/// Index sort key of an owed opt-in: its opt-in time, 13 digits (sorts as text).
pub(super) fn unsent_sk(opted_in_at_ms: i64) -> String {
    format!("{:013}", opted_in_at_ms.max(0))
}

/// Index sort key of a paused Page: the pause time, 13 digits, then the Page id.
pub(super) fn paused_sk(paused_at_ms: i64, page_id: &str) -> String {
    format!("{:013}#{page_id}", paused_at_ms.max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_shards_are_stable_and_spread() {
        assert_eq!(quarantine_pk("a"), quarantine_pk("a"));
        let used: std::collections::BTreeSet<String> = (0..400)
            .map(|i| quarantine_pk(&format!("{i:013}#k{i}")))
            .collect();
        assert_eq!(
            used.len(),
            usize::from(QUARANTINE_SHARDS),
            "every shard is used"
        );
        assert_eq!(quarantine_partitions().len(), 17);
        assert_eq!(quarantine_partitions()[16], "QUARANTINE");
    }

    #[test]
    fn index_keys_sort_as_their_times() {
        assert!(unsent_sk(999) < unsent_sk(1_000));
        assert!(unsent_sk(1_700_000_000_000) < unsent_sk(1_800_000_000_000));
        assert!(paused_sk(5, "9") < paused_sk(40, "1"));
        let shards: std::collections::BTreeSet<String> = (0..200)
            .map(|i| unsent_pk(&format!("OPTIN#login_id#{i}")))
            .collect();
        assert_eq!(shards.len(), UNSENT_SHARDS as usize, "every shard is used");
        assert_eq!(unsent_pk("OPTIN#a"), unsent_pk("OPTIN#a"));
    }
}
