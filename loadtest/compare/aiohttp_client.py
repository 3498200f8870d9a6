"""The keep-alive client a Python service is called with: one aiohttp
ClientSession (its default connector: connections kept and reused), N
tasks each in a closed loop of POSTs for D seconds. Prints one JSON line:
requests/s, p50/p99 ms, the statuses and errors seen.

    venv/bin/python aiohttp_client.py URL BODY CLIENTS SECONDS
"""
import asyncio
import json
import sys
import time

import aiohttp


async def main(url: str, body: str, clients: int, seconds: float) -> None:
    latencies, outcomes = [], {}

    async def client(session: aiohttp.ClientSession, end: float, record: bool) -> None:
        while time.monotonic() < end:
            start = time.monotonic()
            try:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    key = str(r.status)
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                key = type(e).__name__
            if record:
                outcomes[key] = outcomes.get(key, 0) + 1
                if key == "200":
                    latencies.append(time.monotonic() - start)

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        warm = time.monotonic() + 1
        await asyncio.gather(*(client(session, warm, False) for _ in range(clients)))
        t0 = time.monotonic()
        await asyncio.gather(*(client(session, t0 + seconds, True) for _ in range(clients)))
        wall = time.monotonic() - t0
    latencies.sort()
    pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2) if latencies else None
    print(json.dumps({"requests/s": round(len(latencies) / wall, 1), "p50 ms": pick(0.5), "p99 ms": pick(0.99),
                      "outcomes": outcomes}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
