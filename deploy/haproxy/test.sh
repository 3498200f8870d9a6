#!/usr/bin/env bash
# Three fiddler_crab instances behind HAProxy, on loopback, with haproxy.cfg
# beside this script: spread, one killed, one drained, an overload; for both
# queueing choices. Every check is a count (scenario.py says which).
#
#   bash deploy/haproxy/test.sh PATH/TO/fiddler_crab
#
# Needs bash, python3 (standard library) and haproxy (installed from
# Debian's packages if missing). Exits non-zero if a check fails. Starts
# everything in a fresh temporary directory and kills, by pid, everything it
# started, whatever happens. Takes about half a minute.
set -euo pipefail

bin=${1:?usage: test.sh PATH/TO/fiddler_crab}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
[ -x "$bin" ] || { echo "test.sh: $bin is not executable" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)

if ! command -v haproxy >/dev/null 2>&1; then
    echo "test.sh: installing haproxy" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq haproxy >/dev/null
fi
command -v python3 >/dev/null || { echo "test.sh: python3 is missing" >&2; exit 2; }

work=$(mktemp -d /tmp/fc-haproxy-test.XXXXXX)
scenario=

# Pids of the processes whose command line names $work: what this test
# started (instances, their programs, the scenario). Bash alone, no procps.
ours() {
    local f args
    for f in /proc/[0-9]*/cmdline; do
        { mapfile -d '' args <"$f"; } 2>/dev/null || continue
        [[ "${args[*]}" == *"$work"* ]] && echo "${f//[^0-9]/}"
    done
    return 0
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # The scenario kills what it started; this is the net under it: the
    # scenario, then every process whose command line names $work (the
    # instances, their programs, haproxy: all run from there), by pid.
    if [ -n "$scenario" ]; then kill -9 "$scenario" 2>/dev/null || true; fi
    local pid
    for pid in $(ours); do kill -9 "$pid" 2>/dev/null || true; done
    local end=$((SECONDS + 10))
    while [ -n "$(ours)" ] && [ $SECONDS -lt $end ]; do sleep 0.1; done
    local left
    left=$(ours)
    if [ -n "$left" ]; then
        echo "test.sh: processes left behind: $left" >&2
        rc=1
    fi
    if [ "$rc" -ne 0 ]; then
        echo "test.sh: failed; logs kept in $work" >&2
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT INT TERM

echo "haproxy: $(haproxy -v | head -1)"
echo "fiddler_crab: $("$bin" --version)"
# Run from a copy in $work, so that every process of this run names $work.
cp "$here/haproxy.cfg" "$work/haproxy.cfg"
haproxy -c -q -f "$work/haproxy.cfg"

python3 -u "$here/scenario.py" "$bin" "$work/haproxy.cfg" "$work" &
scenario=$!
status=0
wait "$scenario" || status=$?
scenario=
if [ -n "${FC_RESULTS:-}" ] && [ -f "$work/results.json" ]; then cp "$work/results.json" "$FC_RESULTS"; fi
exit "$status"
