#!/usr/bin/env python3
"""One request per process: a text, or a JSON list of texts, on stdin; JSON
embeddings on stdout: {"model", "dim": 384, "embeddings": [[...], ...]}
(always a list, one vector per text). Exit 2: bad input."""
import os
import sys

import emb


def main() -> int:
    body = sys.stdin.buffer.read()
    try:
        emb.texts_of(body)
    except emb.BadRequest as e:
        print(f"embed.py: {e}", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(emb.answer(emb.Model(), body) + b"\n")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
