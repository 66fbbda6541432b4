"""The relay's ending: the first coroutine to finish wins, the others are
cancelled and over before race returns."""

from __future__ import annotations

import asyncio

from kubevisor.streaming.race import race


async def test_the_first_to_finish_wins_and_the_others_are_cancelled() -> None:
    cleaned: list[str] = []

    async def quick() -> str:
        await asyncio.sleep(0)
        return "quick"

    async def slow() -> str:
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.append("slow")
        return "slow"

    done, tasks = await race(slow(), quick())
    assert [t.result() for t in done] == ["quick"]
    assert tasks[1] in done and tasks[0].cancelled()
    assert cleaned == ["slow"] and all(t.done() for t in tasks)


async def test_a_failing_pump_ends_the_race_with_its_exception() -> None:
    async def broken() -> None:
        raise ConnectionError("gone")

    done, tasks = await race(asyncio.sleep(60), broken())
    assert done == {tasks[1]} and isinstance(tasks[1].exception(), ConnectionError)
