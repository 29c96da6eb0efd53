#!/usr/bin/env python3
"""Renders a live-commerce-like scene as raw RGB frames on stdout (for `gst-launch-1.0 fdsrc ! rawvideoparse`).

Each `--show IMAGE:START:END` presents a product picture between START and END seconds, the way a host
holds it up: the camera pans and zooms gently, the lighting drifts, and a "hand" passes over part of the
product now and then. Outside the shown intervals the frame is an empty studio backdrop.

    scene.py --size 640x360 --fps 15 --seconds 30 --show a.png:0:12 --show b.jpg:18:30 > frames.rgb
"""
import argparse
import math
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def parse_show(spec):
    path, start, end = spec.rsplit(":", 2)
    return path, float(start), float(end)


def backdrop(w, h):
    y = np.linspace(0, 1, h)[:, None]
    x = np.linspace(0, 1, w)[None, :]
    base = 150 + 40 * y - 20 * (x - 0.5) ** 2
    rgb = np.stack([base * 0.95, base * 0.9, base * 0.85], axis=-1)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--show", action="append", default=[], type=parse_show, metavar="IMAGE:START:END")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    stage = backdrop(w, h)
    products = [(Image.open(p).convert("RGB"), s, e) for p, s, e in args.show]
    rng = np.random.default_rng(7)
    out = sys.stdout.buffer
    for i in range(int(args.seconds * args.fps)):
        t = i / args.fps
        frame = stage.copy()
        for img, start, end in products:
            if not (start <= t < end):
                continue
            local = t - start
            # Hand-held presentation: slow zoom and pan, slight tilt.
            scale = 0.62 + 0.06 * math.sin(local * 0.9)
            ph = int(h * scale)
            pw = int(img.width * ph / img.height)
            shot = img.resize((pw, ph), Image.BILINEAR).rotate(3 * math.sin(local * 0.7), resample=Image.BILINEAR, expand=False, fillcolor=(150, 140, 130))
            cx = w / 2 + w * 0.12 * math.sin(local * 0.5)
            cy = h / 2 + h * 0.05 * math.sin(local * 0.8)
            frame.paste(shot, (int(cx - pw / 2), int(cy - ph / 2)))
            # A hand passing over the lower part of the product every few seconds.
            phase = (local % 6.0) / 6.0
            if phase < 0.35:
                hx = int(cx - pw / 2 + (phase / 0.35) * pw)
                hy = int(cy + ph * 0.15)
                d = ImageDraw.Draw(frame)
                d.rounded_rectangle([hx - 40, hy, hx + 40, hy + int(ph * 0.45)], radius=30, fill=(224, 172, 140))
        # Lighting drift and sensor noise.
        arr = np.asarray(frame, dtype=np.float32) * (1.0 + 0.15 * math.sin(t * 0.4))
        arr += rng.normal(0, 3, arr.shape)
        out.write(np.clip(arr, 0, 255).astype(np.uint8).tobytes())
    out.flush()


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:
        pass
