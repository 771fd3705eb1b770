//! Rate limits of the public API (R-SEC2), on `governor`'s GCRA buckets:
//!
//! - **per client address**: every request, authenticated or not, draws
//!   from the bucket of the address it came from (the TCP peer; the API
//!   does not read forwarded headers, so put nothing in front of it that
//!   hides the client, or give each proxy its own budget);
//! - **per API key**: every authenticated request also draws from the
//!   bucket of the key's account (two keys of one account share it);
//! - **failed authentication**: each request whose key is missing or
//!   unknown draws from a much smaller bucket of its address; once that is
//!   empty the address is refused (429) before its key is even looked at,
//!   until the bucket refills: a client guessing keys is slowed, then
//!   refused, and a right guess in that time does not help it.
//!
//! A refused request gets `429 rate_limited` with `Retry-After` (whole
//! seconds) and the API's JSON error body.
//!
//! A client is its IPv4 address, or its IPv6 /64 ([`client_key`]): one
//! subscriber usually holds a whole /64, so counting its addresses apart
//! would give it 2⁶⁴ budgets.
//!
//! Memory is bounded: at most [`LimitsConfig::max_clients`] addresses (and
//! as many accounts) are tracked; buckets that are full again are forgotten
//! by [`RateLimits::prune`] (called periodically by the server). When the
//! table is still full, clients not yet tracked share one overflow bucket,
//! so a flood of fresh addresses degrades itself, not the clients already
//! known, and never grows the table.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::api::ApiError;

/// The key a client address is counted under: an IPv4 address as it is
/// (also when mapped into IPv6), an IPv6 address by its /64 prefix.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// A bucket: `burst` requests at once, refilled at `per_minute`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Requests refilled per minute (≥ 1).
    pub per_minute: u32,
    /// Requests allowed in a burst (≥ 1): the bucket's size.
    pub burst: u32,
}

impl Budget {
    fn quota(self, what: &str) -> Result<Quota, String> {
        let burst = NonZeroU32::new(self.burst).ok_or_else(|| format!("{what}.burst: expected at least 1, found 0"))?;
        if self.per_minute == 0 {
            return Err(format!("{what}.per_minute: expected at least 1, found 0"));
        }
        let period = Duration::from_secs(60) / self.per_minute;
        let quota = Quota::with_period(period)
            .ok_or_else(|| format!("{what}.per_minute: expected at most 60,000,000,000, found {}", self.per_minute))?;
        Ok(quota.allow_burst(burst))
    }
}

/// The API's rate limits: `[api_limits]` of a gateway's node.toml.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Every request from one client address.
    #[serde(default = "default_per_address")]
    pub per_address: Budget,
    /// Every authenticated request of one API key's account.
    #[serde(default = "default_per_key")]
    pub per_key: Budget,
    /// Requests from one address whose API key is missing or unknown.
    #[serde(default = "default_failed_auth")]
    pub failed_auth: Budget,
    /// Most client addresses (and accounts) tracked at once.
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
}

/// Production default: 20 requests/s per address, bursts of 200.
pub fn default_per_address() -> Budget {
    Budget { per_minute: 1200, burst: 200 }
}
/// Production default: 20 requests/s per key, bursts of 200.
pub fn default_per_key() -> Budget {
    Budget { per_minute: 1200, burst: 200 }
}
/// Production default: 10 failed authentications per minute, bursts of 20.
pub fn default_failed_auth() -> Budget {
    Budget { per_minute: 10, burst: 20 }
}
/// Production default: 100,000 clients tracked (a few MiB).
pub fn default_max_clients() -> usize {
    100_000
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            per_address: default_per_address(),
            per_key: default_per_key(),
            failed_auth: default_failed_auth(),
            max_clients: default_max_clients(),
        }
    }
}

impl LimitsConfig {
    /// Checks every budget; the message names the key and what was expected.
    pub fn validate(&self) -> Result<(), String> {
        self.per_address.quota("api_limits.per_address")?;
        self.per_key.quota("api_limits.per_key")?;
        self.failed_auth.quota("api_limits.failed_auth")?;
        if self.max_clients < 16 {
            return Err(format!("api_limits.max_clients: expected at least 16, found {}", self.max_clients));
        }
        Ok(())
    }
}

/// Which bucket refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The client address's bucket.
    Address,
    /// The API key's bucket.
    Key,
    /// The address's failed-authentication bucket.
    FailedAuth,
}

impl Refusal {
    /// The metric label and the error's `details.limit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Address => "per_address",
            Refusal::Key => "per_key",
            Refusal::FailedAuth => "failed_auth",
        }
    }

    /// The 429 answer, with the time to wait rounded up to whole seconds.
    pub fn error(self, wait: Duration) -> ApiError {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let message = match self {
            Refusal::Address => format!("too many requests from this address; retry in {secs} s"),
            Refusal::Key => format!("too many requests with this API key; retry in {secs} s"),
            Refusal::FailedAuth => {
                format!("too many failed authentications from this address; retry in {secs} s")
            }
        };
        ApiError::new(429, "rate_limited", message)
            .with_details(serde_json::json!({ "limit": self.as_str(), "retry_after_secs": secs.max(1) }))
    }
}

/// A keyed table of buckets with a bound on its keys.
struct Table<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<Option<K>>,
    max: usize,
}

impl<K: std::hash::Hash + Eq + Clone> Table<K> {
    fn new(quota: Quota, max: usize) -> Self {
        Table { limiter: RateLimiter::dashmap(quota), max }
    }

    /// Takes one request from `key`'s bucket (or the overflow bucket,
    /// `None`, when the table is full); the wait when it is empty.
    fn check(&self, key: &K) -> Result<(), Duration> {
        let key = if self.limiter.len() < self.max { Some(key.clone()) } else { None };
        self.limiter.check_key(&key).map_err(|no| no.wait_time_from(DefaultClock::default().now()))
    }

    fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.limiter.len()
    }
}

/// The API's limiters; one per server.
pub struct RateLimits {
    per_address: Table<IpAddr>,
    per_key: Table<String>,
    failed_auth: Table<IpAddr>,
    /// Addresses refused for failed authentications, until when.
    blocked: Mutex<std::collections::HashMap<IpAddr, Instant>>,
    max: usize,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").field("tracked", &self.tracked()).finish()
    }
}

impl RateLimits {
    /// Limiters for a checked config.
    pub fn new(config: &LimitsConfig) -> Result<RateLimits, String> {
        config.validate()?;
        let max = config.max_clients;
        Ok(RateLimits {
            per_address: Table::new(config.per_address.quota("per_address")?, max),
            per_key: Table::new(config.per_key.quota("per_key")?, max),
            failed_auth: Table::new(config.failed_auth.quota("failed_auth")?, max),
            blocked: Mutex::default(),
            max,
        })
    }

    /// A request from `addr`: its address's bucket, and whether the
    /// address is refused for failed authentications.
    pub fn request(&self, addr: IpAddr) -> Result<(), ApiError> {
        let addr = client_key(addr);
        self.per_address.check(&addr).map_err(|wait| Refusal::Address.error(wait))?;
        self.blocked_until(addr)
    }

    /// Whether `addr` may try a key now (refused after too many failures).
    pub fn blocked_until(&self, addr: IpAddr) -> Result<(), ApiError> {
        let addr = client_key(addr);
        let blocked = self.blocked.lock().expect("blocked lock");
        match blocked.get(&addr) {
            Some(until) if *until > Instant::now() => Err(Refusal::FailedAuth.error(*until - Instant::now())),
            _ => Ok(()),
        }
    }

    /// An authenticated request of `account`.
    pub fn authenticated(&self, account: &str) -> Result<(), ApiError> {
        self.per_key.check(&account.to_owned()).map_err(|wait| Refusal::Key.error(wait))
    }

    /// A failed authentication from `addr`: `Err(429)` once its budget is
    /// spent (and the address is refused until the bucket has room again).
    pub fn failed(&self, addr: IpAddr) -> Result<(), ApiError> {
        let addr = client_key(addr);
        self.failed_auth.check(&addr).map_err(|wait| {
            let mut blocked = self.blocked.lock().expect("blocked lock");
            if blocked.len() < self.max || blocked.contains_key(&addr) {
                blocked.insert(addr, Instant::now() + wait);
            }
            Refusal::FailedAuth.error(wait)
        })
    }

    /// Forgets buckets that are full again and blocks that ended.
    pub fn prune(&self) {
        self.per_address.prune();
        self.per_key.prune();
        self.failed_auth.prune();
        let now = Instant::now();
        self.blocked.lock().expect("blocked lock").retain(|_, until| *until > now);
    }

    /// Keys tracked in all tables (a bound on the memory they use).
    pub fn tracked(&self) -> usize {
        self.per_address.len()
            + self.per_key.len()
            + self.failed_auth.len()
            + self.blocked.lock().expect("blocked lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_address: Budget, failed_auth: Budget, max_clients: usize) -> RateLimits {
        RateLimits::new(&LimitsConfig {
            per_address,
            failed_auth,
            max_clients,
            per_key: Budget { per_minute: 60, burst: 3 },
        })
        .unwrap()
    }

    #[test]
    fn bad_budgets_say_what_was_expected() {
        let check = |c: LimitsConfig, expect: &str| {
            let e = c.validate().unwrap_err();
            assert!(e.contains(expect), "{e}");
        };
        let d = LimitsConfig::default();
        d.validate().unwrap();
        check(
            LimitsConfig { per_key: Budget { per_minute: 0, burst: 1 }, ..d },
            "api_limits.per_key.per_minute: expected at least 1",
        );
        check(
            LimitsConfig { failed_auth: Budget { per_minute: 1, burst: 0 }, ..d },
            "api_limits.failed_auth.burst: expected at least 1",
        );
        check(LimitsConfig { max_clients: 3, ..d }, "api_limits.max_clients: expected at least 16, found 3");
    }

    #[test]
    fn a_bucket_refuses_after_its_burst_and_says_how_long_to_wait() {
        let l = limits(Budget { per_minute: 1, burst: 5 }, default_failed_auth(), 100);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..5 {
            l.request(a).unwrap();
        }
        let e = l.request(a).unwrap_err();
        assert_eq!((e.status, e.body.code.as_str()), (429, "rate_limited"));
        let wait = e.body.details.as_ref().unwrap()["retry_after_secs"].as_u64().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        l.request(b).unwrap();
        for _ in 0..3 {
            l.authenticated("consumer:a").unwrap();
        }
        assert_eq!(l.authenticated("consumer:a").unwrap_err().body.details.unwrap()["limit"], "per_key");
        l.authenticated("consumer:b").unwrap();
    }

    #[test]
    fn failed_authentications_block_the_address_until_the_bucket_refills() {
        let l = limits(Budget { per_minute: 6000, burst: 1000 }, Budget { per_minute: 1, burst: 2 }, 100);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        l.failed(a).unwrap();
        l.failed(a).unwrap();
        assert_eq!(l.failed(a).unwrap_err().status, 429);
        // Now even a request with a right key is refused before it is checked.
        assert_eq!(l.request(a).unwrap_err().body.details.unwrap()["limit"], "failed_auth");
        l.request("10.0.0.2".parse().unwrap()).unwrap();
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let check =
            |ip: &str, key: &str| assert_eq!(client_key(ip.parse().unwrap()), key.parse::<IpAddr>().unwrap(), "{ip}");
        check("203.0.113.7", "203.0.113.7");
        check("::ffff:203.0.113.7", "203.0.113.7");
        check("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::");
        check("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::");
        check("::1", "::");
        // Every address of one /64 draws from one bucket.
        let l = limits(Budget { per_minute: 1, burst: 3 }, default_failed_auth(), 100);
        for i in 0..3u16 {
            l.request(format!("2001:db8::{i:x}").parse().unwrap()).unwrap();
        }
        assert_eq!(l.request("2001:db8::ffff:1".parse().unwrap()).unwrap_err().status, 429);
        l.request("2001:db8:0:1::1".parse().unwrap()).unwrap();
    }

    #[test]
    fn the_tables_never_track_more_than_the_bound() {
        let l = limits(Budget { per_minute: 1, burst: 2 }, Budget { per_minute: 1, burst: 1 }, 16);
        let mut refused = 0;
        for i in 0..10_000u32 {
            let addr = IpAddr::from(i.to_be_bytes());
            refused += usize::from(l.request(addr).is_err());
            let _ = l.failed(addr);
        }
        // Every table holds at most 16 clients plus the overflow bucket.
        assert!(l.tracked() <= 4 * 17, "{}", l.tracked());
        // The fresh addresses beyond the bound shared one bucket: refused.
        assert!(refused >= 10_000 - 16 - 2, "{refused}");
    }
}
