"""uvicorn's WebSocket protocol, accepting any offered subprotocol name.

kubectl port-forward offers the subprotocol ``SPDY/3.1+portforward.k8s.io``,
which is not an RFC 7230 token (``/``): the ``websockets`` library refuses
the whole handshake with 400 while parsing the header, before the ASGI app
sees it, and kubectl falls back to a plain SPDY upgrade. Go's WebSocket
servers (kubelet, kube-apiserver) split the header on commas instead. So
does uvicorn when it builds ``scope["subprotocols"]``, and it writes the
subprotocol the app accepts into the response itself; this protocol only
stops the library's parser from rejecting what it would not select anyway.
Passed as ``ws=`` to uvicorn by :mod:`kubevisor.node.streams.server`.
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
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
