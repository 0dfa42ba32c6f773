#!/usr/bin/env python3
"""Independent WebSocket server (the `websockets` library) for our client's integration tests.

Prints `LISTENING <port>` when ready. Behaviour depends on the request path:
  /echo          echo every message back (text stays text, binary stays binary)
  /fragmented    send one text message in three fragments, then one binary in two
  /ping          send a ping; once our pong arrives, send the text "pong-received"
  /close         close with code 4001 and reason "bye"
  /reset         abort the TCP connection without a close frame
  /burst?n=N     send N text messages "msg-<i>" as fast as possible, then close 1000
  /big?size=N    send one binary message of N bytes
"""
import asyncio
import signal
import sys
from urllib.parse import urlparse, parse_qs

from websockets.asyncio.server import serve


async def handler(ws):
    url = urlparse(ws.request.path)
    query = parse_qs(url.query)
    path = url.path
    if path == "/echo":
        async for message in ws:
            await ws.send(message)
    elif path == "/fragmented":
        await ws.send(iter(["Hel", "lo, ", "world"]))
        await ws.send(iter([b"\x00\x01", b"\x02\x03"]))
        await ws.wait_closed()
    elif path == "/ping":
        waiter = await ws.ping(b"are-you-there")
        await waiter
        await ws.send("pong-received")
        await ws.wait_closed()
    elif path == "/close":
        await ws.close(4001, "bye")
    elif path == "/reset":
        await ws.send("before-reset")
        await asyncio.sleep(0.05)
        ws.transport.abort()
    elif path == "/burst":
        n = int(query.get("n", ["10000"])[0])
        for i in range(n):
            await ws.send(f"msg-{i}")
        await ws.close(1000, "done")
    elif path == "/big":
        size = int(query.get("size", ["2097152"])[0])
        try:
            await ws.send(b"\x42" * size)
        except Exception:
            pass
        await ws.wait_closed()
    else:
        await ws.close(4004, "unknown path")


async def main():
    async with serve(handler, "127.0.0.1", 0, max_size=None, ping_interval=None, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    # A parent test process may pass on a mask that blocks SIGTERM; let it through.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
