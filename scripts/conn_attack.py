"""Holds many TCP connections against an HTTP server, for scripts/bench-connections.

Usage: conn_attack.py MODE CONNECTIONS SECONDS HOST PORT [SOURCE_ADDRESS]
  MODE idle       open CONNECTIONS connections and send nothing
  MODE slowloris  open CONNECTIONS connections, send a request line and then one header byte
                  every 2 s, never finishing the headers
A connection the server closes is opened again at once, until SECONDS have passed. Prints one
JSON line: connections opened, closed by the server, refused or failed to open, and the most
that were open at once. SOURCE_ADDRESS (e.g. 127.0.0.2) is the local address to connect from.
"""

import asyncio
import json
import sys
import time


async def main() -> None:
    mode, n, seconds, host, port = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    local = (sys.argv[6], 0) if len(sys.argv) > 6 else None
    end = time.monotonic() + seconds
    stats = {"mode": mode, "target": n, "opened": 0, "closed_by_server": 0, "failed": 0, "max_open": 0}
    open_now = 0

    async def one() -> None:
        nonlocal open_now
        while time.monotonic() < end:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, local_addr=local), 5)
            except (OSError, asyncio.TimeoutError):
                stats["failed"] += 1
                await asyncio.sleep(0.2)
                continue
            stats["opened"] += 1
            open_now += 1
            stats["max_open"] = max(stats["max_open"], open_now)
            try:
                if mode == "slowloris":
                    writer.write(b"POST /v1/score HTTP/1.1\r\nHost: x\r\n")
                    await writer.drain()
                while time.monotonic() < end:
                    if mode == "slowloris":
                        writer.write(b"X")
                        await writer.drain()
                    # Reading returns b"" once the server closes the connection.
                    try:
                        data = await asyncio.wait_for(reader.read(1024), 2)
                        if not data:
                            stats["closed_by_server"] += 1
                            break
                    except asyncio.TimeoutError:
                        pass
            except (OSError, ConnectionError):
                stats["closed_by_server"] += 1
            finally:
                open_now -= 1
                writer.close()

    # Open in waves so the listener's accept queue is not the only thing measured.
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(one()))
        if i % 500 == 499:
            await asyncio.sleep(0.05)
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(stats))


if __name__ == "__main__":
    asyncio.run(main())
