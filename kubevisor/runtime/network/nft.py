"""Running the ``nft`` command: one ruleset text per call, applied as one
kernel transaction, and the probe that says whether nftables works here.

Called by the bridge (its masquerade table) and the service proxy.
"""

from __future__ import annotations

import asyncio
import shutil

from kubevisor.runtime.errors import NetworkError

#: What the probe asks of the kernel: NAT hooks, numgen, fib and reject.
_PROBE = """
table ip {table} {{
  chain pre {{
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local meta l4proto tcp th dport 1 dnat to numgen random mod 1 map {{ 0 : 127.0.0.1 }}
  }}
  chain post {{
    type nat hook postrouting priority srcnat; policy accept;
    meta mark & 0x4000 == 0x4000 masquerade
  }}
  chain filt {{
    type filter hook forward priority filter; policy accept;
    ip daddr 127.0.0.2 meta l4proto tcp reject with tcp reset
  }}
}}
"""


async def run(script: str, *, check_only: bool = False) -> None:
    """Apply ``script`` with ``nft -f -`` (all of it or nothing)."""
    args = ["nft", *(["-c"] if check_only else []), "-f", "-"]
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        raise NetworkError(f"cannot run nft: {exc}") from exc
    _out, err = await proc.communicate(script.encode())
    if proc.returncode != 0:
        raise NetworkError(f"nft -f failed ({proc.returncode}): {err.decode(errors='replace').strip()}")


def replace_table(name: str, body: str) -> str:
    """A script that swaps table ``ip name`` for ``body`` in one transaction
    (the empty ``table`` line makes the delete safe when it is absent)."""
    return f"table ip {name} {{}}\ndelete table ip {name}\ntable ip {name} {{\n{body}}}\n"


def delete_table(name: str) -> str:
    return f"table ip {name} {{}}\ndelete table ip {name}\n"


async def works(probe_table: str = "kubevisor_probe") -> bool:
    """True when ``nft`` exists and the kernel takes a NAT/numgen/reject ruleset
    (checked with ``nft -c``: nothing is committed)."""
    if shutil.which("nft") is None:
        return False
    try:
        await run(_PROBE.format(table=probe_table), check_only=True)
    except NetworkError:
        return False
    return True
