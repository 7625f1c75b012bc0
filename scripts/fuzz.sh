#!/usr/bin/env bash
# Runs the frame/command fuzzer for a bounded time (default 60 s): `scripts/fuzz.sh [seconds]`.
# Needs cargo-fuzz (installed here if missing). cargo-fuzz wants nightly compiler flags; on the
# stable toolchain RUSTC_BOOTSTRAP=1 enables them for this build only.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p fuzz/corpus/frames
# A few seeds so the fuzzer starts from real frames.
printf '%s' '{"id":1,"command":"mesh/publish-record-update","payload":{"recordId":"a","newValue":{"x":[1]},"options":{"strategy":"deepMerge"}}}' > fuzz/corpus/frames/publish
printf '%s' '{"id":2,"command":"mesh/subscribe-record","payload":{"recordId":"a","mode":"patch"}}' > fuzz/corpus/frames/subscribe
printf '%s' 'null' > fuzz/corpus/frames/null
RUSTC_BOOTSTRAP=1 cargo fuzz run frames fuzz/corpus/frames -- -max_total_time="$seconds" -max_len=4096
