#!/usr/bin/env python3
"""The embedding model kept loaded: a fiddler_crab warm worker (README,
"Warm workers"). Each request's body is a text or a JSON list of texts;
each answer a JSON document, as embed.py writes it."""
import sys
import traceback

import emb

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


def reply(head: bytes, body: bytes) -> None:
    data = head + b"\n" + body
    stdout.write(b"%d\n" % len(data) + data)
    stdout.flush()


def main() -> None:
    model = emb.Model()
    while True:
        frame()              # the ENV frame: nothing in it is needed here
        body = frame()
        try:
            reply(b"Content-Type: application/json\n", emb.answer(model, body) + b"\n")
        except emb.BadRequest as e:
            reply(b"Status: 400\nContent-Type: text/plain\n", f"{e}\n".encode())
        except Exception:
            traceback.print_exc()
            reply(b"Status: 500\nContent-Type: text/plain\n", b"the model failed: see the server's log\n")


if __name__ == "__main__":
    main()
