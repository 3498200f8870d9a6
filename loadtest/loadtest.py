#!/usr/bin/env python3
"""Load and abuse scenarios for fiddler_crab. Python 3.9+, standard library only.

    loadtest.py SCENARIO [options] [-- SERVER ARGS...]

Scenarios: flood, steady, slowloris, dropcost, garbage, idle, seq, warm (`SCENARIO
-h` for each; README.md beside this file). Point it at a running server (--port,
--admin-port, --pid) or let it start one (--spawn --bin PATH; what follows
`--` goes to the server). Loopback only unless --allow-remote.

Exit status: 0 every promise kept; 1 a promise broken (the server died, more
than one program ran at once, RSS over --max-rss-mb, a connection the server
does not account for, a probe or the request after the garbage not answered
200); 2 the tool could not run (usage, a server that would not start, the
--timeout overrun).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import errno
import ipaddress
import json
import multiprocessing
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple
from xml.sax.saxutils import escape

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = os.path.join(HERE, "programs")
BUILD = os.path.join(PROGRAMS, "build")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

MAX_SOCKETS = 20000     # most sockets any scenario holds at once
MAX_SENDS = 1_000_000   # most requests one scenario sends
MAX_ANSWER = 1 << 20    # most bytes read of one answer
READ_LIMIT = 64 * 1024  # StreamReader buffer limit, and one read
METRICS_EVERY = 0.05    # s between two /metrics samples (queue depth)
SETTLE = 5.0            # s the server's counters get to catch up
STARTUP = 10.0          # s a spawned server gets to say "listening on"

# Fields of /proc/PID/stat, counted from the one after "(comm)".
F_STATE, F_PPID, F_UTIME, F_STIME, F_CUTIME, F_CSTIME, F_THREADS, F_RSS = 0, 1, 11, 12, 13, 14, 17, 21

Metrics = Dict[str, float]


class Usage(Exception):
    """The tool could not do its job (exit status 2)."""


# ---------------------------------------------------------------- /proc


def proc_stat(path) -> Optional[List[str]]:
    """Fields of /proc/PATH/stat after the command name; None if gone."""
    try:
        fd = os.open(f"/proc/{path}/stat", os.O_RDONLY)
        try:
            return os.read(fd, 4096).decode("ascii", "replace").rsplit(")", 1)[1].split()
        finally:
            os.close(fd)
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    fields = proc_stat(pid)
    return fields is not None and fields[F_STATE] not in ("Z", "X")


def cpu_ticks(path) -> Dict[str, int]:
    """Clock ticks of CPU (user + system) of /proc/PATH: its own, and its
    reaped children's. PATH may be a pid or "pid/task/tid" (one thread)."""
    fields = proc_stat(path) or ["0"] * (F_RSS + 1)
    return {"own": int(fields[F_UTIME]) + int(fields[F_STIME]),
            "children": int(fields[F_CUTIME]) + int(fields[F_CSTIME])}


def cgroup_usec(path: Optional[str]) -> Optional[int]:
    """CPU microseconds used so far by every process that was ever in the
    cgroup directory `path` (v2 cpu.stat usage_usec, or v1 cpuacct.usage),
    children nobody waited for included; None without one. Finer than clock
    ticks, and it sees what /proc/PID/stat cannot: a server that ignores
    SIGCHLD (busybox httpd) never collects its children's CPU."""
    if not path:
        return None
    try:
        with open(os.path.join(path, "cpu.stat")) as f:
            return next(int(line.split()[1]) for line in f if line.startswith("usage_usec "))
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    try:
        with open(os.path.join(path, "cpuacct.usage")) as f:
            return int(f.read()) // 1000
    except (OSError, ValueError):
        return None


def context_switches(pid: int) -> int:
    """Context switches of all the process's threads: how often it woke up."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                total += sum(int(line.split()[1]) for line in f if "ctxt_switches:" in line)
        except (OSError, ValueError, IndexError):
            pass
    return total


def process_table(pids: Optional[Iterable[int]] = None) -> Dict[int, Tuple[int, str, int]]:
    """pid -> (ppid, state, RSS bytes), for the given pids or all of them."""
    if pids is None:
        pids = [int(e) for e in os.listdir("/proc") if e.isdigit()]
    table = {}
    for pid in pids:
        fields = proc_stat(pid)
        if fields:
            table[pid] = (int(fields[F_PPID]), fields[F_STATE], int(fields[F_RSS]) * PAGE)
    return table


def descendants(table: Dict[int, Tuple[int, str, int]], pid: int) -> List[int]:
    """The pids below pid in the process tree."""
    kids: Dict[int, List[int]] = collections.defaultdict(list)
    for p, (ppid, _, _) in table.items():
        kids[ppid].append(p)
    found, frontier = [], [pid]
    while frontier:
        more = kids.get(frontier.pop(), [])
        found.extend(more)
        frontier.extend(more)
    return found


def watch(pid: int, interval: float, stop, conn) -> None:
    """Body of the watcher process: samples the server's process tree every
    `interval` s until `stop` is set or the server dies, then sends its peaks
    through `conn`. A process once outside the tree cannot join it, so it is
    not read again: a sample costs a listing of /proc and the tree's stats."""
    peaks = {"rss": 0, "threads": 0, "programs": 0, "samples": 0, "died": False}
    unrelated: set = set()
    while not stop.is_set():
        listed = {int(e) for e in os.listdir("/proc") if e.isdigit()}
        unrelated &= listed
        table = process_table(listed - unrelated)
        server = proc_stat(pid)
        if server is None or server[F_STATE] in ("Z", "X"):
            peaks["died"] = True
            break
        tree = descendants(table, pid)
        unrelated |= set(table) - set(tree) - {pid}
        running = sum(1 for p in tree if table[p][0] == pid and table[p][1] != "Z")
        peaks["programs"] = max(peaks["programs"], running)
        peaks["rss"] = max(peaks["rss"], int(server[F_RSS]) * PAGE + sum(table[p][2] for p in tree))
        peaks["threads"] = max(peaks["threads"], int(server[F_THREADS]))
        if peaks["samples"] == 0:
            conn.send("ready")
        peaks["samples"] += 1
        stop.wait(interval)
    conn.send(peaks)


class Watcher:
    """The /proc sampler, in a process of its own so that the busy event loop
    cannot slow it: peak RSS of the server's tree, its threads, and the most
    programs running at once (its children that are not zombies)."""

    def __init__(self, pid: int, interval: float):
        ctx = multiprocessing.get_context("spawn")
        self.stop_flag = ctx.Event()
        self.conn, child = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=watch, args=(pid, interval, self.stop_flag, child), daemon=True)
        self.peaks: Dict[str, object] = {}

    def start(self, timeout: float = 10.0) -> None:
        """Starts it and waits for its first sample."""
        self.proc.start()
        if not self.conn.poll(timeout):
            self.proc.kill()
            raise Usage("the /proc watcher did not start")
        self.conn.recv()

    def stop(self) -> Dict[str, object]:
        """Stops it (once); its peaks: rss, threads, programs, samples, died."""
        if not self.peaks:
            self.stop_flag.set()
            try:
                if self.conn.poll(10):
                    self.peaks = self.conn.recv()
            except EOFError:
                pass  # it died: the peaks stay unknown
            self.proc.join(5)
            self.peaks.setdefault("samples", 0)
        return self.peaks


# ---------------------------------------------------------------- HTTP client


@dataclass
class Outcome:
    """How one connection ended. kind: answered, closed (not one byte of an
    answer), refused, timeout, garbled (bytes that are not HTTP), error:NAME."""

    kind: str
    start: float
    end: float
    status: Optional[int] = None
    body: bytes = b""

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def label(self) -> str:
        """The status of an answer, else the kind."""
        return str(self.status) if self.kind == "answered" else self.kind


def http_request(method: str, path: str, body: bytes = b"", close: bool = False) -> bytes:
    """A well-formed HTTP/1.1 request with Content-Length (and, if `close`,
    Connection: close, so that a server that keeps connections alive closes
    this one after its answer, as fiddler_crab always does)."""
    extra = "Connection: close\r\n" if close else ""
    return (f"{method} {path} HTTP/1.1\r\nHost: loadtest\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode()
            + body)


def classify(data: bytes, start: float) -> Outcome:
    """What the server sent, as an Outcome."""
    end = time.monotonic()
    if not data:
        return Outcome("closed", start, end)
    line = data.split(b"\r\n", 1)[0].split(b" ")
    if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit():
        head, _, body = data.partition(b"\r\n\r\n")
        return Outcome("answered", start, end, int(line[1]), answer_body(body, head))
    return Outcome("garbled", start, end)


def errno_name(e: OSError) -> str:
    """A short name for an OSError, e.g. EMFILE."""
    return errno.errorcode.get(e.errno or 0, type(e).__name__)


async def exchange(addr: Tuple[str, int], payload: bytes, timeout: float, half_close: bool = False) -> Outcome:
    """Connects, sends payload (then shuts down writing if half_close), reads
    until the server closes (at most MAX_ANSWER bytes), all within timeout s.
    Latency counts from the connect."""
    start = time.monotonic()
    try:
        return await asyncio.wait_for(_exchange(addr, payload, half_close, start), max(timeout, 0.001))
    except asyncio.TimeoutError:
        return Outcome("timeout", start, time.monotonic())


async def _exchange(addr: Tuple[str, int], payload: bytes, half_close: bool, start: float) -> Outcome:
    """exchange() without its deadline."""
    try:
        reader, writer = await asyncio.open_connection(addr[0], addr[1], limit=READ_LIMIT)
    except ConnectionRefusedError:
        return Outcome("refused", start, time.monotonic())
    except OSError as e:
        return Outcome(f"error:{errno_name(e)}", start, time.monotonic())
    data = bytearray()
    try:
        try:
            writer.write(payload)
            await writer.drain()
            if half_close:
                writer.write_eof()
        except OSError:
            pass  # closed before it read it all: what it sent still counts
        while len(data) < MAX_ANSWER:
            chunk = await reader.read(READ_LIMIT)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass  # a reset: what arrived before it is the answer
    finally:
        writer.transport.abort()
    return classify(bytes(data), start)


def blocking_exchange(addr: Tuple[str, int], payload: bytes, timeout: float) -> Outcome:
    """exchange() with a plain blocking socket, for a loop of one request at
    a time on a thread or in a process of its own (no event loop to share)."""
    start = time.monotonic()
    data = bytearray()
    try:
        with socket.create_connection(addr, max(timeout, 0.001)) as s:
            s.settimeout(max(0.001, start + timeout - time.monotonic()))
            try:
                s.sendall(payload)
            except socket.timeout:
                raise
            except OSError:
                pass  # closed before it read it all: what it sent still counts
            while len(data) < MAX_ANSWER:
                s.settimeout(max(0.001, start + timeout - time.monotonic()))
                chunk = s.recv(READ_LIMIT)
                if not chunk:
                    break
                data += chunk
    except ConnectionRefusedError:
        return Outcome("refused", start, time.monotonic())
    except socket.timeout:
        return Outcome("timeout", start, time.monotonic())
    except OSError as e:
        if not data:
            return Outcome(f"error:{errno_name(e)}", start, time.monotonic())
        # a reset after the answer: what arrived before it is the answer
    return classify(bytes(data), start)


def answer_body(body: bytes, head: bytes) -> bytes:
    """The body of an answer, de-chunked if its head says chunked."""
    if b"transfer-encoding: chunked" not in head.lower():
        return body
    out, rest = bytearray(), body
    while rest:
        size, _, rest = rest.partition(b"\r\n")
        try:
            n = int(size.split(b";")[0], 16)
        except ValueError:
            break
        if n == 0:
            break
        out += rest[:n]
        rest = rest[n + 2:]
    return bytes(out)


async def waves(n: int, wave: int, make: Callable) -> list:
    """Starts n coroutines from make(), `wave` per turn of the event loop (so
    early connections send while later ones connect); their results."""
    tasks = []
    for i in range(n):
        tasks.append(asyncio.ensure_future(make()))
        if (i + 1) % wave == 0:
            await asyncio.sleep(0)
    return await asyncio.gather(*tasks)


async def bounded(concurrency: int, coros: Iterable) -> list:
    """Runs the coroutines, at most `concurrency` at once; their results."""
    gate = asyncio.Semaphore(concurrency)

    async def one(coro):
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


# ---------------------------------------------------------------- admin /metrics


def parse_metrics(text: str) -> Metrics:
    """Prometheus text -> {'name{labels}': value}."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


def metric(m: Metrics, name: str) -> float:
    """The sum of every series of one metric family."""
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))


def server_seen(m: Metrics) -> float:
    """Connections the server accounts for: answered plus dropped unanswered
    (an abandoned answer was already counted as answered)."""
    abandoned = m.get('fiddler_dropped_total{reason="answer_abandoned"}', 0)
    return metric(m, "fiddler_requests_total") + metric(m, "fiddler_dropped_total") - abandoned


def delta(after: Metrics, before: Metrics, name: str) -> Dict[str, int]:
    """Increase of each series of a counter family (label value -> n), if any."""
    out = {}
    for k, v in after.items():
        if k.startswith(name + "{") and v != before.get(k, 0):
            out[k[len(name) + 1 : -1].split("=", 1)[1].strip('"')] = int(v - before.get(k, 0))
    return out


def read_metrics(host: str, port: int, timeout: float = 2.0) -> Metrics:
    """GET /metrics from the admin port (blocking)."""
    data = bytearray()
    try:
        with socket.create_connection((host, port), timeout) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: loadtest\r\n\r\n")
            while len(data) < MAX_ANSWER:
                chunk = s.recv(READ_LIMIT)
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        raise Usage(f"admin {host}:{port}/metrics: {errno_name(e)}") from None
    out = classify(bytes(data), 0)
    if out.status != 200:
        raise Usage(f"admin {host}:{port}/metrics: {out.label}")
    return parse_metrics(out.body.decode("utf-8", "replace"))


class DepthSampler(threading.Thread):
    """Samples fiddler_queue_depth every METRICS_EVERY s while it runs, on a
    thread of its own: a busy event loop would leave gaps."""

    def __init__(self, host: str, port: Optional[int], t0: float):
        super().__init__(daemon=True)
        self.host, self.port, self.t0 = host, port, t0
        self.samples: List[Tuple[float, float]] = []
        self.stop_flag = threading.Event()
        if port:
            self.start()

    def run(self) -> None:
        """Samples until stopped."""
        while not self.stop_flag.is_set():
            try:
                m = read_metrics(self.host, self.port, 1.0)
                self.samples.append((time.monotonic() - self.t0, m.get("fiddler_queue_depth", 0)))
            except Usage:
                pass  # a gap in the plot
            self.stop_flag.wait(METRICS_EVERY)

    def stop(self) -> None:
        """Stops sampling and waits for the thread."""
        self.stop_flag.set()
        if self.port:
            self.join()

    def peak(self) -> Optional[int]:
        """The deepest queue sampled (None without an admin port)."""
        return int(max((d for _, d in self.samples), default=0)) if self.port else None


# ---------------------------------------------------------------- the server


@dataclass
class Server:
    """Where the server is, and its process if this tool started it."""

    host: str
    port: int
    admin_port: Optional[int]
    pid: Optional[int]
    proc: Optional[subprocess.Popen] = None
    log: collections.deque = field(default_factory=lambda: collections.deque(maxlen=40))

    @property
    def addr(self) -> Tuple[str, int]:
        return (self.host, self.port)

    async def metrics(self) -> Metrics:
        """Its /metrics now ({} without an admin port)."""
        return await asyncio.to_thread(read_metrics, self.host, self.admin_port) if self.admin_port else {}

    async def settle(self, before: Metrics, expected: int) -> Metrics:
        """Polls /metrics until the server accounts for `expected` connections
        more than in `before`, or SETTLE s pass; {} if it stopped answering."""
        deadline = time.monotonic() + SETTLE
        while True:
            try:
                after = await self.metrics()
            except Usage:
                return {}
            if not after or server_seen(after) - server_seen(before) >= expected or time.monotonic() > deadline:
                return after
            await asyncio.sleep(METRICS_EVERY)

    def is_alive(self) -> bool:
        """False once the process has exited (or is a zombie)."""
        if self.proc is not None and self.proc.poll() is not None:
            return False
        return alive(self.pid) if self.pid else True

    def stop(self) -> None:
        """Kills a server this tool started, and every program it left."""
        if self.proc is None:
            return
        tree = descendants(process_table(), self.proc.pid)
        self.proc.kill()
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait()


def free_ports(n: int) -> List[int]:
    """n distinct free loopback ports."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def build_burn() -> str:
    """programs/burn.c built into programs/build/burn (again if older)."""
    src, exe = os.path.join(PROGRAMS, "burn.c"), os.path.join(BUILD, "burn")
    if os.path.exists(exe) and os.path.getmtime(exe) >= os.path.getmtime(src):
        return exe
    os.makedirs(BUILD, exist_ok=True)
    tmp = f"{exe}.{os.getpid()}"
    try:
        subprocess.run(["cc", "-O2", "-std=c99", "-o", tmp, src], check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise Usage(f"cannot build {src}: {e}") from None
    os.replace(tmp, exe)
    return exe


def default_routes(burn: bool) -> List[str]:
    """Routes for a spawned server given none: POST /echo (cat), POST
    /sleep?s=SECONDS (sleeper.sh) and, if `burn`, POST /burn?ms=MS (burn.c)."""
    routes = ["--route", "POST /echo=cat",
              "--route", f"POST /sleep={os.path.join(PROGRAMS, 'sleeper.sh')} {{query.s}}"]
    if burn:
        routes += ["--route", f"POST /burn={build_burn()} {{query.ms}}"]
    return routes


def spawn(binary: str, defaults: List[str], user_args: List[str], burn: bool) -> Server:
    """Starts the server on free loopback ports, --quiet, with `defaults`
    then `user_args` (later flags win) and default_routes(burn) if
    user_args have none; waits for "listening on"."""
    if not os.access(binary, os.X_OK):
        raise Usage(f"--bin {binary}: not an executable file")
    if any(a in ("--listen", "--admin") for a in user_args):
        raise Usage("with --spawn the tool picks --listen and --admin itself")
    has_routes = any(a in ("--route", "--cgi", "-c") for a in user_args)
    port, admin = free_ports(2)
    argv = [binary, "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}", "--quiet"]
    argv += defaults + ([] if has_routes else default_routes(burn)) + user_args
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = Server("127.0.0.1", port, admin, proc.pid, proc)
    ready = threading.Event()

    def drain() -> None:
        """Keeps the server's stderr flowing; remembers its last lines."""
        for raw in proc.stderr:
            server.log.append(raw.decode("utf-8", "replace").rstrip())
            if "listening on" in server.log[-1]:
                ready.set()

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + STARTUP
    while not ready.wait(0.02):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise Usage("the server did not start: " + " | ".join(server.log))
    return server


# ---------------------------------------------------------------- statistics


def percentiles(values: List[float]) -> Dict[str, Optional[float]]:
    """Nearest-rank p50, p90, p99 and the max, seconds in, milliseconds out."""
    v = sorted(values)
    out: Dict[str, Optional[float]] = {}
    for p in (50, 90, 99):
        out[f"p{p}"] = round(v[max(0, -(-p * len(v) // 100) - 1)] * 1000, 1) if v else None
    out["max"] = round(v[-1] * 1000, 1) if v else None
    return out


def tally(outcomes: List[Outcome]) -> Dict[str, int]:
    """Outcomes counted by label (status or kind), statuses first."""
    counts = collections.Counter(o.label for o in outcomes)
    return dict(sorted(counts.items(), key=lambda kv: (not kv[0].isdigit(), kv[0])))


# ---------------------------------------------------------------- scenarios


@dataclass
class Run:
    """What a scenario gets (the server, the options, the deadline) and what
    it finds (promises broken, notes)."""

    server: Server
    args: argparse.Namespace
    deadline: float
    broken: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def left(self, cap: Optional[float] = None) -> float:
        """Seconds to the global deadline, at most cap."""
        rest = max(0.0, self.deadline - time.monotonic())
        return rest if cap is None else min(rest, cap)

    def account(self, outcomes: List[Outcome], before: Metrics, after: Metrics, check: bool = True) -> object:
        """The client's count beside the server's counters: each connection
        made must show up once, answered or dropped (if `check`, a broken
        promise otherwise)."""
        if not (before and after):
            return "unavailable (no admin port, or it stopped answering)"
        connected = sum(1 for o in outcomes if o.kind != "refused" and not o.kind.startswith("error"))
        seen = int(server_seen(after) - server_seen(before))
        if any(o.kind == "timeout" for o in outcomes):
            self.notes.append("some requests timed out: accounting not checked")
        elif check and seen != connected:
            self.broken.append(f"accounting: the client made {connected} connections, "
                               f"the server accounts for {seen} (answered + dropped)")
        started = metric(after, "fiddler_programs_started_total") - metric(before, "fiddler_programs_started_total")
        return {"client connected": connected,
                "server answered": delta(after, before, "fiddler_requests_total"),
                "server dropped": delta(after, before, "fiddler_dropped_total"),
                "server accounted": seen,
                "programs started": int(started)}


async def scenario_flood(run: Run) -> Dict[str, object]:
    """N connections at once, one request each."""
    a, server = run.args, run.server
    payload = http_request(a.method, a.path, a.body.encode())
    before = await server.metrics()
    t0 = time.monotonic()
    depth = DepthSampler(server.host, server.admin_port, t0)
    outcomes = await waves(a.n, a.wave, lambda: exchange(server.addr, payload, run.left(a.request_timeout)))
    wall = time.monotonic() - t0
    depth.stop()
    after = await server.settle(before, len(outcomes))
    if a.svg:
        title = f"fiddler_crab flood: {a.n} connections at once, {a.method} {a.path}"
        write_svg(a.svg, title, outcomes, t0, depth.samples, after.get("fiddler_queue_capacity"))
        run.notes.append(f"wrote {a.svg}")
    return {
        "flood": {"connections": a.n, "request": f"{a.method} {a.path}", "wall s": round(wall, 3),
                  "queue depth peak (sampled)": depth.peak()},
        "outcomes": tally(outcomes),
        "latency ms (answered)": percentiles([o.latency for o in outcomes if o.kind == "answered"]),
        "accounting": run.account(outcomes, before, after),
    }


async def scenario_steady(run: Run) -> Dict[str, object]:
    """A fixed request rate, sent on schedule whatever the replies."""
    a, server = run.args, run.server
    payload = http_request(a.method, a.path, a.body.encode())
    before = await server.metrics()
    t0 = time.monotonic()
    depth = DepthSampler(server.host, server.admin_port, t0)
    tasks: List[asyncio.Future] = []
    open_now = [0]
    skipped = 0
    for i in range(min(MAX_SENDS, int(a.rate * a.duration))):
        wait = t0 + i / a.rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)  # the schedule itself, not a wait for the server
        if run.left() <= 0:
            break
        if open_now[0] >= MAX_SOCKETS:
            skipped += 1
            continue
        open_now[0] += 1
        task = asyncio.ensure_future(exchange(server.addr, payload, run.left(a.request_timeout)))
        task.add_done_callback(lambda _: open_now.__setitem__(0, open_now[0] - 1))
        tasks.append(task)
    outcomes = list(await asyncio.gather(*tasks))
    wall = time.monotonic() - t0
    depth.stop()
    after = await server.settle(before, len(outcomes))
    if skipped:
        run.notes.append(f"{skipped} requests not sent: {MAX_SOCKETS} connections already open")
    if a.svg:
        title = f"fiddler_crab steady: {a.rate:g} requests/s for {a.duration:g} s, {a.method} {a.path}"
        write_svg(a.svg, title, outcomes, t0, depth.samples, after.get("fiddler_queue_capacity"))
        run.notes.append(f"wrote {a.svg}")
    return {
        "steady": {"rate /s": a.rate, "duration s": a.duration, "sent": len(outcomes), "wall s": round(wall, 3)},
        "outcomes": tally(outcomes),
        "latency ms (answered)": percentiles([o.latency for o in outcomes if o.kind == "answered"]),
        "per second (by send time)": per_second(outcomes, t0, depth.samples),
        "accounting": run.account(outcomes, before, after),
    }


def per_second(outcomes: List[Outcome], t0: float, depth: List[Tuple[float, float]]) -> List[Dict[str, object]]:
    """A row per second of sending: sent, answered, dropped, latency, depth."""
    rows: Dict[int, List[Outcome]] = collections.defaultdict(list)
    for o in outcomes:
        rows[int(o.start - t0)].append(o)
    table = []
    for second, group in sorted(rows.items()):
        ok = [o.latency for o in group if o.kind == "answered"]
        lat = percentiles(ok)
        peak = max((d for t, d in depth if second <= t < second + 1), default=None)
        table.append({"s": second, "sent": len(group), "answered": len(ok), "dropped": len(group) - len(ok),
                      "drop %": round(100 * (len(group) - len(ok)) / len(group), 1),
                      "p50 ms": lat["p50"], "p99 ms": lat["p99"], "queue max": None if peak is None else int(peak)})
    return table


async def slow_client(run: Run, kind: str, end: float, log: List[Tuple[str, str, float]]) -> None:
    """One slowloris socket until `end`, opened again whenever the server
    closes it. "trickle": a header byte per --interval, the head never ends;
    "stall": a head announcing 1000 bytes of body, 10 of them, then silence.
    Logs (kind, how the connection ended, seconds it lived)."""
    a = run.args
    head = f"POST {a.path} HTTP/1.1\r\nHost: loadtest\r\n"
    while time.monotonic() < end:
        born = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*run.server.addr, limit=READ_LIMIT), run.left(5))
        except (OSError, asyncio.TimeoutError) as e:
            log.append((kind, "connect failed: " + (errno_name(e) if isinstance(e, OSError) else "timeout"), 0.0))
            await asyncio.sleep(a.interval)  # pacing: as often as a slow client sends
            continue
        answer = asyncio.ensure_future(reader.read(4096))
        if kind == "trickle":
            pending = (head + "".join(f"X-Slow-{i}: y\r\n" for i in range(10000))).encode()
        else:
            writer.write(f"{head}Content-Length: 1000\r\n\r\n".encode() + b"x" * 10)
            pending = b""
        try:
            while time.monotonic() < end and not answer.done():
                if pending:
                    writer.write(pending[:1])
                    pending = pending[1:]
                await asyncio.wait([answer], timeout=min(a.interval, max(0.0, end - time.monotonic())))
        except OSError:
            pass
        if answer.done():
            data = b"" if answer.exception() else answer.result()
            log.append((kind, classify(data, born).label, time.monotonic() - born))
            await asyncio.sleep(a.interval)  # pacing, as above
        else:
            answer.cancel()
            log.append((kind, "still open at end", time.monotonic() - born))
        writer.transport.abort()


def probe_loop(addr: Tuple[str, int], payload: bytes, interval: float, end: float, timeout: float, conn) -> None:
    """Body of the probe process (slowloris --probe-process): a request each
    `interval` s until `end` (time.monotonic(), the same clock in every
    process) on blocking sockets, so that the slow sockets' event loop cannot
    delay the probe's bytes; sends [(kind, start, end, status)] through conn."""
    probes = []
    while time.monotonic() < end:
        tick = time.monotonic()
        o = blocking_exchange(addr, payload, timeout)
        probes.append((o.kind, o.start, o.end, o.status))
        time.sleep(max(0.0, interval - (time.monotonic() - tick)))  # the probe's schedule
    conn.send(probes)


async def scenario_slowloris(run: Run) -> Dict[str, object]:
    """Trickling and stalled senders, and a normal probe each interval."""
    a, server = run.args, run.server
    before = await server.metrics()
    end = time.monotonic() + min(a.duration, run.left())
    log: List[Tuple[str, str, float]] = []
    slow = [asyncio.ensure_future(slow_client(run, k, end, log)) for k in ("trickle", "stall") for _ in range(a.slow)]
    probes: List[Outcome] = []
    payload = http_request("POST", a.path, b"probe")
    if a.probe_process:
        ctx = multiprocessing.get_context("spawn")
        conn, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=probe_loop, daemon=True,
                           args=(server.addr, payload, a.probe_interval or a.interval, end, a.probe_timeout, child))
        proc.start()
        await asyncio.gather(*slow)
        got = await asyncio.to_thread(conn.poll, run.left(a.probe_timeout + 10))
        probes = [Outcome(k, t0, t1, st) for k, t0, t1, st in (conn.recv() if got else [])]
        proc.join(5)
        if proc.is_alive():
            proc.kill()
        if not got:
            raise Usage("the probe process sent no result")
    else:
        while time.monotonic() < end:
            tick = time.monotonic()
            probes.append(await exchange(server.addr, payload, run.left(a.probe_timeout)))
            await asyncio.sleep(max(0.0, (a.probe_interval or a.interval) - (time.monotonic() - tick)))  # schedule
        await asyncio.gather(*slow)
    after = await server.settle(before, 0)
    ok = [p for p in probes if p.status == 200]
    if len(ok) < len(probes):
        run.broken.append(f"{len(probes) - len(ok)} of {len(probes)} probes not answered 200: {tally(probes)}")
    ends: Dict[str, Dict[str, int]] = collections.defaultdict(collections.Counter)
    lives: Dict[str, float] = collections.defaultdict(float)
    for kind, how, lived in log:
        ends[kind][how] += 1
        lives[kind] = max(lives[kind], round(lived, 2))
    return {
        "slowloris": {"trickle sockets": a.slow, "stall sockets": a.slow, "duration s": a.duration,
                      "probe every s": a.probe_interval or a.interval,
                      "probe": "a process of its own" if a.probe_process else "the slow sockets' event loop"},
        "probes": {"sent": len(probes), "answered 200": len(ok),
                   "success %": round(100 * len(ok) / len(probes), 1) if probes else None, "by end": tally(probes)},
        "probe latency ms": percentiles([p.latency for p in ok]),
        "slow connections, by end": {k: dict(v) for k, v in sorted(ends.items())},
        "slow connection longest life s": dict(sorted(lives.items())),
        "server counters": {"answered": delta(after, before, "fiddler_requests_total"),
                            "dropped": delta(after, before, "fiddler_dropped_total")} if after else "unavailable",
    }


async def hold(server: Server, path: str, timeout: float) -> asyncio.StreamWriter:
    """A connection that sent one complete request and stays open."""
    _, writer = await asyncio.wait_for(asyncio.open_connection(*server.addr, limit=READ_LIMIT), timeout)
    writer.write(http_request("POST", path, b"hold"))
    await writer.drain()
    return writer


async def wait_for_metric(run: Run, test: Callable[[Metrics], bool], what: str, timeout: float = 10) -> Metrics:
    """Polls /metrics until test(metrics) holds (a Usage error after timeout)."""
    deadline = time.monotonic() + run.left(timeout)
    while True:
        m = await run.server.metrics()
        if test(m):
            return m
        if time.monotonic() > deadline:
            raise Usage(f"waited {timeout:g} s for {what}; queue depth "
                        f"{m.get('fiddler_queue_depth')} of {m.get('fiddler_queue_capacity')}")
        await asyncio.sleep(METRICS_EVERY)


async def fill_queue(run: Run) -> Tuple[List[asyncio.StreamWriter], Metrics]:
    """dropcost with /metrics: the handler busy, the queue full (its held
    connections, and /metrics then)."""
    a, server = run.args, run.server
    first = await server.metrics()
    capacity = int(first.get("fiddler_queue_capacity", 0))
    if not 1 <= capacity <= a.max_hold:
        raise Usage(f"the server's queue is {capacity}: run it with --queue 1..{a.max_hold}")
    if first.get("fiddler_queue_depth"):
        raise Usage("the server is not idle (queue depth > 0)")
    started = metric(first, "fiddler_programs_started_total")
    held = [await hold(server, a.hold_path, run.left(5))]
    await wait_for_metric(run, lambda m: metric(m, "fiddler_programs_started_total") > started, "the first program")
    held += [await hold(server, a.hold_path, run.left(5)) for _ in range(capacity - 1)]
    return held, await wait_for_metric(run, lambda m: m.get("fiddler_queue_depth") == capacity, "a full queue")


async def touch(addr: Tuple[str, int], timeout: float) -> Outcome:
    """Connects and closes at once, sending nothing: a port scan, a load
    balancer's TCP check."""
    start = time.monotonic()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(*addr), max(timeout, 0.001))
    except asyncio.TimeoutError:
        return Outcome("timeout", start, time.monotonic())
    except OSError as e:
        return Outcome(f"error:{errno_name(e)}", start, time.monotonic())
    writer.close()
    return Outcome("closed", start, time.monotonic())


async def scenario_dropcost(run: Run) -> Dict[str, object]:
    """Server CPU per excess connection, handler busy and queue full (or,
    with --room, per connection taken in; with --silent, that sends nothing)."""
    a, server = run.args, run.server
    if not server.pid:
        raise Usage("dropcost needs --pid (or --spawn)")
    if a.room:
        held, before = [], (await server.metrics() if server.admin_port else {})
    elif server.admin_port:
        held, before = await fill_queue(run)
    else:
        # Any server: hold --hold requests (a peer's bound, made full), give
        # them --hold-settle s to reach its queue, and trust that they did.
        held = [await hold(server, a.hold_path, run.left(5)) for _ in range(a.hold)]
        await asyncio.sleep(a.hold_settle if held else 0)  # no /metrics to wait for
        before = {}
    capacity = len(held)
    payload = http_request(a.method, a.path, a.body.encode(), close=True)
    main_thread = f"{server.pid}/task/{server.pid}"
    cpu0, main0, cg0 = cpu_ticks(server.pid), cpu_ticks(main_thread), cgroup_usec(a.cgroup)
    t0 = time.monotonic()
    def one():
        if a.silent:
            return touch(server.addr, run.left(a.request_timeout))
        return exchange(server.addr, payload, run.left(a.request_timeout))
    outcomes = await bounded(a.concurrency, (one() for _ in range(a.n)))
    wall = time.monotonic() - t0
    if a.room and before:
        # Taken in, they are the gate's until it reads their close.
        reading = 'fiddler_connections{state="reading"}'
        await wait_for_metric(run, lambda m: metric(m, reading) == 0, "the connections closed")
    elif a.room:
        await asyncio.sleep(1)  # another server: time to close what it took in
    cpu1, main1, cg1 = cpu_ticks(server.pid), cpu_ticks(main_thread), cgroup_usec(a.cgroup)
    after = await server.settle(before, len(outcomes)) if before and not a.room else before
    for w in held:
        w.transport.abort()
    steady = not a.room and after and after.get("fiddler_queue_depth") == capacity and metric(
        after, "fiddler_programs_started_total") == metric(before, "fiddler_programs_started_total")
    if after and not steady and not a.room:
        run.notes.append("the handler did not stay busy with a full queue (a --hold-path shorter than the run, "
                         "or than the server's --timeout?): the CPU is not only that of drops, and the "
                         "held requests' answers are in the server's counts")
    ticks, us = cpu1["own"] - cpu0["own"], 1e6 / CLK_TCK
    cpu = {"ticks": ticks, "clk_tck": CLK_TCK, "cpu ms": round(ticks * us / 1000, 1),
           "us per connection": round(ticks * us / a.n, 2), "resolution us/conn": round(us / a.n, 2),
           "main thread (listener) ticks": main1["own"] - main0["own"],
           "reaped children ticks": cpu1["children"] - cpu0["children"]}
    if cg0 is not None and cg1 is not None:
        cpu["cgroup us per connection"] = round((cg1 - cg0) / a.n, 2)
    return {
        "dropcost": {"excess connections": a.n, "held": capacity, "concurrency": a.concurrency,
                     "wall s": round(wall, 3), "connections/s": round(a.n / wall) if wall else None},
        "outcomes": tally(outcomes),
        "server cpu (raw, whole process)": cpu,
        "accounting": run.account(outcomes, before, after, check=bool(steady)),
    }


def seq_loop(addr: Tuple[str, int], payload: bytes, n: int, duration: float, warmup: int,
             timeout: float, deadline: float, before_measure: Callable[[], object]) -> Tuple[List[Outcome], float]:
    """Body of seq, on a thread of its own: `warmup` requests not counted,
    then before_measure(), then one request after the other until n were
    made or `duration` s (or the deadline) passed; the outcomes, the wall s."""
    for _ in range(warmup):
        if time.monotonic() >= deadline:
            break
        blocking_exchange(addr, payload, min(timeout, deadline - time.monotonic()))
    before_measure()
    outcomes: List[Outcome] = []
    t0 = time.monotonic()
    end = min(t0 + duration, deadline)
    while len(outcomes) < n and time.monotonic() < end:
        outcomes.append(blocking_exchange(addr, payload, min(timeout, max(0.001, deadline - time.monotonic()))))
    return outcomes, time.monotonic() - t0


async def scenario_seq(run: Run) -> Dict[str, object]:
    """One request at a time, closed loop: requests/s and latency."""
    a, server = run.args, run.server
    body = a.body.encode()
    payload = http_request(a.method, a.path, body, close=True)
    marks: Dict[str, object] = {}

    def mark() -> None:
        """The server's CPU when the counted requests begin."""
        marks["cpu"] = cpu_ticks(server.pid) if server.pid else None
        marks["cg"] = cgroup_usec(a.cgroup)

    outcomes, wall = await asyncio.to_thread(seq_loop, server.addr, payload, a.n, a.duration, a.warmup,
                                             a.request_timeout, run.deadline, mark)
    ok = [o for o in outcomes if o.status == a.expect]
    if len(ok) < len(outcomes):
        run.broken.append(f"{len(outcomes) - len(ok)} of {len(outcomes)} requests not answered {a.expect}: "
                          f"{tally(outcomes)}")
    wrong = sum(1 for o in ok if o.body != body) if a.check_echo and a.expect == 200 else 0
    if wrong:
        sample = next(o.body for o in ok if o.body != body)[:80]
        run.broken.append(f"{wrong} answers were not the body sent (one: {sample!r}): --no-check-echo?")
    out: Dict[str, object] = {
        "seq": {"request": f"{a.method} {a.path}", "body bytes": len(body), "warm-up": a.warmup,
                "requests": len(outcomes), "wall s": round(wall, 3),
                "requests/s": round(len(ok) / wall, 1) if wall else None,
                "echo checked": bool(a.check_echo and a.expect == 200)},
        "outcomes": tally(outcomes),
        f"latency ms (answered {a.expect})": percentiles([o.latency for o in ok]),
    }
    cost: Dict[str, object] = {}
    if server.pid and marks.get("cpu") and outcomes:
        cpu1, cpu0 = cpu_ticks(server.pid), marks["cpu"]
        for k in ("own", "children"):
            cost[f"{k} ms"] = round((cpu1[k] - cpu0[k]) * 1000 / CLK_TCK / len(outcomes), 3)
    if marks.get("cg") is not None and outcomes:
        cost["cgroup ms"] = round((cgroup_usec(a.cgroup) - marks["cg"]) / 1000 / len(outcomes), 3)
    if cost:
        out["server cpu per request (own: the server; children: programs it reaped)"] = cost
    return out


async def warm_client(addr: Tuple[str, int], payload: bytes, keep: bool, timeout: float, end: float,
                      outcomes: List[Outcome]) -> None:
    """One client of `warm`, in a closed loop until `end`: each request on a
    new connection (closed by the server after its answer), or on the one
    connection it keeps (a new one whenever the server closed it)."""
    reader = writer = None
    while time.monotonic() < end:
        start = time.monotonic()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(*addr, limit=READ_LIMIT)
            writer.write(payload)
            if not keep:
                data = await asyncio.wait_for(reader.read(-1), timeout)  # it closes after the answer
                outcomes.append(classify(data, start))
                writer.close()
                reader = writer = None
                continue
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None)
            # No length (a streamed, chunked answer): it ends with the connection.
            read = reader.read(-1) if length is None else reader.readexactly(length)
            body = await asyncio.wait_for(read, timeout)
            outcomes.append(classify(head + body, start))
            if length is None or b"\r\nconnection: close\r\n" in head.lower():
                writer.close()
                reader = writer = None
        except asyncio.TimeoutError:
            outcomes.append(Outcome("timeout", start, time.monotonic()))
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            outcomes.append(Outcome("closed" if isinstance(e, asyncio.IncompleteReadError) else "error:reset",
                                    start, time.monotonic()))
        except OSError as e:
            outcomes.append(Outcome(f"error:{errno_name(e)}", start, time.monotonic()))
        if writer is not None and outcomes[-1].kind != "answered":
            writer.close()
            reader = writer = None


async def scenario_warm(run: Run) -> Dict[str, object]:
    """Many clients, each in a closed loop of small requests (a warm worker's
    micro endpoint): requests/s and latency, each request on a new connection
    or (--keep-alive) each client on one kept connection."""
    a, server = run.args, run.server
    body = a.body.encode()
    payload = http_request(a.method, a.path, body, close=not a.keep_alive)
    warm_end = time.monotonic() + a.warmup
    await asyncio.gather(*(warm_client(server.addr, payload, a.keep_alive, a.request_timeout, warm_end, [])
                           for _ in range(a.clients)))
    cpu0 = cpu_ticks(server.pid) if server.pid else None
    cg0 = cgroup_usec(a.cgroup)
    outcomes: List[Outcome] = []
    t0 = time.monotonic()
    end = min(t0 + a.duration, run.deadline)
    await asyncio.gather(*(warm_client(server.addr, payload, a.keep_alive, a.request_timeout, end, outcomes)
                           for _ in range(a.clients)))
    wall = time.monotonic() - t0
    ok = [o for o in outcomes if o.status == a.expect]
    out: Dict[str, object] = {
        "warm": {"request": f"{a.method} {a.path}", "body bytes": len(body), "clients": a.clients,
                 "connections": "kept" if a.keep_alive else "one per request", "requests": len(outcomes),
                 "wall s": round(wall, 3), "requests/s": round(len(ok) / wall, 1) if wall else None},
        "outcomes": tally(outcomes),
        f"latency ms (answered {a.expect})": percentiles([o.latency for o in ok]),
    }
    if cpu0 and outcomes:
        cpu1 = cpu_ticks(server.pid)
        out["server cpu per request, ms"] = {
            k: round((cpu1[k] - cpu0[k]) * 1000 / CLK_TCK / len(outcomes), 3) for k in ("own", "children")}
    if cg0 is not None and outcomes:
        out["cgroup cpu per request, ms"] = round((cgroup_usec(a.cgroup) - cg0) / 1000 / len(outcomes), 3)
    if not ok:
        run.broken.append(f"no request was answered {a.expect}: {tally(outcomes)}")
    return out


def garbage_cases(rng: random.Random, n: int, path: str) -> List[Tuple[str, bytes, bool]]:
    """n seeded cases (kind, bytes, half-close after sending) of bad input."""
    good = http_request("POST", path, b"hello")
    post = f"POST {path} HTTP/1.1\r\n".encode()

    def bad_line() -> bytes:
        return rng.choice([
            b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"G@T / HTTP/1.1\r\n\r\n", b" / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n", b"\r\n\r\n\r\n\r\n", b"get / http/1.1\r\n\r\n",
            b"GET /" + b"a" * rng.randint(1000, 70000) + b" HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\n\n",
            post[:-2] + b"\rHost: x\r\r", b"GET http://[::1 HTTP/1.1\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(64),  # a TLS ClientHello
            b"GET /%zz%00 HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\n: nameless\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n"])

    def huge_headers() -> bytes:
        if rng.random() < 0.5:
            return post + b"X-Big: " + b"v" * rng.randint(16000, 300000) + b"\r\n\r\n"
        return post + b"".join(b"X-%d: y\r\n" % i for i in range(rng.randint(100, 5000))) + b"\r\n"

    def bad_chunk_size() -> bytes:
        size = rng.choice([b"zz", b"-1", b"ffffffffffffffffffff", b"5", b"0x10", b"5;" + b"e" * 9000, b"", b"7\r\nab"])
        return post + b"Transfer-Encoding: chunked\r\n\r\n" + size + b"\r\nabc" + rng.choice([b"", b"\r\n0\r\n\r\n"])

    def nul_bytes() -> bytes:
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data.insert(rng.randrange(len(data)), 0)
        return bytes(data)

    def bad_length() -> bytes:
        return post + rng.choice([
            b"Content-Length: 100\r\n\r\nonly ten b", b"Content-Length: abc\r\n\r\nhello",
            b"Content-Length: -5\r\n\r\nhello", b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            b"Content-Length: 99999999999999999999\r\n\r\nx", b"Content-Len",
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"])

    def pipelined_junk() -> bytes:
        return good + rng.choice([rng.randbytes(rng.randint(1, 2000)), good, b"GET / HTTP/1.1\r\n\r\n" * 50])

    def random_binary() -> bytes:
        return rng.randbytes(rng.randint(1, 8192))

    def mutated() -> bytes:
        data = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            i, op = rng.randrange(len(data)), rng.randrange(4)
            if op == 0:
                data[i] ^= 1 << rng.randrange(8)
            elif op == 1:
                data.insert(i, rng.randrange(256))
            elif op == 2 and len(data) > 1:
                del data[i]
            else:
                data[i:i] = data[i : i + rng.randint(1, 20)]
        return bytes(data)

    kinds = [bad_line, huge_headers, bad_chunk_size, nul_bytes, bad_length, pipelined_junk, random_binary, mutated]
    cases = []
    for _ in range(n):
        make = rng.choice(kinds)
        cases.append((make.__name__.replace("_", " "), make(), rng.random() < 0.5))
    return cases


async def scenario_garbage(run: Run) -> Dict[str, object]:
    """Seeded bad bytes, then a normal request that must get 200."""
    a, server = run.args, run.server
    cases = garbage_cases(random.Random(a.seed), a.cases, a.path)
    outcomes = await bounded(a.concurrency, (exchange(server.addr, data, run.left(a.case_timeout), half)
                                             for _, data, half in cases))
    by_kind: Dict[str, Dict[str, int]] = collections.defaultdict(collections.Counter)
    for (kind, _, half), o in zip(cases, outcomes):
        by_kind[kind][o.label + (" (half-closed)" if half and o.kind != "answered" else "")] += 1
    final = await exchange(server.addr, http_request("POST", a.path, b"still there?"), run.left(10))
    if final.status != 200:
        run.broken.append(f"the normal request after the garbage got {final.label}, not 200")
    fives = sum(1 for o in outcomes if o.status in (500, 502))
    if fives:
        run.notes.append(f"{fives} garbage cases answered 500 or 502 (a caught panic? a failed program?)")
    return {
        "garbage": {"cases": a.cases, "seed": a.seed, "concurrency": a.concurrency},
        "outcomes by kind": {k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())},
        "outcomes": tally(outcomes),
        "final normal request": {"status": final.label, "latency ms": round(final.latency * 1000, 1)},
    }


async def scenario_idle(run: Run) -> Dict[str, object]:
    """The server left alone: CPU ticks, wake-ups, RSS."""
    a, pid = run.args, run.server.pid
    if not pid:
        raise Usage("idle needs --pid (or --spawn)")
    cpu0, ctx0 = cpu_ticks(pid), context_switches(pid)
    span = min(a.duration, run.left())
    await asyncio.sleep(span)  # the measurement itself: nothing to wait for
    fields, cpu1, ctx1 = proc_stat(pid), cpu_ticks(pid), context_switches(pid)
    if not fields:
        return {"idle": "the server is gone"}
    ticks = cpu1["own"] - cpu0["own"]
    return {"idle": {"duration s": span, "cpu ticks": ticks, "cpu ms": round(ticks * 1000 / CLK_TCK, 1),
                     "context switches": ctx1 - ctx0, "wake-ups /s": round((ctx1 - ctx0) / span, 2) if span else None,
                     "rss MB": round(int(fields[F_RSS]) * PAGE / 2**20, 2), "threads": int(fields[F_THREADS])}}


SCENARIOS = {"flood": scenario_flood, "steady": scenario_steady, "slowloris": scenario_slowloris,
             "dropcost": scenario_dropcost, "garbage": scenario_garbage, "idle": scenario_idle,
             "seq": scenario_seq, "warm": scenario_warm}
SPAWN_DEFAULTS = {"dropcost": ["--queue", "4"]}  # before the user's server args, which win


# ---------------------------------------------------------------- SVG


def nice_ticks(hi: float, count: int = 6) -> List[float]:
    """Round tick values from 0 up to at least hi."""
    raw = max(hi, 1e-9) / count
    mag = 10 ** int(f"{raw:e}".split("e")[1])
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [round(i * step, 10) for i in range(int(hi / step + 0.999999) + 1 if hi > 0 else 2)]


def write_svg(path: str, title: str, outcomes: List[Outcome], t0: float,
              depth: List[Tuple[float, float]], capacity: Optional[float]) -> None:
    """Two panels over one time axis: each answer's latency at its completion
    (a dot; unanswered connections as red marks at the bottom), and the
    sampled queue depth with the capacity."""
    w, left, right, top, lat_h, gap, dep_h, bottom = 960, 72, 24, 84, 300, 70, 170, 56
    h, pw = top + lat_h + gap + dep_h + bottom, w - left - right
    answered = [o for o in outcomes if o.kind == "answered"]
    xt = nice_ticks(max([o.end - t0 for o in outcomes] + [t for t, _ in depth] + [0.001]))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
           f'font-family="sans-serif" font-size="12">', f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="26" text-anchor="middle" font-size="16" font-weight="bold">{escape(title)}</text>',
           f'<text x="{w / 2}" y="46" text-anchor="middle" fill="#444">'
           f'{escape(", ".join(f"{k}: {v}" for k, v in tally(outcomes).items()))}</text>']

    def x(t: float) -> float:
        return left + pw * t / xt[-1]

    def panel(y0: float, ph: float, ticks: List[float], label: str) -> Callable[[float], float]:
        """Frame, grid, tick labels and axis labels; the panel's y scale."""
        def y(v: float) -> float:
            return y0 + ph - ph * v / ticks[-1]
        for v in ticks:
            out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e4e4e4"/>'
                       f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
        for t in xt:
            out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{y0}" y2="{y0 + ph}" stroke="#f0f0f0"/>'
                       f'<text x="{x(t):.1f}" y="{y0 + ph + 16}" text-anchor="middle">{t:g}</text>')
        out.append(f'<rect x="{left}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>'
                   f'<text transform="translate(18 {y0 + ph / 2}) rotate(-90)" text-anchor="middle">{label}</text>'
                   f'<text x="{left + pw / 2}" y="{y0 + ph + 34}" text-anchor="middle">time since start (s)</text>')
        return y

    y = panel(top, lat_h, nice_ticks(max([o.latency * 1000 for o in answered] + [1])), "latency (ms)")
    for o in answered:
        out.append(f'<circle cx="{x(o.end - t0):.1f}" cy="{y(o.latency * 1000):.1f}" r="1.8" '
                   f'fill="{"#1f77b4" if o.status == 200 else "#ff7f0e"}" fill-opacity="0.6"/>')
    for o in outcomes:
        if o.kind != "answered":
            out.append(f'<line x1="{x(o.end - t0):.1f}" x2="{x(o.end - t0):.1f}" y1="{top + lat_h - 8}" '
                       f'y2="{top + lat_h}" stroke="#d62728" stroke-opacity="0.5"/>')
    legend = [("#1f77b4", "answered 200"), ("#ff7f0e", "answered, other status"),
              ("#d62728", "unanswered (a mark at its end)")]
    for i, (colour, text) in enumerate(legend):
        out.append(f'<circle cx="{left + 10 + i * 210}" cy="{top - 12}" r="4" fill="{colour}"/>'
                   f'<text x="{left + 18 + i * 210}" y="{top - 8}">{text}</text>')
    y0 = top + lat_h + gap
    y = panel(y0, dep_h, nice_ticks(max([d for _, d in depth] + [capacity or 0, 1]), 4), "queue depth")
    if capacity:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(capacity):.1f}" y2="{y(capacity):.1f}" '
                   f'stroke="#d62728" stroke-dasharray="6 4"/><text x="{left + pw - 4}" y="{y(capacity) - 5:.1f}" '
                   f'text-anchor="end" fill="#d62728">capacity {capacity:g}</text>')
    if depth:
        points = " ".join(f"{x(t):.1f},{y(d):.1f}" for t, d in depth)
        out.append(f'<polyline points="{points}" fill="none" stroke="#2ca02c" stroke-width="1.5"/>')
    out.append(f'<text x="{left + 10}" y="{y0 - 8}" fill="#2ca02c">fiddler_queue_depth, sampled from '
               f'/metrics every {METRICS_EVERY * 1000:g} ms</text></svg>')
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


# ---------------------------------------------------------------- output


def render(report: Dict[str, object]) -> str:
    """The report as text: a block per section, lists of rows as tables."""
    lines = []
    for section, value in report.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            cols = list(value[0])
            widths = [max(len(str(c)), *(len(str(r[c])) for r in value)) for c in cols]
            lines.append(f"{section}:")
            lines += ["  " + "  ".join(str(r[c]).rjust(wd) for c, wd in zip(cols, widths))
                      for r in [dict(zip(cols, cols))] + value]
        elif isinstance(value, dict):
            width = max((len(str(k)) for k in value), default=0)
            lines.append(f"{section}:")
            for k, v in value.items():
                if isinstance(v, dict):
                    v = "  ".join(f"{kk}={vv}" for kk, vv in v.items()) or "-"
                lines.append(f"  {str(k).ljust(width)}  {v}")
        elif isinstance(value, list):
            lines.append(f"{section}:" + ("".join(f"\n  - {v}" for v in value) if value else " none"))
        else:
            lines.append(f"{section}: {value}")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def parse(argv: List[str]) -> Tuple[argparse.Namespace, List[str]]:
    """The tool's options, and what follows `--` (a spawned server's args)."""
    server_args: List[str] = []
    if "--" in argv:
        argv, server_args = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("the server")
    g.add_argument("--host", default="127.0.0.1", help="[127.0.0.1]")
    g.add_argument("--port", type=int, default=8080, help="[8080]")
    g.add_argument("--admin-port", type=int, help="its admin port, for /metrics (counts, queue depth)")
    g.add_argument("--pid", type=int, help="its pid, to watch it in /proc (RSS, CPU, programs at once)")
    g.add_argument("--spawn", action="store_true", help="start it: --bin, and its args after --")
    g.add_argument("--bin", default="target/release/fiddler_crab", help="[target/release/fiddler_crab]")
    g.add_argument("--allow-remote", action="store_true", help="allow a --host that is not loopback")
    g.add_argument("--cgroup", help="a cgroup directory the server runs in: its CPU, children included, "
                                    "in microseconds (seq, dropcost, idle and the server summary)")
    g.add_argument("--stalled", type=int, default=0,
                   help="connections that sent the start of a request and stall, held open through the "
                        "scenario: the server's cost per event beside N open connections (it needs "
                        "--max-reading above N) [0]")
    g = common.add_argument_group("bounds and output")
    g.add_argument("--timeout", type=float, default=120, help="the whole scenario, s [120]")
    g.add_argument("--max-rss-mb", type=float, help="a promise: the server's tree never above it")
    g.add_argument("--max-programs", type=int, default=1,
                   help="a promise: most children of the server at once [1]; 0: none (another server)")
    g.add_argument("--sample-ms", type=float, default=5, help="/proc sampling period [5]")
    g.add_argument("--json", action="store_true", help="one JSON object instead of text")

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")

    def count(limit: int, low: int = 1) -> Callable[[str], int]:
        """An argparse type: an integer in low..limit."""
        def check(text: str) -> int:
            if not low <= int(text) <= limit:
                raise argparse.ArgumentTypeError(f"must be {low}..{limit}")
            return int(text)
        return check

    def scenario(name: str, path: str, timeout: Optional[float] = None) -> argparse.ArgumentParser:
        """A scenario's subcommand; with `timeout`, the options of one request."""
        p = sub.add_parser(name, parents=[common], help=SCENARIOS[name].__doc__)
        p.add_argument("--path", default=path, help=f"the request's path [{path}]")
        if timeout:
            p.add_argument("--method", default="POST", help="[POST]")
            p.add_argument("--body", default="hello", help="[hello]")
            p.add_argument("--request-timeout", type=float, default=timeout, help=f"per request, s [{timeout:g}]")
        return p

    p = scenario("flood", "/echo", 60)
    p.add_argument("--n", type=count(MAX_SOCKETS), default=2000, help="connections [2000]")
    p.add_argument("--wave", type=count(MAX_SOCKETS), default=50,
                   help="connections started per turn of the event loop [50]; = --n: all connect before any sends")
    p.add_argument("--svg", help="latency and queue depth over time, to this file")
    p = scenario("steady", "/echo", 30)
    p.add_argument("--rate", type=float, default=100, help="requests per second [100]")
    p.add_argument("--duration", type=float, default=10, help="s of sending [10]")
    p.add_argument("--svg", help="latency and queue depth over time, to this file")
    p = scenario("slowloris", "/echo")
    p.add_argument("--slow", type=count(MAX_SOCKETS // 2), default=100, help="sockets of each kind [100]")
    p.add_argument("--duration", type=float, default=15, help="s [15]")
    p.add_argument("--interval", type=float, default=1.0, help="s between two trickled bytes, two probes [1]")
    p.add_argument("--probe-timeout", type=float, default=5, help="per probe, s [5]")
    p.add_argument("--probe-interval", type=float, help="s between two probes [--interval]")
    p.add_argument("--probe-process", action="store_true",
                   help="send the probes from a process of their own (blocking sockets), not from the "
                        "event loop that also runs the slow sockets")
    p = scenario("dropcost", "/echo", 10)
    p.add_argument("--n", type=count(MAX_SENDS), default=5000, help="excess connections [5000]")
    p.add_argument("--concurrency", type=count(MAX_SOCKETS), default=100, help="excess connections at once [100]")
    p.add_argument("--hold-path", default="/sleep?s=60", help="a long request: the busy handler [/sleep?s=60]")
    p.add_argument("--max-hold", type=count(MAX_SOCKETS), default=64, help="the largest server queue filled [64]")
    p.add_argument("--hold", type=count(MAX_SOCKETS, 0), default=0,
                   help="without --admin-port (any server): requests to --hold-path held open first [0]")
    p.add_argument("--hold-settle", type=float, default=1.0,
                   help="without --admin-port: s the held requests get to reach the server's queue [1]")
    p.add_argument("--room", action="store_true",
                   help="leave the queue empty: each connection is taken in, not excess")
    p.add_argument("--silent", action="store_true",
                   help="send nothing: connect and close at once (a port scan, a TCP health check)")
    p = scenario("garbage", "/echo")
    p.add_argument("--cases", type=count(MAX_SENDS), default=500, help="[500]")
    p.add_argument("--seed", type=int, default=7, help="[7]")
    p.add_argument("--concurrency", type=count(MAX_SOCKETS), default=50, help="cases at once [50]")
    p.add_argument("--case-timeout", type=float, default=1.0, help="per case, s [1]")
    p = scenario("seq", "/echo", 10)
    p.add_argument("--n", type=count(MAX_SENDS), default=MAX_SENDS, help=f"most requests [{MAX_SENDS}]")
    p.add_argument("--duration", type=float, default=5, help="most s of requests [5]")
    p.add_argument("--warmup", type=count(10000, 0), default=20,
                   help="requests first, not counted [20]")
    p.add_argument("--check-echo", action=argparse.BooleanOptionalAction, default=True,
                   help="every 200 answer's body must be the body sent [yes]")
    p.add_argument("--expect", type=int, default=200,
                   help="the status every request must get, and the one counted in requests/s [200]")
    p = scenario("warm", "/fn", 10)
    p.add_argument("--clients", type=count(MAX_SOCKETS), default=16, help="clients at once [16]")
    p.add_argument("--duration", type=float, default=10, help="s of counted requests [10]")
    p.add_argument("--warmup", type=float, default=1, help="s of requests first, not counted [1]")
    p.add_argument("--keep-alive", action="store_true",
                   help="each client keeps one connection (a new one when the server closes it)")
    p.add_argument("--expect", type=int, default=200, help="the status counted in requests/s [200]")
    p = scenario("idle", "/")
    p.add_argument("--duration", type=float, default=10, help="s [10]")
    args = ap.parse_args(argv)
    if server_args and not args.spawn:
        ap.error("arguments after -- are for a spawned server: add --spawn")
    if getattr(args, "rate", 1) <= 0:
        ap.error("--rate must be above 0")
    return args, server_args


def raise_nofile() -> None:
    """Raises the soft limit of open files to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def loopback_host(host: str, allow_remote: bool) -> str:
    """The host's address; refuses one that is not loopback unless allowed."""
    ip = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)[0][4][0]
    if not (ipaddress.ip_address(ip).is_loopback or allow_remote):
        raise Usage(f"{host} ({ip}) is not loopback: add --allow-remote to load another machine")
    return ip


def server_report(run: Run, watcher: Optional[Watcher], cpu0: Dict[str, Optional[int]]) -> Dict[str, object]:
    """The server's own numbers, and the promises they break."""
    server, a = run.server, run.args
    if not server.pid:
        return {"pid": "unknown (--pid to watch it)"}
    is_alive = server.is_alive()
    if not is_alive:
        run.broken.append("the server died" + "".join(f"\n    {line}" for line in list(server.log)[-5:]))
    out: Dict[str, object] = {"pid": server.pid, "alive": is_alive}
    if watcher:
        peaks = watcher.stop()
        rss, programs = peaks.get("rss", 0), peaks.get("programs", 0)
        out.update({"peak rss MB (tree)": round(rss / 2**20, 2), "peak threads": peaks.get("threads"),
                    "max programs at once": programs, "/proc samples": peaks.get("samples")})
        if a.max_programs and programs > a.max_programs:
            run.broken.append(f"{programs} programs ran at once (--max-programs {a.max_programs})")
        if a.max_rss_mb and rss > a.max_rss_mb * 2**20:
            run.broken.append(f"peak RSS {rss / 2**20:.1f} MB is over --max-rss-mb {a.max_rss_mb:g}")
    if is_alive:
        cpu1 = cpu_ticks(server.pid)
        out["cpu s (server)"] = round((cpu1["own"] - cpu0["own"]) / CLK_TCK, 2)
        out["cpu s (programs reaped)"] = round((cpu1["children"] - cpu0["children"]) / CLK_TCK, 2)
        cg1 = cgroup_usec(a.cgroup)
        if cg1 is not None and cpu0.get("cgroup") is not None:
            out["cpu s (cgroup: server and every program)"] = round((cg1 - cpu0["cgroup"]) / 1e6, 3)
    return out


async def stall(run: Run, n: int) -> List[asyncio.StreamWriter]:
    """n connections that sent the start of a request and wait, taken in by
    the server (its reading count, if it has /metrics) before the scenario."""
    head = f"POST {run.args.path} HTTP/1.1\r\n".encode()
    held = []
    for _ in range(n):
        _, writer = await asyncio.open_connection(*run.server.addr)
        writer.write(head)
        held.append(writer)
    if run.server.admin_port:
        reading = 'fiddler_connections{state="reading"}'
        await wait_for_metric(run, lambda m: metric(m, reading) >= n, f"{n} stalled connections read", 60)
    else:
        await asyncio.sleep(1)
    return held


async def run_scenario(args: argparse.Namespace, server_args: List[str]) -> Tuple[Dict[str, object], int]:
    """Finds or starts the server, runs the scenario within --timeout; the
    report and the exit status."""
    host = loopback_host(args.host, args.allow_remote)
    if args.spawn:
        burn = any(p.startswith("/burn") for p in (args.path, getattr(args, "hold_path", "")))
        server = spawn(args.bin, SPAWN_DEFAULTS.get(args.scenario, []), server_args, burn)
    else:
        server = Server(host, args.port, args.admin_port, args.pid)
        if server.pid and not alive(server.pid):
            raise Usage(f"no process {server.pid}")
    run = Run(server, args, time.monotonic() + args.timeout)
    watcher = Watcher(server.pid, args.sample_ms / 1000) if server.pid else None
    stalled = await stall(run, args.stalled) if args.stalled else []
    cpu0: Dict[str, Optional[int]] = {**cpu_ticks(server.pid), "cgroup": cgroup_usec(args.cgroup)} if server.pid else {}
    try:
        if watcher:
            watcher.start()
        try:
            body = await asyncio.wait_for(SCENARIOS[args.scenario](run), args.timeout + SETTLE + 5)
        except asyncio.TimeoutError:
            raise Usage(f"the scenario overran --timeout {args.timeout:g}") from None
        report = {"scenario": args.scenario, **body, "server": server_report(run, watcher, cpu0),
                  "broken": run.broken, "notes": run.notes}
    finally:
        try:
            if watcher:
                watcher.stop()
        finally:
            for w in stalled:
                w.transport.abort()
            server.stop()
    if stalled:
        report["stalled connections held open"] = len(stalled)
    return report, (1 if run.broken else 0)


def main() -> int:
    """Runs one scenario; the exit status."""
    args, server_args = parse(sys.argv[1:])
    raise_nofile()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # unwinds: a spawned server is killed
    try:
        report, status = asyncio.run(run_scenario(args, server_args))
    except Usage as e:
        print(f"loadtest {args.scenario}: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report) if args.json else render(report) + "\nresult: " + ("BROKEN" if status else "ok"))
    return status


if __name__ == "__main__":
    sys.exit(main())
