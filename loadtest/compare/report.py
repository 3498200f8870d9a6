#!/usr/bin/env python3
"""Records and tabulates the measurements of run.sh. Python 3.9+, stdlib only.

    report.py record RESULTS SECTION TARGET ROUND -- COMMAND...
    report.py table RESULTS [--bin PATH] [--root DIR]

`record` runs COMMAND (at most 15 minutes), which prints one JSON object
(loadtest.py --json, or spawnloop), and appends a line to RESULTS (JSON
lines): section, target, round, argv, exit status, the object. It exits 0
whatever the command did: a failed measurement is a row marked failed, not
the end of the run.

`table` prints the Markdown tables of BENCHMARKS.md from RESULTS: for each
target the median of its rounds (every round's value beside it), the ratio
to the reference (the median of the ratios of each round, target and
reference measured minutes apart at most), and each target of issue 7 met
or missed.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

# name -> (section, label, reference target or None). The order is the
# tables' order.
TARGETS = {
    # sequential requests: requests/s
    "spawnloop-fork": ("seq", "spawnloop: fork+exec `cat`, pipes, wait (no HTTP)", None),
    "spawnloop-spawn": ("seq", "spawnloop: posix_spawn `cat` (no HTTP)", None),
    "spawnloop-cgi": ("seq", "spawnloop: fork+exec `echo.sh` (sh, then cat; no HTTP)", None),
    "fiddler-404": ("seq", "fiddler_crab, no route: 404, no program (client + HTTP floor)", None),
    "fiddler-cat": ("seq", "**fiddler_crab** `--route 'POST /echo=cat'`", "spawnloop-fork"),
    "fiddler-cgi": ("seq", "fiddler_crab `--cgi` echo.sh (sh + cat)", "spawnloop-cgi"),
    "webhook-printf": ("seq", "webhook: `printf %s BODY` (one exec)", "spawnloop-fork"),
    "webhook-cat": ("seq", "webhook: body to a file, cat-file.sh (sh + cat)", "spawnloop-cgi"),
    "busybox-cgi": ("seq", "busybox httpd, CGI echo.sh (sh + cat)", "spawnloop-cgi"),
    "haproxy-cgi": ("seq", "HAProxy maxconn 1 -> lighttpd mod_cgi echo.sh (sh + cat)", "spawnloop-cgi"),
    "python-cgi": ("seq", "python3 -m http.server --cgi, echo-length.sh (sh + head)", "spawnloop-cgi"),
    # CPU per excess connection
    "acceptloop": ("dropcost", "acceptloop.c: accept, close", None),
    "fiddler-q4": ("dropcost", "**fiddler_crab** `--queue 4`, full: closed unread", "acceptloop"),
    "fiddler-q4-503": ("dropcost", "fiddler_crab `--queue 4 --on-full 503`, full", "acceptloop"),
    "haproxy-full": ("dropcost", "HAProxy maxconn 1, 3 queued, full: 503", "acceptloop"),
    "webhook-404": ("dropcost", "webhook (no bound): 404, the least it does", "acceptloop"),
    "busybox-404": ("dropcost", "busybox httpd (no bound): 404, a fork each", "acceptloop"),
    "python-404": ("dropcost", "python3 -m http.server (no bound): 404, a thread each", "acceptloop"),
    # fiddler_crab alone
    "flood-10000": ("flood", "fiddler_crab --queue 500, 10,000 connections", None),
    "slow-default-loop": ("slowloris", "--max-reading 256 (default), probe on the tool's event loop", None),
    "slow-default-proc": ("slowloris", "--max-reading 256 (default), probe in its own process", None),
    "slow-1024-loop": ("slowloris", "--max-reading 1024, probe on the tool's event loop", None),
    "slow-1024-proc": ("slowloris", "--max-reading 1024, probe in its own process", None),
    "idle-fiddler": ("idle", "**fiddler_crab**", None),
    "idle-acceptloop": ("idle", "acceptloop.c", None),
    "idle-webhook": ("idle", "webhook", None),
    "idle-busybox": ("idle", "busybox httpd", None),
    "idle-haproxy": ("idle", "HAProxy (without lighttpd)", None),
    "idle-lighttpd": ("idle", "lighttpd", None),
    "idle-python": ("idle", "python3 -m http.server", None),
}


def record(results: str, section: str, target: str, rnd: str, argv: List[str]) -> int:
    """Runs argv, appends its JSON to results; always 0."""
    t0 = time.time()
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=900)
        rc, out, err = proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    except (OSError, subprocess.TimeoutExpired) as e:
        rc, out, err = -1, "", str(e)
    try:
        data = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
    except (ValueError, IndexError):
        data = None
    line = json.dumps({"section": section, "target": target, "round": int(rnd), "argv": argv, "rc": rc,
                       "seconds": round(time.time() - t0, 1), "data": data, "stderr": err[-2000:]})
    with open(results, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(line + "\n")
    print(f"  [{section} {target} round {rnd}] exit {rc}, {time.time() - t0:.1f} s: {brief(section, data)}",
          file=sys.stderr)
    return 0


def brief(section: str, d: Optional[dict]) -> str:
    """One line of what a measurement found."""
    if not d:
        return "no result"
    try:
        if "reference" in d or "client" in d:
            return f"{d['requests/s']} requests/s"
        if section == "seq":
            return f"{d['seq']['requests/s']} requests/s, outcomes {d['outcomes']}"
        if section == "dropcost":
            c = d["server cpu (raw, whole process)"]
            return f"{c['us per connection']} us/conn (ticks), {c.get('cgroup us per connection')} (cgroup)"
        if section == "flood":
            return f"rss {d['server']['peak rss MB (tree)']} MB, programs {d['server']['max programs at once']}"
        if section == "slowloris":
            return f"probes {d['probes']['success %']} %, p99 {d['probe latency ms']['p99']} ms"
        if section == "idle":
            return f"{d['idle']['cpu ticks']} ticks, {d['idle']['rss MB']} MB"
    except (KeyError, TypeError):
        pass
    return "?"


# ---------------------------------------------------------------- table


def median(values: List[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def fmt(v, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def dig(d: Optional[dict], *keys):
    """d[k1][k2]..., None where missing."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


class Results:
    """The lines of a results file, by target."""

    def __init__(self, path: str, bin_path: str, root: str):
        self.rows: Dict[str, List[dict]] = {}
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                self.rows.setdefault(r["target"], []).append(r)
        self.bin_path, self.root = bin_path, root.rstrip("/") + "/"

    def values(self, target: str, *keys) -> List[float]:
        """One value per round (rounds without it left out, but an outcome
        that did not happen counts 0)."""
        out = []
        for r in self.rows.get(target, []):
            v = dig(r["data"], *keys)
            if v is None and keys[0] == "outcomes" and isinstance(dig(r["data"], "outcomes"), dict):
                v = 0
            if isinstance(v, (int, float)):
                out.append(v)
        return out

    def command(self, target: str) -> str:
        """The first round's command, paths made short, pids and cgroups
        named (PID, CGROUP: the server's, as run.sh started it)."""
        rows = self.rows.get(target)
        if not rows:
            return "(not run)"
        parts = []
        for a in rows[0]["argv"]:
            a = a.replace(self.bin_path, "BIN").replace(self.root, "")
            if re.fullmatch(r".*/python3(\.\d+)?", a):
                a = "python3"
            elif a.startswith("PATH="):
                a = "PATH=$SPATH"
            elif a.startswith("/sys/fs/cgroup/"):
                a = "CGROUP"
            parts.append(a if a and all(c.isalnum() or c in "-_./=:,@%$" for c in a) else "'" + a + "'")
        return re.sub(r"--pid \d+", "--pid PID", " ".join(parts))

    def failed(self, target: str) -> List[str]:
        """Rounds that did not give a result, or broke a promise."""
        out = []
        for r in self.rows.get(target, []):
            if r["data"] is None:
                out.append(f"round {r['round']}: no result (exit {r['rc']}): {r['stderr'].strip()[-200:]}")
            elif dig(r["data"], "broken"):
                out.append(f"round {r['round']}: {'; '.join(r['data']['broken'])[:300]}")
        return out


def paired(res: "Results", target: str, ref: Optional[str], value) -> Optional[float]:
    """The median over rounds of value(target's row) / value(ref's row),
    rounds where both have a value; value(row) -> float or None."""
    if not ref:
        return None
    mine = {r["round"]: value(r) for r in res.rows.get(target, [])}
    theirs = {r["round"]: value(r) for r in res.rows.get(ref, [])}
    ratios = [mine[k] / theirs[k] for k in mine if isinstance(mine[k], (int, float))
              and isinstance(theirs.get(k), (int, float)) and theirs[k]]
    return median(ratios)


def seq_value(r: dict) -> Optional[float]:
    """requests/s of one round's row, if it kept its promises."""
    d = r["data"] or {}
    v = d.get("requests/s") if "reference" in d or "client" in d else dig(d, "seq", "requests/s")
    return v if isinstance(v, (int, float)) and r["rc"] == 0 else None


def seq_rate(res: Results, target: str) -> List[float]:
    """requests/s of each round that kept its promises (spawnloop,
    seqclient or loadtest.py seq)."""
    out = []
    for r in res.rows.get(target, []):
        d = r["data"] or {}
        v = d.get("requests/s") if "reference" in d or "client" in d else dig(d, "seq", "requests/s")
        if isinstance(v, (int, float)) and r["rc"] == 0:
            out.append(v)
    return out


def seq_lat(res: Results, target: str, p: str) -> List[float]:
    """Latency percentile p ("p50", "p99") of each round, ms."""
    out = []
    for r in res.rows.get(target, []):
        d = r["data"] or {}
        if "reference" in d or "client" in d:
            out.append(d.get(f"{p} ms"))
        else:
            lat = next((v for k, v in d.items() if k.startswith("latency ms")), None)
            if lat and lat.get(p) is not None:
                out.append(lat[p])
    return [v for v in out if v is not None]


def rounds(values: List[float], digits: int = 1) -> str:
    return ", ".join(fmt(float(v), digits) for v in values) or "–"


def table(res: Results) -> str:
    out: List[str] = []
    verdicts: List[str] = []
    notes: List[str] = []

    # 1. sequential
    out += ["### 1. Sequential requests (one at a time, closed loop)", "",
            "Each HTTP target twice: with loadtest.py seq (Python) and with seqclient.c (C), in the same round.",
            "",
            "| target | requests/s, Python client (median) | rounds | requests/s, C client (median) | rounds "
            "| p50 ms (C) | p99 ms (C) | server CPU ms/request: own | with programs (cgroup) | ratio (Python) "
            "| ratio (C) |",
            "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    rate = {t: median(seq_rate(res, t)) for t in res.rows if t in TARGETS and TARGETS[t][0] == "seq"
            or t.endswith("+c")}
    cpu_key = "server cpu per request (own: the server; children: programs it reaped)"
    for t, (sec, label, ref) in TARGETS.items():
        if sec != "seq" or t not in res.rows:
            continue
        c = t + "+c" if t + "+c" in res.rows else t
        own = median(res.values(t, cpu_key, "own ms") or res.values(t, "own cpu ms"))
        total = median(res.values(t, cpu_key, "cgroup ms") or
                       [a + b for a, b in zip(res.values(t, "own cpu ms"), res.values(t, "children cpu ms"))])
        ratio = paired(res, t, ref, seq_value)
        ratio_c = paired(res, c, ref, seq_value) if c != t else None
        out.append(f"| {label} | {fmt(rate[t])} | {rounds(seq_rate(res, t))} | {fmt(rate.get(c))} | "
                   f"{rounds(seq_rate(res, c))} | {fmt(median(seq_lat(res, c, 'p50')), 2)} | "
                   f"{fmt(median(seq_lat(res, c, 'p99')), 2)} | {fmt(own, 3)} | {fmt(total, 3)} | "
                   f"{fmt(ratio, 2) + ' × ' + ref if ratio else ''} | {fmt(ratio_c, 2) if ratio_c else ''} |")
        if t != "fiddler-404":
            notes += [f"{t}: {f}" for f in res.failed(t)] + [f"{c}: {f}" for f in res.failed(c) if c != t]
    ref = rate.get("spawnloop-fork")
    for client, suffix in (("Python client", ""), ("C client", "+c")):
        fc = rate.get("fiddler-cat" + suffix)
        r = paired(res, "fiddler-cat" + suffix, "spawnloop-fork", seq_value)
        if not (fc and ref and r):
            continue
        peers = {t: v for t, v in rate.items() if t.endswith(suffix) and v and ("+c" in t) == bool(suffix)
                 and t.split("-")[0] in ("webhook", "busybox", "haproxy", "python")}
        behind = [t for t, v in peers.items() if v >= fc]
        verdicts.append(f"1. sequential `cat`, {client}: fiddler_crab {fc:,.1f}/s, {r:.2f} × the spawn loop "
                        f"({ref:,.1f}/s; median of the rounds' ratios): target ≥ 0.95 **{'met' if r >= 0.95 else 'missed'}**; ahead of every "
                        f"peer: **{'met' if not behind else 'missed (' + ', '.join(behind) + ')'}**"
                        + (f" (best peer {max(peers.values()):,.1f}/s)" if peers else ""))
    out.append("")

    # 2. dropcost
    out += ["### 2. Server CPU per excess connection", "",
            "| target | what the client got | µs/conn, ticks (median) | rounds | µs/conn, cgroup (median) | rounds "
            "| ratio (ticks) | ratio (cgroup) |", "|---|---|---:|---|---:|---|---:|---:|"]
    key = ("server cpu (raw, whole process)",)
    tick = {t: median(res.values(t, *key, "us per connection")) for t, m in TARGETS.items() if m[0] == "dropcost"}
    cg = {t: median(res.values(t, *key, "cgroup us per connection")) for t, m in TARGETS.items() if m[0] == "dropcost"}
    for t, (sec, label, ref) in TARGETS.items():
        if sec != "dropcost" or t not in res.rows:
            continue
        got = dig(res.rows[t][0]["data"], "outcomes") or {}
        rt = paired(res, t, ref, lambda row: dig(row["data"], *key, "us per connection"))
        rc = paired(res, t, ref, lambda row: dig(row["data"], *key, "cgroup us per connection"))
        out.append(f"| {label} | {', '.join(f'{k}: {v}' for k, v in got.items())} | {fmt(tick[t], 2)} | "
                   f"{rounds(res.values(t, *key, 'us per connection'), 2)} | {fmt(cg[t], 2)} | "
                   f"{rounds(res.values(t, *key, 'cgroup us per connection'), 2)} | {fmt(rt, 2)} | {fmt(rc, 2)} |")
        notes += [f"{t}: {f}" for f in res.failed(t)]
    for name, m, field in (("ticks", tick, "us per connection"), ("cgroup", cg, "cgroup us per connection")):
        fc, ref = m.get("fiddler-q4"), m.get("acceptloop")
        r = paired(res, "fiddler-q4", "acceptloop", lambda row: dig(row["data"], *key, field))
        if fc is not None and ref and r:
            peers = {t: v for t, v in m.items() if t.split("-")[0] in ("haproxy", "webhook", "busybox", "python")
                     and v is not None}
            above = [t for t, v in peers.items() if v <= fc]
            verdicts.append(f"2. CPU per excess connection ({name}): fiddler_crab {fc:.2f} µs, {r:.2f} × the "
                            f"bare accept loop ({ref:.2f} µs): target ≤ 1.5 × **{'met' if r <= 1.5 else 'missed'}**"
                            f"; below every peer: **{'met' if not above else 'missed (' + ', '.join(above) + ')'}**")
    out.append("")

    # 3. flood
    t = "flood-10000"
    if t in res.rows:
        rss = res.values(t, "server", "peak rss MB (tree)")
        progs = res.values(t, "server", "max programs at once")
        alive = [r["data"]["server"]["alive"] for r in res.rows[t] if dig(r["data"], "server", "alive") is not None]
        out += ["### 3. Flood: 10,000 connections at once, `--queue 500`", "",
                "| | median | rounds |", "|---|---:|---|",
                f"| peak RSS of the tree, MB | {fmt(median(rss), 2)} | {rounds(rss, 2)} |",
                f"| most programs at once | {fmt(max(progs) if progs else None)} | {rounds(progs, 0)} |",
                f"| alive at the end | {all(alive) if alive else '–'} | {', '.join(map(str, alive))} |",
                f"| answered 200 | {fmt(median(res.values(t, 'outcomes', '200')), 0)} | "
                f"{rounds(res.values(t, 'outcomes', '200'), 0)} |",
                f"| closed unanswered | {fmt(median(res.values(t, 'outcomes', 'closed')), 0)} | "
                f"{rounds(res.values(t, 'outcomes', 'closed'), 0)} |",
                f"| wall s | {fmt(median(res.values(t, 'flood', 'wall s')), 2)} | "
                f"{rounds(res.values(t, 'flood', 'wall s'), 2)} |", ""]
        if rss:
            ok = max(rss) <= 16 and progs and max(progs) == 1 and all(alive)
            verdicts.append(f"3. flood: peak RSS {median(rss):.2f} MB (max {max(rss):.2f}), most programs at once "
                            f"{max(progs) if progs else '?'}, alive {all(alive)}: target ≤ 16 MB, 1, alive "
                            f"**{'met' if ok else 'missed'}**")
        notes += [f"{t}: {f}" for f in res.failed(t)]

    # 4. slowloris
    cat_ms = median(seq_lat(res, "spawnloop-fork", "p50")) or 0.0
    rows = [(t, m[1]) for t, m in TARGETS.items() if m[0] == "slowloris" and t in res.rows]
    if rows:
        out += ["### 4. Slowloris: 500 trickling + 500 stalled sockets, and a probe", "",
                "| server, probe | probes sent | success % (median) | rounds | p99 ms (median) | rounds |",
                "|---|---:|---:|---|---:|---|"]
        for t, label in rows:
            succ = res.values(t, "probes", "success %")
            p99 = res.values(t, "probe latency ms", "p99")
            out.append(f"| {label} | {fmt(median(res.values(t, 'probes', 'sent')), 0)} | {fmt(median(succ), 1)} | "
                       f"{rounds(succ)} | {fmt(median(p99), 1)} | {rounds(p99)} |")
            if succ and p99:
                ok = median(succ) >= 99 and median(p99) < cat_ms + 100
                verdicts.append(f"4. slowloris, {label}: {median(succ):.1f} % of probes, p99 {median(p99):.1f} ms "
                                f"(limit {cat_ms + 100:.1f} ms: cat's {cat_ms:.1f} + 100): **{'met' if ok else 'missed'}**")
            notes += [f"{t}: {f}" for f in res.failed(t)]
        out.append("")

    # 5. idle
    rows = [(t, m[1]) for t, m in TARGETS.items() if m[0] == "idle" and t in res.rows]
    if rows:
        out += ["### 5. Idle, 10 s", "", "| server | CPU ticks (median) | rounds | wake-ups/s | RSS MB | threads |",
                "|---|---:|---|---:|---:|---:|"]
        for t, label in rows:
            ticks = res.values(t, "idle", "cpu ticks")
            out.append(f"| {label} | {fmt(median(ticks), 0)} | {rounds(ticks, 0)} | "
                       f"{fmt(median(res.values(t, 'idle', 'wake-ups /s')), 2)} | "
                       f"{fmt(median(res.values(t, 'idle', 'rss MB')), 2)} | "
                       f"{fmt(median(res.values(t, 'idle', 'threads')), 0)} |")
        ticks, rss = res.values("idle-fiddler", "idle", "cpu ticks"), res.values("idle-fiddler", "idle", "rss MB")
        if ticks and rss:
            ok = max(ticks) == 0 and median(rss) <= 3
            verdicts.append(f"5. idle: {fmt(median(ticks), 0)} ticks (max {max(ticks)}), RSS {median(rss):.2f} MB: "
                            f"target 0 ticks, ≤ 3 MB **{'met' if ok else 'missed'}**")
        out.append("")

    out += ["### Targets", ""] + [f"- {v}" for v in verdicts] + [""]
    if notes:
        out += ["### Failed rounds", ""] + [f"- {n}" for n in notes] + [""]
    out += ["### Commands (first round; BIN is the fiddler_crab binary, paths from the repository root)", ""]
    for t in TARGETS:
        for name in (t, t + "+c"):
            if name in res.rows:
                out.append(f"- {name}: `{res.command(name)}`")
    return "\n".join(out)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "record":
        if len(sys.argv) < 8 or sys.argv[6] != "--":
            print(__doc__, file=sys.stderr)
            return 2
        return record(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[7:])
    ap = argparse.ArgumentParser(description="Markdown tables from run.sh's results")
    ap.add_argument("cmd", choices=["table"])
    ap.add_argument("results")
    ap.add_argument("--bin", default="\0", help="the fiddler_crab path, shown as BIN")
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    help="shown as relative paths [the repository]")
    a = ap.parse_args()
    print(table(Results(a.results, a.bin, a.root)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
