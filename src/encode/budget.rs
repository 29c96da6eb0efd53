//! How many region crops a batch of live frames may add without the encoder falling behind.
//!
//! A region crop is one more tower pass. When live streams are open, the encoder spends on crops only
//! time it would otherwise have been idle: half of every idle stretch between batches becomes credit
//! (the other half stays spare, so the encoder never runs at 100 % and queues do not build), each crop
//! costs the measured time of one pass, and at most [`MAX_CREDIT`] (or an eighth of the live age budget)
//! can be banked, which bounds the latency one batch's crops add. A saturated encoder is never idle, so it
//! gets no crops; a quiet one crops every region it finds. Measured in BENCHMARKS.md (issue 15).

use std::time::{Duration, Instant};

/// Share of idle encoder time that region passes may use.
const SPARE_SHARE: f64 = 0.5;
/// Most crop work banked at once.
pub const MAX_CREDIT: Duration = Duration::from_millis(250);
/// Weight of the newest batch in the time per pass.
const EWMA: f64 = 0.2;

#[derive(Debug)]
pub struct CropBudget {
    /// Seconds of crop work the encoder may spend now (negative after an estimate ran short).
    credit: f64,
    /// Seconds per tower pass (one image or crop), from the batches so far.
    per_pass: Option<f64>,
    /// When the last batch's inference ended: the encoder has been idle since.
    idle_since: Option<Instant>,
}

impl Default for CropBudget {
    fn default() -> Self {
        // A fresh encoder starts with a full bank: it has had nothing to do.
        CropBudget { credit: MAX_CREDIT.as_secs_f64(), per_pass: None, idle_since: None }
    }
}

impl CropBudget {
    /// The crops a batch of `frames` live frames may add: within the credit, and within `headroom` (the
    /// time the batch's oldest frame can still afford) once its whole-frame passes are paid. `cap` is the
    /// most credit that can be banked for these streams. Called once per batch, before its inference.
    pub fn crops(&mut self, now: Instant, frames: usize, headroom: Duration, cap: Duration) -> usize {
        let cap = cap.min(MAX_CREDIT).as_secs_f64();
        if let Some(idle) = self.idle_since.map(|t| now.saturating_duration_since(t)) {
            self.credit = (self.credit + idle.as_secs_f64() * SPARE_SHARE).min(cap);
        }
        self.idle_since = None;
        let Some(per_pass) = self.per_pass.filter(|p| *p > 0.0) else {
            // Nothing measured yet: the first batch goes by the credit it starts with.
            return usize::MAX;
        };
        let affordable = headroom.as_secs_f64() - frames as f64 * per_pass;
        let spend = self.credit.min(affordable);
        // (The epsilon keeps an exact multiple of the pass time from rounding down.)
        if spend <= 0.0 { 0 } else { (spend / per_pass + 1e-9).floor() as usize }
    }

    /// A batch's inference ended: `passes` tower passes (frames and crops) took `took`, `crops` of
    /// them were crops paid from the credit (0 for batches that had no budget).
    pub fn spent(&mut self, now: Instant, passes: usize, crops: usize, took: Duration) {
        if passes > 0 {
            let sample = took.as_secs_f64() / passes as f64;
            self.per_pass = Some(match self.per_pass {
                Some(p) => p + EWMA * (sample - p),
                None => sample,
            });
        }
        if let Some(p) = self.per_pass {
            self.credit = (self.credit - crops as f64 * p).max(-MAX_CREDIT.as_secs_f64());
        }
        self.idle_since = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_busy_encoder_earns_no_crops_an_idle_one_earns_half_its_idle_time() {
        let (mut b, t0) = (CropBudget::default(), Instant::now());
        let cap = Duration::from_secs(1);
        assert_eq!(b.crops(t0, 4, Duration::from_secs(1), cap), usize::MAX, "nothing measured yet");
        // 4 frames + 25 crops in 290 ms: 10 ms a pass; the starting 250 ms of credit is spent.
        b.spent(t0 + 290 * MS, 29, 25, 290 * MS);
        // Back to back (no idle time): nothing.
        assert_eq!(b.crops(t0 + 290 * MS, 4, Duration::from_secs(1), cap), 0);
        b.spent(t0 + 330 * MS, 4, 0, 40 * MS);
        // 100 ms idle: 50 ms of credit, 5 crops.
        assert_eq!(b.crops(t0 + 430 * MS, 4, Duration::from_secs(1), cap), 5);
        b.spent(t0 + 520 * MS, 9, 5, 90 * MS);
        // A long idle stretch banks at most MAX_CREDIT, and the frames' headroom limits it further.
        assert_eq!(b.crops(t0 + Duration::from_secs(60), 4, Duration::from_secs(1), cap), 25);
        b.spent(t0 + Duration::from_secs(61), 4, 0, 40 * MS);
        assert_eq!(b.crops(t0 + Duration::from_secs(62), 4, 100 * MS, cap), 6, "100 ms - 4 passes of 10 ms");
        b.spent(t0 + Duration::from_secs(63), 4, 0, 40 * MS);
        assert_eq!(b.crops(t0 + Duration::from_secs(64), 4, 30 * MS, cap), 0, "no headroom left");
        b.spent(t0 + Duration::from_secs(65), 4, 0, 40 * MS);
        assert_eq!(b.crops(t0 + Duration::from_secs(66), 4, Duration::from_secs(1), 50 * MS), 5, "cap of the streams");
    }
}
