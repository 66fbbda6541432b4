"""Entry point of a benchmark worker process (see :mod:`.jobs` for the protocol)."""

from __future__ import annotations

import asyncio

import uvloop

from kubevisor.cli.loadgen.jobs import main

with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
    runner.run(main())
