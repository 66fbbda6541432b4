"""Level-triggered reconcilers that talk to the API like any client.

``runtime`` (Controller, Result, next_step) and ``queue`` (WorkQueue,
Backoff) are the machinery; ``namespace`` and ``gc`` are the controllers;
``manager.run_controllers`` starts them all (called by ``kubevisor up``).
"""
