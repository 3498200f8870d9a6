#!/usr/bin/env bash
# The mutation pass: applies one plausible one-line bug at a time to src/,
# runs the test files that should catch it, and says caught or SURVIVED.
# src/ is restored (git checkout) after each mutant, whatever happens.
#   bash tests/mutants.sh        (≈ 5–10 minutes on 2 cores; CI does not run it)
set -u
cd "$(dirname "$0")/.."
if ! git diff --quiet -- src; then
    echo "mutants.sh: src/ has uncommitted changes; commit or stash them first" >&2
    exit 2
fi
caught=0
survived=0
trap 'git checkout -q -- src' EXIT

# The mutated text on one line, shortened.
shown() { printf '%s' "$1" | tr -s ' \n' ' ' | cut -c1-70; }

# mutant FILE EXACT-TEXT REPLACEMENT TEST-MODULE… (tests/it/MODULE.rs; the
# text must occur once)
mutant() {
    local file=$1 from=$2 to=$3
    shift 3
    if ! python3 - "$file" "$from" "$to" <<'PY'; then
import sys
path, old, new = sys.argv[1:4]
text = open(path).read()
if text.count(old) != 1:
    sys.exit(1)
open(path, "w").write(text.replace(old, new))
PY
        echo "NOT APPLIED  $file: $(shown "$from")"
        return
    fi
    local filters=() features=()
    for t in "$@"; do
        filters+=("$t::")
        [ "$t" = tls ] && features=(--features https)
    done
    local began=$SECONDS
    if timeout 900 cargo test -q "${features[@]}" --test it -- "${filters[@]}" >/dev/null 2>&1; then
        echo "SURVIVED     $file: $(shown "$from") ($((SECONDS - began)) s)"
        survived=$((survived + 1))
    else
        echo "caught       $file: $(shown "$from") ($((SECONDS - began)) s)"
        caught=$((caught + 1))
    fi
    git checkout -q -- src
    # What a mutated server failed to end (the escape tests' `sleep 10NN`)
    # would confuse the next run.
    pkill -x -f 'sleep 10[0-9][0-9]' || true
}

# The five that survived the audit (issue 21), then one per promise added since.
mutant src/gate/mod.rs '            self.readers.remove(0);' '            self.readers.remove(self.readers.len() - 1);' slow_clients
mutant src/admin.rs '                waiting.pop_front();' '                waiting.pop_back();' operations
mutant src/gate/writer.rs 'let expired = matches!(progress, Progress::Pending) && w.deadline <= now;' 'let expired = false;' slow_clients
mutant src/handler.rs '            self.state.count_drop(Dropped::Draining);' '            {}' operations
mutant src/cgi/output.rs "            || value.bytes().any(|b| b < 0x20 && b != b'\\t')" '            || false' cgi
mutant src/gate/mod.rs '                self.state.count_drop(Dropped::Draining);
            }
            return Err(refused);' '            }
            return Err(refused);' operations
mutant src/queue.rs '(n < state.capacity).then_some(n + 1)' '(n <= state.capacity).then_some(n + 1)' queue
mutant src/gate/writer.rs '        self.response.head.capacity() + self.response.body.capacity()' '        0' memory
mutant src/template.rs "        if begins && value.first() == Some(&b'-') && dashes == Dashes::Refuse {" '        if false {' programs
mutant src/cgroup.rs '    let _ = fs::write(dir.join("cgroup.kill"), "1");' '    let _ = dir;' escapes
mutant src/upstream.rs '        if client_events & !POLLOUT != 0 {' '        if false {' http_workers
mutant src/main.rs '        capacity: config.queue,' '        capacity: config.queue + 1,' queue
mutant src/sys.rs 'ffi::kill(-pgid, signal)' 'ffi::kill(pgid, signal)' escapes
mutant src/handler.rs '        let outcome = if self.state.phase() >= Phase::Expired {' '        let outcome = if false {' operations
mutant src/gate/mod.rs '            if let Some(i) = self.readers.first_idle() {' '            if let Some(i) = None::<usize> {' http
mutant src/gate/mod.rs '                self.readers.close_idle();' '' http
mutant src/gate/reader.rs '                self.conn.early = rest;' '                drop(rest);' http
mutant src/program.rs '                if self.stdio == Stdio::Request {' '                if false {' programs
mutant src/program.rs '            (Some(0), _) if self.stdio == Stdio::Frames =>' '            (Some(0), _) if false =>' workers
mutant src/program.rs '                        ended = ends == Ends::AtFrame;' '                        ended = true;' stream_workers
mutant src/http/response.rs '        if sends == Sends::HeadOnly || bodiless(status) {' '        if bodiless(status) {' http
mutant src/gate/mod.rs '                Some(i) if read_now => {' '                Some(i) if false => {' http

echo "mutants.sh: $caught caught, $survived survived"
