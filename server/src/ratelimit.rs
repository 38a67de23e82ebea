//! Rate limits (governor's GCRA) and per-address connection counts.
//!
//! | what                          | key                   | refusal                  |
//! |-------------------------------|-----------------------|--------------------------|
//! | frames of one connection      | the connection        | `RATE_LIMITED` (+ retry) |
//! | frames of one account         | the account           | `RATE_LIMITED` (+ retry) |
//! | frames from one address       | the client's IP       | `RATE_LIMITED` (+ retry) |
//! | prekey fetches                | the requesting account| `PREKEY_FETCH_LIMITED`   |
//! | registration attempts         | the client's IP       | `REGISTRATION_LIMITED`   |
//! | open connections              | the client's IP       | connection refused       |
//!
//! Keyed limiters forget idle keys in [`RateLimits::housekeeping`], so their
//! memory follows the active population, not every address ever seen.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use spider_protocol::ids::UserId;

use crate::config::Limits;
use crate::metrics::Limit;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// Every limiter of one relay.
pub(crate) struct RateLimits {
    clock: DefaultClock,
    request_quota: Quota,
    account_requests: DefaultKeyedRateLimiter<UserId>,
    ip_requests: DefaultKeyedRateLimiter<IpAddr>,
    registrations: DefaultKeyedRateLimiter<IpAddr>,
    prekey_fetches: DefaultKeyedRateLimiter<UserId>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
}

/// Holds one connection's place in its address's count.
pub(crate) struct IpSlot {
    limits: Arc<RateLimits>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = self.limits.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl RateLimits {
    pub(crate) fn new(l: &Limits) -> Self {
        Self {
            clock: DefaultClock::default(),
            request_quota: Quota::per_second(nz(l.requests_per_second))
                .allow_burst(nz(l.request_burst)),
            account_requests: RateLimiter::keyed(
                Quota::per_second(nz(l.account_requests_per_second))
                    .allow_burst(nz(l.account_request_burst)),
            ),
            ip_requests: RateLimiter::keyed(
                Quota::per_second(nz(l.ip_requests_per_second)).allow_burst(nz(l.ip_request_burst)),
            ),
            registrations: RateLimiter::keyed(
                Quota::per_hour(nz(l.registrations_per_hour)).allow_burst(nz(l.registration_burst)),
            ),
            prekey_fetches: RateLimiter::keyed(
                Quota::per_minute(nz(l.prekey_fetches_per_minute))
                    .allow_burst(nz(l.prekey_fetch_burst)),
            ),
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip: l.max_connections_per_ip,
        }
    }

    /// A fresh limiter for one connection's frames.
    pub(crate) fn connection(&self) -> DefaultDirectRateLimiter {
        RateLimiter::direct(self.request_quota)
    }

    /// Which limit refuses a frame of this connection, account and address
    /// and how long until it is allowed, or `None` if it is allowed now.
    /// Checked in that order; a frame refused by one limiter is not charged
    /// to the next.
    pub(crate) fn frame(
        &self,
        limiter: &DefaultDirectRateLimiter,
        user: UserId,
        ip: IpAddr,
    ) -> Option<(Limit, Duration)> {
        let now = self.clock.now();
        if let Err(n) = limiter.check() {
            return Some((Limit::ConnectionRequests, n.wait_time_from(now)));
        }
        if let Err(n) = self.account_requests.check_key(&user) {
            return Some((Limit::AccountRequests, n.wait_time_from(now)));
        }
        self.ip_requests
            .check_key(&ip)
            .err()
            .map(|n| (Limit::IpRequests, n.wait_time_from(now)))
    }

    /// A registration attempt from `ip`.
    pub(crate) fn register(&self, ip: IpAddr) -> Option<Duration> {
        self.registrations
            .check_key(&ip)
            .err()
            .map(|n| n.wait_time_from(self.clock.now()))
    }

    /// A prekey fetch by `user`.
    pub(crate) fn prekey_fetch(&self, user: UserId) -> Option<Duration> {
        self.prekey_fetches
            .check_key(&user)
            .err()
            .map(|n| n.wait_time_from(self.clock.now()))
    }

    /// Takes a connection slot for `ip`, unless it has its maximum.
    pub(crate) fn open(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut m = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            limits: self.clone(),
            ip,
        })
    }

    /// Forgets keys whose limits have fully recovered.
    pub(crate) fn housekeeping(&self) {
        self.account_requests.retain_recent();
        self.account_requests.shrink_to_fit();
        self.ip_requests.retain_recent();
        self.ip_requests.shrink_to_fit();
        self.registrations.retain_recent();
        self.registrations.shrink_to_fit();
        self.prekey_fetches.retain_recent();
        self.prekey_fetches.shrink_to_fit();
    }
}

/// Milliseconds for an error detail, saturating.
pub(crate) fn retry_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slots_per_address_are_counted_and_released() {
        let l = Limits {
            max_connections_per_ip: 2,
            ..Limits::default()
        };
        let r = Arc::new(RateLimits::new(&l));
        let ip: IpAddr = [10, 0, 0, 1].into();
        let a = r.open(ip).unwrap();
        let _b = r.open(ip).unwrap();
        assert!(r.open(ip).is_none());
        assert!(r.open([10, 0, 0, 2].into()).is_some());
        drop(a);
        assert!(r.open(ip).is_some());
    }

    #[test]
    fn a_burst_over_the_quota_is_refused_with_a_wait() {
        let l = Limits {
            registrations_per_hour: 1,
            registration_burst: 2,
            ..Limits::default()
        };
        let r = RateLimits::new(&l);
        let ip: IpAddr = [10, 0, 0, 1].into();
        assert!(r.register(ip).is_none());
        assert!(r.register(ip).is_none());
        let wait = r.register(ip).unwrap();
        assert!(wait > Duration::from_secs(60));
        assert!(r.register([10, 0, 0, 2].into()).is_none());
    }
}
