#!/usr/bin/env bash
# The README's main command: sample data -> index -> summary -> preprocess into the Zarr cache
# on a local Dask cluster -> a picture of the CT with its SEG.
set -euo pipefail
BIN=${1:-.venv/bin}
OUT=demo-out
rm -rf "$OUT"
mkdir -p "$OUT"
"$BIN/dicomml" --version
"$BIN/dicomml" sample-data "$OUT/dicom"
"$BIN/dicomml" index "$OUT/dicom" -o "$OUT/manifest"
"$BIN/dicomml" info "$OUT/manifest"
# The CT's series key and the SEG's annotation key, asked of the manifest through DuckDB.
read -r CT_KEY SEG_KEY < <("$BIN/python" - "$OUT/manifest" <<'PY'
import sys
import dicomml
keys = dicomml.Manifest(sys.argv[1]).sql(
    "SELECT s.series_key, a.annotation_key FROM series s JOIN annotations a"
    " ON a.referenced_series_key = s.series_key WHERE s.modality = 'CT'"
)
print(*keys.iloc[0])
PY
)
"$BIN/dicomml" preprocess "$OUT/manifest" --config ct_seg --cache "$OUT/cache" --workers 2
"$BIN/dicomml" cache info "$OUT/cache"
"$BIN/dicomml" show "$OUT/manifest" "$CT_KEY" --mask "$SEG_KEY" --window lung -o "$OUT/ct_lesion.png"
echo "Open $OUT/ct_lesion.png: axial, coronal and sagittal views of the sample CT with its SEG (lesion, liver)."
