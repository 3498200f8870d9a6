#!/usr/bin/env python3
"""A micro endpoint as a warm worker (README: Warm workers): parses a small
JSON body, answers a small JSON object. The same function as
compare/json_app.py, for `loadtest.py warm` against uvicorn.

CRASH_EVERY=N in its environment: it dies (exit 1, no answer) at every Nth
request, as a buggy function would.
"""
import json
import os
import sys

stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
crash_every = int(os.environ.get("CRASH_EVERY", "0"))


def answer(body: bytes) -> bytes:
    """The function: words and characters of the body's "text"."""
    try:
        text = json.loads(body)["text"]
    except (ValueError, KeyError, TypeError):
        return b'Status: 400\nContent-Type: application/json\n\n{"error": "want {\\"text\\": ...}"}'
    out = json.dumps({"words": len(text.split()), "chars": len(text)}).encode()
    return b"Content-Type: application/json\n\n" + out


def frame() -> bytes:
    line = stdin.readline()
    if not line:
        sys.exit(0)
    return stdin.read(int(line))


served = 0
while True:
    frame()  # the environment: not needed here
    body = frame()
    served += 1
    if crash_every and served % crash_every == 0:
        os._exit(1)
    reply = answer(body)
    stdout.write(b"%d\n" % len(reply) + reply)
    stdout.flush()
