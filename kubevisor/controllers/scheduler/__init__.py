"""The scheduler: binds pending pods to nodes, as kube-scheduler does.

Pure parts — :mod:`.resources` (integer requests), :mod:`.podinfo` and
:mod:`.nodeinfo` (parsed views), :mod:`.filters`, :mod:`.scores`,
:mod:`.algorithm` (sampling, filtering, scoring, the FitError message) —
over an incrementally kept :mod:`.cache`, driven by the shell in
:mod:`.scheduler` with its :mod:`.queue` and :mod:`.events`. The
controller manager starts :class:`Scheduler`.
"""

from kubevisor.controllers.scheduler.scheduler import Scheduler, SchedulerOptions

__all__ = ["Scheduler", "SchedulerOptions"]
