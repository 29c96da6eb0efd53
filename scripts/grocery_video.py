#!/usr/bin/env python3
"""Renders live-like videos of Grocery Store Dataset products and scores `livesku recognize` on them.

    scripts/grocery_video.py make GROC_DIR OUT_DIR --kind photos|showcase|absent [--seed 0] [--products 6]
                             [--photos-per-product 3] [--secs-per-photo 3] [--gap 4] [--size 640x360] [--fps 15]
    scripts/grocery_video.py score OUT_DIR/truth.json EVENTS.jsonl [--kind photos|showcase|absent] [--tolerance 3]

GROC_DIR is what scripts/grocery.py wrote (catalog.jsonl, queries-val.jsonl); given the dataset root instead,
grocery.py is run into OUT_DIR/groc first. Only val photos are used, never test; only products with val
photos are chosen, so one seed picks the same products for every kind. `make` writes:

  OUT_DIR/video.mp4     H.264 (keyframe every 8 frames): a gap of empty studio backdrop, then each product in
                        turn followed by a gap
  OUT_DIR/truth.json    [{"product_id", "start_s", "end_s"}, ...]: what was on screen when, in order
  OUT_DIR/catalog-without.jsonl  (absent only) the catalogue minus the shown products

Kinds: photos    each product as --photos-per-product distinct in-store photos, full frame, slow pan/zoom
       showcase  its catalogue (iconic) image held up small on the backdrop, moving, a hand passing over it
       absent    like photos, for a gallery built from catalog-without.jsonl: every appearance is false

`score` matches each product.appeared (at its first_seen.pts_ms) to the truth interval of the same product
within [start - tolerance, end + tolerance]; prints a table to stderr and one JSON line to stdout. Then:

  livesku gallery build --catalog GROC_DIR/catalog.jsonl --out G     (absent: OUT_DIR/catalog-without.jsonl)
  livesku recognize OUT_DIR/video.mp4 --gallery G > events.jsonl
  scripts/grocery_video.py score OUT_DIR/truth.json events.jsonl --kind KIND

numpy + PIL; gst-launch-1.0 (x264enc, mp4mux) encodes. The dataset is never copied.
"""
import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))


def log(msg):
    print(f"grocery_video.py: {msg}", file=sys.stderr)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def groc_dir(src, out):
    """The grocery.py output to use: SRC itself, or grocery.py run on the dataset at SRC into OUT/groc."""
    if os.path.isfile(os.path.join(src, "catalog.jsonl")):
        return src
    if not any(os.path.isfile(os.path.join(src, *p, "classes.csv")) for p in ([], ["dataset"])):
        sys.exit(f"grocery_video.py: {src} holds neither catalog.jsonl nor the Grocery Store Dataset")
    dest = os.path.join(out, "groc")
    subprocess.run([sys.executable, os.path.join(HERE, "grocery.py"), src, dest, "--split", "val"], check=True)
    return dest


# ---- rendering ----------------------------------------------------------------------------------------

def smooth_noise(rng, w, h, cells_x, cells_y):
    """Zero-mean, unit-ish noise varying over about cells_x x cells_y blobs."""
    grid = Image.fromarray(rng.standard_normal((cells_y, cells_x)).astype(np.float32))
    return np.asarray(grid.resize((w, h), Image.BICUBIC), dtype=np.float32)


def studio(w, h, rng):
    """An empty set, 10% larger than the frame so the camera can drift over it: a plain wall over a table."""
    W, H = int(w * 1.1), int(h * 1.1)
    y = np.linspace(0, 1, H, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, W, dtype=np.float32)[None, :]
    wall = 150 + 40 * y - 20 * (x - 0.5) ** 2 + 6 * smooth_noise(rng, W, H, 8, 5)
    wall = np.stack([wall * 0.95, wall * 0.9, wall * 0.85], axis=-1)
    grain = smooth_noise(rng, W, H, 6, H // 3)  # stretched sideways: wood-like streaks
    top = int(H * 0.74)
    table = 105 + 10 * grain + 10 * (y - 0.74) / 0.26
    table = np.stack([table * 1.0, table * 0.78, table * 0.58], axis=-1)
    rgb = np.where((np.arange(H) >= top)[:, None, None], table, wall)
    rgb[top:top + 3] *= 1.25  # the table's front edge catching the light
    rgb += rng.normal(0, 1.5, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def backdrop_at(stage, w, h, t):
    """The camera's view of the set at time t: a gentle drift."""
    sx, sy = stage.width - w, stage.height - h
    ox = sx / 2 * (1 + 0.8 * math.sin(t * 0.13))
    oy = sy / 2 * (1 + 0.8 * math.cos(t * 0.09))
    return stage.crop((int(ox), int(oy), int(ox) + w, int(oy) + h))


def ken_burns(img, w, h, u, move):
    """IMG scaled to cover the frame, centre-cropped to its aspect, zoomed and panned at progress u in [0, 1]."""
    z0, z1, (px0, py0), (px1, py1) = move
    u = u * u * (3 - 2 * u)  # ease in and out
    z = z0 + (z1 - z0) * u
    if img.width / img.height > w / h:
        cw, ch = img.height * w / h, img.height
    else:
        cw, ch = img.width, img.width * h / w
    cw, ch = cw / z, ch / z
    cx = img.width / 2 + (px0 + (px1 - px0) * u) * (img.width - cw) / 2
    cy = img.height / 2 + (py0 + (py1 - py0) * u) * (img.height - ch) / 2
    return img.resize((w, h), Image.BILINEAR, box=(cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2))


def held_up(frame, img, w, h, local):
    """scene.py's presentation, smaller: the image moving about the frame, a hand passing over it."""
    ph = int(h * (0.42 + 0.06 * math.sin(local * 0.9)))
    pw = int(img.width * ph / img.height)
    shot = img.resize((pw, ph), Image.BILINEAR).convert("RGBA").rotate(
        3 * math.sin(local * 0.7), resample=Image.BILINEAR, expand=True)
    cx = w / 2 + w * 0.15 * math.sin(local * 0.5)
    cy = h / 2 + h * 0.06 * math.sin(local * 0.8)
    frame.paste(shot, (int(cx - shot.width / 2), int(cy - shot.height / 2)), shot)
    phase = (local % 6.0) / 6.0
    if phase < 0.35:
        hx = int(cx - pw / 2 + (phase / 0.35) * pw)
        hy = int(cy + ph * 0.15)
        ImageDraw.Draw(frame).rounded_rectangle([hx - 30, hy, hx + 30, hy + int(ph * 0.45)], radius=24, fill=(224, 172, 140))


def plan(args, catalog, photos_of, rng):
    """The chosen products and the timeline: [(start, end, product_id, image, move)], truth intervals."""
    eligible = [c["product_id"] for c in catalog if photos_of.get(c["product_id"])]
    if args.products > len(eligible):
        sys.exit(f"grocery_video.py: only {len(eligible)} products have val photos")
    chosen = [eligible[i] for i in rng.choice(len(eligible), args.products, replace=False)]
    iconic = {c["product_id"]: c["images"][0] for c in catalog}
    shots, truth, t = [], [], float(args.gap)
    for pid in chosen:
        if args.kind == "showcase":  # one continuous presentation, as long as the photos would be
            images, secs = [iconic[pid]], args.photos_per_product * args.secs_per_photo
        else:
            secs = args.secs_per_photo
            have = photos_of[pid]
            if len(have) < args.photos_per_product:
                log(f"{pid} has only {len(have)} val photos")
            images = [have[i] for i in rng.permutation(len(have))[:args.photos_per_product]]
        start = t
        for path in images:
            zooms = rng.permutation([rng.uniform(1.0, 1.04), rng.uniform(1.11, 1.15)])
            move = (zooms[0], zooms[1], rng.uniform(-0.5, 0.5, 2), rng.uniform(-0.5, 0.5, 2))
            shots.append((t, t + secs, pid, path, move))
            t += secs
        truth.append({"product_id": pid, "start_s": round(start, 3), "end_s": round(t, 3)})
        t += args.gap
    return shots, truth, t


def make(args):
    w, h = (int(v) for v in args.size.split("x"))
    os.makedirs(args.out, exist_ok=True)
    src = groc_dir(os.path.abspath(args.groc), args.out)
    catalog = read_jsonl(os.path.join(src, "catalog.jsonl"))
    photos_of = {}
    for q in read_jsonl(os.path.join(src, "queries-val.jsonl")):
        photos_of.setdefault(q["product_id"], []).append(q["images"][0])
    rng = np.random.default_rng(args.seed)
    shots, truth, seconds = plan(args, catalog, photos_of, rng)

    shown = {iv["product_id"] for iv in truth}
    with open(os.path.join(args.out, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
    if args.kind == "absent":
        with open(os.path.join(args.out, "catalog-without.jsonl"), "w") as f:
            for c in catalog:
                if c["product_id"] not in shown:
                    f.write(json.dumps(c, ensure_ascii=False) + "\n")

    video = os.path.join(args.out, "video.mp4")
    pipeline = (f"fdsrc ! rawvideoparse width={w} height={h} format=rgb framerate={args.fps}/1 ! videoconvert "
                f"! x264enc speed-preset=ultrafast key-int-max=8 ! h264parse ! mp4mux ! filesink location={video}")
    gst = subprocess.Popen(["gst-launch-1.0", "-q", *pipeline.split()], stdin=subprocess.PIPE)
    stage = studio(w, h, rng)
    noise = np.random.default_rng(args.seed + 1)
    cache = {}
    shot_i = 0
    try:
        for i in range(int(round(seconds * args.fps))):
            t = i / args.fps
            while shot_i < len(shots) and t >= shots[shot_i][1]:
                shot_i += 1
            frame = backdrop_at(stage, w, h, t)
            if shot_i < len(shots) and t >= shots[shot_i][0]:
                start, end, _, path, move = shots[shot_i]
                if path not in cache:
                    cache = {path: Image.open(path).convert("RGB")}
                if args.kind == "showcase":
                    held_up(frame, cache[path], w, h, t - start)
                else:
                    frame = ken_burns(cache[path], w, h, (t - start) / (end - start), move)
            # Lighting drift (brightness and a little colour temperature) and sensor noise, as in scene.py.
            warm = 0.03 * math.sin(t * 0.23)
            gain = (1 + 0.12 * math.sin(t * 0.4)) * np.array([1 + warm, 1, 1 - warm], dtype=np.float32)
            arr = np.asarray(frame, dtype=np.float32) * gain + 3 * noise.standard_normal((h, w, 3), dtype=np.float32)
            gst.stdin.write(np.clip(arr, 0, 255).astype(np.uint8).tobytes())
        gst.stdin.close()
    except BrokenPipeError:
        pass
    if gst.wait() != 0:
        sys.exit(f"grocery_video.py: gst-launch-1.0 failed ({gst.returncode})")

    log(f"{args.kind}: {len(truth)} products, {seconds:.0f} s at {w}x{h} {args.fps} fps -> {video}")
    for iv in truth:
        log(f"  {iv['start_s']:6.1f}-{iv['end_s']:6.1f} s  {iv['product_id']}")
    if args.kind == "absent":
        log(f"catalog-without.jsonl: {len(catalog) - len(shown)} of {len(catalog)} products (the shown ones removed)")


# ---- scoring ------------------------------------------------------------------------------------------

def appeared_at(e):
    """Stream seconds of an appearance: its first_seen, else its earliest evidence keyframe."""
    pts = (e.get("first_seen") or {}).get("pts_ms")
    if pts is None:
        kfs = [k["pts_ms"] for k in (e.get("evidence") or {}).get("keyframes", []) if "pts_ms" in k]
        pts = min(kfs) if kfs else None
    return None if pts is None else pts / 1000


def score(args):
    truth = json.load(open(args.truth))
    events = []
    for n, line in enumerate(open(args.events, encoding="utf-8"), 1):
        if line.strip().startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                log(f"{args.events}:{n}: not JSON, skipped")
    apps = sorted((appeared_at(e), e.get("product_id")) for e in events
                  if e.get("type") == "product.appeared" and appeared_at(e) is not None)
    if args.kind != "absent" and os.path.isfile(os.path.join(os.path.dirname(args.truth) or ".", "catalog-without.jsonl")):
        log("note: catalog-without.jsonl lies beside the truth: was this the absent kind?")

    def on_screen(t):
        return next((iv["product_id"] for iv in truth if iv["start_s"] <= t < iv["end_s"]), None)

    tol = args.tolerance
    hits, false, repeats = {}, [], 0
    for t, pid in apps:
        match = None if args.kind == "absent" else next(
            (i for i, iv in enumerate(truth) if iv["product_id"] == pid and iv["start_s"] - tol <= t <= iv["end_s"] + tol), None)
        if match is None:
            false.append({"product_id": pid, "t_s": round(t, 3), "on_screen": on_screen(t)})
        elif match in hits:
            repeats += 1  # the same product appearing again in its interval: a flicker, not a false product
        else:
            hits[match] = t
    times = [hits[i] for i in sorted(hits)]
    delays = [hits[i] - truth[i]["start_s"] for i in hits]
    expected = range(len(truth)) if args.kind != "absent" else []
    misses = [truth[i]["product_id"] for i in expected if i not in hits]

    print(f"{'#':>3}  {'product shown':<34} {'on screen':<15}  {'appeared   delay':<17}  other appearances meanwhile", file=sys.stderr)
    for i, iv in enumerate(truth):
        if args.kind == "absent":
            seen = "(not in gallery)"
        else:
            seen = f"{hits[i]:7.1f} s {hits[i] - iv['start_s']:+6.1f}s" if i in hits else "     MISS"
        others = ", ".join(f"{f['product_id']}@{f['t_s']:.1f}" for f in false if f["on_screen"] == iv["product_id"])
        print(f"{i + 1:>3}  {iv['product_id']:<34} {iv['start_s']:6.1f}-{iv['end_s']:6.1f} s  {seen:<17}  {others}", file=sys.stderr)
    gaps = [f for f in false if f["on_screen"] is None]
    if gaps:
        print("     during gaps: " + ", ".join(f"{f['product_id']}@{f['t_s']:.1f}" for f in gaps), file=sys.stderr)
    found = len(hits)
    mean = round(sum(delays) / len(delays), 3) if delays else None
    print(f"found {found}/{len(expected)}, false appearances {len(false)}, repeats {repeats}, "
          f"mean delay {'-' if mean is None else f'{mean:.2f} s'}, tolerance {tol} s", file=sys.stderr)
    print(json.dumps({"shown": len(truth), "found": found, "in_order": times == sorted(times),
                      "false_appearances": len(false), "mean_delay_s": mean, "misses": misses, "false": false,
                      "repeats": repeats}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="render OUT_DIR/video.mp4 and OUT_DIR/truth.json")
    m.add_argument("groc", metavar="GROC_DIR")
    m.add_argument("out", metavar="OUT_DIR")
    m.add_argument("--kind", required=True, choices=["photos", "showcase", "absent"])
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--products", type=int, default=6)
    m.add_argument("--photos-per-product", type=int, default=3)
    m.add_argument("--secs-per-photo", type=float, default=3)
    m.add_argument("--gap", type=float, default=4)
    m.add_argument("--size", default="640x360")
    m.add_argument("--fps", type=int, default=15)
    s = sub.add_parser("score", help="score livesku recognize's events against truth.json")
    s.add_argument("truth", metavar="TRUTH.json")
    s.add_argument("events", metavar="EVENTS.jsonl")
    s.add_argument("--kind", default="photos", choices=["photos", "showcase", "absent"])
    s.add_argument("--tolerance", type=float, default=3)
    args = ap.parse_args()
    if args.cmd == "make":
        make(args)
    else:
        score(args)


if __name__ == "__main__":
    main()
