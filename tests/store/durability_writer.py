"""Run by test_sqlite.py's durability test in a subprocess (not a test):
16 concurrent tasks create keys in a SqliteStore and print ``KEY REVISION``
on stdout after each create is acknowledged, until the test kill -9's us."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from kubevisor.store.sqlite import SqliteStore


def value_of(key: str) -> bytes:
    return (key * 40).encode()


async def main(path: Path) -> None:
    store = SqliteStore(path)
    await store.start()
    os.write(1, b"ready\n")

    async def writer(w: int) -> None:
        i = 0
        while True:
            key = f"/d/{w:02d}-{i:07d}"
            kv = await store.create(key, value_of(key))
            os.write(1, f"{key} {kv.mod_revision}\n".encode())
            i += 1

    await asyncio.gather(*(writer(w) for w in range(16)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
