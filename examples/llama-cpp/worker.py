#!/usr/bin/env python3
"""The model kept loaded: a fiddler_crab warm worker (README, "Warm workers").

Reads requests as frames on stdin (LEN "\n" ENV, LEN "\n" BODY). On a route
without `stream`, answers each with one frame: a CGI header block and the
completion text. On a route with `stream = true` (FIDDLER_REQUEST_ID in the
ENV frame), answers with a head frame, one frame per token as llama.cpp
makes it, then "end ID"; a "cancel ID" line on stdin stops that request
within one token, and the model stays loaded for the next.
?tokens=N (and ?seed=, ?temp=) come from QUERY_STRING in the ENV frame.
"""
import os
import select
import sys
import traceback

import llm

stdout = sys.stdout.buffer
pending = b""  # what was read from stdin and not used yet


def more(wait=None) -> bool:
    """Reads what stdin has, waiting up to `wait` (None: until something
    comes); False if nothing came."""
    global pending
    if wait is not None and not select.select([0], [], [], wait)[0]:
        return False
    data = os.read(0, 65536)
    if not data:            # the server closed our stdin: stop
        sys.exit(0)
    pending += data
    return True


def line() -> bytes:
    global pending
    while b"\n" not in pending:
        more()
    first, pending = pending.split(b"\n", 1)
    return first


def frame() -> bytes:
    """The next request frame (a cancel of a request that ended is skipped)."""
    global pending
    first = line()
    while first.startswith(b"cancel "):
        first = line()
    n = int(first)
    while len(pending) < n:
        more()
    data, pending = pending[:n], pending[n:]
    return data


def cancelled(rid: bytes) -> bool:
    """True if `cancel rid` has come (a look at stdin, no wait)."""
    if b"\n" not in pending and not more(0):
        return False
    return pending.startswith(b"cancel ") and line() == b"cancel " + rid


def send(data: bytes) -> None:
    stdout.write(b"%d\n" % len(data) + data)
    stdout.flush()


def head(status: str) -> bytes:
    h = b"Content-Type: text/plain; charset=utf-8\n"
    if status != "200":
        h = b"Status: " + status.encode() + b"\n" + h
    return h + b"\n"


def main() -> None:
    server = llm.load()
    while True:
        env = dict(p.split(b"=", 1) for p in frame().split(b"\0") if b"=" in p)
        body = frame()
        rid = env.get(b"FIDDLER_REQUEST_ID")
        try:
            opts = llm.options(env.get(b"QUERY_STRING", b"").decode("utf-8", "replace"))
            prompt = body.decode("utf-8", "replace")
            if rid is None:
                send(head("200") + llm.complete(server, prompt, opts).encode("utf-8"))
                continue
            send(head("200"))

            def token(text: str) -> bool:
                if cancelled(rid):
                    return True   # xllamacpp stops generating at once
                send(text.encode("utf-8"))
                return False

            llm.complete(server, prompt, opts, token)
        except llm.BadRequest as e:
            if rid is None:
                send(head("400") + f"{e}\n".encode())
                continue
            send(head("400"))
            send(f"{e}\n".encode())
        except Exception:
            traceback.print_exc()
            if rid is None:
                send(head("500") + b"the model failed: see the server's log\n")
                continue
        stdout.write(b"end " + rid + b"\n")
        stdout.flush()


if __name__ == "__main__":
    main()
