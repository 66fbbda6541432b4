"""The node agent's stream server (kubelet's port 10250): ``kubectl logs``,
``exec``, ``attach`` and ``port-forward`` as the apiserver proxies them.

Modules: ``server`` (the ASGI app and :func:`serve_streams`), ``targets``
(which container, log file or network namespace a request names),
``logs`` (CRI log files and the pod log options), ``channels`` (the
remote-command WebSocket protocols), ``websocket`` (ASGI WebSocket),
``spdy`` (SPDY/3.1 frames), ``spdyconn`` (a SPDY connection, server side),
``portforward`` (portforward.k8s.io over SPDY over WebSocket), ``netns``
(dialing inside a pod's network namespace), ``vmconsole`` (a VM's serial
console), ``errors`` (Status answers).
"""

from kubevisor.node.streams.server import StreamServerConfig, serve_streams

__all__ = ["StreamServerConfig", "serve_streams"]
