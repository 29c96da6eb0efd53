//! Utterances from per-window VAD probabilities: speech starts at `threshold`, ends after
//! `min_silence_ms` below `neg_threshold` (hangover, so short pauses inside a sentence do not cut it),
//! is padded with `pad_ms` of audio either side, dropped when shorter than `min_speech_ms`, and cut at
//! `max_utterance_ms` (the decoder's cost grows with length, and a live tag wants text soon).

use std::collections::VecDeque;

use super::config::VadConfig;
use super::vad::SAMPLE_RATE;

/// Audio of one utterance; `start` counts samples from the segmenter's origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    pub start: u64,
    pub samples: Vec<f32>,
}

impl Utterance {
    pub fn end(&self) -> u64 {
        self.start + self.samples.len() as u64
    }
}

pub struct Segmenter {
    threshold: f32,
    neg_threshold: f32,
    min_silence: usize,
    min_speech: usize,
    max_len: usize,
    pad: usize,
    /// Samples consumed so far (position of the next window).
    pos: u64,
    /// The last `pad` samples heard while idle, prepended to the next utterance.
    preroll: VecDeque<f32>,
    current: Option<Utterance>,
    /// Trailing samples of `current` below `neg_threshold`.
    silence: usize,
    /// Samples of `current` that came before speech started (the pre-roll).
    lead: usize,
}

fn samples(ms: u32) -> usize {
    (ms as u64 * SAMPLE_RATE as u64 / 1000) as usize
}

impl Segmenter {
    pub fn new(cfg: &VadConfig) -> Self {
        Segmenter {
            threshold: cfg.threshold,
            neg_threshold: cfg.neg_threshold.min(cfg.threshold),
            min_silence: samples(cfg.min_silence_ms),
            min_speech: samples(cfg.min_speech_ms),
            max_len: samples(cfg.max_utterance_ms).max(samples(1000)),
            pad: samples(cfg.pad_ms),
            pos: 0,
            preroll: VecDeque::new(),
            current: None,
            silence: 0,
            lead: 0,
        }
    }

    /// Feeds one window and its speech probability; returns an utterance when one ends here.
    pub fn push(&mut self, window: &[f32], prob: f32) -> Option<Utterance> {
        let at = self.pos;
        self.pos += window.len() as u64;
        let Some(cur) = self.current.as_mut() else {
            if prob >= self.threshold {
                let mut samples: Vec<f32> = self.preroll.drain(..).collect();
                self.lead = samples.len();
                samples.extend_from_slice(window);
                self.current = Some(Utterance { start: at - self.lead as u64, samples });
                self.silence = 0;
            } else {
                self.preroll.extend(window);
                while self.preroll.len() > self.pad {
                    self.preroll.pop_front();
                }
            }
            return None;
        };
        cur.samples.extend_from_slice(window);
        // Between the two thresholds the state holds (hysteresis); speech resets the hangover.
        if prob < self.neg_threshold {
            self.silence += window.len();
        } else if prob >= self.threshold {
            self.silence = 0;
        }
        if self.silence >= self.min_silence {
            return self.finish();
        }
        if cur.samples.len() >= self.max_len {
            // Forced cut mid-speech: the next window starts a new utterance without pre-roll.
            let done = self.finish_raw();
            self.current = Some(Utterance { start: self.pos, samples: Vec::new() });
            self.lead = 0;
            return done;
        }
        None
    }

    /// Ends the stream: returns the open utterance, if long enough.
    pub fn flush(&mut self) -> Option<Utterance> {
        self.preroll.clear();
        let done = self.finish();
        self.pos = 0;
        done
    }

    /// Closes the current utterance, keeping `pad` samples of its trailing silence.
    fn finish(&mut self) -> Option<Utterance> {
        let out = self.finish_raw();
        self.current = None;
        out
    }

    fn finish_raw(&mut self) -> Option<Utterance> {
        let mut cur = self.current.take()?;
        let silence = std::mem::take(&mut self.silence);
        let speech = cur.samples.len().saturating_sub(silence + self.lead);
        let keep = cur.samples.len() - silence + silence.min(self.pad);
        // The trailing silence beyond the pad becomes the pre-roll of the next utterance.
        let tail_from = cur.samples.len().saturating_sub(self.pad).max(keep.min(cur.samples.len()));
        self.preroll = cur.samples[tail_from..].iter().copied().collect();
        cur.samples.truncate(keep);
        self.lead = 0;
        (speech >= self.min_speech).then_some(cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> VadConfig {
        VadConfig {
            threshold: 0.5,
            neg_threshold: 0.35,
            min_silence_ms: 320,
            min_speech_ms: 250,
            max_utterance_ms: 4000,
            pad_ms: 64,
        }
    }

    /// Feeds 512-sample windows whose probability is given per window; returns (start, len) of each.
    fn run(probs: &[f32]) -> Vec<(u64, usize)> {
        let mut s = Segmenter::new(&cfg());
        let mut out = Vec::new();
        for (i, &p) in probs.iter().enumerate() {
            let w = vec![i as f32; 512];
            out.extend(s.push(&w, p));
        }
        out.extend(s.flush());
        out.into_iter().map(|u| (u.start, u.samples.len())).collect()
    }

    #[test]
    fn speech_between_silences_is_one_padded_utterance() {
        // 5 silent windows, 20 speech windows, 15 silent windows.
        let probs: Vec<f32> = [vec![0.0; 5], vec![0.9; 20], vec![0.0; 15]].concat();
        let got = run(&probs);
        // 64 ms pad = 1024 samples = 2 windows before and after.
        assert_eq!(got, vec![(3 * 512, (2 + 20 + 2) * 512)]);
    }

    #[test]
    fn short_pauses_do_not_split_and_blips_are_dropped() {
        // A 5-window pause (160 ms < 320 ms hangover) inside speech; later a 3-window blip (96 ms).
        let probs: Vec<f32> =
            [vec![0.9; 10], vec![0.1; 5], vec![0.9; 10], vec![0.0; 20], vec![0.9; 3], vec![0.0; 20]].concat();
        let got = run(&probs);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, 0);
        assert_eq!(got[0].1, (25 + 2) * 512);
    }

    #[test]
    fn hysteresis_keeps_speech_between_thresholds() {
        let probs: Vec<f32> = [vec![0.9; 10], vec![0.4; 30], vec![0.0; 20]].concat();
        let got = run(&probs);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, (40 + 2) * 512);
    }

    #[test]
    fn long_speech_is_cut_at_the_maximum() {
        // 4 s max = 125 windows; 300 windows of speech -> 3 pieces, contiguous.
        let probs: Vec<f32> = [vec![0.9; 300], vec![0.0; 20]].concat();
        let got = run(&probs);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].0 + got[0].1 as u64, got[1].0);
        assert!(got.iter().all(|g| g.1 <= 64_000 + 512));
    }

    #[test]
    fn silence_and_open_speech_at_the_end() {
        assert!(run(&[0.0; 100]).is_empty());
        let got = run(&[vec![0.0; 4], vec![0.9; 12]].concat());
        assert_eq!(got, vec![(2 * 512, 14 * 512)]);
    }
}
