#!/bin/sh
# Checks that every examples/*/fiddler.toml loads, without a venv or a model:
# `fiddler_crab --check` exits 2 with FILE:LINE on a bad config, 1 if a
# route's program cannot be found (here: the venv setup.sh has not made yet,
# which is fine), 0 if all is there.
#   examples/check-configs.sh [BIN]     (default: target/release/fiddler_crab)
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../target/release/fiddler_crab}
[ -x "$bin" ] || { echo "check-configs: no binary at $bin" >&2; exit 2; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")   # it runs from each example's folder
fail=0
for cfg in "$here"/*/fiddler.toml; do
    out=$(cd "$(dirname "$cfg")" && "$bin" --check -c fiddler.toml 2>&1)
    status=$?
    if [ $status -le 1 ]; then
        echo "ok   ${cfg#$here/}"
    else
        echo "FAIL ${cfg#$here/} (exit $status):"; fail=1
    fi
    echo "$out" | sed 's/^/     /'
done
exit $fail
