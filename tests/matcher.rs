//! The match stage in process, on a real gallery store (the default model's manifest, hand-made vectors):
//! abstention against the empty-set references, speech carried only when it is about the product, and
//! stream ends keyed by session (one generation's end never closes another's episode).

mod support;

use std::time::{Duration, SystemTime};

use image::RgbImage;
use livesku::encode::{Embedded, EncodedMsg, Manifest};
use livesku::event::EventContext;
use livesku::gallery::{Gallery, GalleryConfig, Product, Searcher};
use livesku::matcher::{Background, Matcher, Output, Settings};
use livesku::messages::{Flow, Keyframe, StreamKey};
use livesku::track::{TrackConfig, Tracker};
use parking_lot::RwLock;

struct Space {
    dim: usize,
    visual: usize,
}

impl Space {
    /// Unit vector `axis` of the visual part, times `v`; unit vector `axis` of the text part, times `t`.
    fn vector(&self, axis: usize, v: f32, t: f32) -> Vec<f32> {
        let mut x = vec![0.0; self.dim];
        x[axis] = v;
        if t != 0.0 {
            x[self.visual + axis] = t;
        }
        x
    }
}

/// Products a, b, c on visual axes 0, 1, 2 (text axes likewise); the empty set on visual axis 9.
fn matcher(dir: &std::path::Path) -> (Matcher, Space) {
    let manifest = Manifest::load(&support::encoder_config().model_dir().join("manifest.toml")).unwrap();
    let space = Space { dim: manifest.embedding_dim(), visual: manifest.visual.dim };
    assert!(space.dim > space.visual + 3, "the default model fuses text");
    let mut gallery = Gallery::create(&dir.join("gallery"), &manifest).unwrap();
    let items: Vec<(Product, Vec<f32>)> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let p = Product { row: 0, product_id: id.to_string(), title: format!("product {id}"), metadata: Default::default() };
            (p, space.vector(i, 0.8, 0.6))
        })
        .collect();
    gallery.add(&items).unwrap();
    let searcher = std::sync::Arc::new(RwLock::new(Searcher::new(gallery, &GalleryConfig::default())));
    let background = Background { vectors: vec![space.vector(9, 1.0, 0.0)[..space.visual].to_vec()] };
    let settings = Settings { background_margin: 0.03, visual_dim: space.visual, top_k: 3 };
    let ctx = EventContext { model_version: "m".into(), gallery_version: "g".into(), worker: "w".into() };
    (Matcher::new(settings, searcher, background, Tracker::new(TrackConfig::default()), ctx), space)
}

fn frame(key: &StreamKey, seq: u64, embedding: Vec<f32>, text: Option<&str>) -> EncodedMsg {
    let kf = Keyframe {
        stream_id: key.id.clone(),
        generation: key.generation,
        seq,
        pts_ms: seq * 1000,
        captured_at: SystemTime::now(),
        image: RgbImage::new(1, 1),
        phash: 0,
    };
    Flow::Item(Embedded { frame: kf, text: text.map(str::to_string), embedding, regions: Vec::new(), waited: Duration::ZERO })
}

type Ev = (String, String, Option<String>, String);

/// Runs the stage over `input`; returns (type, product, asr_text, stream) of every event, in order.
fn run(m: Matcher, input: Vec<EncodedMsg>) -> Vec<Ev> {
    let (tx, rx) = crossbeam_channel::bounded(input.len() + 1);
    for msg in input {
        tx.send(msg).unwrap();
    }
    drop(tx);
    let mut events = Vec::new();
    m.run(rx, |out| {
        if let Output::Event { event, .. } = out {
            events.push((event.event_type.to_string(), event.product_id.clone(), event.asr_text.clone(), event.stream_id.to_string()));
        }
    })
    .unwrap();
    events
}

fn kinds(events: &[Ev]) -> Vec<(&str, &str)> {
    events.iter().filter(|e| e.0 != "product.updated").map(|e| (e.0.as_str(), e.1.as_str())).collect()
}

#[test]
fn empty_set_frames_abstain_and_close_the_episode() {
    let dir = tempfile::tempdir().unwrap();
    let (m, s) = matcher(dir.path());
    let key = StreamKey::new("s", 0);
    let mut input = Vec::new();
    // Product a clearly on screen, then frames that look like the empty set (but still closest to a
    // among the products, at a score that would pass the tracker's entry threshold on its own).
    for seq in 0..6 {
        input.push(frame(&key, seq, s.vector(0, 1.0, 0.0), None));
    }
    for seq in 6..14 {
        let mut q = s.vector(9, 0.9, 0.0);
        q[0] = 0.8;
        input.push(frame(&key, seq, q, None));
    }
    let metrics = m.metrics.clone();
    let events = run(m, input);
    assert_eq!(kinds(&events), [("product.appeared", "a"), ("product.disappeared", "a")], "{events:?}");
    assert_eq!(metrics.abstained.get(), 8);
}

#[test]
fn speech_is_carried_only_when_it_is_about_the_product() {
    let dir = tempfile::tempdir().unwrap();
    let (m, s) = matcher(dir.path());
    let (about_a, about_b) = (StreamKey::new("about-a", 0), StreamKey::new("about-b", 0));
    let mut input = Vec::new();
    for seq in 0..5 {
        // The camera shows a on both streams; the speech's text part points at a on one, b on the other.
        input.push(frame(&about_a, seq, s.vector(0, 1.0, 0.5), Some("this espresso set")));
        let mut q = s.vector(0, 1.0, 0.0);
        q[s.visual + 1] = 0.5;
        input.push(frame(&about_b, seq, q, Some("the rocket model")));
    }
    let events = run(m, input);
    let appeared = |stream: &str| events.iter().find(|e| e.0 == "product.appeared" && e.3 == stream).cloned();
    let (a, b) = (appeared("about-a").unwrap(), appeared("about-b").unwrap());
    assert_eq!((a.1.as_str(), b.1.as_str()), ("a", "a"), "speech must not make another product appear: {events:?}");
    assert_eq!(a.2.as_deref(), Some("this espresso set"), "speech about the product is kept: {events:?}");
    assert_eq!(b.2, None, "speech about another product must not ride on this one's event: {events:?}");
}

#[test]
fn an_end_closes_only_its_own_session() {
    let dir = tempfile::tempdir().unwrap();
    let (m, s) = matcher(dir.path());
    let (old, new, probe) = (StreamKey::new("s", 0), StreamKey::new("s", 1), StreamKey::new("probe", 0));
    let mut input = Vec::new();
    for seq in 0..5 {
        input.push(frame(&old, seq, s.vector(1, 1.0, 0.0), None));
    }
    input.push(Flow::End(old.clone()));
    for seq in 0..5 {
        input.push(frame(&new, seq, s.vector(1, 1.0, 0.0), None));
    }
    // A late or repeated end of the old session must not touch the new one's open episode: the probe's
    // frame, matched after it, comes before the new episode's end (at the close of the input).
    input.push(Flow::End(old));
    input.push(frame(&probe, 0, s.vector(9, 1.0, 0.0), None));
    let (tx, rx) = crossbeam_channel::bounded(input.len());
    input.into_iter().for_each(|msg| tx.send(msg).unwrap());
    drop(tx);
    let mut log = Vec::new();
    m.run(rx, |out| match out {
        Output::Event { event, .. } if event.event_type != "product.updated" => {
            log.push(format!("{} {}", event.event_type, event.episode_id))
        }
        Output::Matched { stream, .. } if stream.id.as_ref() == "probe" => log.push("probe".into()),
        _ => {}
    })
    .unwrap();
    assert_eq!(log.len(), 5, "{log:#?}");
    let (ep_old, ep_new) = (log[0].split(' ').nth(1).unwrap(), log[2].split(' ').nth(1).unwrap());
    assert_ne!(ep_old, ep_new, "sessions share an episode id: {log:#?}");
    assert_eq!(
        log,
        [
            format!("product.appeared {ep_old}"),
            format!("product.disappeared {ep_old}"),
            format!("product.appeared {ep_new}"),
            "probe".to_string(),
            format!("product.disappeared {ep_new}"),
        ]
    );
}
