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
  OUT_DIR/examples.jsonl         training examples for `livesku train`: every train-split photo, labelled
                                 with its product (the live domain a platform has from past streams)
  OUT_DIR/examples-seen.jsonl    the same, without the "unseen" products (every 4th class id: 3, 7, 11, ...)
  OUT_DIR/queries-SPLIT-unseen.jsonl  the SPLIT photos of the unseen products only: train on
                                 examples-seen.jsonl, query these against the whole catalogue

Image paths are absolute, so the files stay valid wherever OUT_DIR is; the dataset itself is never copied.
Then:  livesku gallery build --catalog OUT_DIR/catalog.jsonl --out GALLERY
       livesku eval --gallery GALLERY --queries OUT_DIR/queries-val.jsonl
       livesku train --catalog OUT_DIR/catalog.jsonl --examples OUT_DIR/examples.jsonl --out MODEL_DIR
Standard library only.
"""
import argparse
import csv
import json
import os
import sys


def is_unseen(class_id):
    """The unseen-products split: a quarter of the products, fixed by class id."""
    return class_id % 4 == 3


def read_split(root, split):
    """(path, fine class id) of each photo listed in SPLIT.txt."""
    out = []
    with open(os.path.join(root, f"{split}.txt")) as f:
        for line in f:
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 2 and parts[0]:
                out.append((os.path.join(root, parts[0]), int(parts[1])))
    return out


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

    photos = read_split(root, a.split)
    plain = open(os.path.join(a.out, f"queries-{a.split}.jsonl"), "w")
    unseen = open(os.path.join(a.out, f"queries-{a.split}-unseen.jsonl"), "w")
    texted = open(os.path.join(a.out, f"queries-{a.split}-text.jsonl"), "w") if a.query_text != "none" else None
    for path, cid in photos:
        c = classes[cid]
        q = {"images": [path], "product_id": c["product_id"]}
        plain.write(json.dumps(q) + "\n")
        if is_unseen(cid):
            unseen.write(json.dumps(q) + "\n")
        if texted:
            text = title_of(c["coarse_class"]) if a.query_text == "coarse" else c["title"]
            texted.write(json.dumps({**q, "text": text}) + "\n")
    for f in (plain, unseen, texted):
        if f:
            f.close()
    n = len(photos)
    n_examples = 0
    if os.path.isfile(os.path.join(root, "train.txt")):
        with open(os.path.join(a.out, "examples.jsonl"), "w") as every, open(os.path.join(a.out, "examples-seen.jsonl"), "w") as seen:
            for path, cid in read_split(root, "train"):
                line = json.dumps({"images": [path], "product_id": classes[cid]["product_id"]}) + "\n"
                every.write(line)
                if not is_unseen(cid):
                    seen.write(line)
                n_examples += 1
    print(f"grocery.py: {len(classes)} products, {n} {a.split} queries, {n_examples} train examples -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
