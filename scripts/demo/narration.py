#!/usr/bin/env python3
"""Writes a host's narration track (mono 16-bit WAV at 16 kHz) with espeak-ng: each `--say START:TEXT`
is spoken from START seconds on; the rest is silence, `--seconds` long in all.

    narration.py --seconds 30 --say "0.5:Look at this cup" --say "18:Now a rocket" --out speech.wav
"""
import argparse
import subprocess
import sys
import tempfile
import wave

import numpy as np

RATE = 16000


def speak(text):
    """espeak-ng speech resampled to 16 kHz (espeak-ng writes 22.05 kHz)."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-s", "150", "-w", f.name, text], check=True)
        with wave.open(f.name) as w:
            rate, raw = w.getframerate(), w.readframes(w.getnframes())
    pcm = np.frombuffer(raw, dtype=np.int16).astype(np.float32)
    t = np.arange(0, len(pcm) / rate, 1 / RATE)
    return np.interp(t, np.arange(len(pcm)) / rate, pcm)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--say", action="append", default=[], metavar="START:TEXT")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    track = np.zeros(int(args.seconds * RATE), dtype=np.float32)
    for spec in args.say:
        start, text = spec.split(":", 1)
        at = int(float(start) * RATE)
        speech = speak(text)[: max(0, len(track) - at)]
        if at + len(speech) > len(track) or len(speech) == 0:
            sys.exit(f"narration '{text}' does not fit before {args.seconds} s")
        track[at : at + len(speech)] += speech
    with wave.open(args.out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.clip(track, -32768, 32767).astype(np.int16).tobytes())


if __name__ == "__main__":
    main()
