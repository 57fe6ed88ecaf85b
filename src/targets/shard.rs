//! Which instance owns a target (`[poll] shard_index` / `shard_count`), and
//! the keyed hash that stands in for a UPN with `user_label = "hash"`. Both
//! are pure functions of their inputs, stable across versions, platforms and
//! restarts, so shards never overlap and a user's label never changes.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::config::ProductConfig;

/// Whether this instance's shard owns the target: a stable hash (SHA-256 of
/// product, SKU and lower-cased UPN) modulo the shard count. Stable across
/// versions and platforms, unlike `std`'s hasher.
pub fn in_shard(product: &ProductConfig, upn: &str, index: u32, count: u32) -> bool {
    if count <= 1 {
        return true;
    }
    shard_of(&product.product_id, &product.sku_id, upn, count) == index
}

/// The shard that owns a target.
pub fn shard_of(product_id: &str, sku_id: &str, upn: &str, count: u32) -> u32 {
    let mut h = Sha256::new();
    h.update(product_id.as_bytes());
    h.update([0]);
    h.update(sku_id.as_bytes());
    h.update([0]);
    h.update(upn.to_lowercase().as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32
}

/// The keyed hash shown instead of a UPN: HMAC-SHA256 of the lower-cased UPN,
/// first 16 hex digits. Same key and UPN always give the same label.
pub fn hash_user(key: &str, upn: &str) -> Box<str> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(upn.to_lowercase().as_bytes());
    let bytes = mac.finalize().into_bytes();
    let mut out = String::with_capacity(16);
    for b in &bytes[..8] {
        out.push_str(&format!("{b:02x}"));
    }
    out.into_boxed_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_targets() {
        let n = 4;
        let mut seen = [0usize; 4];
        for i in 0..1000 {
            let s = shard_of("P", "S", &format!("user{i}@x.y"), n);
            seen[s as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 150), "{seen:?}");
        assert_eq!(
            shard_of("P", "S", "A@X.Y", 7),
            shard_of("P", "S", "a@x.y", 7)
        );
    }

    #[test]
    fn user_hash_is_stable_and_keyed() {
        let a = hash_user("k1", "alice@contoso.com");
        assert_eq!(a.len(), 16);
        assert_eq!(a, hash_user("k1", "Alice@Contoso.com"));
        assert_ne!(a, hash_user("k2", "alice@contoso.com"));
        assert_ne!(a, hash_user("k1", "bob@contoso.com"));
    }
}
