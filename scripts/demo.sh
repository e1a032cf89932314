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
# The SEG's annotation key and the key of the CT it references, as `dicomml list` prints them.
"$BIN/dicomml" list "$OUT/manifest"
read -r SEG_KEY CT_KEY < <("$BIN/dicomml" list "$OUT/manifest" annotations --where "modality = 'SEG'" \
    --columns annotation_key,referenced_series_key --no-header)
"$BIN/dicomml" preprocess "$OUT/manifest" --config ct_seg --cache "$OUT/cache" --workers 2
"$BIN/dicomml" cache info "$OUT/cache"
"$BIN/dicomml" show "$OUT/manifest" "$CT_KEY" --mask "$SEG_KEY" --window lung -o "$OUT/ct_lesion.png"
echo "Open $OUT/ct_lesion.png: axial, coronal and sagittal views of the sample CT with its SEG (lesion, liver)."
