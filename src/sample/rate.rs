/// Enforces a minimum spacing between sampled frames, by presentation time.
/// Applied to compressed keyframes before the decoder, so a rate-limited frame costs nothing.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    min_interval_ns: u64,
    last_ns: Option<u64>,
}

impl RateLimiter {
    /// `max_rate_hz <= 0` means unlimited.
    pub fn new(max_rate_hz: f64) -> Self {
        let min_interval_ns = if max_rate_hz > 0.0 {
            (1e9 / max_rate_hz) as u64
        } else {
            0
        };
        Self {
            min_interval_ns,
            last_ns: None,
        }
    }

    pub fn admit(&mut self, pts_ns: u64) -> bool {
        match self.last_ns {
            // A timestamp going backwards (new segment, discontinuity) restarts the spacing.
            Some(last) if pts_ns >= last && pts_ns - last < self.min_interval_ns => false,
            _ => {
                self.last_ns = Some(pts_ns);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_frames() {
        let mut r = RateLimiter::new(1.0);
        let s = 1_000_000_000;
        assert!(r.admit(0));
        assert!(!r.admit(s / 2));
        assert!(r.admit(s));
        assert!(!r.admit(s + 1));
        assert!(r.admit(s / 3), "time went backwards: restart");
    }

    #[test]
    fn unlimited() {
        let mut r = RateLimiter::new(0.0);
        assert!(r.admit(0) && r.admit(0) && r.admit(1));
    }
}
