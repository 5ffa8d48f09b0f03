"""TCP_NODELAY on every connection the server accepts.

serve.sh runs uvicorn with --workers N. uvicorn then binds the listening socket itself
(Config.bind_socket: socket.socket(family=AF_INET), proto 0) and hands it to its workers;
accepted sockets inherit proto 0, and asyncio sets TCP_NODELAY only on sockets whose proto
is IPPROTO_TCP. So Nagle's algorithm stayed on, and as uvicorn writes a response's head and
body in two send() calls, on a reused connection the body waited for the client's delayed
ACK of the head: about 40 ms on every request, whatever the client (uvicorn issue #3149;
--workers 1 is not affected). This protocol is uvicorn's own ("auto": httptools when
installed, else h11) with TCP_NODELAY set as each connection is made.
"""

from __future__ import annotations

import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol


class NoDelayHTTPProtocol(AutoHTTPProtocol):
    def connection_made(self, transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass  # a connection already reset: uvicorn's own handling follows
        super().connection_made(transport)
