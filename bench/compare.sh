#!/bin/sh
# Builds nnc in release and compares it with the peers (see bench/compare.py --help).
# Example: bench/compare.sh --models mlp --threads 1 2 --runs 3
set -e
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 bench/compare.py "$@"
