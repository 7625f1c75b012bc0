#!/usr/bin/env bash
# The long soak (default 10 minutes, loopback only): waves of 2,000 connections that connect,
# subscribe, write and disconnect; then checks record actors, descriptors and RSS are back to
# baseline. `scripts/soak.sh [seconds]`. The normal test run has a 40-second variant.
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK_SECONDS=${1:-600} cargo test --release --test soak -- --nocapture
