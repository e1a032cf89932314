#!/usr/bin/env bash
# The servers the tests start on 127.0.0.1: Orthanc with its DICOMweb plugin (Debian packages).
# Idempotent: does nothing when both are installed. The packages' own service is not started
# (a policy-rc.d denies it for the install), so only the tests' loopback instances ever run.
set -euo pipefail
PLUGIN=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
if command -v Orthanc >/dev/null 2>&1 && [ -e "$PLUGIN" ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
POLICY=/usr/sbin/policy-rc.d
ADDED=""
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod +x "$POLICY"
    ADDED=1
fi
cleanup() { if [ -n "$ADDED" ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends orthanc orthanc-dicomweb
