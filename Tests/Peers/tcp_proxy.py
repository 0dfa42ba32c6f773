#!/usr/bin/env python3
"""A TCP proxy for fault tests: forwards 127.0.0.1:<random port> to HOST:PORT.

Prints `LISTENING <port>` when ready.
  SIGUSR1  blackhole: stop reading and forwarding in both directions while keeping every socket
           open (a server that stops answering: packets dropped, not refused); new connections
           are accepted and connected upstream, but nothing flows
  SIGUSR2  resume forwarding (what was held in the socket buffers flows on)
  SIGHUP   drop: bytes in both directions are read and discarded (nothing arrives, nothing
           answers), but a side that closes still closes the other, as a dead peer's TCP
           keepalives would end the far side's session
  SIGTERM  exit
Usage: tcp_proxy.py HOST PORT [LISTEN_PORT]   (LISTEN_PORT: default a free one)
"""
import asyncio
import signal
import sys


async def main(host: str, port: int, listen_port: int = 0) -> None:
    flowing = asyncio.Event()
    flowing.set()
    dropping = False

    def drop() -> None:
        nonlocal dropping
        dropping = True
        flowing.set()

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await flowing.wait()
                data = await reader.read(65536)
                if not data:
                    break
                await flowing.wait()  # a blackhole that began during the read holds the data
                if dropping:
                    continue
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(client_reader, client_writer):
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pump(client_reader, upstream_writer), pump(upstream_reader, client_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, flowing.clear)
    loop.add_signal_handler(signal.SIGUSR2, flowing.set)
    loop.add_signal_handler(signal.SIGHUP, drop)
    loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    print(f"LISTENING {server.sockets[0].getsockname()[1]}", flush=True)
    await stop
    server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0))
