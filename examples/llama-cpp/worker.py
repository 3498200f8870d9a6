#!/usr/bin/env python3
"""The model kept loaded: a fiddler_crab warm worker (README, "Warm workers").

Reads requests as frames on stdin (LEN "\n" ENV, LEN "\n" BODY), answers
each with one frame on stdout: a CGI header block and the completion text.
?tokens=N (and ?seed=, ?temp=) come from QUERY_STRING in the ENV frame.
"""
import sys
import traceback

import llm

stdin, stdout = sys.stdin.buffer, sys.stdout.buffer


def frame() -> bytes:
    line = stdin.readline()
    if not line:            # the server closed our stdin: stop
        sys.exit(0)
    n = int(line)
    data = stdin.read(n)
    if len(data) != n:
        sys.exit(0)
    return data


def answer(status: str, body: str) -> None:
    head = b"Content-Type: text/plain; charset=utf-8\n"
    if status != "200":
        head = b"Status: " + status.encode() + b"\n" + head
    data = head + b"\n" + body.encode("utf-8")
    stdout.write(b"%d\n" % len(data) + data)
    stdout.flush()


def main() -> None:
    server = llm.load()
    while True:
        env = dict(p.split(b"=", 1) for p in frame().split(b"\0") if b"=" in p)
        body = frame()
        try:
            opts = llm.options(env.get(b"QUERY_STRING", b"").decode("utf-8", "replace"))
            text = llm.complete(server, body.decode("utf-8", "replace"), opts)
        except llm.BadRequest as e:
            answer("400", f"{e}\n")
            continue
        except Exception:
            traceback.print_exc()
            answer("500", "the model failed: see the server's log\n")
            continue
        answer("200", text)


if __name__ == "__main__":
    main()
