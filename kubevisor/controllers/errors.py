"""How a reconciler asks for what happens next, by raising.

::

    ReconcileError
    ├── TemporaryError(delay=None)   try again: after ``delay`` seconds, or
    │                                through the controller's back-off when None
    └── PermanentError               do not retry until something changes

Any other exception counts as a TemporaryError without a delay (logged
with its traceback). A reconciler that wants a periodic look returns
``Result(requeue_after=...)`` instead. :func:`kubevisor.controllers.runtime.next_step`
is the one place that turns these into a queue decision.
"""

from __future__ import annotations


class ReconcileError(Exception):
    """Base of the reconcile outcomes that are not plain successes."""


class TemporaryError(ReconcileError):
    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(ReconcileError):
    pass
