#!/usr/bin/env python3
"""End-to-end measurement of one example behind the real fiddler_crab binary.

    python3 e2e.py EXAMPLE BIN        (e2e.sh runs setup.sh first)

a. sequential requests to the program-per-request route, and the same
   command run directly in a loop: the server's overhead
b. the same to the worker route: the worker's gain
c. a flood far beyond the queue, on both routes: at most one model process
   at once, every 200 a whole real answer, nothing but 200/503/closed
d. a client that leaves mid-request: the model process is gone soon after
e. peak RSS of the server's tree, program per request vs worker
Prints a table, writes results-EXAMPLE.json beside this file, exits 1 if a
promise broke. Standard library only.
"""
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGE = os.sysconf("SC_PAGE_SIZE")

EXAMPLES = {
    "llama-cpp": {
        "n": 10, "route": "/complete?tokens=16", "worker": "/complete-worker?tokens=16",
        "body": b"The capital of France is", "direct": ["complete.py", "16"],
        "expect": lambda b: b"Paris" in b,
        "flood_route": "/complete?tokens=8",
        "long": ("/stream?tokens=256", b"Tell me a long story about a crab who builds a server."),
        "scripts": ("complete.py", "worker.py"),
    },
    "embeddings": {
        "n": 30, "route": "/embed", "worker": "/embed-worker",
        "body": json.dumps(["A cat sits on the mat.", "A kitten is resting on a rug.",
                            "Stock markets fell sharply today."]).encode(),
        "direct": ["embed.py"],
        "expect": None,  # checked by similarity below
        "flood_route": "/embed",
        "long": ("/embed", json.dumps(["A rather long sentence about crabs, servers and queues, "
                                       "repeated to make the model work for a while. " * 6] * 256).encode()),
        "scripts": ("embed.py", "worker.py"),
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int):
    """pid and all its descendants (from /proc/*/stat)."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return 0


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Sampler(threading.Thread):
    """Every 50 ms (cheap: llama.cpp's threads suffer from any CPU taken): model processes under the server, RSS of the tree and of
    the server alone; peaks per phase."""

    def __init__(self, pid, scripts):
        super().__init__(daemon=True)
        self.pid, self.scripts, self.stop = pid, scripts, False
        self.reset()

    def reset(self):
        self.max_models, self.peak_tree, self.peak_server, self.samples = 0, 0, 0, 0

    def models(self):
        return [p for p in children(self.pid)[1:] if any(s in cmdline(p) for s in self.scripts)]

    def run(self):
        while not self.stop:
            tree = children(self.pid)
            models = [p for p in tree[1:] if any(s in cmdline(p) for s in self.scripts)]
            self.max_models = max(self.max_models, len(models))
            self.peak_tree = max(self.peak_tree, sum(rss(p) for p in tree))
            self.peak_server = max(self.peak_server, rss(self.pid))
            self.samples += 1
            time.sleep(0.05)


def request(port, path, body, timeout=300):
    """(status or error name, body bytes, seconds)."""
    t = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("POST", path, body=body, headers={"Content-Type": "text/plain"})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data, time.monotonic() - t
    except http.client.IncompleteRead as e:
        return "half answer", e.partial, time.monotonic() - t
    except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
        return "closed", b"", time.monotonic() - t
    except socket.timeout:
        return "timeout", b"", time.monotonic() - t


def pct(values, q):
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 1)


def main() -> int:
    name, binary = sys.argv[1], os.path.abspath(sys.argv[2])
    ex = EXAMPLES[name]
    cwd = HERE / name
    py = str(cwd / ".venv" / "bin" / "python")
    broken, results = [], {"example": name, "binary": binary}
    log = open(f"/tmp/fiddler-e2e-{name}.log", "wb")

    def good(status, data):
        if status != 200 or not data.strip():
            return False
        if ex["expect"]:
            return ex["expect"](data)
        try:
            doc = json.loads(data)
            return len(doc["embeddings"]) == 3 and len(doc["embeddings"][0]) == 384
        except (ValueError, KeyError, TypeError):
            return False

    def start(queue):
        port, admin = free_port(), free_port()
        p = subprocess.Popen([binary, "-c", "fiddler.toml", "--listen", f"127.0.0.1:{port}",
                              "--admin", f"127.0.0.1:{admin}", "--queue", str(queue)],
                             cwd=cwd, stdout=log, stderr=log)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", admin), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.02)
        s = Sampler(p.pid, ex["scripts"])
        s.start()
        return p, port, admin, s

    def stop(p, s):
        s.stop = True
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def sequential(port, path, n):
        lat, bad, first = [], [], None
        t0 = time.monotonic()
        for _ in range(n):
            status, data, dt = request(port, path, ex["body"])
            first = first if first is not None else data
            lat.append(dt)
            if not good(status, data):
                bad.append((status, data[:120]))
        wall = time.monotonic() - t0
        return {"n": n, "wall_s": round(wall, 2), "per_s": round(n / wall, 3),
                "p50_ms": pct(lat, 0.5), "p90_ms": pct(lat, 0.9), "bad": len(bad),
                "sample": first.decode("utf-8", "replace")[:160]}, bad

    n = int(os.environ.get("E2E_N") or ex["n"])
    server, port, admin, sampler = start(queue=16)
    try:
        # a. program per request, through the server
        sampler.reset()
        seq, bad = sequential(port, ex["route"], n)
        seq.update(peak_tree_mb=round(sampler.peak_tree / 2**20), max_models=sampler.max_models)
        results["a_server"] = seq
        if bad:
            broken.append(f"a: {len(bad)} bad answers, e.g. {bad[0]}")
        # a. the same command directly, no server
        lat = []
        t0 = time.monotonic()
        for _ in range(n):
            t = time.monotonic()
            r = subprocess.run([py] + ex["direct"], input=ex["body"], cwd=cwd, capture_output=True)
            lat.append(time.monotonic() - t)
            if not good(200 if r.returncode == 0 else r.returncode, r.stdout):
                broken.append(f"a: the direct run failed: {r.returncode} {r.stdout[:80]!r} {r.stderr[-200:]!r}")
                break
        wall = time.monotonic() - t0
        import resource
        results["a_direct"] = {"n": n, "wall_s": round(wall, 2), "per_s": round(n / wall, 3),
                               "p50_ms": pct(lat, 0.5), "p90_ms": pct(lat, 0.9),
                               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}
        results["a_overhead_ratio"] = round(results["a_direct"]["per_s"] / seq["per_s"], 3)
        # b. the worker route: one warm-up request (it starts the worker), then n
        sampler.reset()
        status, data, first = request(port, ex["worker"], ex["body"])
        if not good(status, data):
            broken.append(f"b: first worker answer {status} {data[:120]!r}")
        wk, bad = sequential(port, ex["worker"], n)
        wk.update(first_ms=round(first * 1000, 1), peak_tree_mb=round(sampler.peak_tree / 2**20),
                  max_models=sampler.max_models)
        results["b_worker"] = wk
        results["b_worker_ratio"] = round(wk["per_s"] / seq["per_s"], 2)
        if bad:
            broken.append(f"b: {len(bad)} bad answers, e.g. {bad[0]}")
        if name == "embeddings":
            status, data, _ = request(port, ex["worker"], ex["body"])
            e = json.loads(data)["embeddings"]
            dot = lambda a, b: sum(x * y for x, y in zip(a, b))
            results["similarity"] = {"cat~kitten": round(dot(e[0], e[1]), 3), "cat~stocks": round(dot(e[0], e[2]), 3)}
            if not (0.55 < dot(e[0], e[1]) < 0.75 and abs(dot(e[0], e[2])) < 0.15):
                broken.append(f"similarities off: {results['similarity']}")
    finally:
        stop(server, sampler)

    # c. a flood of 50 at once against a queue of 4: the program-per-request
    # route, then the worker route (its first request starts the worker)
    server, port, admin, sampler = start(queue=4)
    try:
        for key, route in (("c_flood", ex["flood_route"]), ("c_flood_worker", ex["worker"])):
            sampler.reset()
            outcomes, lock = [], threading.Lock()

            def one():
                status, data, dt = request(port, route, ex["body"], timeout=600)
                with lock:
                    outcomes.append((status, data))

            threads = [threading.Thread(target=one) for _ in range(50)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.monotonic() - t0
            tally = {}
            for status, _ in outcomes:
                tally[str(status)] = tally.get(str(status), 0) + 1
            real = sum(1 for s, d in outcomes if good(s, d))
            results[key] = {"route": route, "clients": 50, "queue": 4, "wall_s": round(wall, 1),
                            "outcomes": tally, "answered_200": tally.get("200", 0), "real_200": real,
                            "max_models_at_once": sampler.max_models,
                            "peak_tree_mb": round(sampler.peak_tree / 2**20),
                            "peak_server_mb": round(sampler.peak_server / 2**20, 1),
                            "server_alive": server.poll() is None}
            if sampler.max_models > 1:
                broken.append(f"{key}: {sampler.max_models} model processes at once")
            other = {k: v for k, v in tally.items() if k not in ("200", "503", "closed")}
            if other:
                broken.append(f"{key}: outcomes other than 200/503/closed: {other}")
            if real != tally.get("200", 0):
                broken.append(f"{key}: {tally.get('200', 0) - real} answers 200 without a real answer")
            if server.poll() is not None:
                broken.append(f"{key}: the server died")
    finally:
        stop(server, sampler)

    server, port, admin, sampler = start(queue=4)
    try:
        # d. a client that leaves mid-generation
        path, body = ex["long"]
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
        t_sent = time.monotonic()
        pid = None
        while time.monotonic() - t_sent < 10 and pid is None:
            found = sampler.models()
            pid = found[0] if found else None
            time.sleep(0.01)
        time.sleep(max(0.0, 0.5 - (time.monotonic() - t_sent)))
        s.close()
        t_closed = time.monotonic()
        gone = None
        while pid and time.monotonic() - t_closed < 15:
            if not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                gone = time.monotonic() - t_closed
                break
            time.sleep(0.005)
        results["d_disconnect"] = {"request": path, "model_pid": pid, "closed_after_s": round(t_closed - t_sent, 2),
                                   "gone_after_close_ms": round(gone * 1000, 1) if gone is not None else None}
        if pid is None:
            broken.append("d: no model process seen for the long request")
        elif gone is None:
            broken.append("d: the model process outlived its client by 15 s")
        results["server_log"] = f"/tmp/fiddler-e2e-{name}.log"
    finally:
        stop(server, sampler)

    results["broken"] = broken
    (HERE / f"results-{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    a, d, w = results["a_server"], results["a_direct"], results["b_worker"]
    print(f"\n== {name}: {binary}  (load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"{'':34}{'req/s':>8}{'p50 ms':>9}{'p90 ms':>9}{'peak RSS MB':>13}")
    print(f"{'a. program per request (server)':34}{a['per_s']:>8}{a['p50_ms']:>9}{a['p90_ms']:>9}{a['peak_tree_mb']:>13}")
    print(f"{'a. same command, direct loop':34}{d['per_s']:>8}{d['p50_ms']:>9}{d['p90_ms']:>9}{d['peak_rss_mb']:>13}")
    print(f"{'b. worker (after first request)':34}{w['per_s']:>8}{w['p50_ms']:>9}{w['p90_ms']:>9}{w['peak_tree_mb']:>13}")
    print(f"direct/server = {results['a_overhead_ratio']} (1.0: no overhead); worker/program = {results['b_worker_ratio']}x; "
          f"worker's first request {w['first_ms']} ms")
    print(f"c. flood {json.dumps(results['c_flood'])}")
    print(f"c. flood, worker {json.dumps(results['c_flood_worker'])}")
    print(f"d. disconnect {json.dumps(results['d_disconnect'])}")
    if "similarity" in results:
        print(f"similarity {results['similarity']}")
    print(f"answer: {a['sample']!r}")
    print("BROKEN: " + "; ".join(broken) if broken else "all promises kept")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
