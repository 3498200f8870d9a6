"""The micro endpoint of programs/json_worker.py as an ASGI app, for uvicorn
(`uvicorn --app-dir loadtest/compare json_app:app --workers 2`): the same
function, the same answers, the same CRASH_EVERY (the worker process dies).
"""
import json
import os

crash_every = int(os.environ.get("CRASH_EVERY", "0"))
served = 0


async def app(scope, receive, send):
    global served
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    served += 1
    if crash_every and served % crash_every == 0:
        os._exit(1)
    try:
        text = json.loads(body)["text"]
        status, out = 200, json.dumps({"words": len(text.split()), "chars": len(text)}).encode()
    except (ValueError, KeyError, TypeError):
        status, out = 400, b'{"error": "want {\\"text\\": ...}"}'
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})
