//! Builds one stream's GStreamer pipeline from the descriptions in `pipelines/`.

use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::AppSink;

use super::stats::Heartbeat;
use super::{IngestError, Source};
use crate::config::{AspectPolicy, DecodeMode, IngestConfig};
use crate::sample::RateLimiter;

const VIDEO_LETTERBOX: &str = include_str!("../../pipelines/video-letterbox.gst");
const VIDEO_CROP: &str = include_str!("../../pipelines/video-crop.gst");
const AUDIO_16K: &str = include_str!("../../pipelines/audio-16k.gst");

/// Sample rate of the speech audio delivered by every stream.
pub const AUDIO_RATE: u32 = 16_000;

/// A built (not yet started) pipeline and its sinks.
pub struct Built {
    pub pipeline: gst::Pipeline,
    pub keyframes: AppSink,
    /// `None` when the stream's audio is not wanted: it is then never decoded.
    pub audio: Option<AppSink>,
}

/// Initialises GStreamer once; safe to call repeatedly.
pub fn init() -> Result<(), IngestError> {
    gst::init().map_err(|e| IngestError::Gstreamer(format!("cannot initialise GStreamer: {e}")))
}

/// `heartbeat` is beaten by every compressed video buffer, so a long GOP never looks like a stall.
/// Without `with_audio` (nothing transcribes) the audio stays compressed and goes to a fakesink: decoding
/// and resampling it for nobody cost about 0.4 % of a core per stream.
pub fn build(
    source: &Source,
    cfg: &IngestConfig,
    heartbeat: Arc<Heartbeat>,
    with_audio: bool,
) -> Result<Built, IngestError> {
    init()?;
    let pipeline = gst::Pipeline::new();
    let decode = gst::ElementFactory::make("uridecodebin")
        .property("uri", &source.uri)
        // Network buffering (queue2/multiqueue) defaults to 2 MB per stream; live streams are consumed as
        // they arrive, so a quarter of that is plenty and keeps the per-stream footprint small.
        .property("buffer-size", 512 * 1024i32)
        .build()
        .map_err(|e| missing("uridecodebin", "gstreamer1.0-plugins-base", e))?;

    let video_desc = match cfg.aspect {
        AspectPolicy::Letterbox => VIDEO_LETTERBOX,
        AspectPolicy::Crop => VIDEO_CROP,
    };
    let video = branch(video_desc, cfg)?;
    let audio = if with_audio { Some(branch(AUDIO_16K, cfg)?) } else { None };
    pipeline.add(&decode).map_err(|e| IngestError::Gstreamer(e.to_string()))?;
    for bin in std::iter::once(&video).chain(&audio) {
        pipeline.add(bin).map_err(|e| IngestError::Gstreamer(e.to_string()))?;
    }
    let keyframes = appsink(&video, "keyframes")?;
    let audio_sink = audio.as_ref().map(|a| appsink(a, "audio")).transpose()?;
    if !with_audio {
        // Stop autoplugging at compressed audio: no parser, no decoder; the pad goes to a fakesink.
        decode.connect("autoplug-continue", false, |args| {
            let audio = args
                .get(2)
                .and_then(|v| v.get::<gst::Caps>().ok())
                .and_then(|c| c.structure(0).map(|s| s.name().starts_with("audio/")))
                .unwrap_or(false);
            Some((!audio).to_value())
        });
    }

    if cfg.decode == DecodeMode::Keyframes {
        let limiter = Arc::new(Mutex::new(RateLimiter::new(cfg.max_rate_hz)));
        decode
            .downcast_ref::<gst::Bin>()
            .ok_or_else(|| IngestError::Gstreamer("uridecodebin is not a bin".into()))?
            .connect_deep_element_added(move |_, _, element| {
                if is_video_decoder(element) {
                    key_units_only(element, limiter.clone(), heartbeat.clone());
                }
            });
    }

    let pipeline_weak = pipeline.downgrade();
    let branches: Vec<gst::Bin> = std::iter::once(video.clone()).chain(audio.clone()).collect();
    decode.connect_pad_added(move |_, pad| {
        let Some(pipeline) = pipeline_weak.upgrade() else {
            return;
        };
        link_decoded_pad(&pipeline, pad, &video, audio.as_ref());
    });
    // A source without audio (or video) leaves a branch unlinked; the pipeline only reports EOS when
    // every sink has seen it, so end the unused branch at once.
    decode.connect_no_more_pads(move |_| {
        for sink in branches.iter().filter_map(|b| b.static_pad("sink")) {
            if !sink.is_linked() {
                sink.send_event(gst::event::Eos::new());
            }
        }
    });
    Ok(Built {
        pipeline,
        keyframes,
        audio: audio_sink,
    })
}

fn branch(template: &str, cfg: &IngestConfig) -> Result<gst::Bin, IngestError> {
    let desc = template
        .replace("{width}", &cfg.width.to_string())
        .replace("{height}", &cfg.height.to_string());
    gst::parse::bin_from_description(&desc, true).map_err(|e| {
        IngestError::Gstreamer(format!(
            "pipeline description does not parse ({e}); are gstreamer1.0-plugins-base/-good installed? \
             Run scripts/setup.sh"
        ))
    })
}

fn appsink(bin: &gst::Bin, name: &str) -> Result<AppSink, IngestError> {
    bin.by_name(name)
        .and_then(|e| e.downcast::<AppSink>().ok())
        .ok_or_else(|| {
            IngestError::Gstreamer(format!("pipeline description lacks `appsink name={name}`"))
        })
}

fn missing(element: &str, package: &str, e: impl std::fmt::Display) -> IngestError {
    IngestError::Gstreamer(format!(
        "GStreamer element `{element}` is missing ({e}): install {package} (scripts/setup.sh does)"
    ))
}

fn is_video_decoder(element: &gst::Element) -> bool {
    element.factory().is_some_and(|f| {
        let klass = f.klass();
        klass.contains("Decoder") && klass.contains("Video")
    })
}

/// Makes a video decoder see only the key units we want to sample (see `pipelines/README.md`).
fn key_units_only(
    decoder: &gst::Element,
    limiter: Arc<Mutex<RateLimiter>>,
    heartbeat: Arc<Heartbeat>,
) {
    // Frame threading holds back one frame per thread; with one frame per GOP that is seconds of lag.
    if decoder.find_property("max-threads").is_some() {
        decoder.set_property_from_str("max-threads", "1");
    }
    let Some(sink) = decoder.static_pad("sink") else {
        return;
    };
    sink.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        heartbeat.beat();
        let keep = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT)
            && buffer.pts().is_none_or(|pts| {
                limiter
                    .lock()
                    .map(|mut l| l.admit(pts.nseconds()))
                    .unwrap_or(true)
            });
        if keep {
            return gst::PadProbeReturn::Ok;
        }
        // Take the buffer and report it handled: returning `Drop` with the buffer still in the probe info
        // makes GStreamer 1.22 and the bindings both release it (a CRITICAL per dropped buffer).
        drop(info.take_buffer());
        gst::PadProbeReturn::Handled
    });
}

/// Links a decoded pad to the branch for its media type; extra or unknown pads go to a fakesink so
/// that an unlinked pad never stops the demuxer.
fn link_decoded_pad(pipeline: &gst::Pipeline, pad: &gst::Pad, video: &gst::Bin, audio: Option<&gst::Bin>) {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let media = caps
        .structure(0)
        .map(|s| s.name().to_string())
        .unwrap_or_default();
    let target = if media.starts_with("video/") {
        Some(video)
    } else if media.starts_with("audio/") {
        audio
    } else {
        None
    };
    if let Some(bin) = target
        && let Some(sink) = bin.static_pad("sink")
        && !sink.is_linked()
        && pad.link(&sink).is_ok()
    {
        return;
    }
    tracing::debug!(%media, "decoded pad not used; discarding it");
    if let Ok(fake) = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .build()
        && pipeline.add(&fake).is_ok()
    {
        let _ = fake.sync_state_with_parent();
        if let Some(sink) = fake.static_pad("sink") {
            let _ = pad.link(&sink);
        }
    }
}
