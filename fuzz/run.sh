#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer on the STABLE toolchain, then fuzzes one.
#   fuzz/run.sh TARGET [SECONDS]
#   TARGET: check_source, csv, idx, safetensors, check_data, jit_vs_interp
# Corpus: fuzz/corpus/TARGET (seeded from tests/fuzz_corpus/TARGET); crashes land in
# fuzz/artifacts/TARGET/. See README.md for what each flag does.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: run.sh TARGET [SECONDS]}
seconds=${2:-600}
triple=$(rustc -vV | sed -n 's/^host: //p')

# What cargo-fuzz passes, minus the sanitizer (-Zsanitizer needs nightly; safe Rust
# needs no AddressSanitizer to find panics, overflows and aborts). `--target` keeps
# these flags off build scripts and proc macros (pest_derive), which must not be
# instrumented.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cdebug-assertions -Coverflow-checks"
cargo build --release --target "$triple" --bin "$target"

mkdir -p "corpus/$target" "artifacts/$target"
cp -n ../tests/fuzz_corpus/"$target"/* "corpus/$target/" 2>/dev/null || true
dict=()
if [ -f "dict/$target.dict" ]; then dict=(-dict="dict/$target.dict"); fi
exec "target/$triple/release/$target" "corpus/$target" \
  -artifact_prefix="artifacts/$target/" -max_total_time="$seconds" \
  -max_len=65536 -timeout=10 -rss_limit_mb=3072 -print_final_stats=1 "${dict[@]}"
