/// Skips keyframes whose perceptual hash is within `max_distance` bits of the last admitted one.
/// A static shot is still re-admitted every `refresh_ms` so downstream never goes silent on it.
#[derive(Debug, Clone)]
pub struct NearDuplicateFilter {
    max_distance: u32,
    refresh_ms: u64,
    last: Option<(u64, u64)>,
}

impl NearDuplicateFilter {
    /// `max_distance = 0` disables the filter (only bit-identical hashes would match, and those are
    /// admitted anyway: an exact repeat is still a new observation of the stream).
    pub fn new(max_distance: u32, refresh_ms: u64) -> Self {
        Self {
            max_distance,
            refresh_ms,
            last: None,
        }
    }

    /// Returns true when the frame should be kept; keeps the state of the last admitted frame.
    pub fn admit(&mut self, hash: u64, pts_ms: u64) -> bool {
        if self.max_distance > 0
            && let Some((last_hash, last_pts)) = self.last
            && super::hamming(hash, last_hash) <= self.max_distance
            && pts_ms.saturating_sub(last_pts) < self.refresh_ms
        {
            return false;
        }
        self.last = Some((hash, pts_ms));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_near_duplicates_until_refresh() {
        let mut f = NearDuplicateFilter::new(6, 10_000);
        assert!(f.admit(0b1111, 0));
        assert!(!f.admit(0b0111, 1_000), "1 bit away is a duplicate");
        assert!(!f.admit(0b1111, 9_999));
        assert!(
            f.admit(0b1111, 10_000),
            "refresh after 10 s of the same shot"
        );
        assert!(f.admit(u64::MAX, 10_500), "a new scene is admitted at once");
    }

    #[test]
    fn zero_distance_disables() {
        let mut f = NearDuplicateFilter::new(0, 10_000);
        assert!(f.admit(7, 0));
        assert!(f.admit(7, 1));
    }
}
