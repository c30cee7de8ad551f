//! A token bucket per connection: `rate` messages per second on average,
//! `burst` at once.

use std::time::Instant;

/// A token bucket.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_the_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(5, 10, start);
        assert_eq!((0..15).filter(|_| bucket.try_take(start)).count(), 10);
        let later = start + Duration::from_millis(1000);
        assert_eq!((0..15).filter(|_| bucket.try_take(later)).count(), 5);
        let much_later = later + Duration::from_secs(60);
        assert_eq!((0..15).filter(|_| bucket.try_take(much_later)).count(), 10);
    }
}
