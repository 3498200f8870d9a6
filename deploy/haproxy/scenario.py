#!/usr/bin/env python3
"""Three fiddler_crab instances behind HAProxy (haproxy.cfg beside this file),
both ways of queueing, four scenarios, every check a count:

  a. spread    requests reach every instance, and each instance's /metrics
               agrees with what the clients were told (X-Served-By)
  b. kill      SIGKILL one instance mid-flood: the others keep answering; what
               the clients lost, what HAProxy saw the dead instance holding,
               what was run twice
  c. drain     SIGTERM one instance mid-flood: no client sees a failure, it
               finishes what it held and exits 0
  d. overload  a flood beyond the three queues is shed, no instance dies

Run by test.sh: scenario.py BINARY HAPROXY_CFG WORKDIR. Standard library
only. Every wait is on a condition with a deadline; nothing here is a timing
threshold. Prints a table and writes WORKDIR/results.json.
"""

import collections
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

# The project's load tester reads /metrics the same way: one parser for both.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "loadtest"))
from loadtest import parse_metrics  # noqa: E402

BIN, CFG, TMP = sys.argv[1:4]
QUEUE = 8  # each instance's --queue
# What a full instance does with one more connection: 503 (an answer
# with Retry-After, HAProxy retries it elsewhere, and passes it on when all
# are full) or close (unread: HAProxy sees an empty response, retries it,
# and answers 502 when all are full).
ON_FULL = os.environ.get("FC_TEST_ON_FULL", "503")
DEADLINE = 60  # seconds, for every wait on a condition
ROUTE = "POST /work"
SERVED = 'fiddler_requests_total{route="POST /work",status="200"}'
FULL = 'fiddler_dropped_total{reason="queue_full"}'

checks = []
results = {}


def check(name, ok, detail=""):
    checks.append((name, bool(ok), detail))
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f"  ({detail})" if detail else ""), flush=True)


def note(text):
    print(f"     {text}", flush=True)


def wait_until(cond, what, deadline=DEADLINE, every=0.02):
    end = time.monotonic() + deadline
    while True:
        try:
            value = cond()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"gave up after {deadline}s waiting for: {what}")
        time.sleep(every)


def free_ports(n):
    """n free ports below the kernel's ephemeral range when there is room
    there, so that no outgoing connection can take one while an instance is
    down between a kill and its restart."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    candidates = list(range(10000, low)) if low > 12000 else []
    random.shuffle(candidates)
    ports = []
    for port in candidates:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            ports.append(port)
        except OSError:
            pass
        finally:
            s.close()
        if len(ports) == n:
            return ports
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def http_get(port, path, timeout=3):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        c.close()


def connections_to(port):
    """Connections the kernel holds for a listening port on this side:
    accepted or still in its backlog, not yet closed (ESTABLISHED or
    CLOSE_WAIT) -- what the instance holds, whatever it had done with them."""
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] in ("01", "08"):
                n += 1
    return n


class Instance:
    def __init__(self, name, port, admin):
        self.name, self.port, self.admin = name, port, admin
        self.proc = None
        self.log = os.path.join(TMP, f"{name}.log")
        self.runs = os.path.join(TMP, f"runs-{name}")

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [BIN, "--listen", f"127.0.0.1:{self.port}",
                 "--admin", f"127.0.0.1:{self.admin}",
                 "--queue", str(QUEUE), "--on-full", ON_FULL,
                 "--timeout", "30", "--drain-timeout", "30",
                 "--route", f"{ROUTE}={TMP}/work.sh {self.runs}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        wait_until(lambda: self.get("/health")[0] == 200, f"{self.name} /health 200")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def get(self, path):
        return http_get(self.admin, path)

    def metrics(self):
        status, body = self.get("/metrics")
        return parse_metrics(body) if status == 200 else {}

    def runs_of(self, prefix):
        """(ids started, ids ended) by the program on this instance."""
        started, ended = collections.Counter(), collections.Counter()
        try:
            with open(self.runs) as f:
                for line in f:
                    what, _, rid = line.strip().partition(" ")
                    if rid.startswith(prefix):
                        (started if what == "start" else ended)[rid] += 1
        except FileNotFoundError:
            pass
        return started, ended

    def log_size(self):
        return os.path.getsize(self.log)

    def log_since(self, offset):
        with open(self.log, errors="replace") as f:
            f.seek(offset)
            return f.read()


class HAProxy:
    def __init__(self, env, stats_port):
        self.env, self.stats_port = env, stats_port
        self.log = os.path.join(TMP, "haproxy.log")

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["haproxy", "-db", "-f", CFG], env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def stop(self):
        self.proc.kill()
        self.proc.wait()

    def stats(self):
        status, body = http_get(self.stats_port, "/stats;csv")
        lines = body.splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(",")))
            rows[(row["pxname"], row["svname"])] = row
        return rows

    def server(self, backend, name):
        return self.stats()[(backend, name)]

    def all_up(self, backends, names):
        rows = self.stats()
        return all(rows[(b, n)]["status"] == "UP" for b in backends for n in names)

    def lines(self, prefix):
        """HAProxy's log lines for requests whose id starts with prefix."""
        with open(self.log, errors="replace") as f:
            return [l for l in f if f"id={prefix}" in l]

    def text(self):
        with open(self.log, errors="replace") as f:
            return f.read()


def one_request(port, rid):
    """One POST /work through HAProxy: (status or what went wrong, server)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    except OSError as e:
        return f"connect:{type(e).__name__}", None, ""
    try:
        s.sendall((f"POST /work HTTP/1.1\r\nHost: lb\r\nX-Request-Id: {rid}\r\n"
                   "Content-Length: 3\r\nConnection: close\r\n\r\nhi\n").encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        return "timeout", None, ""
    except OSError as e:
        if not data:
            return f"reset:{type(e).__name__}", None, ""
    finally:
        s.close()
    if not data:
        return "closed", None, ""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return "junk", None, ""
    server = None
    for h in lines[1:]:
        k, _, v = h.partition(":")
        if k.strip().lower() == "x-served-by":
            server = v.strip()
    return status, server, body.decode(errors="replace")


class Flood(threading.Thread):
    """n requests, conc at a time; results: id -> (status, server, body)."""

    def __init__(self, port, prefix, n, conc):
        super().__init__(daemon=True)
        self.port, self.prefix, self.n, self.conc = port, prefix, n, conc
        self.results = {}
        self.lock = threading.Lock()
        self.next = 0
        self.took = None
        self.go = threading.Event()  # cleared: no new request is started
        self.go.set()

    def worker(self):
        while True:
            self.go.wait()
            with self.lock:
                i = self.next
                self.next += 1
            if i >= self.n:
                return
            rid = f"{self.prefix}-{i}"
            r = one_request(self.port, rid)
            with self.lock:
                self.results[rid] = r

    def run(self):
        t0 = time.monotonic()
        workers = [threading.Thread(target=self.worker, daemon=True) for _ in range(self.conc)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        self.took = time.monotonic() - t0

    def finish(self):
        self.join(DEADLINE * 2)
        if self.is_alive():
            raise TimeoutError(f"flood {self.prefix} did not finish")
        return self.results

    def sent(self):
        with self.lock:
            return min(self.next, self.n)


def outcome_counts(results):
    c = collections.Counter()
    for status, server, body in results.values():
        if status == 200:
            c["200"] += 1
        elif status == 503 and server is None and body.startswith("busy"):
            c["503 haproxy queue bound"] += 1
        elif status == 503 and server is None and "No server is available" in body:
            c["503 haproxy no server up"] += 1
        elif isinstance(status, int) and server is None:
            c[f"{status} haproxy"] += 1
        elif isinstance(status, int):
            c[f"{status} instance"] += 1
        else:
            c[str(status)] += 1
    return c


def haproxy_retries(lines):
    """Requests HAProxy retried (the %rc field; '+' = redispatched)."""
    retried = 0
    for l in lines:
        m = re.search(r" [A-Za-z-]{4} \d+/\d+/\d+/\d+/(\+?)(\d+) ", l)
        if m and int(m.group(2)) > 0:
            retried += 1
    return retried


def main():
    ports = free_ports(9)
    inst = [Instance(f"s{i + 1}", ports[2 * i], ports[2 * i + 1]) for i in range(3)]
    front = {"queue": ports[6], "pass": ports[7]}
    backend = {"queue": "be_queue", "pass": "be_pass"}
    env = {"FC_HAPROXY_QUEUE": f"127.0.0.1:{front['queue']}",
           "FC_HAPROXY_PASS": f"127.0.0.1:{front['pass']}",
           "FC_HAPROXY_STATS": f"127.0.0.1:{ports[8]}",
           "FC_MAXQUEUE": str(3 * QUEUE)}
    for i in inst:
        env[f"FC_{i.name.upper()}"] = f"127.0.0.1:{i.port}"
        env[f"FC_{i.name.upper()}_ADMIN"] = str(i.admin)
    with open(os.path.join(TMP, "work.sh"), "w") as f:
        # The program: logs its start and end with the request id, takes
        # 50 ms. Its first argument is where to log.
        f.write('#!/bin/sh\necho "start $HTTP_X_REQUEST_ID" >> "$1"\ncat >/dev/null\n'
                'sleep 0.05\necho "end $HTTP_X_REQUEST_ID" >> "$1"\necho done\n')
    os.chmod(os.path.join(TMP, "work.sh"), 0o755)

    hap = HAProxy(env, ports[8])
    try:
        for i in inst:
            i.start()
        hap.start()
        names = [i.name for i in inst]
        wait_until(lambda: hap.all_up(backend.values(), names), "all servers UP in HAProxy")
        note(f"3 instances (queue {QUEUE} each, on_full {ON_FULL}) behind HAProxy; "
             f"fe_queue :{front['queue']}, fe_pass :{front['pass']}")
        for mode in ("queue", "pass"):
            spread(mode, inst, hap, front[mode], backend[mode])
        for mode in ("queue", "pass"):
            kill(mode, inst, hap, front[mode], backend, names)
        for mode in ("queue", "pass"):
            drain(mode, inst, hap, front[mode], backend, names)
        for mode in ("queue", "pass"):
            overload(mode, inst, hap, front[mode], backend[mode], names)
        # Again, with HAProxy retrying only what never reached an instance:
        # what a killed instance held is then exactly what the clients lose.
        hap.stop()
        hap.env["FC_RETRY_CONN_ONLY"] = "1"
        hap.start()
        wait_until(lambda: hap.all_up(backend.values(), names), "all UP in the conn-only HAProxy")
        lost, held = kill("pass", inst, hap, front["pass"], backend, names, prefix="b-pass-conn-only")
        # Equal, except that a connection whose answer was already written
        # but not yet closed at the instant of the kill counts as held.
        check("b/pass-conn-only: without replays, the clients lose what it held, nothing else",
              1 <= lost <= held, f"lost {lost}, held {held}")
    except TimeoutError as e:
        check("every wait ended by its condition", False, str(e))
    finally:
        for p in [i.proc for i in inst] + [getattr(hap, "proc", None)]:
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    with open(os.path.join(TMP, "results.json"), "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    try:
        summary()
    except (KeyError, TypeError) as e:
        note(f"(no summary: {e!r})")
    failed = sum(1 for _, ok, _ in checks if not ok)
    print(f"\n{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


def summary():
    """The measured behaviour, as a markdown table."""
    r = results

    def per(k):
        return "/".join(str(v) for _, v in sorted(r[k]["per_instance"].items()))

    def kill_cell(k):
        x = r[k]
        return (f"held {x['held_at_kill']}, lost {x['lost']}, "
                f"run twice {x['run_on_both']}")

    def drain_cell(k):
        x = r[k]
        fails = x["requests"] - x["ok"]
        return (f"held {x['held_at_sigterm']}, answered {x['answered_200_after_sigterm']}, "
                f"exit {x['exit_code']}, client failures {fails}")

    def over_cell(k):
        x = r[k]
        shed = ", ".join(f"{v} {s}" for s, v in sorted(x["outcomes"].items()) if s != "200")
        return (f"{x['ok']} served, {shed}; instances turned away "
                f"{sum(x['instance_closed_unread'].values())}, deepest queue "
                f"{max(x['max_depth_seen'].values())}")

    print("\n| | queue at the balancer (`be_queue`) | pass-through (`be_pass`) |")
    print("|---|---|---|")
    print(f"| a. 60 requests, served by s1/s2/s3 | {per('a_queue')} | {per('a_pass')} |")
    print(f"| b. SIGKILL mid-flood (180 requests) | {kill_cell('b_queue')} | {kill_cell('b_pass')} |")
    if "b_pass_conn_only" in r:
        print(f"| b'. the same, `retry-on conn-failure` only | — | {kill_cell('b_pass_conn_only')} |")
    print(f"| c. SIGTERM mid-flood (180 requests) | {drain_cell('c_queue')} | {drain_cell('c_pass')} |")
    print(f"| d. 300 requests, 60 at a time | {over_cell('d_queue')} | {over_cell('d_pass')} |")


def spread(mode, inst, hap, port, be):
    n = 60
    before = {i.name: i.metrics().get(SERVED, 0) for i in inst}
    flood = Flood(port, f"a-{mode}", n, 6)
    flood.start()
    res = flood.finish()
    after = {i.name: i.metrics().get(SERVED, 0) for i in inst}
    delta = {k: int(after[k] - before[k]) for k in after}
    told = collections.Counter(s for st, s, _ in res.values() if st == 200)
    ok = sum(1 for st, _, _ in res.values() if st == 200)
    results[f"a_{mode}"] = {"requests": n, "ok": ok, "per_instance": delta}
    check(f"a/{mode}: {n} requests, all 200", ok == n, f"{dict(outcome_counts(res))}")
    check(f"a/{mode}: every instance served some", all(v > 0 for v in delta.values()),
          f"per instance /metrics: {delta}")
    check(f"a/{mode}: each instance's /metrics == what clients were told (X-Served-By)",
          delta == {k: told.get(k, 0) for k in delta})


def in_flight_trigger(victim, prefix, want_depth):
    """Waits until the victim has run a few programs of this flood and holds
    at least want_depth requests; returns its last /metrics."""
    last = {}

    def cond():
        m = victim.metrics()
        last.clear()
        last.update(m)
        started, _ = victim.runs_of(prefix)
        return sum(started.values()) >= 3 and m.get("fiddler_queue_depth", 0) >= want_depth

    wait_until(cond, f"{victim.name} busy with {prefix} (depth >= {want_depth})")
    return last


def restart(victim, hap, backend, names):
    victim.start()
    wait_until(lambda: hap.all_up(backend.values(), names), f"{victim.name} UP again in HAProxy")


def all_dispatched(hap, fe, be, stot0, flood):
    """True when every request the clients started has reached HAProxy and
    is with an instance or in HAProxy's queue: nothing is on its way."""
    rows = hap.stats()
    f = rows[(fe, "FRONTEND")]
    servers = [r for (px, sv), r in rows.items() if px == be and sv not in ("FRONTEND", "BACKEND")]
    placed = sum(int(r["scur"] or 0) + int(r["qcur"] or 0) for r in servers)
    placed += int(rows[(be, "BACKEND")]["qcur"] or 0)
    return int(f["stot"]) - stot0 == flood.sent() and int(f["scur"]) == placed


def kill(mode, inst, hap, port, backend, names, prefix=None):
    victim, others = inst[0], inst[1:]
    be = backend[mode]
    prefix = prefix or f"b-{mode}"
    n = 180
    fe = "fe_" + mode
    s0 = hap.server(be, victim.name)
    stot0 = int(hap.stats()[(fe, "FRONTEND")]["stot"])
    others_before = {i.name: i.metrics().get(SERVED, 0) for i in others}
    flood = Flood(port, prefix, n, 12)
    flood.start()
    last = in_flight_trigger(victim, prefix, 1 if mode == "queue" else 3)
    # To count exactly what it holds when it dies: the clients start no new
    # request for a moment and everything already sent is placed (with an
    # instance or in HAProxy's queue); then it is frozen, so nothing it holds
    # can finish, and the kernel's connections to its port are counted
    # (running, queued, being read, or still in the accept backlog); then
    # SIGKILL, and the clients go on. What was in flight keeps flowing.
    flood.go.clear()
    wait_until(lambda: all_dispatched(hap, fe, be, stot0, flood), "every request sent placed")
    victim.proc.send_signal(signal.SIGSTOP)
    held = connections_to(victim.port)
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    flood.go.set()
    sent_at_kill = flood.sent()
    res = flood.finish()
    s1 = hap.server(be, victim.name)
    d = {k: int(s1[k] or 0) - int(s0[k] or 0) for k in ("stot", "eresp", "econ", "wretr", "wredis")}
    started_v, ended_v = victim.runs_of(prefix)
    cut = set(started_v) - set(ended_v)
    elsewhere = collections.Counter()
    ended_o = collections.Counter()
    for i in others:
        st, en = i.runs_of(prefix)
        elsewhere.update(st)
        ended_o.update(en)
    rerun = {r for r in started_v if r in elsewhere}
    twice = {r for r in ended_v if r in ended_o}
    oc = outcome_counts(res)
    lost = n - oc["200"]
    retried = haproxy_retries(hap.lines(prefix))
    depth = int(last.get("fiddler_queue_depth", 0))
    # Answers that claim an instance must match a finished run there.
    consistent = all((ended_v if s == victim.name else ended_o)[rid] >= 1
                     for rid, (st, s, _) in res.items() if st == 200)
    others_after = {i.name: i.metrics().get(SERVED, 0) for i in others}
    results[prefix.replace("-", "_")] = {
        "requests": n, "sent_when_killed": sent_at_kill, "ok": oc["200"], "lost": lost,
        "held_at_kill": held,
        "outcomes": dict(oc), "victim_depth_last_seen": depth,
        "haproxy_victim": d, "haproxy_retried_requests": retried,
        "victim_program_cut": len(cut), "run_on_both": len(rerun),
        "completed_twice": len(twice),
        "answered_by_victim": sum(1 for st, s, _ in res.values() if st == 200 and s == victim.name),
        "answered_by_others_after": {k: int(others_after[k] - others_before[k]) for k in others_after},
    }
    tag = prefix.replace("-", "/", 1)
    note(f"{tag}: killed {victim.name} after {sent_at_kill}/{n} sent, holding {held} "
         f"connections (its /metrics last said depth {depth}); programs started there and "
         f"again elsewhere: {len(rerun)} ({len(twice)} of them finished on both); "
         f"HAProxy retried {retried} requests ({d['wredis']} redispatched off "
         f"{victim.name}); clients: {dict(oc)}")
    check(f"{tag}: the other instances are alive and healthy",
          all(i.alive() and i.get("/health")[0] == 200 for i in others))
    check(f"{tag}: the others kept answering",
          all(others_after[k] > others_before[k] for k in others_after),
          f"{results[prefix.replace('-', '_')]['answered_by_others_after']}")
    check(f"{tag}: every request has an outcome, none hung", "timeout" not in oc)
    check(f"{tag}: client losses <= what the killed instance held",
          lost <= held, f"lost {lost}, held {held}")
    check(f"{tag}: every 200 matches a finished run on the instance named", consistent)
    restart(victim, hap, backend, names)
    return lost, held


def drain(mode, inst, hap, port, backend, names):
    victim = inst[1]
    prefix = f"c-{mode}"
    n = 180
    s0 = hap.server(backend[mode], victim.name)
    offset = victim.log_size()
    flood = Flood(port, prefix, n, 12)
    flood.start()
    in_flight_trigger(victim, prefix, 1 if mode == "queue" else 3)
    victim.proc.send_signal(signal.SIGTERM)
    ready = []

    def seen_draining():
        if not victim.alive():
            return True
        st, body = victim.get("/ready")
        ready.append((st, body.strip()))
        return st == 503

    try:
        wait_until(seen_draining, f"{victim.name} /ready 503 or gone")
    except OSError:
        pass
    rc = victim.proc.wait(DEADLINE)
    res = flood.finish()
    s1 = hap.server(backend[mode], victim.name)
    d = {k: int(s1[k] or 0) - int(s0[k] or 0) for k in ("econ", "eresp", "wretr", "wredis")}
    log = victim.log_since(offset)
    m = re.search(r"draining; (\d+) request\(s\) held", log)
    held = int(m.group(1)) if m else -1
    after = log[m.end():] if m else ""
    answered = len(re.findall(r" POST /work 200 ", after))
    turned = len(re.findall(r" POST /work 503 ", after))
    _, ended = victim.runs_of(prefix)
    oc = outcome_counts(res)
    down = re.findall(rf"Server {backend[mode]}/{victim.name} is DOWN, reason: ([^,]*)",
                      hap.text())
    results[f"c_{mode}"] = {
        "requests": n, "ok": oc["200"], "outcomes": dict(oc), "exit_code": rc,
        "held_at_sigterm": held, "answered_200_after_sigterm": answered,
        "answered_503_after_sigterm": turned, "ready_seen": ready[-1:] if ready else [],
        "haproxy_victim": d, "haproxy_down_reason": down[-1] if down else None,
    }
    note(f"c/{mode}: SIGTERM to {victim.name} holding {held}; it answered {answered} x 200 "
         f"and {turned} x 503 after it, exited {rc}; /ready said {ready[-1] if ready else '-'}; "
         f"HAProxy redispatched {d['wredis']} requests off it and took it out for "
         f"'{down[-1] if down else '?'}' (Layer7: /ready said 503; Health analyze: a "
         f"connection was refused first); clients: {dict(oc)}")
    check(f"c/{mode}: no client-visible failure", oc["200"] == n, f"{dict(oc)}")
    check(f"c/{mode}: the draining instance exited 0", rc == 0, f"exit {rc}")
    # What it held ran to the end: it logged "drained" (not "the drain timed
    # out", which would answer the rest 503), and the clients saw no failure.
    # held and answered are reported, not compared: the count of held is
    # taken at the signal, and an answer may be logged on either side of it.
    check(f"c/{mode}: it drained what it held (no drain timeout)",
          "drained; exiting" in after and "timed out" not in after,
          f"held {held}, answered {answered} x 200 + {turned} x 503")
    check(f"c/{mode}: each of its 200s after SIGTERM was a finished run", answered <= sum(ended.values()))
    restart(victim, hap, backend, names)


def overload(mode, inst, hap, port, be, names):
    prefix = f"d-{mode}"
    n, conc = 300, 60
    before = {i.name: i.metrics() for i in inst}
    maxdepth = {i.name: 0 for i in inst}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            for i in inst:
                try:
                    d = i.metrics().get("fiddler_queue_depth", 0)
                    maxdepth[i.name] = max(maxdepth[i.name], int(d))
                except OSError:
                    pass
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    flood = Flood(port, prefix, n, conc)
    flood.start()
    res = flood.finish()
    stop.set()
    watcher.join()
    after = {i.name: i.metrics() for i in inst}
    oc = outcome_counts(res)
    full = {k: int(after[k].get(FULL, 0) - before[k].get(FULL, 0)) for k in after}
    served = {k: int(after[k].get(SERVED, 0) - before[k].get(SERVED, 0)) for k in after}
    shed = n - oc["200"]
    results[f"d_{mode}"] = {
        "requests": n, "concurrency": conc, "ok": oc["200"], "shed": shed, "outcomes": dict(oc),
        "instance_closed_unread": full, "per_instance": served, "max_depth_seen": maxdepth,
        "retried_by_haproxy": haproxy_retries(hap.lines(prefix)),
        "ok_per_second": round(oc["200"] / flood.took, 1),
    }
    note(f"d/{mode}: {n} requests, {conc} at a time: {dict(oc)}; instances closed unread "
         f"{full}; deepest queue seen {maxdepth}; HAProxy retried "
         f"{results[f'd_{mode}']['retried_by_haproxy']}")
    check(f"d/{mode}: every request answered or closed, none hung", "timeout" not in oc)
    check(f"d/{mode}: the excess was shed", shed > 0 and oc["200"] > 0,
          f"{oc['200']} served, {shed} shed")
    check(f"d/{mode}: no instance died, all healthy",
          all(i.alive() and i.get("/health")[0] == 200 for i in inst))
    check(f"d/{mode}: served == the instances' own 200 counts", sum(served.values()) == oc["200"])
    if mode == "queue":
        # HAProxy's own count (smax: most connections at once to a server) is
        # the bound; an instance's queue depth may briefly read 2, as the slot
        # of an answer already delivered is freed a moment after it.
        smax = {n: int(hap.server(be, n)["smax"]) for n in names}
        check("d/queue: the instances never saw the overload (none turned away, "
              "never 2 at once)", sum(full.values()) == 0 and max(smax.values()) <= 1,
              f"turned away {full}, HAProxy smax {smax}")
    wait_until(lambda: all(i.get("/ready")[0] == 200 for i in inst), "all /ready 200 after the flood")
    wait_until(lambda: hap.all_up([be], names), "all UP in HAProxy after the flood")
    check(f"d/{mode}: all ready and UP again afterwards", True)


if __name__ == "__main__":
    sys.exit(main())
