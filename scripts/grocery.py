#!/usr/bin/env python3
"""Turns the Grocery Store Dataset (Klasson et al., WACV 2019) into livesku evaluation files.

    scripts/grocery.py DATASET_DIR OUT_DIR [--split val] [--query-text coarse|fine|none]

DATASET_DIR is the dataset's root (the folder holding `dataset/`, or `dataset/` itself). Writes:

  OUT_DIR/catalog.jsonl          one product per fine class: its iconic (product-page) image, title
                                 (class name) and the shop description; coarse class kept as metadata
  OUT_DIR/queries-SPLIT.jsonl    one query per natural in-store photo of SPLIT (train, val or test),
                                 image-only
  OUT_DIR/queries-SPLIT-text.jsonl  the same photos with a text, standing in for what a live host says:
                                 `coarse` (default) the coarse class ("Apple"), `fine` the product name

Image paths are absolute, so the files stay valid wherever OUT_DIR is; the dataset itself is never copied.
Then:  livesku gallery build --catalog OUT_DIR/catalog.jsonl --out GALLERY
       livesku eval --gallery GALLERY --queries OUT_DIR/queries-val.jsonl
Standard library only.
"""
import argparse
import csv
import json
import os
import sys


def title_of(class_name):
    return class_name.replace("-", " ").replace("_", " ")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset")
    ap.add_argument("out")
    ap.add_argument("--split", default="val", choices=["train", "val", "test"])
    ap.add_argument("--query-text", default="coarse", choices=["coarse", "fine", "none"])
    a = ap.parse_args()

    root = os.path.abspath(a.dataset)
    if os.path.isdir(os.path.join(root, "dataset")):
        root = os.path.join(root, "dataset")
    classes_csv = os.path.join(root, "classes.csv")
    split_txt = os.path.join(root, f"{a.split}.txt")
    for p in (classes_csv, split_txt):
        if not os.path.isfile(p):
            sys.exit(f"grocery.py: not found: {p} (expected the Grocery Store Dataset layout)")
    os.makedirs(a.out, exist_ok=True)

    classes = {}
    with open(classes_csv, newline="") as f:
        reader = csv.reader(f)
        next(reader)  # header
        for row in reader:
            name, cid, coarse, coarse_id, iconic, desc_path = [c.strip() for c in row[:6]]
            desc_file = os.path.join(root, desc_path.lstrip("/"))
            description = open(desc_file, encoding="utf-8", errors="replace").read().strip() if os.path.isfile(desc_file) else ""
            classes[int(cid)] = {
                "product_id": name,
                "title": title_of(name),
                "description": description,
                "images": [os.path.join(root, iconic.lstrip("/"))],
                "coarse_class": coarse,
                "coarse_id": int(coarse_id),
            }
    with open(os.path.join(a.out, "catalog.jsonl"), "w") as f:
        for cid in sorted(classes):
            f.write(json.dumps(classes[cid], ensure_ascii=False) + "\n")

    n = 0
    plain = open(os.path.join(a.out, f"queries-{a.split}.jsonl"), "w")
    texted = open(os.path.join(a.out, f"queries-{a.split}-text.jsonl"), "w") if a.query_text != "none" else None
    with open(split_txt) as f:
        for line in f:
            parts = [p.strip() for p in line.split(",")]
            if len(parts) < 2 or not parts[0]:
                continue
            c = classes[int(parts[1])]
            q = {"images": [os.path.join(root, parts[0])], "product_id": c["product_id"]}
            plain.write(json.dumps(q) + "\n")
            if texted:
                text = title_of(c["coarse_class"]) if a.query_text == "coarse" else c["title"]
                texted.write(json.dumps({**q, "text": text}) + "\n")
            n += 1
    plain.close()
    if texted:
        texted.close()
    print(f"grocery.py: {len(classes)} products, {n} {a.split} queries -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
