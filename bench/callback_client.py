"""Load generator for the status-callback benchmark: replays prebuilt HTTP/1.1 requests over keep-alive.

Runs as its own process so the server process measured spends its CPU on serving only. It is a bare
asyncio-streams client, not aiohttp's, because a full HTTP client costs about as much CPU per request
as the server and would cap both the measured route and its baseline at its own speed.

    python bench/callback_client.py REQUESTS_FILE HOST PORT CONNECTIONS LABEL
prints {"seconds": …, "client_cpu": …, "statuses": {"204": n, …}} on stdout (client_cpu: this
process's CPU seconds while firing, to tell whether the client, not the server, was the limit).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import pickle
import sys
import time
from collections import Counter
from pathlib import Path

from warning.progress import ProgressBar


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response; return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length and status not in (204, 304):
        await reader.readexactly(length)
    return status


async def fire(
    requests: list[bytes], host: str, port: int, connections: int, label: str
) -> dict[str, object]:
    """Send every request once over `connections` keep-alive connections; time from first send to last answer."""
    streams = [await asyncio.open_connection(host, port) for _ in range(min(connections, len(requests)))]
    statuses: Counter[int] = Counter()
    next_index = itertools.count()
    bar = ProgressBar(label)
    total = len(requests)

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (i := next(next_index)) < total:
            writer.write(requests[i])
            statuses[await _read_response(reader)] += 1
            if i % 500 == 0:
                bar.update(i, total)

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(r, w) for r, w in streams))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    bar.update(total, total)
    bar.close()
    for _, writer in streams:
        writer.close()
    return {
        "seconds": seconds,
        "client_cpu": cpu,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def main() -> None:
    path, host, port, connections, label = sys.argv[1:6]
    requests: list[bytes] = pickle.loads(Path(path).read_bytes())  # noqa: S301 (our own temp file)
    print(json.dumps(asyncio.run(fire(requests, host, int(port), int(connections), label))))


if __name__ == "__main__":
    main()
