//! The startup splay: a deterministic per-agent delay before the first sync after a
//! reconnect, so a fleet that reconnects at one instant does not re-sync at one instant.
//!
//! The delay is `fnv1a64(pc_id) mod window` in whole milliseconds, where `pc_id` is the
//! agent's id as UTF-8 bytes and FNV-1a 64 is the classic one (offset basis
//! `0xcbf29ce484222325`, prime `0x100000001b3`, xor then multiply per byte). It is
//! deterministic, needs no coordination and no state, and is a dozen lines in any
//! language, so the real agent can adopt exactly this function:
//!
//! ```text
//! h = 0xcbf29ce484222325
//! for b in pc_id.bytes(): h = (h ^ b) * 0x100000001b3  (mod 2^64)
//! delay_ms = h mod window_ms
//! ```

use std::time::Duration;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64-bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
    })
}

/// The splay delay of agent `pc_id` for a window: `fnv1a64(pc_id) mod window_ms` ms.
/// A zero (or sub-millisecond) window is no delay.
pub fn delay(pc_id: &str, window: Duration) -> Duration {
    let window_ms = window.as_millis().min(u128::from(u64::MAX)) as u64;
    if window_ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(fnv1a64(pc_id.as_bytes()) % window_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::pc_id;

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn the_delay_is_deterministic_per_id() {
        let window = Duration::from_secs(5);
        for i in 0..100 {
            assert_eq!(delay(&pc_id(i), window), delay(&pc_id(i), window));
        }
        assert_ne!(delay("pc-00001", window), delay("pc-00002", window));
    }

    #[test]
    fn delays_spread_across_the_whole_window() {
        let window = Duration::from_secs(5);
        let n = 1000;
        // Ten 500 ms buckets: each should hold about 100 of 1,000 agents.
        let mut buckets = [0usize; 10];
        for i in 0..n {
            let d = delay(&pc_id(i), window);
            assert!(d < window, "{d:?} is inside the window");
            buckets[(d.as_millis() / 500) as usize] += 1;
        }
        for (i, count) in buckets.iter().enumerate() {
            assert!(
                (60..=140).contains(count),
                "bucket {i} holds {count} of {n}: {buckets:?}"
            );
        }
    }

    #[test]
    fn a_zero_window_is_no_delay() {
        assert_eq!(delay("pc-00001", Duration::ZERO), Duration::ZERO);
    }
}
