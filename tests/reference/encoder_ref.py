"""Independent reference for tests/encoder_reference.rs: runs the model files with Python onnxruntime on
tensors written by the Rust test (and the trained head, when the manifest has one), pools with numpy, and
writes the unit vectors back.

usage: encoder_ref.py MANIFEST_DIR WORK_DIR
WORK_DIR/request.json: {"visual": {"file": "visual_in.f32", "shape": [...]},
                        "text": {"ids": "ids.i64", "mask": "mask.i64", "shape": [n, len]}}
writes WORK_DIR/visual_out.f32 and WORK_DIR/text_out.f32 ([n, dim] row-major, little-endian).
"""
import json, os, sys, tomllib
import numpy as np
import onnxruntime as ort

def unit(x):
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1)

def main(model_dir, work):
    m = tomllib.load(open(os.path.join(model_dir, "manifest.toml"), "rb"))
    req = json.load(open(os.path.join(work, "request.json")))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    v = m["visual"]
    x = np.fromfile(os.path.join(work, req["visual"]["file"]), dtype="<f4").reshape(req["visual"]["shape"])
    sess = ort.InferenceSession(os.path.join(model_dir, v["file"]), so, providers=["CPUExecutionProvider"])
    tok = sess.run([v["output"]], {v["input"]: x})[0]
    if "head" in v:  # a trained head (livesku train) runs on the tower's whole output
        h = v["head"]
        head = ort.InferenceSession(os.path.join(model_dir, h["file"]), so, providers=["CPUExecutionProvider"])
        tok = head.run([h["output"]], {h["input"]: tok})[0]
    pooling = v["pooling"]
    if tok.ndim == 2 or pooling in ("none", "cls"):
        out = tok if tok.ndim == 2 else tok[:, 0]
    elif pooling == "mean_patch":
        out = tok[:, 1:].mean(1)
    elif pooling == "cls_mean":
        out = unit(tok[:, 0]) + unit(tok[:, 1:].mean(1))
    else:
        sys.exit(f"unknown pooling {pooling}")
    unit(out).astype("<f4").tofile(os.path.join(work, "visual_out.f32"))

    t = m.get("text")
    if t and "text" in req:
        shape = req["text"]["shape"]
        ids = np.fromfile(os.path.join(work, req["text"]["ids"]), dtype="<i8").reshape(shape)
        mask = np.fromfile(os.path.join(work, req["text"]["mask"]), dtype="<i8").reshape(shape)
        sess = ort.InferenceSession(os.path.join(model_dir, t["file"]), so, providers=["CPUExecutionProvider"])
        feeds = {t["input_ids"]: ids, t["attention_mask"]: mask}
        if t.get("token_type_ids"):
            feeds[t["token_type_ids"]] = np.zeros_like(ids)
        y = sess.run([t["output"]], feeds)[0]
        if y.ndim == 3:
            if t["pooling"] == "mean":
                w = mask[..., None].astype(np.float32)
                y = (y * w).sum(1) / np.maximum(w.sum(1), 1)
            else:
                y = y[:, 0]
        unit(y).astype("<f4").tofile(os.path.join(work, "text_out.f32"))

if __name__ == "__main__":
    main(*sys.argv[1:])
