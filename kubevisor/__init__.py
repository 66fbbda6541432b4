"""kubevisor: one declarative platform for VMs and pods, driven by plain kubectl.

The package map (who may import whom) is in docs/architecture.md and is
enforced by import-linter (see pyproject.toml).
"""

__version__ = "0.1.0"
