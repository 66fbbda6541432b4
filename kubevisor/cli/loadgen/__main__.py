"""Entry point of a benchmark worker process (see :mod:`.jobs` for the protocol)."""

from __future__ import annotations

import asyncio

from kubevisor.cli.loadgen.jobs import main

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a pinned dependency
    asyncio.run(main())
else:
    asyncio.run(main(), loop_factory=uvloop.new_event_loop)
