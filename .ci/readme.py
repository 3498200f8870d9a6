#!/usr/bin/env python3
"""Runs the README's console examples against the demo and compares what
they print, so README and binary cannot drift apart.

    python3 .ci/readme.py target/release/fiddler_crab

Starts BINARY as the README's demo (no route; ports 8080 and 8081), then runs
every `$ command` of every ```console block, in order, with bash, and checks
its output against the lines under it. Whitespace is not compared (the
README may wrap a long line); `…` in the README stands for anything (what
changes from run to run, like the uptime).
"""
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def examples(readme):
    """(line number, command, expected output) for each `$ ` line."""
    found, block, command = [], False, None
    for number, line in enumerate(readme.splitlines(), 1):
        if line.startswith("```console"):
            block = True
        elif block and line.startswith("```"):
            block, command = False, None
        elif block and line.startswith("$ "):
            command = [number, line[2:], []]
            found.append(command)
        elif block and command is not None:
            command[2].append(line)
    return [(n, c, "\n".join(out)) for n, c, out in found]


def matches(expected, actual):
    squeeze = lambda s: re.sub(r"\s+", "", s)
    pattern = ".*?".join(re.escape(part) for part in squeeze(expected).split("…"))
    return re.fullmatch(pattern, squeeze(actual), re.DOTALL) is not None


def main():
    binary = sys.argv[1]
    server = subprocess.Popen(
        [binary], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    try:
        for line in server.stderr:
            if "admin on " in line:
                break
        else:
            sys.exit(f"readme.py: {binary} did not start")
        failed = 0
        for number, command, expected in examples((ROOT / "README.md").read_text()):
            run = subprocess.run(
                ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True
            )
            if matches(expected, run.stdout):
                print(f"ok    README.md:{number}: {command}")
            else:
                failed += 1
                print(f"FAIL  README.md:{number}: {command}\n--- README says:\n"
                      f"{expected}\n--- the binary printed:\n{run.stdout}{run.stderr}")
        if failed:
            sys.exit(f"readme.py: {failed} example(s) print something else now")
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
