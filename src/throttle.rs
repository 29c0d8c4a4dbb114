//! Login throttling: guessing passwords gets slower, and checking them is bounded.
//!
//! Failures are counted per user name and per client address (an IPv6 address by its
//! /64, which one host usually owns whole). The first [`ThrottleConfig::user_free`]
//! failures for a name (and [`ThrottleConfig::address_free`] for an address) cost
//! nothing, so a mistype is never slowed; after that each failure locks the name (or
//! address) for twice as long as the last, from 2 s up to [`ThrottleConfig::max_lock`].
//! While locked, a sign-in is refused with 429 and `Retry-After` before any password
//! is hashed. A name or address with no failure for [`ThrottleConfig::forget_after`]
//! starts afresh, and each table holds at most [`ThrottleConfig::max_entries`]: when
//! full, forgotten entries go first, then the stalest.
//!
//! Each check is an argon2 hash (~19 MiB, tens of ms): at most
//! [`ThrottleConfig::hash_slots`] run at once, and a sign-in that cannot get a slot
//! within [`ThrottleConfig::hash_wait`] is refused with 503 and `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    pub user_free: u32,
    pub address_free: u32,
    pub first_lock: Duration,
    pub max_lock: Duration,
    pub forget_after: Duration,
    pub max_entries: usize,
    pub hash_slots: usize,
    pub hash_wait: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            user_free: 5,
            address_free: 20,
            first_lock: Duration::from_secs(2),
            max_lock: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(15 * 60),
            max_entries: 10_000,
            hash_slots: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            hash_wait: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Failures per key (a user name or an address), bounded.
struct Table {
    free: u32,
    map: HashMap<String, Record>,
}

impl Table {
    fn new(free: u32) -> Table {
        Table {
            free,
            map: HashMap::new(),
        }
    }

    /// How long `key` stays locked, if it is.
    fn locked(&self, key: &str, now: Instant) -> Option<Duration> {
        let until = self.map.get(key)?.locked_until?;
        (until > now).then(|| until - now)
    }

    fn fail(&mut self, key: &str, now: Instant, cfg: &ThrottleConfig) {
        if !self.map.contains_key(key) {
            self.make_room(now, cfg);
        }
        let r = self.map.entry(key.to_string()).or_insert(Record {
            failures: 0,
            last: now,
            locked_until: None,
        });
        if now.duration_since(r.last) > cfg.forget_after {
            *r = Record {
                failures: 0,
                last: now,
                locked_until: None,
            };
        }
        r.failures = r.failures.saturating_add(1);
        r.last = now;
        if r.failures > self.free {
            let doublings = (r.failures - self.free - 1).min(20);
            let lock = cfg
                .first_lock
                .saturating_mul(1 << doublings)
                .min(cfg.max_lock);
            r.locked_until = Some(now + lock);
        }
    }

    /// Drops forgotten entries, then (still full) the stalest unlocked one, and only then
    /// the stalest locked one, to keep room for one more: spraying new names or addresses
    /// does not lift a lock while there is anything else to drop.
    fn make_room(&mut self, now: Instant, cfg: &ThrottleConfig) {
        if self.map.len() < cfg.max_entries {
            return;
        }
        self.map.retain(|_, r| {
            now.duration_since(r.last) <= cfg.forget_after
                || r.locked_until.is_some_and(|u| u > now)
        });
        while self.map.len() >= cfg.max_entries {
            let stalest = self
                .map
                .iter()
                .min_by_key(|(_, r)| (r.locked_until.is_some_and(|u| u > now), r.last))
                .map(|(k, _)| k.clone());
            let Some(stalest) = stalest else { break };
            self.map.remove(&stalest);
        }
    }
}

/// The key of a client address: IPv4 whole, IPv6 by its /64.
fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// A user name as a key: bounded in length, so a huge name costs no more than a short one.
fn user_key(name: &str) -> String {
    name.chars().take(64).collect()
}

pub struct LoginThrottle {
    cfg: ThrottleConfig,
    users: Mutex<Table>,
    addresses: Mutex<Table>,
    hashes: Arc<Semaphore>,
}

impl LoginThrottle {
    pub fn new(cfg: ThrottleConfig) -> LoginThrottle {
        LoginThrottle {
            users: Mutex::new(Table::new(cfg.user_free)),
            addresses: Mutex::new(Table::new(cfg.address_free)),
            hashes: Arc::new(Semaphore::new(cfg.hash_slots.max(1))),
            cfg,
        }
    }

    /// Refuses (429) a sign-in for a locked user name or from a locked address.
    pub fn check(&self, user: &str, from: Option<IpAddr>, now: Instant) -> Result<(), ApiError> {
        let by_user = self
            .users
            .lock()
            .expect("throttle lock")
            .locked(&user_key(user), now);
        let by_address = from.and_then(|ip| {
            self.addresses
                .lock()
                .expect("throttle lock")
                .locked(&address_key(ip), now)
        });
        let (wait, what) = match (by_user, by_address) {
            (Some(u), Some(a)) if a > u => (a, "this address"),
            (Some(u), _) => (u, "this user name"),
            (None, Some(a)) => (a, "this address"),
            (None, None) => return Ok(()),
        };
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        tracing::warn!(user = %user_key(user), from = ?from, seconds, "sign-in refused: too many wrong passwords");
        Err(ApiError::RetryLater {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "too many wrong passwords for {what}; try again in {seconds} s (each further wrong password doubles the wait)"
            ),
            seconds,
        })
    }

    /// A slot to check one password in, waiting briefly; 503 when the server is busy.
    /// Move it into the blocking task that hashes, so that a client who hangs up does
    /// not free the slot while its hash still runs.
    pub async fn hash_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        match tokio::time::timeout(self.cfg.hash_wait, self.hashes.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                tracing::warn!(
                    slots = self.cfg.hash_slots,
                    "sign-in refused: every password-check slot is busy"
                );
                Err(ApiError::RetryLater {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: "the server is busy checking other sign-ins; try again in a second"
                        .into(),
                    seconds: 1,
                })
            }
        }
    }

    pub fn failed(&self, user: &str, from: Option<IpAddr>, now: Instant) {
        self.users
            .lock()
            .expect("throttle lock")
            .fail(&user_key(user), now, &self.cfg);
        if let Some(ip) = from {
            self.addresses
                .lock()
                .expect("throttle lock")
                .fail(&address_key(ip), now, &self.cfg);
        }
    }

    /// A right password clears the user name's failures (not the address's: an attacker
    /// with one account of their own must not reset the count for their guesses).
    pub fn succeeded(&self, user: &str) {
        self.users
            .lock()
            .expect("throttle lock")
            .map
            .remove(&user_key(user));
    }

    /// Entries held (user names, addresses).
    pub fn held(&self) -> (usize, usize) {
        (
            self.users.lock().expect("throttle lock").map.len(),
            self.addresses.lock().expect("throttle lock").map.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn free_failures_then_doubling_locks_that_expire() {
        let t = LoginThrottle::new(ThrottleConfig::default());
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(t.check("ed1", ip("10.0.0.1"), t0).is_ok());
            t.failed("ed1", ip("10.0.0.1"), t0);
        }
        assert!(
            t.check("ed1", ip("10.0.0.1"), t0).is_ok(),
            "five mistypes are free"
        );
        t.failed("ed1", ip("10.0.0.1"), t0);
        let Err(ApiError::RetryLater {
            status, seconds, ..
        }) = t.check("ed1", ip("10.0.0.9"), t0)
        else {
            panic!("not locked")
        };
        assert_eq!((status, seconds), (StatusCode::TOO_MANY_REQUESTS, 2));
        assert!(
            t.check("mo1", ip("10.0.0.1"), t0).is_ok(),
            "the address is not locked yet"
        );
        let t1 = t0 + Duration::from_secs(2);
        assert!(t.check("ed1", None, t1).is_ok(), "the lock expired");
        t.failed("ed1", None, t1);
        let Err(ApiError::RetryLater { seconds, .. }) = t.check("ed1", None, t1) else {
            panic!("not locked")
        };
        assert_eq!(seconds, 4);
        t.succeeded("ed1");
        assert!(t.check("ed1", None, t1).is_ok());
        // Forgotten after a quiet while.
        for _ in 0..6 {
            t.failed("mo1", None, t1);
        }
        let later = t1 + Duration::from_secs(16 * 60);
        assert!(t.check("mo1", None, later).is_ok());
        t.failed("mo1", None, later);
        assert!(
            t.check("mo1", None, later).is_ok(),
            "old failures no longer count"
        );
    }

    #[test]
    fn ipv6_hosts_count_by_their_64() {
        assert_eq!(
            address_key("2001:db8:1:2:aaaa::1".parse().unwrap()),
            address_key("2001:db8:1:2:bbbb::2".parse().unwrap())
        );
        assert_ne!(
            address_key("2001:db8:1:2::1".parse().unwrap()),
            address_key("2001:db8:1:3::1".parse().unwrap())
        );
        assert_eq!(address_key("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
    }

    #[test]
    fn memory_is_bounded_when_names_and_addresses_cycle() {
        let t = LoginThrottle::new(ThrottleConfig {
            max_entries: 100,
            ..ThrottleConfig::default()
        });
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let addr = IpAddr::from((i << 8).to_be_bytes());
            t.failed(
                &format!("user{i}"),
                Some(addr),
                t0 + Duration::from_millis(i.into()),
            );
        }
        let (users, addresses) = t.held();
        assert!(users <= 100 && addresses <= 100, "{users} {addresses}");
        // The most recent are kept.
        assert!(t.users.lock().unwrap().map.contains_key("user9999"));
    }

    #[test]
    fn spraying_names_does_not_lift_a_lock() {
        let t = LoginThrottle::new(ThrottleConfig {
            max_entries: 50,
            ..ThrottleConfig::default()
        });
        let t0 = Instant::now();
        for _ in 0..10 {
            t.failed("mo1", None, t0);
        }
        for i in 0..1000u64 {
            t.failed(&format!("spray{i}"), None, t0 + Duration::from_millis(i));
        }
        assert!(
            t.check("mo1", None, t0 + Duration::from_secs(1)).is_err(),
            "the lock was evicted"
        );
    }

    #[tokio::test]
    async fn password_checks_beyond_the_slots_wait_then_are_refused() {
        let t = LoginThrottle::new(ThrottleConfig {
            hash_slots: 1,
            hash_wait: Duration::from_millis(50),
            ..ThrottleConfig::default()
        });
        let held = t.hash_slot().await.unwrap();
        let Err(ApiError::RetryLater {
            status, seconds, ..
        }) = t.hash_slot().await
        else {
            panic!("a second slot")
        };
        assert_eq!((status, seconds), (StatusCode::SERVICE_UNAVAILABLE, 1));
        drop(held);
        assert!(t.hash_slot().await.is_ok());
    }

    #[tokio::test]
    async fn a_slot_moved_into_the_hash_outlives_a_client_that_hung_up() {
        let t = LoginThrottle::new(ThrottleConfig {
            hash_slots: 1,
            hash_wait: Duration::from_millis(50),
            ..ThrottleConfig::default()
        });
        let slot = t.hash_slot().await.unwrap();
        // As `session::login` does; the handler's future is then dropped (client gone).
        let hashing = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(400));
            drop(slot);
        });
        drop(hashing);
        assert!(
            t.hash_slot().await.is_err(),
            "the slot was freed while the hash still ran"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(t.hash_slot().await.is_ok());
    }
}
