#!/usr/bin/env python3
"""Spoken queries for the Grocery Store Dataset: what a live host would say about each product, spoken by
espeak-ng, transcribed by livesku's real ASR (Silero VAD + Moonshine), joined to the natural photos.

    scripts/grocery_speech.py OUT_DIR [--split val] [--livesku target/debug/livesku]

OUT_DIR is what scripts/grocery.py wrote (catalog.jsonl, queries-SPLIT.jsonl). Writes:

  OUT_DIR/speech-SPLIT.wav               every product's line, 1.5 s of silence between (16 kHz mono)
  OUT_DIR/speech-SPLIT.jsonl             per product: the line said, its time in the WAV, the transcript
  OUT_DIR/queries-SPLIT-spoken.jsonl     the photos of queries-SPLIT.jsonl, each with its product's
                                         transcript as `text` (no text where the ASR heard nothing)

Recipe for the host's line (documented in BENCHMARKS.md): "Have a look at this one." followed by the first
sentence of the product's shop description, cut at 25 words. Hosts describe what they hold; the line is not
the catalogue title, although descriptions often name the product, as hosts do. Needs espeak-ng and sox.
Standard library only.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import wave

RATE = 16000
GAP_S = 1.5
MAX_WORDS = 25


def host_line(description):
    text = " ".join(description.split())
    first = re.split(r"(?<=[.!?])\s+", text, maxsplit=1)[0] if text else ""
    words = first.split()[:MAX_WORDS]
    body = " ".join(words).rstrip(",;:")
    if body and body[-1] not in ".!?":
        body += "."
    return f"Have a look at this one. {body}" if body else "Have a look at this one."


def speak(text, tmp):
    """espeak-ng speech as 16 kHz mono 16-bit PCM bytes (sox resamples with a proper low-pass)."""
    raw, out = os.path.join(tmp, "raw.wav"), os.path.join(tmp, "16k.wav")
    subprocess.run(["espeak-ng", "-s", "150", "-w", raw, text], check=True)
    subprocess.run(["sox", raw, "-r", str(RATE), "-c", "1", "-b", "16", out], check=True)
    with wave.open(out) as w:
        return w.readframes(w.getnframes())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--split", default="val")
    ap.add_argument("--livesku", default="target/debug/livesku")
    ap.add_argument("--workers", default="1")
    a = ap.parse_args()

    catalog = [json.loads(l) for l in open(os.path.join(a.out, "catalog.jsonl")) if l.strip()]
    queries_path = os.path.join(a.out, f"queries-{a.split}.jsonl")
    queries = [json.loads(l) for l in open(queries_path) if l.strip()]
    wanted = {q["product_id"] for q in queries}
    products = [p for p in catalog if p["product_id"] in wanted]

    wav_path = os.path.join(a.out, f"speech-{a.split}.wav")
    gap = b"\x00\x00" * int(GAP_S * RATE)
    lines, pcm, at = [], bytearray(gap), GAP_S
    with tempfile.TemporaryDirectory() as tmp:
        for p in products:
            said = host_line(p.get("description", ""))
            speech = speak(said, tmp)
            dur = len(speech) / 2 / RATE
            lines.append({"product_id": p["product_id"], "said": said, "start_s": at, "end_s": at + dur})
            pcm += speech + gap
            at += dur + GAP_S
    with wave.open(wav_path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(bytes(pcm))
    print(f"{len(lines)} lines, {at / 60:.1f} min of speech in {wav_path}; transcribing...", file=sys.stderr)

    run = subprocess.run([a.livesku, "transcribe", wav_path, "--workers", a.workers], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"livesku transcribe failed:\n{run.stderr}")
    utterances = [json.loads(l) for l in run.stdout.splitlines() if l.strip()]
    # The ASR counters (audio, speech, decode and VAD time) for BENCHMARKS.md.
    print("\n".join(l for l in run.stderr.splitlines() if "transcription finished" in l), file=sys.stderr)
    for line in lines:
        # Utterances whose middle falls within the line (plus half the gap either side).
        lo, hi = line["start_s"] - GAP_S / 2, line["end_s"] + GAP_S / 2
        parts = [u for u in utterances if lo <= (u["start_ms"] + u["end_ms"]) / 2000 < hi]
        line["heard"] = " ".join(u["text"] for u in parts)
    with open(os.path.join(a.out, f"speech-{a.split}.jsonl"), "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    heard = {l["product_id"]: l["heard"] for l in lines}
    out_path = os.path.join(a.out, f"queries-{a.split}-spoken.jsonl")
    with open(out_path, "w") as f:
        for q in queries:
            q = dict(q)
            q.pop("text", None)
            if heard.get(q["product_id"]):
                q["text"] = heard[q["product_id"]]
            f.write(json.dumps(q) + "\n")
    silent = sum(1 for l in lines if not l["heard"])
    print(f"wrote {out_path} ({len(queries)} queries; {silent} products with no transcript)", file=sys.stderr)


if __name__ == "__main__":
    main()
