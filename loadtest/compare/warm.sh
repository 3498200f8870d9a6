#!/usr/bin/env bash
# Small requests, warm (BENCHMARKS.md §5): a function that parses a small
# JSON body and answers a small JSON object, served by fiddler_crab (the
# function as a warm worker, handlers = 2, keep_alive) and by uvicorn
# --workers 2 (uvloop, httptools), side by side, round by round:
#   - loadtest.py warm, a new connection per request;
#   - loadtest.py warm --keep-alive, each client on one kept connection;
#   - aiohttp's default ClientSession (keep-alive), as Python callers use it;
#   - the same, the function dying at every 100th request (CRASH_EVERY=100).
#
#     bash loadtest/compare/warm.sh target/release/fiddler_crab
#
# Environment (defaults): ROUNDS (3), SECONDS_EACH (10), CLIENTS (16),
# PORT (24300). Installs uvicorn[standard] and aiohttp from PyPI into
# loadtest/compare/build/venv (gitignored). Loopback only; everything it
# starts is stopped on exit. Prints one line per run and the ratios.
set -u
die() { echo "warm.sh: $*" >&2; exit 2; }
[ $# -ge 1 ] || die "usage: bash loadtest/compare/warm.sh PATH/TO/fiddler_crab"
BIN=$(readlink -f "$1") && [ -x "$BIN" ] || die "no executable at $1 (build it first)"
HERE=$(cd "$(dirname "$0")" && pwd)
LT=$(dirname "$HERE")/loadtest.py
WORKER=$(dirname "$HERE")/programs/json_worker.py
VENV=$HERE/build/venv
ROUNDS=${ROUNDS:-3} SECS=${SECONDS_EACH:-10} CLIENTS=${CLIENTS:-16} P=${PORT:-24300}
BODY='{"text": "the quick brown fox jumps over the lazy dog"}'
TMP=$(mktemp -d /tmp/fc-warm.XXXXXX) || die mktemp
PID=""
stop() { [ -n "$PID" ] && { kill -TERM -- "-$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }; PID=""; }
trap 'stop; rm -rf "$TMP"' EXIT

if ! "$VENV/bin/python" -c 'import uvicorn, uvloop, httptools, aiohttp' 2>/dev/null; then
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q 'uvicorn[standard]' aiohttp \
        || die "cannot install uvicorn and aiohttp from PyPI"
fi

wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$P") 2>/dev/null && return 0
        sleep 0.05
    done
    die "nothing listens on $P"
}

# start NAME CRASH: the server NAME, its function dying at every CRASH-th request (0: never).
start() {
    case $1 in
    fiddler_crab)
        cat > "$TMP/fc.toml" <<TOML
listen = "127.0.0.1:$P"
admin = "off"
quiet = true
handlers = 2
keep_alive = 5
[[route]]
method = "POST"
path = "/fn"
command = ["python3", "$WORKER"]
worker = true
env = ["CRASH_EVERY=$2"]
TOML
        setsid "$BIN" -c "$TMP/fc.toml" 2>"$TMP/fc.log" & ;;
    uvicorn)
        CRASH_EVERY=$2 setsid "$VENV/bin/uvicorn" --app-dir "$HERE" json_app:app --workers 2 \
            --host 127.0.0.1 --port "$P" --no-access-log --log-level warning 2>"$TMP/uv.log" & ;;
    esac
    PID=$!
    wait_port
}

# run CLIENT: one measurement against the server on $P; prints requests/s p50 p99 errors.
run() {
    local out
    case $1 in
    new|keep)
        out=$(python3 "$LT" warm --port "$P" --pid "$PID" --clients "$CLIENTS" --duration "$SECS" \
                --body "$BODY" --max-programs 0 --json $([ "$1" = keep ] && echo --keep-alive)) || true
        python3 -c 'import json,sys; r=json.loads(sys.argv[1]); w=r["warm"]; l=[v for k,v in r.items() if k.startswith("latency")][0]
print(w["requests/s"], l["p50"], l["p99"], ",".join(f"{k}={v}" for k,v in r["outcomes"].items()))' "$out" ;;
    aiohttp|crash)
        out=$("$VENV/bin/python" "$HERE/aiohttp_client.py" "http://127.0.0.1:$P/fn" "$BODY" "$CLIENTS" "$SECS")
        python3 -c 'import json,sys; r=json.loads(sys.argv[1])
print(r["requests/s"], r["p50 ms"], r["p99 ms"], ",".join(f"{k}={v}" for k,v in r["outcomes"].items()))' "$out" ;;
    esac
}

printf '%-6s %-8s %-13s %10s %8s %8s  %s\n' round client server 'req/s' 'p50 ms' 'p99 ms' outcomes
declare -A RATE
for round in $(seq "$ROUNDS"); do
    for client in new keep aiohttp crash; do
        crash=0; [ "$client" = crash ] && crash=100
        for server in fiddler_crab uvicorn; do
            start "$server" "$crash"
            read -r rate p50 p99 outcomes < <(run "$client")
            stop
            RATE[$round,$client,$server]=$rate
            printf '%-6s %-8s %-13s %10s %8s %8s  %s\n' "$round" "$client" "$server" "$rate" "$p50" "$p99" "$outcomes"
        done
    done
done
echo
echo "fiddler_crab / uvicorn, requests/s, round by round:"
for client in new keep aiohttp crash; do
    line="  $client:"
    for round in $(seq "$ROUNDS"); do
        line+=" $(python3 -c "print(round(${RATE[$round,$client,fiddler_crab]:-0} / max(${RATE[$round,$client,uvicorn]:-0}, 1e-9), 2))")"
    done
    echo "$line"
done
