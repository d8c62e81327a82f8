//! Client-side rate limiting: requests-per-minute and tokens-per-minute budgets as continuously
//! refilled token buckets (one second of burst, so the client never bursts a minute's budget
//! into a provider that enforces it at sub-second granularity), a cap on requests in flight,
//! reconciliation with the real token usage of responses, `x-ratelimit-*` headers, and one
//! shared pause for every request when the provider answers 429.
//!
//! The effective rate adapts (AIMD): each 429 cuts it by a fifth (at most once per pause), and
//! every second without a 429 gives back 2 % of the configured rate. A client configured above
//! the provider's true limit therefore settles just under it instead of hammering.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct LimiterConfig {
    pub requests_per_minute: f64,
    pub tokens_per_minute: f64,
    pub max_in_flight: usize,
}

#[derive(Debug)]
struct Bucket {
    /// The whole configured refill per second (all workers together).
    full: f64,
    /// This process's share of it, per second.
    configured: f64,
    /// Current refill per second (adapted by 429s).
    rate: f64,
    level: f64,
}

impl Bucket {
    fn new(per_minute: f64) -> Bucket {
        let rate = per_minute / 60.0;
        // A fresh client starts with half a second of budget, not a full one: another process may
        // have used part of the provider's current second.
        Bucket {
            full: rate,
            configured: rate,
            rate,
            level: (rate * 0.5).max(1.0),
        }
    }
    fn capacity(&self) -> f64 {
        self.rate.max(1.0)
    }
    fn refill(&mut self, dt: f64) {
        self.level = (self.level + self.rate * dt).min(self.capacity());
    }
    /// Seconds until `amount` is available (a request larger than the capacity waits for a full
    /// bucket and then drives the level negative, so it is neither starved nor free).
    fn wait_for(&self, amount: f64) -> f64 {
        let need = amount.min(self.capacity());
        if self.level >= need {
            0.0
        } else {
            (need - self.level) / self.rate
        }
    }
}

#[derive(Debug)]
struct State {
    requests: Bucket,
    tokens: Bucket,
    last: Instant,
    paused_until: Option<Instant>,
    last_429: Option<Instant>,
    last_increase: Instant,
}

/// Shared by every request of a provider.
#[derive(Debug)]
pub struct Limiter {
    state: Mutex<State>,
    /// FIFO turn for acquiring budget, so a large request is not starved by small ones.
    turn: tokio::sync::Mutex<()>,
    in_flight: std::sync::Arc<Semaphore>,
    pauses: AtomicU64,
}

/// Held while a request is in flight; returns its slot when dropped.
#[derive(Debug)]
pub struct Permit {
    _slot: OwnedSemaphorePermit,
    pub estimated_tokens: u32,
}

impl Limiter {
    pub fn new(cfg: LimiterConfig) -> Limiter {
        let now = Instant::now();
        Limiter {
            state: Mutex::new(State {
                requests: Bucket::new(cfg.requests_per_minute),
                tokens: Bucket::new(cfg.tokens_per_minute),
                last: now,
                paused_until: None,
                last_429: None,
                last_increase: now,
            }),
            turn: tokio::sync::Mutex::new(()),
            in_flight: std::sync::Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
            pauses: AtomicU64::new(0),
        }
    }

    /// Waits for an in-flight slot, one request's budget and `tokens` of token budget.
    pub async fn acquire(&self, tokens: u32) -> Permit {
        let slot = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let _turn = self.turn.lock().await;
        loop {
            let wait = {
                let mut s = self.state.lock().expect("limiter lock");
                let now = Instant::now();
                let dt = now.duration_since(s.last).as_secs_f64();
                s.last = now;
                s.requests.refill(dt);
                s.tokens.refill(dt);
                // Additive increase: 2 % of the configured rate per quiet second.
                let quiet = s
                    .last_429
                    .is_none_or(|t| now.duration_since(t) > Duration::from_secs(1));
                let since = now.duration_since(s.last_increase).as_secs_f64();
                if quiet && since >= 0.25 {
                    let st = &mut *s;
                    for b in [&mut st.requests, &mut st.tokens] {
                        b.rate = (b.rate + b.configured * 0.02 * since).min(b.configured);
                    }
                    s.last_increase = now;
                }
                match s.paused_until {
                    Some(until) if until > now => until - now,
                    _ => {
                        s.paused_until = None;
                        let w = s
                            .requests
                            .wait_for(1.0)
                            .max(s.tokens.wait_for(tokens as f64));
                        if w <= 0.0 {
                            s.requests.level -= 1.0;
                            s.tokens.level -= tokens as f64;
                            return Permit {
                                _slot: slot,
                                estimated_tokens: tokens,
                            };
                        }
                        Duration::from_secs_f64(w)
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Corrects the token budget once the real usage is known.
    pub fn reconcile(&self, estimated: u32, actual: u32) {
        let mut s = self.state.lock().expect("limiter lock");
        s.tokens.level += estimated as f64 - actual as f64;
    }

    /// A 429: every request waits `retry_after` (default 1 s), and the rate is cut by a fifth
    /// (once per pause, however many in-flight requests report the same 429).
    pub fn rate_limited(&self, retry_after: Option<Duration>) {
        let mut s = self.state.lock().expect("limiter lock");
        let now = Instant::now();
        let until = now + retry_after.unwrap_or(Duration::from_secs(1));
        let already_paused = s.paused_until.is_some_and(|p| p > now);
        if s.paused_until.is_none_or(|p| p < until) {
            s.paused_until = Some(until);
        }
        if !already_paused {
            self.pauses.fetch_add(1, Ordering::Relaxed);
            let st = &mut *s;
            for b in [&mut st.requests, &mut st.tokens] {
                b.rate = (b.rate * 0.8).max(b.configured * 0.05);
                b.level = b.level.min(0.0);
            }
        }
        s.last_429 = Some(now);
        s.last_increase = now;
    }

    /// What the provider says is left: never believe we have more than that, and when a budget
    /// is exhausted, wait for its reset.
    pub fn observe(&self, h: &RateLimitHeaders) {
        let mut s = self.state.lock().expect("limiter lock");
        let now = Instant::now();
        if let Some(r) = h.remaining_requests {
            s.requests.level = s.requests.level.min(r);
            if r < 1.0
                && let Some(reset) = h.reset_requests
            {
                s.paused_until = Some(s.paused_until.map_or(now + reset, |p| p.max(now + reset)));
            }
        }
        if let Some(t) = h.remaining_tokens {
            s.tokens.level = s.tokens.level.min(t);
        }
    }

    /// Limits this process to `share` (0–1] of the configured budgets: with N workers sharing one
    /// provider account, each takes 1/N, so their sum stays within the account's limits.
    pub fn set_share(&self, share: f64) {
        let share = share.clamp(0.001, 1.0);
        let mut s = self.state.lock().expect("limiter lock");
        let st = &mut *s;
        for b in [&mut st.requests, &mut st.tokens] {
            b.configured = b.full * share;
            b.rate = b.rate.min(b.configured);
            b.level = b.level.min(b.capacity());
        }
    }

    /// How many shared pauses 429s have caused.
    pub fn pauses(&self) -> u64 {
        self.pauses.load(Ordering::Relaxed)
    }

    /// The current requests-per-minute rate (after adaptation).
    pub fn current_rpm(&self) -> f64 {
        self.state.lock().expect("limiter lock").requests.rate * 60.0
    }
}

/// The rate-limit headers OpenAI-compatible servers send.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateLimitHeaders {
    pub remaining_requests: Option<f64>,
    pub remaining_tokens: Option<f64>,
    pub reset_requests: Option<Duration>,
    pub reset_tokens: Option<Duration>,
    /// `retry-after-ms`, else `retry-after` (seconds, possibly fractional).
    pub retry_after: Option<Duration>,
}

impl RateLimitHeaders {
    pub fn from_headers(h: &reqwest::header::HeaderMap) -> RateLimitHeaders {
        let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
        let num = |k: &str| get(k).and_then(|v| v.parse::<f64>().ok());
        RateLimitHeaders {
            remaining_requests: num("x-ratelimit-remaining-requests"),
            remaining_tokens: num("x-ratelimit-remaining-tokens"),
            reset_requests: get("x-ratelimit-reset-requests").and_then(parse_reset),
            reset_tokens: get("x-ratelimit-reset-tokens").and_then(parse_reset),
            retry_after: num("retry-after-ms")
                .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0))
                .or_else(|| {
                    num("retry-after").map(|s| Duration::from_secs_f64(s.clamp(0.0, 3600.0)))
                }),
        }
    }
}

/// OpenAI's reset format: "1s", "6m0s", "20ms", "1h2m3.5s", or plain seconds.
pub fn parse_reset(s: &str) -> Option<Duration> {
    if let Ok(secs) = s.parse::<f64>() {
        return Some(Duration::from_secs_f64(secs.max(0.0)));
    }
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let v: f64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += v * unit;
        any = true;
    }
    (any && num.is_empty()).then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_formats() {
        assert_eq!(parse_reset("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(
            parse_reset("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(parse_reset("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_reset("soon"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_are_paced_at_the_configured_rate() {
        let l = Limiter::new(LimiterConfig {
            requests_per_minute: 600.0,
            tokens_per_minute: 1e9,
            max_in_flight: 1000,
        });
        let start = tokio::time::Instant::now();
        let mut permits = Vec::new();
        for _ in 0..101 {
            permits.push(l.acquire(10).await);
        }
        // 10 per second, starting with half a second's worth (5): 101 requests take 9.6 s.
        let took = start.elapsed().as_secs_f64();
        assert!((9.55..=9.65).contains(&took), "took {took}");
    }

    #[tokio::test(start_paused = true)]
    async fn token_budget_binds_and_reconcile_refunds() {
        let l = Limiter::new(LimiterConfig {
            requests_per_minute: 1e6,
            tokens_per_minute: 60_000.0,
            max_in_flight: 1000,
        });
        let start = tokio::time::Instant::now();
        // 1,000 tokens per second from an initial 500: five requests of 1,000 tokens take 4.5 s.
        for _ in 0..5 {
            let p = l.acquire(1000).await;
            drop(p);
        }
        let took = start.elapsed().as_secs_f64();
        assert!((4.45..=4.55).contains(&took), "took {took}");
        // Refund: the requests used 100 tokens each, not 1,000.
        l.reconcile(5000, 500);
        let t = tokio::time::Instant::now();
        let _p = l.acquire(1000).await;
        assert!(t.elapsed().as_secs_f64() < 0.01);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_everyone_and_cuts_the_rate() {
        let l = Limiter::new(LimiterConfig {
            requests_per_minute: 6000.0,
            tokens_per_minute: 1e9,
            max_in_flight: 1000,
        });
        let _ = l.acquire(1).await;
        l.rate_limited(Some(Duration::from_secs(2)));
        l.rate_limited(Some(Duration::from_secs(2))); // the same pause, reported twice
        assert_eq!(l.pauses(), 1);
        assert!((l.current_rpm() - 4800.0).abs() < 1.0);
        let t = tokio::time::Instant::now();
        let _ = l.acquire(1).await;
        assert!(t.elapsed() >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_is_capped() {
        let l = std::sync::Arc::new(Limiter::new(LimiterConfig {
            requests_per_minute: 1e6,
            tokens_per_minute: 1e9,
            max_in_flight: 2,
        }));
        let a = l.acquire(1).await;
        let _b = l.acquire(1).await;
        let l2 = l.clone();
        let third = tokio::spawn(async move { l2.acquire(1).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!third.is_finished());
        drop(a);
        third.await.unwrap();
    }

    #[test]
    fn headers_are_read() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
        h.insert("x-ratelimit-reset-requests", "250ms".parse().unwrap());
        h.insert("retry-after-ms", "1500".parse().unwrap());
        h.insert("retry-after", "9".parse().unwrap());
        let r = RateLimitHeaders::from_headers(&h);
        assert_eq!(r.remaining_requests, Some(0.0));
        assert_eq!(r.reset_requests, Some(Duration::from_millis(250)));
        assert_eq!(
            r.retry_after,
            Some(Duration::from_millis(1500)),
            "retry-after-ms wins"
        );
    }
}
