#!/usr/bin/env bash
# Fuzzes each target for a bounded time: `scripts/fuzz.sh [seconds] [target...]` (default 60 s
# each; targets frames, patch, config: see fuzz/fuzz_targets/). Needs cargo-fuzz (installed
# here if missing). cargo-fuzz wants nightly compiler flags: the nightly toolchain is used when
# installed, else the stable one with RUSTC_BOOTSTRAP=1 for this build only.
# Starts from the committed seeds (fuzz/seeds/<target>) and the local corpus it grows
# (fuzz/corpus/<target>, not committed); a crash is saved in fuzz/artifacts/<target>/ and
# ends the run with a non-zero status. `scripts/test.sh` only builds the targets and replays
# the seeds, on stable.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frames patch config)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  fuzz=(env RUSTC_BOOTSTRAP=1 cargo fuzz)
fi
for target in "${targets[@]}"; do
  # Config files are longer than frames: the shipped config.toml is ~9 KB.
  case $target in config) max_len=16384 ;; *) max_len=4096 ;; esac
  mkdir -p "fuzz/corpus/$target"
  echo "== $target: ${seconds} s"
  "${fuzz[@]}" run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -max_len="$max_len" -print_final_stats=1
done
