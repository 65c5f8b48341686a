"""Tiny HTTP/1.1 backends for benches, in their own process so they never share the agent's GIL.

    python bench/_backends.py 127.0.0.2:9001 127.0.0.3:9001 ...

Each listener answers every request with ``200`` and the body ``<addr>:<port>`` (keep-alive). It prints
``ready`` once all are listening and runs until stdin closes.
"""

from __future__ import annotations

import asyncio
import sys


async def serve(addr: str, port: int) -> asyncio.AbstractServer:
    body = f"{addr}:{port}".encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\nContent-Type: text/plain\r\n\r\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                if not request:
                    break
                writer.write(head + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, addr, port, backlog=1024)


async def main(specs: list[str]) -> None:
    servers = []
    for spec in specs:
        addr, _, port = spec.rpartition(":")
        servers.append(await serve(addr, int(port)))
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent goes away
    for s in servers:
        s.close()


def spawn_cmd(specs: list[str]) -> list[str]:
    return [sys.executable, __file__, *specs]


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
