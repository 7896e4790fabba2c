#!/usr/bin/env bash
# Regenerates the parser from grammar.js, fails if the committed src/ differs, runs
# the corpus and highlight tests, and parses every example and valid golden file.
# Needs the tree-sitter CLI (`cargo install --locked tree-sitter-cli`, no Node:
# grammar.js runs in the CLI's own JavaScript engine) and a C compiler.
set -euo pipefail
cd "$(dirname "$0")"
tree-sitter generate --js-runtime native
git diff --exit-code --stat -- src/ || {
    echo "src/ is out of date with grammar.js: commit the regenerated files" >&2
    exit 1
}
tree-sitter test
tree-sitter parse --quiet ../../examples/*.nn ../../tests/golden/valid_*.nn
