"""The fallback rule writer: the same rules as :mod:`.rules` and the
bridge's masquerade, written with ``iptables-restore`` (``iptables-nft`` or
``iptables-legacy``) for hosts where ``nft`` does not work.

Called through :class:`~.writer.RuleWriter` by the bridge and the proxy.
Each table is rewritten in one ``iptables-restore --noflush`` commit: our
chains (all named ``<PREFIX>-…``) are declared (which flushes them) and
refilled, stale ones deleted, and the jumps from the built-in chains
inserted once. Load balancing uses ``statistic --mode random`` with
probabilities 1/n, 1/(n-1), …, 1 as kube-proxy's iptables mode does.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence

from kubevisor.runtime.errors import NetworkError
from kubevisor.runtime.types import ServiceRule

from .config import NetworkConfig, RulesBackend
from .rules import check

#: Built-in chain → our chain that it jumps to, per table and owner.
_HOOKS = {
    "proxy": {"nat": [("PREROUTING", "SERVICES"), ("OUTPUT", "SERVICES"),
                      ("POSTROUTING", "POSTROUTING")],
              "filter": [("INPUT", "REJECTS"), ("FORWARD", "REJECTS"), ("OUTPUT", "REJECTS")]},
    "node": {"nat": [("POSTROUTING", "POSTROUTING")], "filter": []},
}


def _prefix(config: NetworkConfig, owner: str) -> str:
    base = config.nft_table.upper()
    return f"{base}_NODE" if owner == "node" else base


def _key(rule: ServiceRule) -> str:
    return hashlib.sha256(f"{rule.protocol}/{rule.name}/{rule.cluster_ip}:{rule.port}".encode()).hexdigest()[:10]


def render_services(config: NetworkConfig, rules: Sequence[ServiceRule], *,
                    masquerade_pod_traffic: bool = False) -> dict[str, dict[str, list[str]]]:
    """table → our chain → its rules (pure)."""
    p, mark = _prefix(config, "proxy"), f"0x{config.masquerade_bit:x}/0x{config.masquerade_bit:x}"
    nat: dict[str, list[str]] = {f"{p}-SERVICES": [], f"{p}-NODEPORTS": [],
                                 f"{p}-MARK": [f"-j MARK --set-xmark {mark}"],
                                 f"{p}-POSTROUTING": [
                                     f"-m mark ! --mark {mark} -j RETURN",
                                     f"-j MARK --xor-mark 0x{config.masquerade_bit:x}",
                                     "-j MASQUERADE"]}
    rejects: list[str] = []
    for rule in rules:
        check(rule)
        proto, key = rule.protocol.lower(), _key(rule)
        reject = "tcp-reset" if proto == "tcp" else "icmp-port-unreachable"
        fronts = [rule.cluster_ip, *rule.external_ips]
        if not rule.backends:
            rejects += [f"-d {ip}/32 -p {proto} --dport {rule.port} -j REJECT --reject-with {reject}"
                        for ip in fronts]
            if rule.node_port is not None:
                rejects.append(f"-m addrtype --dst-type LOCAL -p {proto} --dport {rule.node_port} "
                               f"-j REJECT --reject-with {reject}")
            continue
        svc, ext = f"{p}-SVC-{key}", f"{p}-EXT-{key}"
        origin = "" if masquerade_pod_traffic else f"! -s {config.masquerade_boundary} "
        nat[svc] = [f"{origin}-j {p}-MARK"]
        count = len(rule.backends)
        for n, backend in enumerate(rule.backends):
            ep = f"{p}-EP-{key}-{n}"
            nat[ep] = [f"-s {backend.ip}/32 -j {p}-MARK",
                       f"-p {proto} -j DNAT --to-destination {backend.ip}:{backend.port}"]
            pick = "" if n == count - 1 else \
                f"-m statistic --mode random --probability {1 / (count - n):.10f} "
            nat[svc].append(f"{pick}-j {ep}")
        nat[f"{p}-SERVICES"].append(f"-d {rule.cluster_ip}/32 -p {proto} --dport {rule.port} -j {svc}")
        if rule.node_port is not None or rule.external_ips:
            nat[ext] = [f"-j {p}-MARK", f"-j {svc}"]
            nat[f"{p}-SERVICES"] += [f"-d {ip}/32 -p {proto} --dport {rule.port} -j {ext}"
                                     for ip in rule.external_ips]
            if rule.node_port is not None:
                nat[f"{p}-NODEPORTS"].append(f"-p {proto} --dport {rule.node_port} -j {ext}")
    nat[f"{p}-SERVICES"].append(f"-m addrtype --dst-type LOCAL -j {p}-NODEPORTS")
    return {"nat": nat, "filter": {f"{p}-REJECTS": rejects}}


def render_node(config: NetworkConfig) -> dict[str, dict[str, list[str]]]:
    p = _prefix(config, "node")
    return {"nat": {f"{p}-POSTROUTING": [
        f"-s {config.network} ! -d {config.masquerade_boundary} -j MASQUERADE"]}, "filter": {}}


def restore_input(table: str, chains: dict[str, list[str]], *, prefix: str,
                  existing: set[str], hooked: set[tuple[str, str]],
                  hooks: list[tuple[str, str]]) -> str:
    """One ``iptables-restore --noflush`` table section (pure): declare and
    fill ``chains``, add missing hook jumps, delete stale chains of ``prefix``."""
    lines = [f"*{table}", *(f":{c} - [0:0]" for c in chains)]
    stale = sorted(c for c in existing if c.startswith(prefix + "-") and c not in chains)
    lines += [f":{c} - [0:0]" for c in stale]  # flush first, so the deletes succeed
    for builtin, ours in hooks:
        target = f"{prefix}-{ours}"
        if (builtin, target) not in hooked and target in chains:
            lines.append(f"-I {builtin} 1 -j {target}")
    for builtin, target in sorted(hooked):
        if target.startswith(prefix + "-") and target not in chains:
            lines.append(f"-D {builtin} -j {target}")
    for chain, rules in chains.items():
        lines += [f"-A {chain} {r}" for r in rules]
    lines += [f"-X {c}" for c in stale]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


class IptablesWriter:
    """Rules through ``iptables-restore`` of one flavour (nft or legacy)."""

    def __init__(self, flavour: RulesBackend) -> None:
        assert flavour in ("iptables-nft", "iptables-legacy")
        self.name: RulesBackend = flavour
        self._cmd = "iptables-nft" if flavour == "iptables-nft" else "iptables-legacy"

    async def _run(self, *args: str, stdin: str | None = None) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise NetworkError(f"cannot run {args[0]}: {exc}") from exc
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        if proc.returncode != 0:
            raise NetworkError(f"{' '.join(args[:3])} failed: {err.decode(errors='replace').strip()}")
        return out.decode()

    async def _observe(self, table: str) -> tuple[set[str], set[tuple[str, str]]]:
        saved = await self._run(f"{self._cmd}-save", "-t", table)
        chains = {line[1:].split()[0] for line in saved.splitlines() if line.startswith(":")}
        hooked = set()
        for line in saved.splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[0] == "-A" and parts[2] == "-j":
                hooked.add((parts[1], parts[3]))
        return chains, hooked

    async def _apply(self, config: NetworkConfig, owner: str,
                     tables: dict[str, dict[str, list[str]]]) -> None:
        prefix = _prefix(config, owner)
        text = ""
        for table in ("nat", "filter"):
            existing, hooked = await self._observe(table)
            hooked = {(b, t) for b, t in hooked if b.isupper() and "-" not in b}
            text += restore_input(table, tables.get(table, {}), prefix=prefix, existing=existing,
                                  hooked=hooked, hooks=_HOOKS[owner][table])
        await self._run(f"{self._cmd}-restore", "--noflush", "-w", stdin=text)

    async def replace_node(self, config: NetworkConfig) -> None:
        await self._apply(config, "node", render_node(config))

    async def replace_services(self, config: NetworkConfig, rules: Sequence[ServiceRule], *,
                               masquerade_pod_traffic: bool = False) -> None:
        await self._apply(config, "proxy", render_services(
            config, rules, masquerade_pod_traffic=masquerade_pod_traffic))

    async def remove_node(self, config: NetworkConfig) -> None:
        await self._apply(config, "node", {"nat": {}, "filter": {}})

    async def remove_services(self, config: NetworkConfig) -> None:
        await self._apply(config, "proxy", {"nat": {}, "filter": {}})
