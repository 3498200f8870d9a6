//! The immune system: peers that keep sending bad requests are banned for a
//! while, and then closed at accept without a read.
//!
//! Owns: `Strikes`, the gate's table of marks per address in a window (B
//! cells mark, T cells count), and `Bans`, the list of banned addresses that
//! the gate writes and the listener reads (one hashed lookup per accept).
//! Must never: grow with traffic (both are fixed in size; the oldest entry
//! makes way), take a lock, or ban an address in `trusted`.

use crate::cidr::Cidr;
use crate::epoch::Epoch;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Addresses whose marks are counted at once; the oldest nearby makes way.
const STRIKE_TABLE: usize = 4096;
/// Bans held at once; a new one replaces the soonest to end nearby.
const BAN_SLOTS: usize = 1024;
/// Slots an address may sit in past its hashed place (both tables).
const PROBES: usize = 8;

/// What bans a peer, and for how long.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Marks within `window` that ban; 0 turns banning off.
    pub ban_after: u32,
    pub window: Duration,
    pub ban_for: Duration,
    /// Never banned.
    pub trusted: Vec<Cidr>,
}

/// Marks per address, in the gate only: a fixed table of (address hash,
/// marks, since when), hashed with the ban list's random key.
pub struct Strikes {
    policy: Policy,
    slots: Vec<(u64, u32, Instant)>,
}

impl Strikes {
    pub fn new(policy: Policy) -> Strikes {
        let size = if policy.ban_after > 0 {
            STRIKE_TABLE
        } else {
            0
        };
        Strikes {
            slots: vec![(0, 0, Instant::now()); size],
            policy,
        }
    }

    /// One bad request from `ip` (`bans` keys its hash). Returns true if
    /// that makes a ban.
    pub fn mark(&mut self, ip: IpAddr, bans: &Bans, now: Instant) -> bool {
        if self.policy.ban_after == 0 || self.policy.trusted.iter().any(|c| c.contains(ip)) {
            return false;
        }
        // Its own slot; else an empty one nearby, else the oldest nearby.
        let key = bans.key(ip);
        let start = usize::try_from(key % STRIKE_TABLE as u64).unwrap_or(0);
        let near = (0..PROBES).map(|i| (start + i) % STRIKE_TABLE);
        let slots = &self.slots;
        let at = near
            .clone()
            .find(|&i| slots.get(i).is_some_and(|s| s.0 == key))
            .or_else(|| near.min_by_key(|&i| slots.get(i).map(|s| (s.0 != 0, s.2))));
        let Some(slot) = at.and_then(|i| self.slots.get_mut(i)) else {
            return false;
        };
        if slot.0 != key || now.saturating_duration_since(slot.2) > self.policy.window {
            *slot = (key, 0, now);
        }
        slot.1 += 1;
        if slot.1 < self.policy.ban_after {
            return false;
        }
        slot.0 = 0;
        true
    }

    pub fn ban_for(&self) -> Duration {
        self.policy.ban_for
    }
}

/// Banned addresses until when: written by the gate, read by the listener,
/// lock-free. A slot is (address hash, end in ms since `epoch`); the hash is
/// keyed at random, so no one can choose addresses that collide.
pub struct Bans {
    slots: [(AtomicU64, AtomicU64); BAN_SLOTS],
    hasher: RandomState,
    epoch: Epoch,
}

impl Bans {
    pub fn new() -> Bans {
        Bans {
            slots: std::array::from_fn(|_| (AtomicU64::new(0), AtomicU64::new(0))),
            hasher: RandomState::new(),
            epoch: Epoch::now(),
        }
    }

    /// `ip`'s hash under the random key (never 0, which marks an empty
    /// slot); `Strikes` places its marks by it too.
    pub fn key(&self, ip: IpAddr) -> u64 {
        self.hasher.hash_one(ip).max(1)
    }

    /// The slots `key` may be in.
    fn probe(&self, key: u64) -> impl Iterator<Item = &(AtomicU64, AtomicU64)> {
        let start = usize::try_from(key % BAN_SLOTS as u64).unwrap_or(0);
        (0..PROBES).filter_map(move |i| self.slots.get((start + i) % BAN_SLOTS))
    }

    /// True if `ip` is banned at `now`.
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        let (key, now) = (self.key(ip), self.epoch.ms(now));
        self.probe(key)
            .any(|(k, until)| k.load(Relaxed) == key && until.load(Relaxed) > now)
    }

    /// Bans `ip` until `until`. Only the gate calls this (one writer).
    pub fn ban(&self, ip: IpAddr, until: Instant) {
        let (key, until, now) = (
            self.key(ip),
            self.epoch.ms(until),
            self.epoch.ms(Instant::now()),
        );
        let slot = self
            .probe(key)
            .find(|(k, end)| k.load(Relaxed) == key || end.load(Relaxed) <= now)
            .or_else(|| self.probe(key).min_by_key(|(_, end)| end.load(Relaxed)));
        if let Some((k, end)) = slot {
            // Cleared first: a reader never sees the new key with another's end.
            end.store(0, Relaxed);
            k.store(key, Relaxed);
            end.store(until, Relaxed);
        }
    }

    /// Bans in force now.
    pub fn active(&self, now: Instant) -> usize {
        let now = self.epoch.ms(now);
        self.slots
            .iter()
            .filter(|(k, end)| k.load(Relaxed) != 0 && end.load(Relaxed) > now)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn policy(trusted: &[&str]) -> Policy {
        Policy {
            ban_after: 3,
            window: Duration::from_secs(10),
            ban_for: Duration::from_secs(60),
            trusted: trusted.iter().map(|c| Cidr::parse(c).unwrap()).collect(),
        }
    }

    #[test]
    fn marks_within_a_window_ban_and_trusted_peers_never_are() {
        let t0 = Instant::now();
        let mut s = Strikes::new(policy(&["10.0.0.0/8"]));
        let bans = Bans::new();
        let bad = ip("192.0.2.1");
        assert!(!s.mark(bad, &bans, t0));
        assert!(!s.mark(bad, &bans, t0));
        assert!(s.mark(bad, &bans, t0 + Duration::from_secs(1)));
        // A window that passed starts the count again.
        assert!(!s.mark(bad, &bans, t0 + Duration::from_secs(2)));
        assert!(!s.mark(bad, &bans, t0 + Duration::from_secs(30)));
        assert!(!s.mark(bad, &bans, t0 + Duration::from_secs(31)));
        assert!(s.mark(bad, &bans, t0 + Duration::from_secs(32)));
        for _ in 0..10 {
            assert!(!s.mark(ip("10.1.2.3"), &bans, t0));
        }
    }

    #[test]
    fn the_strike_table_stays_bounded_and_counts_a_repeat_offender() {
        let t0 = Instant::now();
        let mut s = Strikes::new(policy(&[]));
        let bans = Bans::new();
        let bad = ip("192.0.2.1");
        for i in 0..(STRIKE_TABLE as u32 * 4) {
            let at = t0 + Duration::from_millis(u64::from(i));
            assert!(!s.mark(IpAddr::from(((i + 1) << 8).to_be_bytes()), &bans, at));
            // The newest marks are never the ones that make way.
            if i % 1000 == 998 {
                assert!(!s.mark(bad, &bans, at));
                assert!(!s.mark(bad, &bans, at));
                assert!(s.mark(bad, &bans, at));
            }
        }
        assert_eq!(s.slots.len(), STRIKE_TABLE);
        assert_eq!(s.slots.capacity(), STRIKE_TABLE);
    }

    #[test]
    fn bans_end_and_stay_bounded() {
        let bans = Bans::new();
        let now = Instant::now();
        let (a, b) = (ip("192.0.2.1"), ip("2001:db8::1"));
        bans.ban(a, now + Duration::from_secs(5));
        assert!(bans.is_banned(a, now));
        assert!(!bans.is_banned(b, now));
        assert!(!bans.is_banned(a, now + Duration::from_secs(6)));
        assert_eq!(bans.active(now), 1);
        for i in 0..(BAN_SLOTS as u32 * 4) {
            bans.ban(IpAddr::from(i.to_be_bytes()), now + Duration::from_secs(60));
        }
        assert!(bans.active(now) <= BAN_SLOTS);
        assert!(bans.is_banned(IpAddr::from((BAN_SLOTS as u32 * 4 - 1).to_be_bytes()), now));
    }
}
