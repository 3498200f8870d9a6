"""fiddler_crab + llama-server against bare llama-server (-np 1), in one go
on one machine: the same model file, prompt, tokens and threads.

    python3 bench.py [BIN] [--flood N] [--give-up SECS] [--json FILE]

BIN defaults to target/release/fiddler_crab; run ./setup.sh first. Nothing
else may run meanwhile (2 cores: a compile beside the model slows it
several-fold). Prints a table (and writes JSON with --json):

- sequential: 3 rounds of 10 requests of 32 tokens, one after another,
  the two taking turns: requests/s, and fiddler/bare per round;
- first token: 30 streamed requests each, time to the first token's text, p50;
- flood: N clients at once (queue = 8 behind fiddler_crab), each giving up
  after SECS: generations run for clients that had already left, and the
  wait of one fresh request sent right after they gave up;
- leave: a client leaves 0.5 s into a 256-token stream: time until the
  model stops using CPU, and the next request's time against a warm one;
- peak RSS of each process tree (the server, and llama-server under it).
"""

import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
args = sys.argv[1:]


def option(name, default):
    if name in args:
        i = args.index(name)
        value = args[i + 1]
        del args[i:i + 2]
        return value
    return default


FLOOD = int(option("--flood", "200"))
GIVE_UP = float(option("--give-up", "30"))
JSON_OUT = option("--json", None)
BIN = os.path.abspath(args[0] if args else os.path.join(here, "..", "..", "target", "release", "fiddler_crab"))
LLAMA = os.path.join(here, "bin", "llama-server")
MODEL = os.path.join(here, "models", "gemma-3-270m-q4_k_m.gguf")
LLAMA_ARGS = ["-m", MODEL, "-np", "1", "-t", "2", "-c", "4096", "--metrics"]
ENV = dict(os.environ, LD_LIBRARY_PATH=os.path.join(here, "bin"))
PROMPT = "The capital of France is"
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body(tokens, stream):
    return json.dumps({"prompt": PROMPT, "max_tokens": tokens, "temperature": 0,
                       "ignore_eos": True, "stream": stream}).encode()


async def ask(port, tokens, stream=False, give_up=None, leave_after=None):
    """One POST /v1/completions on its own connection. Returns (status,
    seconds to the first token's text or None, seconds in all, bytes)."""
    start = time.monotonic()
    payload = body(tokens, stream)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return (0, None, time.monotonic() - start, b"")
    writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(payload), payload))
    got, first = b"", None

    async def read_all():
        nonlocal got, first
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            got += chunk
            if first is None and b'"text":"' in got.split(b"\r\n\r\n", 1)[-1]:
                first = time.monotonic() - start

    limit = leave_after if leave_after is not None else give_up
    try:
        if limit is None:
            await read_all()
        else:
            await asyncio.wait_for(read_all(), limit)
    except (asyncio.TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
    status = int(got.split(b" ", 2)[1]) if got.startswith(b"HTTP/1.") else 0
    complete = got.endswith(b"0\r\n\r\n") or (b"Content-Length" in got and b"}" in got[-4:])
    if not complete and status == 200:
        status = -1  # left (or was left) before the answer was whole
    return (status, first, time.monotonic() - start, got)


class Peak(threading.Thread):
    """Samples the RSS of a process and its children every 20 ms."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, False

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, tree_rss(self.pid))
            time.sleep(0.02)


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = open(f"/proc/{p}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(p))
    return out


def tree_rss(pid):
    total = 0
    for p in [pid] + children(pid):
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def metric(port, name):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        text = b""
        while chunk := s.recv(65536):
            text += chunk
    m = re.search(rb"^" + re.escape(name.encode()) + rb" ([0-9.e+]+)", text, re.M)
    return float(m.group(1)) if m else 0.0


def wait_until(look, what, limit=600):
    start = time.monotonic()
    while not look():
        if time.monotonic() - start > limit:
            sys.exit(f"bench: {what} not within {limit} s")
        time.sleep(0.05)


def http_ok(port, path):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


class Target:
    """A server under test: where to ask, and its llama-server."""

    def __init__(self, name, port, llama_pid, llama_port, root_pid, stop):
        self.name, self.port, self.llama_pid, self.llama_port = name, port, llama_pid, llama_port
        self.stop, self.r, self.peak = stop, {}, Peak(root_pid)
        self.peak.start()


def sequential(t, n):
    """Seconds for n requests of 32 tokens, one after another."""
    start = time.monotonic()
    for _ in range(n):
        status, _, _, _ = asyncio.run(ask(t.port, 32))
        assert status == 200, f"{t.name}: sequential request got {status}"
    return time.monotonic() - start


def alternating(targets, rounds=3):
    """Sequential req/s and first-token times, the targets taking turns
    round after round, so that the machine's noise falls on both alike."""
    for t in targets:
        for _ in range(2):
            asyncio.run(ask(t.port, 32))
        t.r["rounds_rps"], firsts, t.r["warm_s"] = [], [], []
        t.firsts = firsts
    for _ in range(rounds):
        for t in targets:
            t.r["rounds_rps"].append(10 / sequential(t, 10))
            t.firsts.extend(asyncio.run(ask(t.port, 32, stream=True))[1] for _ in range(10))
            t.r["warm_s"].append(asyncio.run(ask(t.port, 32))[2])
    for t in targets:
        t.r["sequential_rps"] = statistics.median(t.r["rounds_rps"])
        t.r["first_token_p50_ms"] = statistics.median(f for f in t.firsts if f) * 1000
        t.r["warm_s"] = statistics.median(t.r["warm_s"])


def leave_and_flood(t):
    """A client that leaves 0.5 s into a 256-token stream; then the flood."""
    run, r = asyncio.run, t.r
    before = cpu_seconds(t.llama_pid)
    run(ask(t.port, 256, stream=True, leave_after=0.5))
    left_at = time.monotonic()
    last, last_change = cpu_seconds(t.llama_pid), left_at
    while time.monotonic() - last_change < 1.0:
        time.sleep(0.005)
        now = cpu_seconds(t.llama_pid)
        if now != last:
            last, last_change = now, time.monotonic()
    r["leave_cpu_stop_ms"] = max(0.0, last_change - left_at) * 1000
    r["leave_cpu_used_s"] = last - before
    r["next_after_leave_s"] = run(ask(t.port, 32))[2]

    # The flood, then one fresh request right after the others gave up.
    tokens_before = metric(t.llama_port, "llamacpp:tokens_predicted_total")

    async def flood():
        clients = [asyncio.create_task(ask(t.port, 32, give_up=GIVE_UP)) for _ in range(FLOOD)]
        await asyncio.sleep(GIVE_UP + 0.2)
        fresh = await ask(t.port, 32)
        return await asyncio.gather(*clients), fresh

    outcomes, fresh = run(flood())
    wait_until(lambda: metric(t.llama_port, "llamacpp:requests_processing") == 0
               and metric(t.llama_port, "llamacpp:requests_deferred") == 0, "llama-server idle")
    generated = (metric(t.llama_port, "llamacpp:tokens_predicted_total") - tokens_before) / 32
    answered = sum(1 for o in outcomes if o[0] == 200)
    r["flood_answered"] = answered
    r["flood_refused_503"] = sum(1 for o in outcomes if o[0] == 503)
    r["flood_gave_up"] = sum(1 for o in outcomes if o[0] in (0, -1))
    # Generations (in 32-token units) beyond the answers and the fresh one.
    r["flood_generations_for_departed"] = round(generated - answered - 1, 1)
    r["flood_fresh_status"] = fresh[0]
    r["flood_fresh_wait_s"] = fresh[2]


def bare():
    port = free_port()
    llama = subprocess.Popen([LLAMA] + LLAMA_ARGS + ["--host", "127.0.0.1", "--port", str(port)],
                             env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: http_ok(port, "/health"), "llama-server ready")

    def stop():
        llama.terminate()
        llama.wait()
    return Target("bare", port, llama.pid, port, llama.pid, stop)


def fiddler():
    port, admin = free_port(), free_port()
    command = json.dumps([LLAMA] + LLAMA_ARGS + ["--host", "127.0.0.1", "--port", "{port}"])
    config = f"""listen = "127.0.0.1:{port}"
admin = "127.0.0.1:{admin}"
queue = 8
on_full = "503"
quiet = true
[[route]]
method = "ANY"
path = "/v1/*"
command = {command}
worker = "http"
ready = "/health"
start = "boot"
start_timeout = 300
timeout = 120
env = ["LD_LIBRARY_PATH={os.path.join(here, 'bin')}"]
"""
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(config)
    server = subprocess.Popen([BIN, "-c", f.name], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    wait_until(lambda: http_ok(admin, "/ready"), "fiddler_crab ready")
    llama_pid = children(server.pid)[0]
    cmdline = open(f"/proc/{llama_pid}/cmdline").read().split("\0")
    llama_port = int(cmdline[cmdline.index("--port") + 1])

    def stop():
        server.terminate()
        server.wait()
        os.unlink(f.name)
    return Target("fiddler", port, llama_pid, llama_port, server.pid, stop)



targets = [bare(), fiddler()]
try:
    alternating(targets)
    for t in targets:
        leave_and_flood(t)
finally:
    for t in targets:
        t.peak.stop = True
        t.stop()
for t in targets:
    t.peak.join()
    t.r["peak_rss_mb"] = t.peak.peak / 1e6
results = {t.name: t.r for t in targets}
results.update(flood=FLOOD, give_up_s=GIVE_UP)
b, f = results["bare"], results["fiddler"]
rows = [
    ("sequential, 3 rounds of 10 x 32 tokens, req/s (median)", "sequential_rps", "{:.3f}"),
    ("first token, p50 ms", "first_token_p50_ms", "{:.1f}"),
    (f"flood {FLOOD}: generations for departed clients", "flood_generations_for_departed", "{}"),
    ("flood: answered 200 / refused 503 / gave up", None, None),
    ("flood: fresh request's wait, s", "flood_fresh_wait_s", "{:.2f}"),
    ("warm request, s", "warm_s", "{:.3f}"),
    ("leave at 0.5 s: CPU stops after, ms", "leave_cpu_stop_ms", "{:.0f}"),
    ("leave: next request, s", "next_after_leave_s", "{:.3f}"),
    ("peak RSS of the process tree, MB", "peak_rss_mb", "{:.0f}"),
]
print(f"| | bare llama-server | fiddler_crab + llama-server |\n|---|---|---|")
for label, key, fmt in rows:
    if key is None:
        cell = lambda r: f"{r['flood_answered']} / {r['flood_refused_503']} / {r['flood_gave_up']}"
    else:
        cell = lambda r: fmt.format(r[key])
    print(f"| {label} | {cell(b)} | {cell(f)} |")
ratios = [x / y for x, y in zip(f["rounds_rps"], b["rounds_rps"])]
print(f"\nratio fiddler/bare sequential req/s, per round: {', '.join(f'{r:.3f}' for r in ratios)}; "
      f"median {statistics.median(ratios):.3f}; "
      f"first token: +{f['first_token_p50_ms'] - b['first_token_p50_ms']:.1f} ms; "
      f"next after leave / warm: {f['next_after_leave_s'] / f['warm_s']:.2f}")
if JSON_OUT:
    with open(JSON_OUT, "w") as out:
        json.dump(results, out, indent=1)
