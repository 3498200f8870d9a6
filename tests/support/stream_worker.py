#!/usr/bin/env python3
"""A framed worker that streams and honours cancels, for the tests:
`stream_worker.py DIR`. The request body says what to do:

pid       one piece: "pid <pid> <body>"
wait      "one", then "two" once DIR/release exists
ticks     "tick" every 10 ms until its request is cancelled
deaf      "tick" every 10 ms, never reading a cancel
slowend   "one", then its end once DIR/release exists; a cancel that comes
          meanwhile is left unread (DIR/cancel-seen says it came)
big N     N bytes in pieces of 64 KiB
broken    "one", then a line that is no frame
"""

import os
import select
import sys
import time

DIR = sys.argv[1]
buf = b""


def more(wait=None):
    """Reads what stdin has (waiting up to `wait`); False if nothing came."""
    global buf
    if wait is not None and not select.select([0], [], [], wait)[0]:
        return False
    chunk = os.read(0, 65536)
    if not chunk:
        sys.exit(0)
    buf += chunk
    return True


def line():
    global buf
    while b"\n" not in buf:
        more()
    first, buf = buf.split(b"\n", 1)
    return first


def frame():
    """The next request frame; cancels of requests that have ended are skipped."""
    global buf
    while True:
        first = line()
        if not first.startswith(b"cancel "):
            n = int(first)
            while len(buf) < n:
                more()
            data, buf = buf[:n], buf[n:]
            return data


def cancelled(rid, wait):
    """True once `cancel rid` has come (waiting up to `wait` for it)."""
    if b"\n" not in buf and not more(wait):
        return False
    return buf.startswith(b"cancel ") and line() == b"cancel %d" % rid


def send(data):
    sys.stdout.buffer.write(b"%d\n" % len(data) + data)
    sys.stdout.buffer.flush()


def exists(name):
    return os.path.exists(os.path.join(DIR, name))


while True:
    env = dict(p.split(b"=", 1) for p in frame().split(b"\0") if p)
    body = frame()
    rid = int(env[b"FIDDLER_REQUEST_ID"])
    what = body.split()
    send(b"Content-Type: text/plain\nX-Worker-Pid: %d\n\n" % os.getpid())
    if what[0] == b"pid":
        send(b"pid %d %s" % (os.getpid(), body))
    elif what[0] == b"wait":
        send(b"one\n")
        while not exists("release"):
            time.sleep(0.01)
        send(b"two\n")
    elif what[0] == b"ticks":
        while not cancelled(rid, 0.01):
            send(b"tick\n")
    elif what[0] == b"deaf":
        while True:
            send(b"tick\n")
            time.sleep(0.01)
    elif what[0] == b"slowend":
        send(b"one\n")
        while not exists("release"):
            if select.select([0], [], [], 0.01)[0]:
                open(os.path.join(DIR, "cancel-seen"), "w").close()
                time.sleep(0.01)
    elif what[0] == b"big":
        left = int(what[1])
        while left > 0:
            send(b"x" * min(left, 65536))
            left -= 65536
    elif what[0] == b"broken":
        send(b"one\n")
        sys.stdout.buffer.write(b"this is no frame\n")
        sys.stdout.buffer.flush()
        time.sleep(3600)
    sys.stdout.buffer.write(b"end %d\n" % rid)
    sys.stdout.buffer.flush()
