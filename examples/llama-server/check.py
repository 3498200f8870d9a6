"""End to end: the PyPI openai client gets real answers from llama-server
through fiddler_crab, streaming and not. Run with the example's venv:

    .venv/bin/python check.py [BIN]      (BIN: target/release/fiddler_crab)

Starts BIN -c fiddler.toml here on free ports, waits for /ready (the model
loads at boot: 503 warming first), asks, and exits 1 if an answer is wrong.
"""

import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import openai

here = os.path.dirname(os.path.abspath(__file__))
binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                         os.path.join(here, "..", "..", "target", "release", "fiddler_crab"))
failed = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failed.append(what)


server = subprocess.Popen(
    [binary, "-c", "fiddler.toml", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"],
    cwd=here, stderr=subprocess.PIPE, text=True)
ports = {}
while len(ports) < 2:
    line = server.stderr.readline()
    if not line:
        sys.exit("fiddler_crab exited at start")
    for name in ("listening on", "admin on"):
        m = re.search(name + r" 127\.0\.0\.1:(\d+)", line)
        if m:
            ports[name] = int(m.group(1))
threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
base = f"http://127.0.0.1:{ports['listening on']}/v1"
ready = f"http://127.0.0.1:{ports['admin on']}/ready"

try:
    seen = set()
    start = time.monotonic()
    while True:
        try:
            status = urllib.request.urlopen(ready).status
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read().decode().strip()
            seen.add(body)
        if status == 200:
            break
        if time.monotonic() - start > 300:
            sys.exit("not ready within 300 s")
        time.sleep(0.1)
    check("warming" in seen or time.monotonic() - start < 0.2,
          f"/ready said {sorted(seen)} while the model loaded, then 200 "
          f"({time.monotonic() - start:.1f} s)")

    client = openai.OpenAI(base_url=base, api_key="none", max_retries=0)
    prompt = "Q: What is the capital of France?\nA:"
    r = client.completions.create(model="gemma", prompt=prompt, max_tokens=16, temperature=0)
    text = r.choices[0].text
    check("Paris" in text, f"completion: {text!r}")

    pieces = [c.choices[0].text for c in client.completions.create(
        model="gemma", prompt=prompt, max_tokens=16, temperature=0, stream=True)
        if c.choices]
    joined = "".join(pieces)
    check("Paris" in joined and len(pieces) > 1,
          f"streamed completion in {len(pieces)} pieces: {joined!r}")

    # Gemma 3 270M here is a base model: in a chat it continues the text
    # rather than answering. What is checked is the way there and back.
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    r = client.chat.completions.create(model="gemma", messages=messages, max_tokens=16,
                                       temperature=0)
    answer = r.choices[0].message.content or ""
    check(len(answer) > 0 and r.usage.completion_tokens > 0, f"chat: {answer!r}")

    deltas = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="gemma", messages=messages, max_tokens=16, temperature=0, stream=True)
        if c.choices]
    check("".join(deltas) == answer and len(deltas) > 1,
          f"streamed chat in {len(deltas)} pieces, the same text")
finally:
    server.terminate()
    server.wait(timeout=30)

print("check.py: " + ("all answers right" if not failed else f"{len(failed)} wrong"))
sys.exit(1 if failed else 0)
