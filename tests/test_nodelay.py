"""The server's connections have Nagle's algorithm off (mlflow_stack_server.nodelay).

uvicorn with --workers N (serve.sh) binds its listening socket itself with proto 0, and
asyncio then leaves TCP_NODELAY off on every accepted connection: each answer's body waited
for the client's delayed ACK of its head, ~40 ms a request for a client talking to the
server's port (local mode). Checked on the socket itself, on uvicorn's own bind path."""

import asyncio
import socket

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from mlflow_stack.local_stack import SERVE_SCRIPT
from mlflow_stack_server.nodelay import NoDelayHTTPProtocol


async def _app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"OK"})


def nodelay_of_an_accepted_connection(protocol) -> int:
    """TCP_NODELAY of the connection a uvicorn server (bound as with --workers) accepts."""
    seen = []

    class Probe(protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            sock = transport.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    async def serve_one():
        config = uvicorn.Config(_app, host="127.0.0.1", port=0, http=Probe, log_level="warning", lifespan="off")
        listener = config.bind_socket()  # what uvicorn's multi-worker supervisor hands its workers
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        while not server.started:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        writer.write(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        writer.close()
        server.should_exit = True
        await asyncio.wait_for(serving, 10)

    asyncio.run(serve_one())
    assert len(seen) == 1
    return seen[0]


def test_the_stacks_protocol_turns_nagle_off_on_accepted_connections():
    assert nodelay_of_an_accepted_connection(NoDelayHTTPProtocol) != 0


def test_uvicorns_own_protocol_still_leaves_nagle_on():
    """The reason the module exists: when a uvicorn upgrade fixes this (issue #3149), this
    fails, and nodelay.py with serve.sh's --uvicorn-opts can go."""
    assert nodelay_of_an_accepted_connection(AutoHTTPProtocol) == 0


def test_the_server_is_started_with_the_stacks_protocol():
    assert '--uvicorn-opts "--http mlflow_stack_server.nodelay:NoDelayHTTPProtocol"' in SERVE_SCRIPT.read_text()
