#!/bin/sh
# Checks that every examples/*/fiddler.toml loads, without a venv or a model:
# the server reads a config at start and exits 2 with FILE:LINE on a bad one;
# a route's command need not exist until a request runs it. So: start the
# binary on port 0 with the admin port off, wait for "listening on", stop it.
#   examples/check-configs.sh [BIN]     (default: target/release/fiddler_crab)
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../target/release/fiddler_crab}
[ -x "$bin" ] || { echo "check-configs: no binary at $bin" >&2; exit 2; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")   # it runs from each example's folder
fail=0
for cfg in "$here"/*/fiddler.toml; do
    dir=$(dirname "$cfg")
    log=$(mktemp)
    (cd "$dir" && exec "$bin" -c fiddler.toml --listen 127.0.0.1:0 --admin off) >"$log" 2>&1 &
    pid=$!
    status=timeout
    i=0
    while [ $i -lt 1200 ]; do          # 60 s at most: a slow machine is slower, not wrong
        if grep -q 'listening on' "$log"; then status=ok; break; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid"; status="exit $?"; break
        fi
        sleep 0.05; i=$((i + 1))
    done
    if [ "$status" = ok ] || [ "$status" = timeout ]; then
        kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    fi
    if [ "$status" = ok ]; then
        echo "ok   ${cfg#$here/}"
    else
        echo "FAIL ${cfg#$here/} ($status):"; sed 's/^/     /' "$log"; fail=1
    fi
    rm -f "$log"
done
exit $fail
