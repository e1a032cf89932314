#!/usr/bin/env bash
# The README's main command: sample data -> index -> summary -> picture (extended by later parts).
set -euo pipefail
BIN=${1:-.venv/bin}
OUT=demo-out
rm -rf "$OUT"
mkdir -p "$OUT"
"$BIN/dicomml" --version
"$BIN/dicomml" sample-data "$OUT/dicom"
