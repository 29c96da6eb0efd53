#!/usr/bin/env python3
"""The straightforward Python alternative to `livesku recognize`, for `cargo bench --bench peer`.

Same work as livesku on one source: key units only (non-key packets never reach the decoder), at most
RATE frames per second (by PTS, before decoding), the model directory's visual tower (and head) with its
manifest's pre-processing and pooling, exact cosine top-k against livesku's gallery files, abstention
against synthetic empty-set references (livesku's `gallery.background_margin`), and livesku's tracker
rules (K of N strong hits on, lenient exit, off after misses) with the model's or the default thresholds.
Detection events are printed as JSON lines on stdout.

    peer.py VIDEO_OR_URI --gallery DIR --model DIR [--threads 2] [--rate 1] [--batch 1]
    peer.py VIDEO --model DIR --dump DIR --dump-max 8     # parity check: frames (PNG) + embeddings

PyAV (FFmpeg) decodes, Pillow resizes (its bilinear filter widens on downscaling, like livesku's
fast_image_resize), numpy does the rest. The last line on stderr is a JSON summary.
"""

import argparse
import base64
import collections
import json
import os
import sys
import time
import tomllib

import av
import numpy as np
import onnxruntime as ort
from PIL import Image

# livesku's defaults (src/track/config.rs, src/gallery/config.rs) for a model without a calibration.
TRACK = dict(window=5, min_hits=3, enter=0.6, exit=0.5, margin=0.05, off_after_keyframes=3, off_after_ms=5000,
             update_interval_ms=10000, update_min_score_delta=0.05, update_min_hits_delta=2)
TOP_K = 5
BACKGROUND_MARGIN = 0.03


class Model:
    def __init__(self, model_dir, threads):
        with open(os.path.join(model_dir, "manifest.toml"), "rb") as f:
            self.manifest = tomllib.load(f)
        v = self.manifest["visual"]
        assert v.get("layout", "nchw") == "nchw" and v.get("frames", 1) == 1, "single-frame models only"
        self.v = v
        self.height, self.width = v["size"]
        self.mean = np.array(v["mean"], np.float32)
        self.std = np.array(v["std"], np.float32)
        # u8 -> normalised f32 per channel, as livesku's look-up table computes it (in f32).
        lut = (np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0) - self.mean[:, None]) / self.std[:, None]
        self.lut = lut.astype(np.float32)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(os.path.join(model_dir, v["file"]), so, providers=["CPUExecutionProvider"])
        head = v.get("head")
        self.head = None
        if head:
            self.head = ort.InferenceSession(os.path.join(model_dir, head["file"]), so, providers=["CPUExecutionProvider"])
        fusion = self.manifest.get("fusion", {})
        self.visual_weight = float(fusion.get("visual_weight", 1.0))
        self.dim = int(v["dim"])

    def prepare(self, img):
        """PIL RGB image -> [3,H,W] float32 (resize policy of the manifest, then mean/std)."""
        w, h = img.size
        if (w, h) != (self.width, self.height):
            policy = self.v.get("resize", "crop")
            tw, th = self.width, self.height
            if policy == "crop":
                scale = max(tw / w, th / h)
                cw, ch = tw / scale, th / scale
                box = ((w - cw) / 2, (h - ch) / 2, (w - cw) / 2 + cw, (h - ch) / 2 + ch)
                img = img.resize((tw, th), Image.BILINEAR, box=box)
            elif policy == "stretch":
                img = img.resize((tw, th), Image.BILINEAR)
            else:  # letterbox
                scale = min(tw / w, th / h)
                nw = min(max(round(w * scale), 1), tw)
                nh = min(max(round(h * scale), 1), th)
                canvas = Image.new("RGB", (tw, th), tuple(self.v.get("pad_rgb", [124, 116, 104])))
                canvas.paste(img.resize((nw, nh), Image.BILINEAR), ((tw - nw) // 2, (th - nh) // 2))
                img = canvas
        px = np.asarray(img, dtype=np.uint8)
        return np.stack([self.lut[c][px[:, :, c]] for c in range(3)])

    def embed(self, batch):
        """[B,3,H,W] -> [B,dim] unit vectors (the manifest's pooling)."""
        out = self.session.run([self.v["output"]], {self.v["input"]: batch})[0]
        if self.head is not None:
            h = self.v["head"]
            out = self.head.run([h["output"]], {h["input"]: out})[0]
        pooling = self.v.get("pooling", "none")
        if out.ndim == 2 or pooling in ("none", "cls"):
            vec = out if out.ndim == 2 else out[:, 0]
        elif pooling == "mean_patch":
            vec = out[:, 1:].sum(axis=1)
        else:  # cls_mean
            vec = unit(out[:, 0]) + unit(out[:, 1:].sum(axis=1))
        return unit(vec)


def unit(x):
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.where(n > 0, x / np.where(n > 0, n, 1), x).astype(np.float32)


def cached_backgrounds(gallery_dir, model):
    """The references' vectors that `gallery build` stores with the gallery (background.json), as livesku
    reads them: the same gallery files on both sides. None when absent or made by another model."""
    path = os.path.join(gallery_dir, "background.json")
    if not os.path.exists(path):
        return None
    cache = json.load(open(path))
    if cache["model_version"] != model.manifest["version"] or len(cache["vectors"]) != 15:
        return None
    return np.stack([np.frombuffer(base64.b64decode(v), dtype="<f4") for v in cache["vectors"]])[:, : model.dim]


def synthetic_backgrounds(size=224, seed=7):
    """livesku's empty-studio references (src/matcher/background.rs): flat tones, gradients, noisy gradients."""
    rng = np.random.default_rng(seed)
    tones = [(128, 128, 128), (200, 196, 190), (60, 60, 64), (150, 135, 120), (235, 235, 235)]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = []
    for tone in tones:
        for kind in range(3):
            shade = [np.ones_like(xs), 0.8 + 0.35 * ys, 0.85 + 0.3 * xs - 0.15 * np.abs(ys - 0.5)][kind]
            noise = np.zeros_like(xs) if kind == 0 else (rng.random(xs.shape, dtype=np.float32) - 0.5) * 8.0
            img = np.stack([np.clip(c * shade + noise, 0, 255) for c in tone], axis=-1).astype(np.uint8)
            out.append(Image.fromarray(img))
    return out


class Gallery:
    def __init__(self, path, visual_dim):
        with open(os.path.join(path, "gallery.json")) as f:
            meta = json.load(f)
        rows, dim = meta["rows"], meta["dim"]
        vectors = np.fromfile(os.path.join(path, "vectors.f32"), dtype="<f4").reshape(rows, dim)
        products = [json.loads(line) for line in open(os.path.join(path, "products.jsonl")) if line.strip()]
        removed = set()
        rpath = os.path.join(path, "removed.txt")
        if os.path.exists(rpath):
            removed = {int(line) for line in open(rpath) if line.strip()}
        live = [p["row"] for p in products if p["row"] not in removed]
        self.vectors = np.ascontiguousarray(vectors[live])
        self.visual = np.ascontiguousarray(self.vectors[:, :visual_dim])
        by_row = {p["row"]: p for p in products}
        self.ids = [by_row[r]["product_id"] for r in live]
        self.titles = [by_row[r].get("title", "") for r in live]


class Tracker:
    """livesku's per-stream tracker (src/track/stream.rs) for whole-frame views."""

    def __init__(self, cfg, stream_id):
        self.cfg = cfg
        self.stream_id = stream_id
        self.window = collections.deque()
        self.products = {}  # id -> dict (episode) or int (off: cutoff seq)

    def strong(self, frame):
        m = frame["matches"]
        if not m:
            return None
        margin = m[0][1] - (m[1][1] if len(m) > 1 else 0.0)
        return m[0][0] if m[0][1] >= self.cfg["enter"] and margin >= self.cfg["margin"] else None

    @staticmethod
    def score_of(frame, pid):
        return next((s for p, s in frame["matches"] if p == pid), None)

    def observe(self, seq, pts_ms, matches):
        cfg = self.cfg
        # best first, one entry per product (normalize in src/track/observation.rs)
        seen, norm = set(), []
        for p, s in sorted(matches, key=lambda m: (-m[1], m[0])):
            if p not in seen:
                seen.add(p)
                norm.append((p, s))
        frame = dict(seq=seq, pts_ms=pts_ms, matches=norm)
        self.window.append(frame)
        while len(self.window) > cfg["window"]:
            self.window.popleft()
        gone, updated, out = [], [], []
        for pid, st in self.products.items():
            if not isinstance(st, dict):
                continue
            s = self.score_of(frame, pid)
            if s is not None and s >= cfg["exit"]:
                st["misses"] = 0
                st["last_seen"] = (seq, pts_ms)
                updated.append(pid)
            else:
                st["misses"] += 1
                unseen = pts_ms - st["last_seen"][1]
                by_time = st["misses"] >= min(cfg["off_after_keyframes"], 2) and unseen >= cfg["off_after_ms"]
                if st["misses"] >= cfg["off_after_keyframes"] or by_time:
                    gone.append(pid)
        for pid in gone:
            out.append(self.end(pid))
        top = self.strong(frame)
        if top is not None and not isinstance(self.products.get(top), dict):
            cutoff = self.products.get(top)
            hits = [f for f in self.window if (cutoff is None or f["seq"] > cutoff) and self.strong(f) == top]
            if len(hits) >= cfg["min_hits"]:
                ep = dict(start=(hits[0]["seq"], hits[0]["pts_ms"]), last_seen=(seq, pts_ms), misses=0, updates=0,
                          last_event_pts=pts_ms)
                self.products[top] = ep
                d = self.decision(top, "product.appeared")
                ep["last_event_score"], ep["last_event_hits"] = d["score"], d["evidence"]["hits"]
                out.append(d)
        for pid in updated:
            ep = self.products[pid]
            if pts_ms - ep["last_event_pts"] < cfg["update_interval_ms"]:
                continue
            score, hits = self.score_and_hits(pid, ep)
            if abs(score - ep["last_event_score"]) >= cfg["update_min_score_delta"] or \
                    abs(hits - ep["last_event_hits"]) >= cfg["update_min_hits_delta"]:
                ep["updates"] += 1
                ep["last_event_pts"], ep["last_event_score"], ep["last_event_hits"] = pts_ms, score, hits
                out.append(self.decision(pid, "product.updated"))
        oldest = self.window[0]["seq"]
        self.products = {k: v for k, v in self.products.items() if isinstance(v, dict) or v >= oldest}
        return out

    def score_and_hits(self, pid, ep):
        frames = [f for f in self.window if f["seq"] >= ep["start"][0]]
        scores = [s for s in (self.score_of(f, pid) for f in frames) if s is not None and s >= self.cfg["exit"]]
        hits = sum(1 for f in frames if self.strong(f) == pid)
        return (sum(scores) / len(scores) if scores else None), hits

    def decision(self, pid, kind):
        ep = self.products[pid]
        score, hits = self.score_and_hits(pid, ep)
        if score is None:
            score = ep.get("last_event_score", 0.0)
        return {"type": kind, "stream_id": self.stream_id, "product_id": pid, "score": round(float(score), 4),
                "first_seen": {"seq": ep["start"][0], "pts_ms": ep["start"][1]},
                "last_seen": {"seq": ep["last_seen"][0], "pts_ms": ep["last_seen"][1]},
                "evidence": {"window": self.cfg["window"], "hits": hits}}

    def end(self, pid):
        d = self.decision(pid, "product.disappeared")
        self.products[pid] = self.window[-1]["seq"] if self.window else 0
        return d

    def finish(self):
        return [self.end(pid) for pid, st in sorted(self.products.items()) if isinstance(st, dict)]


def keyframes(uri, rate):
    """(pts_ms, PIL RGB frame) of key units at most `rate` per second; other packets are never decoded."""
    container = av.open(uri)
    stream = container.streams.video[0]
    stream.codec_context.skip_frame = "NONKEY"
    min_gap = 1.0 / rate if rate > 0 else 0.0
    last = None
    for packet in container.demux(stream):
        if packet.pts is None or not packet.is_keyframe:
            continue
        t = float(packet.pts * packet.time_base)
        if last is not None and t >= last and t - last < min_gap:
            continue
        last = t
        for frame in packet.decode():
            yield int(round(t * 1000)), frame.to_image()
    container.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("uri")
    ap.add_argument("--gallery")
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rate", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=1, help="keyframes per ONNX Runtime call (1: as decoded)")
    ap.add_argument("--stream-id", default=None)
    ap.add_argument("--dump", help="parity check: write the sampled frames (PNG) and their embeddings here")
    ap.add_argument("--dump-max", type=int, default=8)
    args = ap.parse_args()
    t0 = time.monotonic()
    model = Model(args.model, args.threads)

    if args.dump:
        os.makedirs(args.dump, exist_ok=True)
        names, inputs = [], []
        for i, (pts, img) in enumerate(keyframes(args.uri, args.rate)):
            if i >= args.dump_max:
                break
            name = f"frame{i:03}.png"
            img.save(os.path.join(args.dump, name))
            names.append(name)
            inputs.append(model.prepare(img))
        # One batch, as livesku's check encodes them: an int8 tower quantises activations per batch.
        model.embed(np.stack(inputs)).astype("<f4").tofile(os.path.join(args.dump, "embeddings.f32"))
        json.dump({"frames": names, "dim": model.dim}, open(os.path.join(args.dump, "dump.json"), "w"))
        return

    gallery = Gallery(args.gallery, model.dim)
    cal = model.manifest.get("track", {})
    cfg = dict(TRACK, enter=cal.get("enter_threshold", TRACK["enter"]), exit=cal.get("exit_threshold", TRACK["exit"]),
               margin=cal.get("min_margin", TRACK["margin"]))
    background = cached_backgrounds(args.gallery, model)
    if background is None:
        # Page side: unweighted unit vectors.
        background = model.embed(np.stack([model.prepare(b) for b in synthetic_backgrounds()]))
    stream_id = args.stream_id or os.path.splitext(os.path.basename(args.uri.rstrip("/")))[0]
    tracker = Tracker(cfg, stream_id)
    k = min(TOP_K, len(gallery.ids))
    counts = dict(keyframes=0, abstained=0, events=0)

    def emit(decisions):
        for d in decisions:
            d["title"] = gallery.titles[gallery.ids.index(d["product_id"])]
            print(json.dumps(d), flush=True)
            counts["events"] += 1

    def match(pending):
        vecs = model.embed(np.stack([p[2] for p in pending])) * model.visual_weight
        for (seq, pts, _), q in zip(pending, vecs):
            # A query without speech has a zero text part: its score is the visual part's dot product.
            scores = gallery.visual @ q
            top = np.argsort(-scores, kind="stable")[:k]
            best = float(scores[top[0]])
            if best < float((background @ q).max()) + BACKGROUND_MARGIN:
                matches = []
                counts["abstained"] += 1
            else:
                matches = [(gallery.ids[i], float(scores[i])) for i in top]
            emit(tracker.observe(seq, pts, matches))

    pending = []
    for seq, (pts, img) in enumerate(keyframes(args.uri, args.rate)):
        counts["keyframes"] += 1
        pending.append((seq, pts, model.prepare(img)))
        if len(pending) >= args.batch:
            match(pending)
            pending = []
    if pending:
        match(pending)
    emit(tracker.finish())
    counts["wall_s"] = round(time.monotonic() - t0, 3)
    print(json.dumps(counts), file=sys.stderr)


if __name__ == "__main__":
    main()
