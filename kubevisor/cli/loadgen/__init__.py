"""Load generation for ``kubevisor bench api``: a lean HTTPS client
(:mod:`.http`) and the worker process that runs one job (:mod:`.jobs`),
started as ``python -m kubevisor.cli.loadgen`` by :mod:`kubevisor.cli.benchapi`."""
