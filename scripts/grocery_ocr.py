#!/usr/bin/env python3
"""Packaging OCR on the Grocery Store Dataset's product-page images (issue 12, figures for BENCHMARKS.md).

    scripts/grocery_ocr.py CATALOG [--livesku BIN] [--model-dir DIR] [--config TOML] [--threads N] [--swedish]

CATALOG is OUT_DIR/catalog.jsonl from scripts/grocery.py (81 products, each with its iconic image, title
and description). Each product's own page image is read by `livesku ocr --catalog CATALOG` and ranked
against all 81 products' text; prints top-1 / top-3 hit rates (all products, and the packaged ones, the
only ones with print), the acceptance rate and precision, and det/rec milliseconds per image.
The packages are Swedish and scripts/grocery.py's descriptions English: --swedish also appends each
product's `*_Description_Swedish.txt` (a shop's own-language text) in a temporary catalogue.
Standard library only.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("catalog")
    ap.add_argument("--livesku", default="livesku")
    ap.add_argument("--model-dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config")
    ap.add_argument("--swedish", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    products = [json.loads(l) for l in open(a.catalog) if l.strip()]
    if a.swedish:
        for p in products:
            sv = p["images"][0].replace("_Iconic.jpg", "_Description_Swedish.txt")
            if os.path.isfile(sv):
                p["description"] += "\n" + open(sv, encoding="utf-8", errors="replace").read()
        tmp = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False)
        tmp.writelines(json.dumps(p) + "\n" for p in products)
        tmp.close()
        a.catalog = tmp.name
    image_of = {p["images"][0]: p for p in products}
    cmd = [a.livesku, "ocr", "--catalog", a.catalog, "--threads", str(a.threads), "--top", "3"]
    if a.model_dir:
        cmd += ["--model-dir", a.model_dir]
    if a.config:
        cmd += ["--config", a.config]
    out = subprocess.run(cmd + list(image_of), check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        r = json.loads(line)
        p = image_of[r["image"]]
        ranked = [m["product_id"] for m in r.get("products", [])]
        accepted = [m["product_id"] for m in r.get("products", []) if m["accepted"]]
        packaged = "/Packages/" in r["image"]
        rows.append((p["product_id"], packaged, ranked, accepted, r["det_ms"], r["rec_ms"], r["lines"]))
        if a.verbose:
            print(p["product_id"], "|", " / ".join(l["text"] for l in r["lines"]), "->", ranked[:3], accepted)

    def report(name, sel):
        n = len(sel)
        top1 = sum(1 for pid, _, ranked, *_ in sel if ranked[:1] == [pid])
        top3 = sum(1 for pid, _, ranked, *_ in sel if pid in ranked[:3])
        acc = [(pid, a_) for pid, _, _, a_, *_ in sel if a_]
        right = sum(1 for pid, a_ in acc if a_[0] == pid)
        print(f"{name}: {n} images, top-1 {top1}/{n} = {top1 / n:.2f}, top-3 {top3}/{n} = {top3 / n:.2f}, "
              f"accepted {len(acc)} ({right} right)")

    report("all products", rows)
    report("packaged products", [r for r in rows if r[1]])
    det = [r[4] for r in rows]
    rec = [r[5] for r in rows]
    lines = [len(r[6]) for r in rows]
    print(f"det ms/image: median {statistics.median(det):.1f}, mean {statistics.mean(det):.1f}; "
          f"rec ms/image: median {statistics.median(rec):.1f}, mean {statistics.mean(rec):.1f}; "
          f"lines/image mean {statistics.mean(lines):.1f}")


if __name__ == "__main__":
    sys.exit(main())
