#!/usr/bin/env python3
"""One completion per process: the prompt on stdin, the completion's text on
stdout (written and flushed piece by piece, so a `stream = true` route sends
each token as it comes), nothing else. Loads the model every time.

    complete.py [TOKENS] < prompt.txt

TOKENS: the argument (a route passes "{query.tokens}", empty when the query
has none), else ?tokens= in QUERY_STRING, else $LLAMA_TOKENS, else 32.
?seed= and ?temp= from QUERY_STRING too. Exit 2: a bad request, 1: a failure.
"""
import os
import sys

import llm


def main() -> int:
    try:
        opts = llm.options(os.environ.get("QUERY_STRING", ""), sys.argv[1] if len(sys.argv) > 1 else "")
        prompt = sys.stdin.buffer.read().decode("utf-8", "replace")
        if not prompt.strip():
            raise llm.BadRequest("empty prompt: send it as the request body")
    except llm.BadRequest as e:
        print(f"complete.py: {e}", file=sys.stderr)
        return 2
    server = llm.load()
    out = sys.stdout.buffer

    def write(text: str) -> None:
        out.write(text.encode("utf-8"))
        out.flush()

    try:
        llm.complete(server, prompt, opts, write)
    except (RuntimeError, llm.BadRequest) as e:
        print(f"complete.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # Skip the interpreter's teardown of llama.cpp's threads and buffers:
    # the answer is out, and exiting at once saves ≈ 0.1 s per request.
    os._exit(code)
