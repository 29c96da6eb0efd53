#!/usr/bin/env python3
"""COPE-style head training on cached frozen-tower tokens (called by `livesku train`).

    cope_head.py --data DIR [--epochs 40] [--seed 0] ...

`livesku train` runs the frozen visual tower once per image (and per synthetic view), caches its tokens and
writes DIR/features.npy (float16 [N, 1+P, D], class token first) and DIR/meta.json:

    {"products": ["id", ...],                  # gallery order
     "label":  [product index per row],
     "domain": ["page" | "synthetic" | "live" per row],
     "role":   ["train" | "holdout" | "val" per row]}

This script learns a head on those tokens so that live-domain views of a product (role "train" rows of
domain "live" and "synthetic") land next to the product's page images (domain "page"), with the symmetric
contrastive loss of COPE (Bai et al., ICCV 2023): live -> page over all products, page -> live over the
batch. It writes DIR/head.onnx (input "tokens" [B, 1+P, D] -> output "embedding" [B, D], unit length) and
DIR/report.json (every hyper-parameter, loss per epoch, R@1/R@5 of the zero-shot pooling and of the head on
the "holdout"/"val" rows against the page gallery, the tracker thresholds calibrated on those rows for the
head's score scale (`calibrate`), and the check of the exported graph against JAX).

The head is residual on the zero-shot embedding z (sum of unit CLS and unit patch mean, what the base model
uses), so an untrained head is the base model and training only adds what the examples support:
    e = norm(z + W [norm(cls); norm(mean)])
(An attention-pooling head over the patch tokens and an MLP were tried on Grocery and did worse on val than
this linear head: 0.65 and 0.59 against 0.71; BENCHMARKS.md.) A view's softmax covers only the products that
have training views of its own domain (live or synthetic): a real photo must not be taught that the page of a
product without real examples is never the answer (on Grocery's unseen split that cost 0.28 -> 0.10). Training maths: JAX (autodiff, jit) and optax (AdamW); export:
onnx.helper; check: onnxruntime.
Deterministic for a seed on one machine (fixed batch order, PRNG keys from the seed, CPU XLA).
"""
import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


def parse_args(argv):
    ap = argparse.ArgumentParser(description="COPE-style head on cached tower tokens")
    ap.add_argument("--data", required=True, help="directory with features.npy and meta.json; outputs go there")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--temperature", type=float, default=0.07)
    ap.add_argument("--synthetic-weight", type=float, default=1.0, help="loss weight of synthetic views against live examples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calibrate-precision", type=float, default=0.95,
                    help="precision the tracker's strong hits must reach on the held-out rows")
    ap.add_argument("--calibrate-max-absent", type=float, default=0.1,
                    help="most of those rows accepted when their product is left out of the catalogue")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap.parse_args(argv)


# ---- model -------------------------------------------------------------------------------------------

def l2n(x):
    return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)


def init_params(key, dim):
    return {"W": jax.random.normal(key, (2 * dim, dim), jnp.float32) * 0.01}


def forward(p, x):
    """x [B, 2, D] (CLS, patch mean) -> unit [B, D]."""
    c, m = l2n(x[:, 0]), l2n(x[:, 1])
    return l2n(l2n(c + m) + jnp.concatenate([c, m], axis=-1) @ p["W"])


def zero_shot(x):
    return l2n(l2n(x[:, 0]) + l2n(x[:, 1]))


# ---- data --------------------------------------------------------------------------------------------

class Data:
    def __init__(self, d):
        meta = json.load(open(os.path.join(d, "meta.json")))
        self.tokens = np.load(os.path.join(d, "features.npy"), mmap_mode="r")
        # The head reads the CLS token and the patch mean only: pool once, in chunks (memory stays flat).
        self.x = np.concatenate([
            np.stack([c[:, 0], c[:, 1:].mean(axis=1)], axis=1)
            for c in (np.asarray(self.tokens[i:i + 512], np.float32) for i in range(0, len(self.tokens), 512))
        ]) if len(self.tokens) else np.zeros((0, 2, 1), np.float32)
        self.products = meta["products"]
        self.label = np.asarray(meta["label"], np.int32)
        self.domain = np.asarray(meta["domain"])
        self.role = np.asarray(meta["role"])
        n = len(self.label)
        if self.x.shape[0] != n or len(self.domain) != n or len(self.role) != n:
            sys.exit(f"cope_head.py: meta.json describes {n} rows, features.npy has {self.x.shape[0]}")
        self.page = np.where(self.domain == "page")[0]
        self.query = np.where((self.domain != "page") & (self.role == "train"))[0]
        self.eval = np.where(self.role != "train")[0]
        if len(self.page) == 0 or len(self.query) == 0:
            sys.exit("cope_head.py: nothing to train on (no page rows or no live/synthetic training rows)")


    def rows(self, idx):
        return jnp.asarray(self.x[np.sort(idx)]), np.sort(idx)


def gallery(p, xs_page, page_label, n_products):
    """Mean of the unit page vectors of each product, renormalised: what `gallery build` stores."""
    e = forward(p, xs_page)
    g = jax.ops.segment_sum(e, page_label, num_segments=n_products)
    return l2n(g)


def recall(q, g, y, ks=(1, 5)):
    if len(y) == 0:
        return {f"r{k}": None for k in ks}
    s = np.asarray(q) @ np.asarray(g).T
    order = np.argsort(-s, axis=1, kind="stable")
    rank = np.argmax(order == np.asarray(y)[:, None], axis=1)
    return {f"r{k}": round(float(np.mean(rank < k)), 4) for k in ks}


def embed(fn, data, idx, chunk=256):
    out = []
    for i in range(0, len(idx), chunk):
        x, _ = data.rows(idx[i:i + chunk])
        out.append(np.asarray(fn(x)))
    return np.concatenate(out) if out else np.zeros((0, data.x.shape[2]), np.float32)


def calibrate(q, g, y, precision, max_absent):
    """Tracker thresholds on this head's score scale (cosines of a trained head sit far lower than the base
    model's, so the base model's thresholds miss most products), chosen on held-out live rows `q` of
    products `y` against the page gallery `g`.

    A keyframe is a strong hit when its top-1 score >= enter and its lead over the runner-up >= margin.
    Of the (enter, margin) pairs whose strong hits are right at least `precision` of the time, and that
    accept at most `max_absent` of the same rows asked as if their product were missing from the catalogue
    (its page left out: the open-set case), the one that accepts the most right hits wins. The exit
    threshold ("still seen") is the 10th percentile of right top-1 scores. None when no pair qualifies."""
    s = np.asarray(q) @ np.asarray(g).T
    r = np.arange(len(y))
    order = np.argsort(-s, axis=1, kind="stable")
    s1, s2 = s[r, order[:, 0]], s[r, order[:, 1]]
    right = order[:, 0] == y
    absent = s.copy()
    absent[r, y] = -np.inf
    a_order = np.argsort(-absent, axis=1, kind="stable")
    a1, a2 = absent[r, a_order[:, 0]], absent[r, a_order[:, 1]]
    best = None
    for enter in np.round(np.arange(0.20, 0.951, 0.01), 2):
        for margin in np.round(np.arange(0.0, 0.201, 0.01), 2):
            hit = (s1 >= enter) & (s1 - s2 >= margin)
            if not hit.any():
                continue
            prec = float(right[hit].mean())
            open_set = float(((a1 >= enter) & (a1 - a2 >= margin)).mean())
            accepted = float((hit & right).mean())
            if prec >= precision and open_set <= max_absent and (best is None or accepted > best["right_accepted"]):
                best = {"enter_threshold": float(enter), "min_margin": float(margin), "precision": round(prec, 4),
                        "right_accepted": round(accepted, 4), "absent_accepted": round(open_set, 4)}
    if best is None or not right.any():
        return None
    best["exit_threshold"] = round(min(best["enter_threshold"], float(np.percentile(s1[right], 10))), 2)
    best.update({"n": int(len(y)), "target_precision": precision, "max_absent": max_absent})
    return best


# ---- training ----------------------------------------------------------------------------------------

def train(a, data):
    dim = data.x.shape[2]
    n_products = len(data.products)
    k0 = jax.random.PRNGKey(a.seed)
    params = init_params(k0, dim)
    steps_per_epoch = max(1, int(np.ceil(len(data.query) / a.batch)))
    sched = optax.cosine_decay_schedule(a.lr, steps_per_epoch * a.epochs)
    opt = optax.adamw(sched, weight_decay=a.weight_decay)
    state = opt.init(params)
    xs_page, page_rows = data.rows(data.page)
    page_label = jnp.asarray(data.label[page_rows])
    weight_of = np.where(data.domain == "synthetic", a.synthetic_weight, 1.0).astype(np.float32)
    # A view's softmax covers the products that have weighted training views of its own domain: a real
    # photo is never taught that the page of a product without real examples is a wrong answer.
    synthetic = (data.domain == "synthetic").astype(np.int32)
    in_softmax = np.zeros((2, n_products), bool)
    for d in (0, 1):
        rows = data.query[(synthetic[data.query] == d) & (weight_of[data.query] > 0)]
        in_softmax[d, data.label[rows]] = True
    in_softmax = jnp.asarray(in_softmax)

    def loss_fn(p, x, y, w, d):
        q = forward(p, x)
        g = gallery(p, xs_page, page_label, n_products)
        logits = jnp.where(in_softmax[d], q @ g.T / a.temperature, -1e9)
        # live -> page: each view picks its product among all of them
        l_qp = jnp.sum(w * optax.softmax_cross_entropy_with_integer_labels(logits, y)) / jnp.sum(w)
        # page -> live: each product in the batch picks its views among the batch (several positives)
        pos = (y[None, :] == jnp.arange(n_products)[:, None]).astype(jnp.float32) * w[None, :]
        present = jnp.sum(pos, axis=1) > 0
        logp = jax.nn.log_softmax(logits.T, axis=-1)
        l_pq = -jnp.sum(logp * pos, axis=1) / jnp.maximum(jnp.sum(pos, axis=1), 1e-9)
        l_pq = jnp.sum(jnp.where(present, l_pq, 0.0)) / jnp.maximum(jnp.sum(present), 1)
        return 0.5 * (l_qp + l_pq)

    @jax.jit
    def step(p, s, x, y, w, d):
        loss, grads = jax.value_and_grad(loss_fn)(p, x, y, w, d)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    rng = np.random.default_rng(a.seed)
    history = []
    t0 = time.time()
    for epoch in range(a.epochs):
        order = rng.permutation(data.query)
        losses = []
        for i in range(steps_per_epoch):
            b = order[i * a.batch:(i + 1) * a.batch]
            if len(b) < 2:
                continue
            x, rows = data.rows(b)
            params, state, loss = step(params, state, x, jnp.asarray(data.label[rows]), jnp.asarray(weight_of[rows]),
                                       jnp.asarray(synthetic[rows]))
            losses.append(float(loss))
        history.append({"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 5), "seconds": round(time.time() - t0, 1)})
        if not a.quiet:
            done = int(30 * (epoch + 1) / a.epochs)
            print(f"\r[train] [{'=' * done}{' ' * (30 - done)}] epoch {epoch + 1}/{a.epochs} loss {history[-1]['loss']:.4f}",
                  end="" if epoch + 1 < a.epochs else "\n", file=sys.stderr, flush=True)
    return params, history


# ---- export ------------------------------------------------------------------------------------------

def export_onnx(p, dim, path):
    """`forward` on the tower's tokens (CLS first) as an ONNX graph, opset 17."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name, value, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def node(op, ins, out, **attrs):
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    axes = const("last_axis", [-1], np.int64)
    eps = const("eps", 1e-12)

    def l2norm(x, name):
        ss = node("ReduceSum", [node("Mul", [x, x], f"{name}_sq"), axes], f"{name}_ss", keepdims=1)
        return node("Div", [x, node("Sqrt", [node("Add", [ss, eps], f"{name}_sse")], f"{name}_norm")], name)

    cls = node("Gather", ["tokens", const("first", 0, np.int64)], "cls", axis=1)
    patches = node("Slice", ["tokens", const("from", [1], np.int64), const("to", [2**62], np.int64),
                             const("token_axis", [1], np.int64)], "patches")
    mean = node("ReduceMean", [patches], "mean", axes=[1], keepdims=0)  # opset 17: axes is an attribute
    c, m = l2norm(cls, "c"), l2norm(mean, "m")
    delta = node("MatMul", [node("Concat", [c, m], "cm_concat", axis=-1), const("W", p["W"])], "delta")
    base = l2norm(node("Add", [c, m], "cm_sum"), "base")
    l2norm(node("Add", [base, delta], "pre"), "embedding")
    graph = helper.make_graph(
        nodes, "livesku_cope_head",
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", "tokens", dim])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="livesku-train")
    model.ir_version = 8
    onnx.checker.check_model(model)
    blob = model.SerializeToString(deterministic=True)
    with open(path, "wb") as fh:
        fh.write(blob)
    return hashlib.sha256(blob).hexdigest()


def check_export(path, params, data, idx):
    """Max |ONNX - JAX| on real token rows: the exported graph must compute what was trained."""
    import onnxruntime as ort
    idx = np.sort(idx[:16])
    tokens = np.asarray(data.tokens[idx], np.float32)
    want = np.asarray(forward(params, jnp.asarray(data.x[idx])))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(["embedding"], {"tokens": tokens})[0]
    return float(np.max(np.abs(got - want)))


def main(argv=None):
    a = parse_args(argv if argv is not None else sys.argv[1:])
    data = Data(a.data)
    dim = data.x.shape[2]
    started = time.time()
    params, history = train(a, data)
    head_path = os.path.join(a.data, "head.onnx")
    sha = export_onnx(params, dim, head_path)
    diff = check_export(head_path, params, data, data.page)
    if diff > 1e-4:
        sys.exit(f"cope_head.py: exported head differs from the trained one by {diff:.2e} (limit 1e-4)")

    # Recall on the held-out rows, against the gallery of every product's page images.
    n_products = len(data.products)
    page_label = data.label[np.sort(data.page)]
    evals, calibration = {}, None
    for name, fn in (("zero_shot", zero_shot), ("trained", jax.jit(lambda x: forward(params, x)))):
        g = jax.ops.segment_sum(jnp.asarray(embed(fn, data, data.page)), jnp.asarray(page_label), num_segments=n_products)
        g = l2n(g)
        res = {}
        for role in ("holdout", "val"):
            rows = np.sort(data.eval[data.role[data.eval] == role])
            if len(rows):
                res[role] = {"n": int(len(rows)), **recall(embed(fn, data, rows), g, data.label[rows])}
        evals[name] = res
        if name == "trained":
            role = "val" if np.any(data.role[data.eval] == "val") else "holdout"
            rows = np.sort(data.eval[data.role[data.eval] == role])
            calibration = (calibrate(embed(fn, data, rows), g, data.label[rows], a.calibrate_precision, a.calibrate_max_absent)
                           if len(rows) else None)
            if calibration:
                calibration["rows"] = role
    report = {
        "recipe": "models/train/cope_head.py",
        "params": {k: v for k, v in vars(a).items() if k not in ("data", "quiet")},
        "rows": {"page": int(len(data.page)), "train_views": int(len(data.query)),
                 "synthetic_train_views": int(np.sum(data.domain[data.query] == "synthetic")),
                 "eval": int(len(data.eval))},
        "products": n_products,
        "history": history,
        "eval": evals,
        "calibration": calibration,
        "head_sha256": sha,
        "export_max_abs_diff": diff,
        "seconds": round(time.time() - started, 1),
        "versions": {"jax": jax.__version__, "optax": optax.__version__, "numpy": np.__version__},
    }
    with open(os.path.join(a.data, "report.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    print(json.dumps({"head_sha256": sha, "eval": evals}))


if __name__ == "__main__":
    main()
