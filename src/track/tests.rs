//! Scripted score sequences: 1 keyframe per second, pts = seq * 1000 ms.

use std::time::{Duration, SystemTime};

use super::*;
use crate::messages::StreamKey;

const BG: &[(&str, f32)] = &[("bg1", 0.42), ("bg2", 0.40), ("bg3", 0.38)];

fn key(stream: &str) -> StreamKey {
    StreamKey::new(stream, 0)
}

fn obs(stream: &str, seq: u64, matches: &[(&str, f32)]) -> Observation {
    Observation {
        stream_id: stream.into(),
        generation: 0,
        seq,
        pts_ms: seq * 1000,
        captured_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seq),
        matches: matches.iter().map(|(p, s)| Match::new(*p, *s)).collect(),
        regions: Vec::new(),
        asr_text: None,
    }
}

/// Runs a script on stream "s" and returns (seq, kind, product) for every decision, plus end-of-stream ones
/// with seq u64::MAX.
fn run(cfg: &TrackConfig, frames: &[Vec<(&str, f32)>]) -> Vec<(u64, DecisionKind, String)> {
    let mut t = Tracker::new(cfg.clone());
    let mut out = Vec::new();
    for (i, m) in frames.iter().enumerate() {
        for d in t.observe(&obs("s", i as u64, m)) {
            out.push((i as u64, d.kind, d.product_id));
        }
    }
    for d in t.end_stream(&key("s")) {
        out.push((u64::MAX, d.kind, d.product_id));
    }
    out
}

fn kinds(events: &[(u64, DecisionKind, String)]) -> Vec<(DecisionKind, &str)> {
    events.iter().filter(|e| e.1 != DecisionKind::Updated).map(|e| (e.1, e.2.as_str())).collect()
}

fn present(p: &'static str, score: f32, runner: f32) -> Vec<(&'static str, f32)> {
    vec![(p, score), ("bg1", runner), ("bg2", runner - 0.02)]
}

/// Deterministic jitter in [-1, 1].
fn jitter(i: usize) -> f32 {
    (((i * 7919 + 13) % 101) as f32 / 50.0) - 1.0
}

use DecisionKind::*;

#[test]
fn noise_spikes_never_make_events() {
    let cfg = TrackConfig::default();
    let mut frames: Vec<Vec<(&str, f32)>> = vec![BG.to_vec(); 60];
    // Single-frame spikes of different products, and two spikes of one product inside a window (K=3).
    frames[5] = present("x", 0.95, 0.4);
    frames[12] = present("y", 0.90, 0.4);
    frames[20] = present("x", 0.92, 0.4);
    frames[22] = present("x", 0.93, 0.4);
    frames[40] = present("z", 0.99, 0.3);
    assert!(run(&cfg, &frames).is_empty());
}

#[test]
fn steady_presence_with_jitter_never_flaps() {
    let cfg = TrackConfig::default();
    let frames: Vec<_> = (0..120)
        .map(|i| {
            // Mostly 0.55-0.85 (often below the entry threshold), a runner-up that sometimes overtakes
            // it, and a single-frame dropout every 17 frames.
            let s = 0.7 + 0.15 * jitter(i);
            if i % 17 == 16 {
                BG.to_vec()
            } else if i % 11 == 5 {
                vec![("bg1", s + 0.05), ("a", s), ("bg2", 0.3)]
            } else {
                present("a", s, 0.45)
            }
        })
        .collect();
    let ev = run(&cfg, &frames);
    assert_eq!(kinds(&ev), vec![(Appeared, "a"), (Disappeared, "a")], "{ev:?}");
    assert_eq!(ev.last().unwrap().0, u64::MAX, "disappeared only when the stream ended");
    let updates = ev.iter().filter(|e| e.1 == Updated).count();
    assert!(updates <= 120 / 10, "updates are throttled to one per 10 s: {updates}");
}

#[test]
fn a_then_b_disappears_before_appearing() {
    let cfg = TrackConfig::default();
    let mut frames: Vec<_> = (0..10).map(|i| present("a", 0.8 + 0.05 * jitter(i), 0.5)).collect();
    frames.extend((0..10).map(|i| present("b", 0.8 + 0.05 * jitter(i + 3), 0.5)));
    let ev = run(&cfg, &frames);
    assert_eq!(
        kinds(&ev),
        vec![(Appeared, "a"), (Disappeared, "a"), (Appeared, "b"), (Disappeared, "b")],
        "{ev:?}"
    );
    // A hard cut: a leaves on the same keyframe b arrives (off_after_keyframes <= min_hits), in that order.
    assert_eq!(ev[0].0, 2, "a on after 3 hits");
    assert_eq!(ev[1].0, 12);
    assert_eq!(ev[2].0, 12);
}

#[test]
fn gap_shorter_than_off_after_is_one_episode() {
    let cfg = TrackConfig::default();
    let mut frames: Vec<_> = (0..6).map(|_| present("a", 0.8, 0.5)).collect();
    frames.extend(vec![BG.to_vec(); 2]);
    frames.extend((0..6).map(|_| present("a", 0.8, 0.5)));
    assert_eq!(kinds(&run(&cfg, &frames)), vec![(Appeared, "a"), (Disappeared, "a")]);
}

#[test]
fn gap_longer_than_off_after_is_two_episodes() {
    let cfg = TrackConfig::default();
    let mut frames: Vec<_> = (0..6).map(|_| present("a", 0.8, 0.5)).collect();
    frames.extend(vec![BG.to_vec(); 3]);
    frames.extend((0..6).map(|_| present("a", 0.8, 0.5)));
    let mut t = Tracker::new(cfg);
    let ds: Vec<Decision> =
        frames.iter().enumerate().flat_map(|(i, m)| t.observe(&obs("s", i as u64, m))).collect();
    let kinds: Vec<_> = ds.iter().map(|d| (d.kind, d.episode_start_pts_ms)).collect();
    assert_eq!(kinds, vec![(Appeared, 0), (Disappeared, 0), (Appeared, 9000)]);
    assert_eq!(ds[1].last_seen.seq, 5);
    assert_eq!(ds[2].first_seen.seq, 9);
}

#[test]
fn leftover_hits_do_not_reopen_an_episode_on_one_frame() {
    let cfg = TrackConfig { window: 8, min_hits: 3, off_after_keyframes: 2, ..TrackConfig::default() };
    let mut frames: Vec<_> = (0..4).map(|_| present("a", 0.8, 0.5)).collect();
    frames.extend(vec![BG.to_vec(); 2]);
    frames.push(present("a", 0.9, 0.5));
    frames.extend(vec![BG.to_vec(); 8]);
    assert_eq!(kinds(&run(&cfg, &frames)), vec![(Appeared, "a"), (Disappeared, "a")]);
}

#[test]
fn low_margin_look_alikes_never_enter() {
    let cfg = TrackConfig::default();
    let frames: Vec<_> = (0..30)
        .map(|i| if i % 2 == 0 { vec![("a", 0.85), ("a2", 0.83)] } else { vec![("a2", 0.86), ("a", 0.84)] })
        .collect();
    assert!(run(&cfg, &frames).is_empty());
}

#[test]
fn several_gallery_images_of_one_product_are_one_candidate() {
    // Unsorted, with the same product twice: the runner-up must be a different product.
    let cfg = TrackConfig::default();
    let frames: Vec<_> = (0..5).map(|_| vec![("bg1", 0.5), ("a", 0.8), ("a", 0.79)]).collect();
    let mut t = Tracker::new(cfg);
    let ds: Vec<_> = frames.iter().enumerate().flat_map(|(i, m)| t.observe(&obs("s", i as u64, m))).collect();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].runner_up, Some(Match::new("bg1", 0.5)));
    assert_eq!(ds[0].evidence.hits, 3);
    assert_eq!(ds[0].evidence.window, 5);
}

#[test]
fn off_after_secs_needs_two_missed_keyframes() {
    // Sparse keyframes (a de-duplicated static shot): 10 s apart.
    let cfg = TrackConfig { off_after_keyframes: 10, off_after_secs: 5.0, ..TrackConfig::default() };
    let mut t = Tracker::new(cfg);
    let mut seq = 0;
    let mut feed = |t: &mut Tracker, m: Vec<(&str, f32)>| {
        let mut o = obs("s", seq, &m);
        o.pts_ms = seq * 10_000;
        seq += 1;
        t.observe(&o)
    };
    for _ in 0..3 {
        feed(&mut t, present("a", 0.8, 0.5));
    }
    assert_eq!(t.on_screen(&key("s")), vec!["a"]);
    assert!(feed(&mut t, BG.to_vec()).is_empty(), "one miss, even 10 s late, keeps it on");
    assert!(feed(&mut t, present("a", 0.7, 0.5)).is_empty());
    assert!(feed(&mut t, BG.to_vec()).is_empty());
    let d = feed(&mut t, BG.to_vec());
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].kind, Disappeared);
}

#[test]
fn updates_are_throttled_and_numbered() {
    let cfg = TrackConfig::default();
    // Score climbs steadily from 0.62 to 0.98 over 60 s: it moves materially, so updates come at the
    // throttle rate, not every frame.
    let frames: Vec<_> = (0..60).map(|i| present("a", 0.62 + 0.006 * i as f32, 0.4)).collect();
    let mut t = Tracker::new(cfg);
    let ds: Vec<_> = frames.iter().enumerate().flat_map(|(i, m)| t.observe(&obs("s", i as u64, m))).collect();
    let ups: Vec<_> = ds.iter().filter(|d| d.kind == Updated).collect();
    assert!((4..=6).contains(&ups.len()), "{} updates", ups.len());
    for (n, u) in ups.iter().enumerate() {
        assert_eq!(u.update_seq, n as u32 + 1);
        assert_eq!(u.episode_start_pts_ms, ds[0].episode_start_pts_ms);
    }
    for w in ups.windows(2) {
        assert!(w[1].last_seen.pts_ms - w[0].last_seen.pts_ms >= 10_000);
    }
    // A flat score: at most one update, when the evidence grows from K=3 to N=5 hits, then silence.
    let flat: Vec<_> = (0..60).map(|i| present("a", 0.8 + 0.01 * jitter(i), 0.4)).collect();
    let ups: Vec<_> = run(&TrackConfig::default(), &flat).into_iter().filter(|e| e.1 == Updated).collect();
    assert!(ups.len() <= 1 && ups.iter().all(|e| e.0 < 15), "{ups:?}");
}

#[test]
fn streams_are_independent_and_finish_flushes_all() {
    let mut t = Tracker::new(TrackConfig::default());
    for seq in 0..3 {
        assert!(t.observe(&obs("s1", seq, &present("a", 0.8, 0.5))).len() <= 1);
        // s2 sees a only twice and noise in between: not enough on its own.
        let m = if seq == 1 { BG.to_vec() } else { present("a", 0.8, 0.5) };
        assert!(t.observe(&obs("s2", seq, &m)).is_empty());
    }
    assert_eq!(t.on_screen(&key("s1")), vec!["a"]);
    assert!(t.on_screen(&key("s2")).is_empty());
    let done = t.finish();
    assert_eq!(done.len(), 1);
    assert_eq!((&*done[0].stream_id, done[0].kind), ("s1", Disappeared));
    assert!(t.on_screen(&key("s1")).is_empty());
}

#[test]
fn decisions_carry_evidence_and_asr() {
    let mut t = Tracker::new(TrackConfig::default());
    let mut o = obs("s", 0, &present("a", 0.7, 0.5));
    o.asr_text = Some("this blender".into());
    t.observe(&o);
    t.observe(&obs("s", 1, &present("a", 0.8, 0.5)));
    let d = t.observe(&obs("s", 2, &present("a", 0.9, 0.5))).remove(0);
    assert_eq!(d.kind, Appeared);
    assert_eq!(d.asr_text.as_deref(), Some("this blender"));
    assert_eq!(d.first_seen.seq, 0);
    assert_eq!(d.last_seen.seq, 2);
    assert_eq!(d.evidence.frames.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!((d.score - 0.8).abs() < 1e-6);
    assert_eq!(d.runner_up.as_ref().map(|m| m.product_id.as_str()), Some("bg1"));
}

#[test]
fn a_models_calibration_fills_the_thresholds_the_config_leaves_unset() {
    use crate::encode::manifest::TrackCalibration;
    let model = TrackCalibration { enter_threshold: 0.45, exit_threshold: 0.4, min_margin: 0.02 };
    let t = TrackConfig::default().calibrated(Some(&model)).unwrap();
    assert_eq!((t.enter(), t.exit(), t.margin()), (0.45, 0.4, 0.02));
    let own = TrackConfig { enter_threshold: Some(0.5), ..TrackConfig::default() };
    let t = own.calibrated(Some(&model)).unwrap();
    assert_eq!((t.enter(), t.exit(), t.margin()), (0.5, 0.4, 0.02));
    // Without a calibration: the default model's values.
    let t = TrackConfig::default().calibrated(None).unwrap();
    assert_eq!((t.enter(), t.exit(), t.margin()), (0.6, 0.5, 0.05));
    // A config exit threshold above the model's enter threshold is refused, naming the key.
    let bad = TrackConfig { exit_threshold: Some(0.5), ..TrackConfig::default() };
    assert_eq!(bad.calibrated(Some(&model)).unwrap_err().key, "track.exit_threshold");
}

#[test]
fn config_defaults_valid_and_errors_name_the_key() {
    TrackConfig::default().validate().unwrap();
    let bad = TrackConfig { exit_threshold: Some(0.7), ..TrackConfig::default() };
    assert_eq!(bad.validate().unwrap_err().key, "track.exit_threshold");
    let bad = TrackConfig { min_hits: 9, ..TrackConfig::default() };
    assert_eq!(bad.validate().unwrap_err().key, "track.min_hits");
    let bad = TrackConfig { off_after_secs: 0.0, ..TrackConfig::default() };
    assert!(bad.validate().unwrap_err().to_string().contains("track.off_after_secs"));
    let parsed: TrackConfig = toml::from_str("window = 7\nmin_hits = 4").unwrap();
    assert_eq!((parsed.window, parsed.min_hits, parsed.enter()), (7, 4, 0.6));
    assert!(toml::from_str::<TrackConfig>("windw = 7").unwrap_err().to_string().contains("windw"));
}

#[test]
fn two_products_in_two_regions_are_both_on_each_with_its_box() {
    let left = [0.05, 0.3, 0.4, 0.7];
    let right = [0.6, 0.3, 0.95, 0.7];
    let mut t = Tracker::new(TrackConfig::default());
    let mut ev = Vec::new();
    for seq in 0..8 {
        let mut o = obs("s", seq, BG);
        o.regions = vec![
            RegionMatches { bbox: left, matches: present("a", 0.8, 0.4).into_iter().map(|(p, s)| Match::new(p, s)).collect() },
            RegionMatches { bbox: right, matches: present("b", 0.75, 0.4).into_iter().map(|(p, s)| Match::new(p, s)).collect() },
        ];
        ev.extend(t.observe(&o));
    }
    ev.extend(t.end_stream(&key("s")));
    let story: Vec<_> =
        ev.iter().filter(|d| d.kind != Updated).map(|d| (d.kind, d.product_id.as_str(), d.region)).collect();
    assert_eq!(
        story,
        vec![(Appeared, "a", left), (Appeared, "b", right), (Disappeared, "a", left), (Disappeared, "b", right)],
        "{ev:?}"
    );
    // A product seen in the whole frame carries the whole frame's box.
    let mut t = Tracker::new(TrackConfig::default());
    let on: Vec<Decision> = (0..3).flat_map(|seq| t.observe(&obs("s", seq, &present("a", 0.8, 0.4)))).collect();
    assert_eq!(on.iter().map(|d| (d.kind, d.region)).collect::<Vec<_>>(), vec![(Appeared, [0.0, 0.0, 1.0, 1.0])]);
}

#[test]
fn one_noisy_region_does_not_decide() {
    // Strong top-1s of a product in a side region on scattered single keyframes: never K of N.
    let mut t = Tracker::new(TrackConfig::default());
    let mut ev = Vec::new();
    for seq in 0..30 {
        let mut o = obs("s", seq, BG);
        if seq % 3 == 0 {
            o.regions = vec![RegionMatches {
                bbox: [0.1, 0.1, 0.2, 0.2],
                matches: present("x", 0.9, 0.4).into_iter().map(|(p, s)| Match::new(p, s)).collect(),
            }];
        }
        ev.extend(t.observe(&o));
    }
    assert!(ev.is_empty(), "{ev:?}");
}
