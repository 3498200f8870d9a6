#!/usr/bin/env python3
"""An HTTP worker for the tests (stdlib only): `http_worker.py PORT DIR`.

GET  /health       200 once DIR/ready exists (or at once without DIR/slow)
GET  /v1/pid       this process's pid
POST /v1/echo      the body back, with a Content-Length
GET  /v1/sse       two events; the second only once DIR/release exists
GET  /v1/chunked   a chunked answer in three chunks
GET  /v1/ticks     an event every 10 ms until the client leaves; then
                   DIR/left holds "<pid>"
GET  /v1/quiet     nothing, until the client leaves; then DIR/left holds "<pid>"
GET  /v1/crash     exits at once, answering nothing
GET  /v1/garbage   a malformed answer
GET  /v1/cors      Access-Control-Request-Headers copied into the answer's
                   Access-Control-Allow-Headers, as CORS middleware does
GET  /v1/host      the Host it was sent ("none" without one)
GET  /v1/empty     204, with a field and no body
GET  /v1/proxyauth 200 with a Proxy-Authenticate challenge
HEAD (any path)    200 with Content-Length: 5000, as the GET would have
Every request but /health is counted in DIR/requests. One that arrives
before the last one's answer began its last write leaves DIR/overlap: two
at once.
"""

import os
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, DIR = int(sys.argv[1]), sys.argv[2]
busy = threading.Lock()
holder = None


def path(name):
    return os.path.join(DIR, name)


def record_left():
    """DIR/left holds this pid: the client's connection closed (written
    whole at once, so a reader never sees it half written)."""
    with open(path("left.tmp"), "w") as f:
        f.write(str(os.getpid()))
    os.rename(path("left.tmp"), path("left"))


def wait_for(name):
    while not os.path.exists(path(name)):
        time.sleep(0.01)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_one_request(self):
        self.held = False
        try:
            super().handle_one_request()
        finally:
            self.done()

    def parse_request(self):
        """Once the request line is read: a request (not a probe) takes
        the worker, noting an overlap if another one holds it."""
        global holder
        ok = super().parse_request()
        if ok and self.path != "/health":
            if not busy.acquire(blocking=False):
                with open(path("overlap"), "a") as f:
                    f.write(f"{self.requestline} came during {holder}\n")
                busy.acquire()
            self.held, holder = True, self.requestline
        return ok

    def done(self):
        """Before the last write: whoever reads it all may send the next."""
        if self.held:
            self.held = False
            busy.release()

    def send(self, status, body, ctype="text/plain", fields=()):
        self.send_response(status)
        for name, value in fields:
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Upstream-Pid", str(os.getpid()))
        self.end_headers()
        self.done()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            ready = not os.path.exists(path("slow")) or os.path.exists(path("ready"))
            return self.send(200 if ready else 503, b"ok\n" if ready else b"not yet\n")
        with open(path("requests"), "a") as f:
            f.write(self.path + "\n")
        if self.path == "/v1/pid":
            seen = self.headers.get("X-Forwarded-For", "") + "|" + self.headers.get("X-Forwarded-Proto", "")
            return self.send(200, f"{os.getpid()} {seen}".encode())
        if self.path == "/v1/sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"data: one\n\n")
            self.wfile.flush()
            wait_for("release")
            self.done()
            self.wfile.write(b"data: two\n\n")
            self.close_connection = True
            return
        if self.path == "/v1/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"alpha ", b"beta ", b"gamma"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.done()
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/v1/ticks":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"data: tick\n\n")
                    self.wfile.flush()
                    time.sleep(0.01)
            except OSError:
                self.done()
                record_left()
            self.close_connection = True
            return
        if self.path == "/v1/quiet":
            # No byte until the connection closes (a long prompt, no token yet).
            while True:
                readable = select.select([self.connection], [], [], 0.01)[0]
                if readable and not self.connection.recv(1, socket.MSG_PEEK):
                    break
            self.done()
            record_left()
            self.close_connection = True
            return
        if self.path == "/v1/crash":
            os._exit(1)
        if self.path == "/v1/cors":
            allowed = self.headers.get("Access-Control-Request-Headers", "")
            return self.send(200, b"ok\n", fields=[("Access-Control-Allow-Headers", allowed)])
        if self.path == "/v1/host":
            return self.send(200, self.headers.get("Host", "none").encode())
        if self.path == "/v1/empty":
            self.send_response(204)
            self.send_header("X-A", "1")
            self.end_headers()
            self.done()
            return
        if self.path == "/v1/proxyauth":
            return self.send(200, b"ok\n", fields=[("Proxy-Authenticate", 'Basic realm="worker"')])
        if self.path == "/v1/garbage":
            self.done()
            self.wfile.write(b"this is not HTTP\r\n\r\n")
            self.close_connection = True
            return
        self.send(404, b"no such path\n")

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", "5000")
        self.end_headers()
        self.done()

    def do_POST(self):
        with open(path("requests"), "a") as f:
            f.write(self.path + "\n")
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send(200, body, "application/octet-stream")


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
