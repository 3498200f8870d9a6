#!/bin/sh
# End-to-end run of one example behind the real binary (see e2e.py; for
# llama-server, its own check.py with the openai client):
#   examples/e2e.sh llama-cpp|embeddings|llama-server [BIN]
# BIN defaults to target/release/fiddler_crab (built if missing).
# Writes examples/results-EXAMPLE.json (gitignored); exits 1 if a promise broke.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
example=${1:?usage: e2e.sh llama-cpp|embeddings|llama-server [BIN]}
[ -d "$here/$example" ] || { echo "no example $example" >&2; exit 2; }
bin=${2:-$here/../target/release/fiddler_crab}
if [ ! -x "$bin" ]; then
    (cd "$here/.." && cargo build --release)
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
"$here/$example/setup.sh"
if [ -f "$here/$example/check.py" ]; then
    cd "$here/$example" && exec .venv/bin/python check.py "$bin"
fi
exec python3 "$here/e2e.py" "$example" "$bin"
