#!/bin/sh
# Fast load tests for CI: every scenario that has a promise to keep, small
# enough to finish well under a minute on two cores. No timing thresholds:
# loadtest.py fails only on counts (the server died, two programs at once,
# a connection the server does not account for, a probe or the normal request
# after the garbage not answered 200).
#
#     loadtest/ci.sh [PATH/TO/fiddler_crab]    (default target/release/fiddler_crab)
#
# Builds nothing: give it a release binary.
set -eu
bin=${1:-target/release/fiddler_crab}
lt="python3 $(dirname "$0")/loadtest.py"
[ -x "$bin" ] || { echo "ci.sh: no executable at $bin (build it first)" >&2; exit 2; }

run() {
    echo "== loadtest $*" | sed "s|$bin|BIN|"
    $lt "$@"
}

# A burst past the queue: every connection answered or dropped, and counted.
run flood --spawn --bin "$bin" --n 600 --path '/sleep?s=0.005' --timeout 40 -- --queue 50
# Slow senders (fewer than --max-reading, so none is evicted) and a read
# deadline of 2 s, while a probe a second must get 200.
run slowloris --spawn --bin "$bin" --slow 20 --duration 6 --interval 0.5 --timeout 30 -- --max-reading 64 --read-timeout 2
# The handler busy, the queue (4) full: excess connections closed, all counted.
run dropcost --spawn --bin "$bin" --n 1000 --timeout 30 -- --queue 4
# Seeded garbage, then a normal request that must get 200.
run garbage --spawn --bin "$bin" --cases 300 --seed 1 --timeout 30
echo "ci.sh: all promises kept"
