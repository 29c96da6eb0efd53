use std::time::Duration;

/// Exponential backoff with +-20 % jitter, so streams that dropped together don't reconnect in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base.mul_f64(0.8 + 0.4 * fastrand::f64())
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(4));
        let delays: Vec<f64> = (0..6).map(|_| b.next_delay().as_secs_f64()).collect();
        for (d, base) in delays.iter().zip([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]) {
            assert!(
                *d >= base * 0.8 - 1e-9 && *d <= base * 1.2 + 1e-9,
                "{delays:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(600));
    }
}
