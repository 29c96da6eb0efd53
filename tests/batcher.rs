//! The shared dynamic batcher: identity of every result under concurrent streams, per-stream order, each
//! stream's end behind its last embedding, fairness between a busy and a quiet stream, live expiry
//! counted from capture, and the real encoder behind it.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use image::RgbImage;
use livesku::encode::{BatchEncode, Batcher, BatcherConfig, EncodeError, Embedded, EncodedMsg, Encoder, FrameVectors, Side, Tagger};
use livesku::messages::{Flow, Keyframe, StreamKey};
use livesku::stage::Health;

/// Encodes the identity painted into the image (stream index, seq) so results can be checked; takes
/// `delay` per batch like a model would.
struct Fake {
    delay: Duration,
    batches: Arc<AtomicUsize>,
}

impl BatchEncode for Fake {
    fn encode_batch(&mut self, images: &[&RgbImage], texts: &[Option<&str>], localise: bool) -> Result<Vec<FrameVectors>, EncodeError> {
        std::thread::sleep(self.delay);
        let batch = self.batches.fetch_add(1, Ordering::SeqCst) as f32;
        Ok(images
            .iter()
            .zip(texts)
            .map(|(img, t)| {
                let p = img.get_pixel(0, 0).0;
                let seq = u32::from_le_bytes([p[1], p[2], img.get_pixel(1, 0).0[0], 0]);
                let localise = if localise { 1.0 } else { 0.0 };
                FrameVectors::from(vec![p[0] as f32, seq as f32, t.map_or(0.0, |t| t.len() as f32), batch, localise])
            })
            .collect())
    }
}

fn frame(stream: &str, index: u8, seq: u64) -> Keyframe {
    let mut img = RgbImage::new(4, 4);
    let b = (seq as u32).to_le_bytes();
    img.put_pixel(0, 0, image::Rgb([index, b[0], b[1]]));
    img.put_pixel(1, 0, image::Rgb([b[2], 0, 0]));
    Keyframe { stream_id: stream.into(), generation: 0, seq, pts_ms: seq * 40, captured_at: SystemTime::now(), image: img, phash: seq }
}

/// Embeddings in output order, and the streams whose end came, checking that no embedding of a stream
/// follows its end.
fn split(msgs: Vec<EncodedMsg>) -> (Vec<Embedded>, Vec<StreamKey>) {
    let (mut items, mut ends) = (Vec::new(), Vec::new());
    for m in msgs {
        match m {
            Flow::Item(e) => {
                assert!(!ends.contains(&e.frame.key()), "embedding of {} after its end", e.frame.key());
                items.push(e);
            }
            Flow::End(k) => {
                assert!(!ends.contains(&k), "two ends for {k}");
                ends.push(k);
            }
        }
    }
    (items, ends)
}

fn start(encoder: impl BatchEncode, cfg: BatcherConfig, tag: Option<Tagger>) -> (Batcher, crossbeam_channel::Receiver<EncodedMsg>) {
    Batcher::start(encoder, cfg, tag, &Health::default()).unwrap()
}

#[test]
fn results_keep_their_frame_under_concurrent_streams() {
    let cfg = BatcherConfig { max_batch: 7, max_wait: Duration::from_millis(3), queue_per_stream: 4, output_capacity: 16 };
    // Speech tags: every third frame (pts = seq * 40) has text of a length its seq fixes.
    let tag: Tagger = Box::new(|_, pts| {
        let seq = pts / 40;
        (seq % 3 == 0).then(|| "x".repeat(seq as usize % 11))
    });
    let (batcher, out) = start(Fake { delay: Duration::from_millis(1), batches: Arc::default() }, cfg, Some(tag));
    let streams = 6u8;
    let per_stream = 300u64;
    let mut producers = Vec::new();
    for s in 0..streams {
        let tx = batcher.stream(format!("stream-{s}").into()).unwrap();
        producers.push(std::thread::spawn(move || {
            for seq in 0..per_stream {
                tx.send(frame(&format!("stream-{s}"), s, seq)).unwrap();
                if seq % 50 == s as u64 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }));
    }
    let metrics = batcher.metrics();
    let collector = std::thread::spawn(move || out.iter().collect::<Vec<_>>());
    for p in producers {
        p.join().unwrap();
    }
    batcher.finish();
    let (results, ends) = split(collector.join().unwrap());

    assert_eq!(results.len(), (streams as u64 * per_stream) as usize);
    assert_eq!(ends.len(), streams as usize, "one end per stream: {ends:?}");
    let mut last: HashMap<String, i64> = HashMap::new();
    for r in &results {
        let idx: u8 = r.frame.stream_id.trim_start_matches("stream-").parse().unwrap();
        assert_eq!(r.embedding[0], idx as f32, "embedding of another stream's frame");
        assert_eq!(r.embedding[1], r.frame.seq as f32, "embedding of another frame");
        let text_len = r.text.as_ref().map_or(0, |t| t.len());
        assert_eq!(r.embedding[2], text_len as f32, "text of another frame");
        assert_eq!(r.frame.pts_ms, r.frame.seq * 40);
        let prev = last.insert(r.frame.stream_id.to_string(), r.frame.seq as i64).unwrap_or(-1);
        assert_eq!(prev + 1, r.frame.seq as i64, "stream order broken in {}", r.frame.stream_id);
    }
    assert_eq!(metrics.frames.load(Ordering::Relaxed), results.len() as u64);
    assert!(metrics.mean_batch() > 1.0, "no batching happened");
}

#[test]
fn busy_streams_cannot_starve_a_quiet_one() {
    let batch_time = Duration::from_millis(25);
    let cfg = BatcherConfig { max_batch: 4, max_wait: Duration::from_millis(5), queue_per_stream: 16, output_capacity: 1024 };
    let (batcher, out) = start(Fake { delay: batch_time, batches: Arc::default() }, cfg, None);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut busy = Vec::new();
    for s in 0..3u8 {
        let tx = batcher.stream(format!("busy-{s}").into()).unwrap();
        let stop = stop.clone();
        // Keeps its queue full: 3 x 16 frames ahead of anyone arriving later, 12 batches' worth.
        busy.push(std::thread::spawn(move || {
            let mut seq = 0;
            while !stop.load(Ordering::SeqCst) {
                if tx.send(frame("busy", s, seq)).is_err() {
                    break;
                }
                seq += 1;
            }
        }));
    }
    std::thread::sleep(batch_time * 4);
    let quiet = batcher.stream("quiet".into()).unwrap();
    let collector = std::thread::spawn(move || out.iter().collect::<Vec<_>>());
    for seq in 0..5 {
        quiet.send(frame("quiet", 9, seq)).unwrap();
        std::thread::sleep(batch_time * 3);
    }
    stop.store(true, Ordering::SeqCst);
    drop(quiet);
    // Let producers notice the stop flag while the worker keeps draining.
    for b in busy {
        b.join().unwrap();
    }
    batcher.finish();
    let (results, _) = split(collector.join().unwrap());
    let quiet_waits: Vec<Duration> = results.iter().filter(|r| &*r.frame.stream_id == "quiet").map(|r| r.waited).collect();
    assert_eq!(quiet_waits.len(), 5);
    let busy_mean = {
        let w: Vec<_> = results.iter().filter(|r| &*r.frame.stream_id == "busy").map(|r| r.waited).collect();
        w.iter().sum::<Duration>() / w.len() as u32
    };
    // Round-robin puts a quiet frame into the next batch (<= ~2 batch times); a shared FIFO would make it
    // wait behind the busy backlog (~12 batch times), like the busy frames do.
    let worst = quiet_waits.iter().max().unwrap();
    assert!(*worst < batch_time * 5, "quiet stream waited {worst:?} (busy mean {busy_mean:?})");
    assert!(busy_mean > *worst, "busy mean {busy_mean:?} vs quiet worst {worst:?}");
}

#[test]
fn real_encoder_behind_the_batcher_matches_direct_encoding() {
    let cfg = support::encoder_config();
    let mut direct = Encoder::open(&cfg).unwrap();
    let streams = 3u8;
    let per = 4u64;
    let pic = |s: u8, seq: u64| support::picture(s as u32 * 100 + seq as u32, 224, 224);
    let text = |s: u8, seq: u64| seq.is_multiple_of(2).then(|| format!("stream {s} says product {seq}"));
    let mut expected: HashMap<(u8, u64), Vec<f32>> = HashMap::new();
    for s in 0..streams {
        for seq in 0..per {
            let img = pic(s, seq);
            let t = text(s, seq);
            let clip: &[&RgbImage] = &[&img];
            expected.insert((s, seq), direct.encode(&[clip], &[t.as_deref()], Side::Query).unwrap().remove(0));
        }
    }
    drop(direct);

    let bcfg = BatcherConfig { max_batch: 5, max_wait: Duration::from_millis(30), queue_per_stream: 2, output_capacity: 4 };
    let tag: Tagger = Box::new(move |key, pts| text(key.id.parse().unwrap(), pts / 40));
    let (batcher, out) = start(Encoder::open(&cfg).unwrap(), bcfg, Some(tag));
    let started = Instant::now();
    let mut producers = Vec::new();
    for s in 0..streams {
        let tx = batcher.stream(format!("{s}").into()).unwrap();
        producers.push(std::thread::spawn(move || {
            for seq in 0..per {
                let mut f = frame("", 0, seq);
                f.stream_id = format!("{s}").into();
                f.image = pic(s, seq);
                tx.send(f).unwrap();
            }
        }));
    }
    let collector = std::thread::spawn(move || out.iter().collect::<Vec<_>>());
    for p in producers {
        p.join().unwrap();
    }
    batcher.finish();
    let (results, _) = split(collector.join().unwrap());
    assert_eq!(results.len(), (streams as u64 * per) as usize, "after {:?}", started.elapsed());
    for r in results {
        let s: u8 = r.frame.stream_id.parse().unwrap();
        let want = &expected[&(s, r.frame.seq)];
        let diff = support::max_abs_diff(&r.embedding, want);
        assert!(diff < 1e-4, "stream {s} seq {}: differs from its own direct embedding by {diff}", r.frame.seq);
    }
}

#[test]
fn live_frames_that_waited_too_long_expire_instead_of_piling_up() {
    // One frame per 400 ms batch; frames may wait 150 ms. Submitted together, the first is encoded and
    // the rest are stale by the time the encoder is free again.
    let cfg = BatcherConfig { max_batch: 1, max_wait: Duration::ZERO, queue_per_stream: 8, output_capacity: 16 };
    let (batcher, out) = start(Fake { delay: Duration::from_millis(400), batches: Arc::default() }, cfg, None);
    let metrics = batcher.metrics();
    let live = batcher.live_stream("live".into(), Duration::from_millis(150)).unwrap();
    let file = batcher.stream("file".into()).unwrap();
    for seq in 0..6 {
        live.send(frame("live", 1, seq)).unwrap();
    }
    for seq in 0..2 {
        file.send(frame("file", 2, seq)).unwrap();
    }
    drop((live, file));
    batcher.finish();
    let (got, _) = split(out.iter().collect());
    let expired = metrics.expired.load(Ordering::Relaxed);
    let live_got: Vec<_> = got.iter().filter(|e| &*e.frame.stream_id == "live").collect();
    assert_eq!(live_got.len() as u64 + expired, 6, "every live frame is encoded or counted");
    assert!(expired >= 4, "stale live frames expire (expired {expired})");
    assert!(live_got.iter().all(|e| e.waited <= Duration::from_millis(150) + Duration::from_millis(50)));
    // Files never expire, however long they wait.
    assert_eq!(got.iter().filter(|e| &*e.frame.stream_id == "file").count(), 2);
}

#[test]
fn live_expiry_counts_from_capture_not_from_queueing() {
    // A live frame that spent 1 s before reaching its queue (e.g. behind a slow stage) is already stale;
    // a fresh one is encoded. A file frame of the same age is encoded too.
    let cfg = BatcherConfig { max_batch: 4, max_wait: Duration::ZERO, queue_per_stream: 8, output_capacity: 16 };
    let (batcher, out) = start(Fake { delay: Duration::ZERO, batches: Arc::default() }, cfg, None);
    let metrics = batcher.metrics();
    let live = batcher.live_stream("live".into(), Duration::from_millis(500)).unwrap();
    let file = batcher.stream("file".into()).unwrap();
    let mut old = frame("live", 1, 0);
    old.captured_at = SystemTime::now() - Duration::from_secs(1);
    live.send(old.clone()).unwrap();
    live.send(frame("live", 1, 1)).unwrap();
    old.stream_id = "file".into();
    file.send(old).unwrap();
    drop((live, file));
    batcher.finish();
    let (got, ends) = split(out.iter().collect());
    let seqs = |id: &str| got.iter().filter(|e| &*e.frame.stream_id == id).map(|e| e.frame.seq).collect::<Vec<_>>();
    assert_eq!(seqs("live"), [1], "the stale live frame must expire");
    assert_eq!(seqs("file"), [0]);
    assert_eq!(metrics.expired.load(Ordering::Relaxed), 1);
    assert_eq!(ends.len(), 2);
}

#[test]
fn a_panicking_encoder_fails_the_stage_and_closes_its_output() {
    struct Panics;
    impl BatchEncode for Panics {
        fn encode_batch(&mut self, _: &[&RgbImage], _: &[Option<&str>], _: bool) -> Result<Vec<FrameVectors>, EncodeError> {
            panic!("model crashed")
        }
    }
    let health = Health::default();
    let cfg = BatcherConfig { max_batch: 1, max_wait: Duration::ZERO, queue_per_stream: 2, output_capacity: 2 };
    let (batcher, out) = Batcher::start(Panics, cfg, None, &health).unwrap();
    let tx = batcher.stream("s".into()).unwrap();
    tx.send(frame("s", 0, 0)).unwrap();
    // The output closes (the matcher would end) and, once the thread is gone, the failure names the stage.
    assert!(out.iter().next().is_none());
    batcher.finish();
    let failure = health.failure().expect("stage failure recorded");
    assert_eq!(failure.stage, "encoder");
    assert!(failure.reason.contains("model crashed"), "{failure:?}");
    // Later frames are refused, not queued forever.
    let refused = (0..10).any(|i| tx.send(frame("s", 0, i + 1)).is_err());
    assert!(refused, "a dead encoder must not accept frames");
}

#[test]
fn region_passes_are_shed_before_live_frames_expire() {
    // A live frame that has used a quarter of its age budget is encoded without its region passes, a fresh
    // one gets them; a file frame gets them alone, not while a live stream is open.
    let cfg = BatcherConfig { max_batch: 1, max_wait: Duration::ZERO, queue_per_stream: 8, output_capacity: 16 };
    let (batcher, out) = start(Fake { delay: Duration::ZERO, batches: Arc::default() }, cfg, None);
    let metrics = batcher.metrics();
    let live = batcher.live_stream("live".into(), Duration::from_secs(2)).unwrap();
    let file = batcher.stream("file".into()).unwrap();
    let mut late = frame("live", 1, 0);
    late.captured_at = SystemTime::now() - Duration::from_millis(700);
    live.send(late.clone()).unwrap();
    live.send(frame("live", 1, 1)).unwrap();
    late.stream_id = "file".into();
    file.send(late.clone()).unwrap();
    // Wait until all three are encoded, then close the live stream: the next file frame is alone.
    let mut got: Vec<Embedded> = Vec::new();
    while got.len() < 3 {
        if let Ok(Flow::Item(e)) = out.recv() {
            got.push(e);
        }
    }
    drop(live);
    loop {
        match out.recv() {
            Ok(Flow::End(k)) if &*k.id == "live" => break,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
    late.seq = 1;
    file.send(late).unwrap();
    drop(file);
    batcher.finish();
    let (rest, _) = split(out.iter().collect());
    got.extend(rest);
    let localised = |id: &str, seq: u64| {
        got.iter().find(|e| &*e.frame.stream_id == id && e.frame.seq == seq).map(|e| e.embedding[4] == 1.0)
    };
    assert_eq!(localised("live", 0), Some(false), "the late live frame goes without regions");
    assert_eq!(localised("live", 1), Some(true));
    assert_eq!(localised("file", 0), Some(false), "a file yields its region passes to open live streams");
    assert_eq!(localised("file", 1), Some(true), "files alone have no age budget");
    assert_eq!(metrics.regions_shed.load(Ordering::Relaxed), 2);
}

#[test]
fn live_frames_go_before_a_backlog_of_many_files() {
    // 20 files with full queues: round-robin alone would give the live stream one frame in 21.
    let batch_time = Duration::from_millis(20);
    let cfg = BatcherConfig { max_batch: 4, max_wait: Duration::from_millis(5), queue_per_stream: 8, output_capacity: 4096 };
    let (batcher, out) = start(Fake { delay: batch_time, batches: Arc::default() }, cfg, None);
    let metrics = batcher.metrics();
    let files: Vec<_> = (0..20u8)
        .map(|s| {
            let tx = batcher.stream(format!("file-{s}").into()).unwrap();
            std::thread::spawn(move || (0..16).all(|seq| tx.send(frame("file", s, seq)).is_ok()))
        })
        .collect();
    let live = batcher.live_stream("live".into(), batch_time * 4).unwrap();
    let collector = std::thread::spawn(move || out.iter().collect::<Vec<_>>());
    for seq in 0..10 {
        live.send(frame("live", 99, seq)).unwrap();
        std::thread::sleep(batch_time * 2);
    }
    drop(live);
    assert!(files.into_iter().all(|f| f.join().unwrap()));
    batcher.finish();
    let (results, _) = split(collector.join().unwrap());
    let live_done = results.iter().filter(|r| &*r.frame.stream_id == "live").count();
    assert_eq!(live_done, 10, "live frames expired behind the files ({} expired)", metrics.expired.load(Ordering::Relaxed));
    assert_eq!(results.iter().filter(|r| &*r.frame.stream_id == "file").count(), 20 * 16, "files lose nothing");
}
