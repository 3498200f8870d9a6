#!/usr/bin/env python3
"""Flood: N connections at once against one route, with the server watched
from /proc. Standard library only; loopback only.

    python3 loadtest/flood.py --port 8080 --path /work --n 2000 --pid PID

Reports how many connections were answered (by status), closed unanswered,
refused or timed out; latency percentiles of the answered ones; and, given
the server's PID, its peak RSS (whole process tree), CPU seconds, threads and
the most programs ever running at once. Exit code 1 if a promise broke: the
server died, or more than one program ran at once.
"""
import argparse
import asyncio
import json
import os
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def children_of(pid):
    """Every descendant of pid (from /proc), as a list of pids."""
    parent = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parent[int(entry)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            pass
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found.extend(kids)
        frontier.extend(kids)
    return found


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


class Watch:
    """Samples the server's process tree until stopped."""

    def __init__(self, pid, interval):
        self.pid, self.interval = pid, interval
        self.peak_rss = 0
        self.peak_programs = 0
        self.peak_threads = 0
        self.alive = True

    async def run(self, stop):
        while not stop.is_set():
            if not os.path.exists(f"/proc/{self.pid}"):
                self.alive = False
                return
            kids = children_of(self.pid)
            direct = [k for k in kids if _ppid(k) == self.pid]
            self.peak_programs = max(self.peak_programs, len(direct))
            self.peak_rss = max(self.peak_rss, rss_bytes(self.pid) + sum(rss_bytes(k) for k in kids))
            self.peak_threads = max(self.peak_threads, threads(self.pid))
            await asyncio.sleep(self.interval)


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


async def one(host, port, request, timeout):
    start = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except ConnectionRefusedError:
        return ("refused", None)
    except (asyncio.TimeoutError, OSError):
        return ("timeout", None)
    try:
        writer.write(request)
        await writer.drain()
    except OSError:
        pass
    data = b""
    try:
        data = await asyncio.wait_for(reader.read(-1), timeout)
    except asyncio.TimeoutError:
        return ("timeout", None)
    except OSError:
        pass
    finally:
        writer.close()
    if not data:
        return ("closed", None)
    try:
        status = int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return ("garbled", None)
    return (status, time.monotonic() - start)


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[i]


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--path", default="/echo")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--body", default="hello")
    ap.add_argument("--pid", type=int, help="the server's pid, to watch it")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        sys.exit("flood: loopback only")
    body = args.body.encode()
    request = (
        f"POST {args.path} HTTP/1.1\r\nHost: {args.host}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    stop = asyncio.Event()
    watch = Watch(args.pid, 0.01) if args.pid else None
    cpu_before = cpu_seconds(args.pid) if args.pid else 0
    watcher = asyncio.create_task(watch.run(stop)) if watch else None
    start = time.monotonic()
    results = await asyncio.gather(*(one(args.host, args.port, request, args.timeout) for _ in range(args.n)))
    wall = time.monotonic() - start
    stop.set()
    if watcher:
        await watcher
    counts = {}
    latencies = []
    for outcome, latency in results:
        counts[str(outcome)] = counts.get(str(outcome), 0) + 1
        if latency is not None:
            latencies.append(latency)
    latencies.sort()
    report = {
        "connections": args.n,
        "outcomes": counts,
        "wall_s": round(wall, 3),
        "latency_ms": {p: (round(percentile(latencies, p) * 1000, 1) if latencies else None) for p in (50, 90, 99, 100)},
    }
    broken = []
    if watch:
        alive = os.path.exists(f"/proc/{args.pid}")
        report["server"] = {
            "alive": alive,
            "peak_rss_mb": round(watch.peak_rss / 2**20, 2),
            "cpu_s": round(cpu_seconds(args.pid) - cpu_before, 3) if alive else None,
            "peak_threads": watch.peak_threads,
            "max_programs_at_once": watch.peak_programs,
        }
        if not alive:
            broken.append("the server died")
        if watch.peak_programs > 1:
            broken.append("more than one program ran at once")
    report["broken"] = broken
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            print(f"{k:>12}: {v}")
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    asyncio.run(main())
