"""The host agent ("spherelet"): one per host.

Registers the host as a Node with a Lease heartbeat, watches the pods (and
later VirtualMachines) bound to it, and runs them through
:mod:`kubevisor.runtime`, reporting status back through the API like any
client. Started by ``kubevisor up`` (unless ``--no-node``) and by
``kubevisor join`` as a child process (``python -m kubevisor.cli.nodeagent``
calls :func:`.agent.run_node`).

Modules, one noun each:

- ``agent`` (:func:`run_node`: builds the drivers, runs the parts below),
  ``config``, ``clock``.
- The node: ``hostinfo`` (facts about the host), ``nodestatus`` (the Node
  and its conditions, pure), ``lease`` (pure), ``registration`` (the shell:
  register, status on change or every 5 min, Lease every 10 s).
- Pods: ``pods`` (informer on ``spec.nodeName``, one worker per pod uid,
  the 1 s container relist, re-adoption and orphans), ``worker`` (observe,
  plan, apply, status), ``starting`` (one container: sources, volumes,
  image, env, spec, run, postStart), ``plan`` (pure ``plan(pod, state, now)``),
  ``podstatus`` (pure status as kubelet reports it), ``podstate``,
  ``containers`` (ids and labels), ``backoff`` (CrashLoopBackOff kept on
  the containers' labels), ``env`` (env, command, user, resources),
  ``volumes`` (volume files and mounts), ``pullsecrets``, ``probes``,
  ``events``.
- Beside them: ``serviceproxy`` (Services → host rules), ``dns`` (cluster
  DNS, pods' resolv.conf), ``streams`` (logs, exec, attach, port-forward).
"""
