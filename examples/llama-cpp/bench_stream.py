"""Streaming through the warm worker against a program per request, with
the real model, in one go (run ./setup.sh first; nothing else running):

    python3 bench_stream.py [BIN]      (BIN: target/release/fiddler_crab)

- first token: p50 of 10 streamed requests, /stream (a program per
  request: the model loads each time) against /stream-worker;
- leave: a client leaves 0.5 s into a 256-token stream on /stream-worker:
  the time until the worker stops using CPU, whether it was kept, and the
  next request's time against a warm one (p50 of 10).
"""

import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                         os.path.join(here, "..", "..", "target", "release", "fiddler_crab"))
TICK = os.sysconf("SC_CLK_TCK")
PROMPT = b"The capital of France is"


def ask(port, path, leave_after=None):
    """(seconds to the first body byte, seconds in all) of one POST."""
    start = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST %s HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n%s"
              % (path.encode(), len(PROMPT), PROMPT))
    got, first = b"", None
    if leave_after:
        s.settimeout(leave_after)
    try:
        while chunk := s.recv(65536):
            got += chunk
            body = got.split(b"\r\n\r\n", 1)
            # The first chunk with text: a size line, then the text.
            if first is None and len(body) == 2 and re.match(rb"[0-9a-f]+\r\n.", body[1], re.S):
                first = time.monotonic() - start
    except socket.timeout:
        pass
    s.close()
    return first, time.monotonic() - start


def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def worker_pid(server_pid):
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = open(f"/proc/{p}/stat").read()
                cmd = open(f"/proc/{p}/cmdline").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == server_pid and "worker.py" in cmd:
                return int(p)
    sys.exit("no worker running")


server = subprocess.Popen([binary, "-c", "fiddler.toml", "--listen", "127.0.0.1:0",
                           "--admin", "127.0.0.1:0", "--quiet"], cwd=here,
                          stderr=subprocess.PIPE, text=True)
port = None
while port is None:
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", server.stderr.readline())
    port = int(m.group(1)) if m else None
threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
try:
    per_request = [ask(port, "/stream?tokens=16")[0] for _ in range(10)]
    ask(port, "/stream-worker?tokens=16")  # the worker's start
    warm = [ask(port, "/stream-worker?tokens=16") for _ in range(10)]
    wpid = worker_pid(server.pid)
    before = cpu(wpid)
    ask(port, "/stream-worker?tokens=256", leave_after=0.5)
    left = time.monotonic()
    last, changed = cpu(wpid), left
    while time.monotonic() - changed < 1.0:
        time.sleep(0.005)
        now = cpu(wpid)
        if now != last:
            last, changed = now, time.monotonic()
    nxt = ask(port, "/stream-worker?tokens=16")[1]
    kept = worker_pid(server.pid) == wpid
finally:
    server.terminate()
    server.wait()

warm_total = statistics.median(t for _, t in warm)
print(f"first token p50: program per request {statistics.median(per_request) * 1000:.0f} ms, "
      f"warm worker {statistics.median(f for f, _ in warm) * 1000:.0f} ms")
print(f"leave at 0.5 s: worker CPU stopped {max(0, changed - left) * 1000:.0f} ms after, "
      f"worker {'kept' if kept else 'replaced'}; next request {nxt:.3f} s, "
      f"warm p50 {warm_total:.3f} s, ratio {nxt / warm_total:.2f}")
