"""WebSocket subprotocol names as Go's servers and clients take them.

kubectl port-forward offers the subprotocol ``SPDY/3.1+portforward.k8s.io``,
which is not an RFC 7230 token (``/``): the ``websockets`` library refuses
the whole handshake with 400 while parsing the header, before the ASGI app
sees it, and kubectl falls back to a plain SPDY upgrade. Go's WebSocket
servers (kubelet, kube-apiserver) split the header on commas instead. So
does uvicorn when it builds ``scope["subprotocols"]``, and it writes the
subprotocol the app accepts into the response itself; this protocol only
stops the library's parser from rejecting what it would not select anyway.
:class:`WebSocketProtocol` is passed as ``ws=`` to uvicorn by the apiserver
and by the node's stream server; :class:`RawSubprotocolConnection` is the
apiserver relay's client connection, which reads the agent's choice back
without token parsing.
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.asyncio.client import ClientConnection
from websockets.datastructures import Headers
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol


class _AppChoosesSubprotocol(ServerProtocol):
    def process_subprotocol(self, headers: Headers) -> Subprotocol | None:
        return None  # chosen by the ASGI app, written by uvicorn


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """``websockets-sansio`` without per-message deflate and with the
    subprotocol header left to the app."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _AppChoosesSubprotocol(extensions=[], max_size=self.config.ws_max_size,
                                           logger=logging.getLogger("uvicorn.error"))


class RawSubprotocolConnection(ClientConnection):
    """A client connection that takes the server's Sec-WebSocket-Protocol
    answer as it is. Offer the names with an ``additional_headers``
    Sec-WebSocket-Protocol header (the ``subprotocols=`` argument would be
    validated as tokens)."""

    def __init__(self, protocol: Any, *args: Any, **kwargs: Any) -> None:
        protocol.process_subprotocol = _raw_subprotocol
        super().__init__(protocol, *args, **kwargs)


def _raw_subprotocol(headers: Headers) -> Subprotocol | None:
    value = headers.get("Sec-WebSocket-Protocol", "").strip()
    return Subprotocol(value) if value else None
