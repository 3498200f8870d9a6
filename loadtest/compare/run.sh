#!/usr/bin/env bash
# The benchmarks of BENCHMARKS.md, side by side in one run: fiddler_crab, the
# physical limits (spawnloop.c, acceptloop.c), and the servers a user would
# pick instead (webhook, busybox httpd, HAProxy in front of lighttpd +
# mod_cgi, python3 -m http.server --cgi). Prints the tables.
#
#     bash loadtest/compare/run.sh target/release/fiddler_crab
#
# Environment (defaults): ROUNDS (3) repeats of every measurement but the
# sequential ones, SEQ_ROUNDS (5) of those, SEQ_SECONDS (3) per sequential run,
# DROP_N (20000) excess connections per dropcost run, SLOW_SECONDS (20) per
# slowloris run, PORT_BASE (24100) of the loopback ports used, QUIET_BUDGET
# (300) most seconds spent waiting for a quiet machine, SKIP_INSTALL=1 to
# install nothing. About 17 minutes on two cores.
#
# The machine may be shared: before each measurement it waits (30 s at most,
# QUIET_BUDGET s in all) until other work leaves the CPUs idle, and every
# ratio is taken round by round, target and reference minutes apart at most.
#
# Installs what it lacks (apt-get: webhook busybox haproxy lighttpd gcc; a
# peer that cannot be had is left out). Builds the two C references into
# loadtest/compare/build/ (gitignored), where the raw results (JSON lines)
# and the tables are kept too. Loopback only. Every server runs with the same
# plain PATH, in a process group and, when the cgroup v2 hierarchy is
# writable, a cgroup of its own (CPU of every child counted, in µs; a sure
# kill at the end). Everything it starts is stopped on exit, whatever happens.
set -u

die() { echo "run.sh: $*" >&2; exit 2; }
[ $# -ge 1 ] || die "usage: bash loadtest/compare/run.sh PATH/TO/fiddler_crab"
BIN=$(readlink -f "$1") && [ -x "$BIN" ] && [ -f "$BIN" ] || die "no executable at $1 (build it first)"
HERE=$(cd "$(dirname "$0")" && pwd)
LT_DIR=$(dirname "$HERE")
LT=$LT_DIR/loadtest.py
BUILD=$HERE/build
ROUNDS=${ROUNDS:-3}
SEQ_ROUNDS=${SEQ_ROUNDS:-5}
SEQ_SECONDS=${SEQ_SECONDS:-3}
QUIET_BUDGET=${QUIET_BUDGET:-300}
DROP_N=${DROP_N:-20000}
SLOW_SECONDS=${SLOW_SECONDS:-20}
P=${PORT_BASE:-24100}
SPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin   # every server's PATH
PY=$(python3 -c 'import sys; print(sys.executable)') || die "no python3"
STAMP=$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$BUILD" || die "cannot create $BUILD"
RESULTS=$BUILD/results-$STAMP.jsonl
TABLE=$BUILD/table-$STAMP.md
TMP=$(mktemp -d /tmp/fc-compare.XXXXXX) || die "mktemp"

# ------------------------------------------------------------ cleanup

declare -A PIDS=() CGS=()
declare -A BG=()   # measurements running (each leads a session of its own)
CG_ROOT=""

# stop NAME: SIGTERM to its process group, SIGKILL after 3 s, then its cgroup.
stop() {
    local name=$1 pid=${PIDS[$1]:-} cg=${CGS[$1]:-} i
    if [ -n "$pid" ]; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
        for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    if [ -n "$cg" ] && [ -d "$cg" ] && [ "$cg" != "${CG_KEEP:-}" ]; then
        echo 1 > "$cg/cgroup.kill" 2>/dev/null
        for i in $(seq 50); do [ -s "$cg/cgroup.procs" ] || break; sleep 0.1; done
        rmdir "$cg" 2>/dev/null || echo "run.sh: could not remove $cg" >&2
    fi
    unset "PIDS[$name]" "CGS[$name]"
}

cleanup() {
    local name pid
    trap - EXIT INT TERM
    for pid in "${!BG[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
    for name in "${!PIDS[@]}"; do stop "$name"; done
    for pid in "${!BG[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    [ -n "$CG_ROOT" ] && rmdir "$CG_ROOT" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------ install, build

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    need=()
    for p in webhook busybox haproxy lighttpd gcc; do
        dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
    done
    if [ ${#need[@]} -gt 0 ]; then
        echo "run.sh: installing ${need[*]}" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >"$TMP/apt.log" 2>&1 \
            || { tail -5 "$TMP/apt.log" >&2; echo "run.sh: install failed: peers missing are left out" >&2; }
    fi
fi
for c in spawnloop acceptloop seqclient; do
    if [ ! -x "$BUILD/$c" ] || [ "$HERE/$c.c" -nt "$BUILD/$c" ]; then
        cc -O2 -std=c99 -Wall -Wextra -o "$BUILD/$c" "$HERE/$c.c" || die "cannot build $c.c"
    fi
done
have() { command -v "$1" >/dev/null 2>&1; }

# ------------------------------------------------------------ servers

for d in /sys/fs/cgroup/unified /sys/fs/cgroup; do
    if [ -f "$d/cgroup.controllers" ] && mkdir "$d/fc-compare.$$" 2>/dev/null; then
        CG_ROOT=$d/fc-compare.$$
        break
    fi
done
[ -n "$CG_ROOT" ] || echo "run.sh: no writable cgroup v2: CPU from /proc only (busybox's children unseen)" >&2

# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s at most).
wait_port() {
    local i
    for i in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# [CG=GROUP] start NAME PORT COMMAND...: COMMAND with PATH=$SPATH, leading its
# own process group, in cgroup GROUP (default NAME) if there are cgroups;
# waits until PORT accepts.
start() {
    local name=$1 port=$2 cg=""
    shift 2
    if [ -n "$CG_ROOT" ]; then
        cg=$CG_ROOT/${CG:-$name}
        mkdir -p "$cg"
    fi
    echo "- $name: \`$(printf '%q ' "$@")\`" >> "$TMP/servers.md"
    (
        [ -z "$cg" ] || echo "$BASHPID" > "$cg/cgroup.procs"
        exec setsid env PATH="$SPATH" "$@"
    ) >"$TMP/$name.log" 2>&1 </dev/null &
    PIDS[$name]=$!
    CGS[$name]=$cg
    if ! wait_port "$port"; then
        echo "run.sh: $name did not start on port $port:" >&2
        tail -5 "$TMP/$name.log" >&2
        stop "$name"
        return 1
    fi
}

# busy: % of all CPUs busy over the next 0.5 s (from /proc/stat).
busy() {
    local a b
    a=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    sleep 0.5
    b=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    echo "$a $b" | awk '{d = ($3 - $1) + ($4 - $2); print (d > 0 ? int(100 * ($3 - $1) / d) : 0)}'
}
# quiet: waits until the CPUs are less than 8 % busy (others' work: ours is
# idle between measurements), 30 s at most, QUIET_BUDGET s over the run.
QUIET_WAITED=0
quiet() {
    local b i
    for i in $(seq 60); do
        b=$(busy)
        [ "$b" -ge 8 ] || return 0
        [ "$QUIET_WAITED" -lt $((QUIET_BUDGET * 2)) ] && [ "$i" -lt 60 ] || break
        QUIET_WAITED=$((QUIET_WAITED + 1))
    done
    echo "  (the machine is $b % busy with other work: measuring anyway)" >&2
}

# rec_bg SECTION TARGET ROUND COMMAND...: one measurement, appended to
# $RESULTS, in the background ($LAST is its pid); rec: the same, waited for
# after a quiet moment.
rec_bg() {
    local s=$1 t=$2 r=$3
    shift 3
    setsid "$PY" "$HERE/report.py" record "$RESULTS" "$s" "$t" "$r" -- "$@" &
    LAST=$!
    BG[$LAST]=1
}
wait_bg() {   # wait_bg PID...
    local pid
    for pid in "$@"; do wait "$pid"; unset "BG[$pid]"; done
}
rec() { quiet; rec_bg "$@"; wait_bg "$LAST"; }

# lt SERVER-NAME PORT SCENARIO [ARGS...]: sets CMD to loadtest.py against a
# running server, with its pid and, if any, its cgroup.
lt() {
    local name=$1 port=$2 scenario=$3
    shift 3
    CMD=("$PY" "$LT" "$scenario" --port "$port" --pid "${PIDS[$name]:-0}")
    [ -z "${CGS[$name]:-}" ] || CMD+=(--cgroup "${CGS[$name]}")
    CMD+=(--json "$@")
}

FC_ROUTES=(--route 'POST /echo=cat' --route "POST /sleep=$LT_DIR/programs/sleeper.sh {query.s}"
           --cgi "POST /cgi=$HERE/www/cgi-bin/echo.sh")
fill() {   # fill TEMPLATE OUT: the @...@ fields of a config
    sed -e "s|@COMPARE@|$HERE|g; s|@TMP@|$TMP|g; s|@PORT@|$2|g; s|@LPORT@|$3|g; s|@MAXQUEUE@|3|g" "$1" > "$4"
}
fill "$HERE/webhook/hooks.json" - - "$TMP/hooks.json"
# lighttpd on P+32, HAProxy on P+33 in front, both in HAProxy's cgroup (the
# CPU of the whole stack, CGI programs included).
start_lighttpd_haproxy() {
    fill "$HERE/lighttpd.conf" $((P + 32)) - "$TMP/lighttpd.conf"
    fill "$HERE/haproxy.cfg" $((P + 33)) $((P + 32)) "$TMP/haproxy.cfg"
    CG=haproxy start lighttpd $((P + 32)) lighttpd -D -f "$TMP/lighttpd.conf" &&
        start haproxy $((P + 33)) haproxy -db -f "$TMP/haproxy.cfg"
}
stop_lighttpd_haproxy() {   # lighttpd first: the cgroup goes with HAProxy
    CG_KEEP=${CGS[lighttpd]:-} stop lighttpd
    stop haproxy
}

# ------------------------------------------------------------ the machine

{
    echo "## Run $STAMP"
    echo
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), "\
"$(free -m | awk '/^Mem:/ {print $2 " MB memory"}'), kernel $(uname -r)"
    echo "- fiddler_crab: $("$BIN" --version 2>&1 | head -1), $(stat -c %s "$BIN") bytes"
    echo "- peers: $(have webhook && webhook -version 2>&1 | head -1); $(have busybox && busybox 2>&1 | head -1 | cut -d' ' -f1-2);"\
" $(have haproxy && haproxy -v 2>&1 | head -1 | cut -d' ' -f1-3); $(have lighttpd && lighttpd -v 2>&1 | head -1);"\
" Python $("$PY" -c 'import platform; print(platform.python_version())')"
    echo "- rounds: $ROUNDS ($SEQ_ROUNDS of $SEQ_SECONDS s for sequential requests); load average before:"\
" $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
} > "$TMP/head.md"
cat "$TMP/head.md" >&2

# ------------------------------------------------------------ 1 and 5: sequential, idle

echo "== sequential requests and idle servers" >&2
start fiddler $((P + 1)) "$BIN" --listen 127.0.0.1:$((P + 1)) --admin 127.0.0.1:$((P + 2)) --quiet "${FC_ROUTES[@]}"
start acceptloop $((P + 20)) "$BUILD/acceptloop" $((P + 20))
! have webhook || start webhook $((P + 30)) webhook -hooks "$TMP/hooks.json" -ip 127.0.0.1 -port $((P + 30)) -nopanic
! have busybox || start busybox $((P + 31)) busybox httpd -f -p 127.0.0.1:$((P + 31)) -h "$HERE/www"
! { have lighttpd && have haproxy; } || start_lighttpd_haproxy
start python $((P + 34)) "$PY" -m http.server --cgi --bind 127.0.0.1 --directory "$HERE/www" $((P + 34))
declare -A PORT=([fiddler]=$((P + 1)) [acceptloop]=$((P + 20)) [webhook]=$((P + 30)) [busybox]=$((P + 31))
                 [lighttpd]=$((P + 32)) [haproxy]=$((P + 33)) [python]=$((P + 34)))

seq_args=(--duration "$SEQ_SECONDS" --sample-ms 100)
# seq_run TARGET SERVER PORT PATH [STATUS]: one sequential run with
# loadtest.py seq, one with seqclient.c, if SERVER runs.
seq_run() {
    local t=$1 name=$2 port=$3 path=$4 status=${5:-200} peer=()
    [ -n "${PIDS[$name]:-}" ] || return 0
    [ "$name" = fiddler ] || peer=(--max-programs 0)
    lt "$name" "$port" seq --path "$path" --expect "$status" "${seq_args[@]}" "${peer[@]}"
    rec seq "$t" "$r" "${CMD[@]}"
    local echo=(-e); [ "$status" = 200 ] || echo=(-s "$status")
    rec seq "$t+c" "$r" "$BUILD/seqclient" -t "$SEQ_SECONDS" "${echo[@]}" "$port" "$path"
}
for r in $(seq "$ROUNDS"); do
    quiet
    idle=()
    for name in fiddler acceptloop webhook busybox haproxy lighttpd python; do
        [ -n "${PIDS[$name]:-}" ] || continue
        lt "$name" "${PORT[$name]}" idle --duration 10 --sample-ms 1000 --max-programs 0
        rec_bg idle "idle-$name" "$r" "${CMD[@]}"
        idle+=("$LAST")
    done
    wait_bg "${idle[@]}"
done
for r in $(seq "$SEQ_ROUNDS"); do
    # The reference right before the target it is the reference of.
    rec seq spawnloop-fork "$r" env PATH="$SPATH" "$BUILD/spawnloop" -t "$SEQ_SECONDS" -m fork cat
    seq_run fiddler-cat fiddler $((P + 1)) /echo
    rec seq spawnloop-spawn "$r" env PATH="$SPATH" "$BUILD/spawnloop" -t "$SEQ_SECONDS" -m spawn cat
    seq_run fiddler-404 fiddler $((P + 1)) /nope 404
    rec seq spawnloop-cgi "$r" env PATH="$SPATH" "$BUILD/spawnloop" -t "$SEQ_SECONDS" -m fork "$HERE/www/cgi-bin/echo.sh"
    seq_run fiddler-cgi fiddler $((P + 1)) /cgi
    seq_run webhook-printf webhook $((P + 30)) /hooks/echo
    seq_run webhook-cat webhook $((P + 30)) /hooks/echo-cat
    seq_run busybox-cgi busybox $((P + 31)) /cgi-bin/echo.sh
    seq_run haproxy-cgi haproxy $((P + 33)) /cgi-bin/echo.sh
    seq_run python-cgi python $((P + 34)) /cgi-bin/echo-length.sh
done
stop_lighttpd_haproxy
for name in "${!PIDS[@]}"; do stop "$name"; done

# ------------------------------------------------------------ 2: CPU per excess connection

echo "== CPU per excess connection" >&2
# drop_run TARGET SERVER PORT [ARGS...]: one dropcost run, if SERVER runs.
drop_run() {
    local t=$1 name=$2 port=$3
    shift 3
    [ -n "${PIDS[$name]:-}" ] || return 0
    local peer=(); [ "$name" = fiddler ] || peer=(--max-programs 0)
    lt "$name" "$port" dropcost --n "$DROP_N" --sample-ms 100 --timeout 300 "${peer[@]}" "$@"
    rec dropcost "$t" "$r" "${CMD[@]}"
}
for r in $(seq "$ROUNDS"); do
    start acceptloop $((P + 20)) "$BUILD/acceptloop" $((P + 20)) && drop_run acceptloop acceptloop $((P + 20))
    stop acceptloop
    for full in close 503; do
        t=fiddler-q4; [ "$full" = close ] || t=fiddler-q4-503
        start fiddler $((P + 3)) "$BIN" --listen 127.0.0.1:$((P + 3)) --admin 127.0.0.1:$((P + 4)) --quiet \
            --queue 4 --on-full "$full" "${FC_ROUTES[@]}" &&
            drop_run "$t" fiddler $((P + 3)) --admin-port $((P + 4)) --hold-path '/sleep?s=60'
        stop fiddler
    done
    if have lighttpd && have haproxy && start_lighttpd_haproxy; then
        drop_run haproxy-full haproxy $((P + 33)) --hold 4 --hold-path '/cgi-bin/sleep.sh?s=60' --path /cgi-bin/echo.sh
    fi
    stop_lighttpd_haproxy
    if have webhook && start webhook $((P + 30)) webhook -hooks "$TMP/hooks.json" -ip 127.0.0.1 -port $((P + 30)) \
            -nopanic; then
        drop_run webhook-404 webhook $((P + 30)) --method GET --path /nope
    fi
    stop webhook
    if have busybox && start busybox $((P + 31)) busybox httpd -f -p 127.0.0.1:$((P + 31)) -h "$HERE/www"; then
        drop_run busybox-404 busybox $((P + 31)) --method GET --path /nope
    fi
    stop busybox
    # python3 -m http.server is left out here: about 1 ms a connection, and
    # refused ones (its listen backlog is 5), it would take minutes a round.
done

# ------------------------------------------------------------ 3, 4: fiddler_crab alone

echo "== flood and slowloris (fiddler_crab, started by loadtest.py)" >&2
for r in $(seq "$ROUNDS"); do
    rec flood flood-10000 "$r" env PATH="$SPATH" "$PY" "$LT" flood --spawn --bin "$BIN" --n 10000 --timeout 120 \
        --max-rss-mb 16 --json -- --queue 500
done
for r in $(seq "$ROUNDS"); do
    for mr in default 1024; do
        extra=(); [ "$mr" = default ] || extra=(--max-reading "$mr")
        for probe in loop proc; do
            pp=(); [ "$probe" = loop ] || pp=(--probe-process)
            rec slowloris "slow-$mr-$probe" "$r" env PATH="$SPATH" "$PY" "$LT" slowloris --spawn --bin "$BIN" \
                --slow 500 --duration "$SLOW_SECONDS" --probe-interval 0.2 "${pp[@]}" --timeout 120 --json -- "${extra[@]}"
        done
    done
done

# ------------------------------------------------------------ the tables

{
    cat "$TMP/head.md"
    "$PY" "$HERE/report.py" table "$RESULTS" --bin "$BIN"
    echo
    echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg); waited $((QUIET_WAITED / 2)) s for quiet moments."
    echo
    echo "### Servers as started (ports from PORT_BASE=$P; every one with PATH=$SPATH)"
    echo
    sort -u "$TMP/servers.md" | sed -e "s|$BIN|BIN|g; s|$LT_DIR/|loadtest/|g; s|$TMP|\$TMP|g; s|$PY|python3|g"
    echo
    echo "Raw results: ${RESULTS#"$(dirname "$LT_DIR")/"}"
} > "$TABLE"
cat "$TABLE"
echo "run.sh: tables in $TABLE" >&2
