"""in_thread runs a blocking store call on the store's threads and hands its result, or its
exception, to the awaiting handler on its own event loop, as asyncio.to_thread did."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time

import pytest

from zerotouch_plugin.services.registrar.common import finish_store_calls, in_thread


def where(tag: str, *, suffix: str = "") -> tuple[str, str]:
    return threading.current_thread().name, tag + suffix


def test_result_and_arguments_come_back_from_another_thread() -> None:
    async def main() -> tuple[str, str]:
        return await in_thread(where, "a", suffix="b")

    thread, value = asyncio.run(main())
    assert value == "ab"
    assert thread != threading.current_thread().name


class Refused(Exception):
    pass


def refuse() -> None:
    raise Refused("no")


def test_the_exception_is_raised_in_the_handler() -> None:
    async def main() -> None:
        await in_thread(refuse)

    with pytest.raises(Refused, match="no"):
        asyncio.run(main())


def test_calls_of_one_handler_keep_their_order_and_loops_come_and_go() -> None:
    """Each handler's calls run one after the other; every loop gets its own answers."""
    seen: list[int] = []

    async def handler(base: int) -> None:
        for i in range(20):
            await in_thread(seen.append, base + i)

    async def main() -> None:
        await asyncio.gather(*(handler(100 * n) for n in range(10)))

    for _ in range(2):
        seen.clear()
        asyncio.run(main())
        for n in range(10):
            mine = [v for v in seen if v // 100 == n]
            assert mine == [100 * n + i for i in range(20)]


def test_a_cancelled_handler_does_not_break_the_threads() -> None:
    gate = threading.Event()

    async def main() -> str:
        task = asyncio.create_task(in_thread(gate.wait, 5))
        await asyncio.sleep(0.01)
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        return (await in_thread(where, "after"))[1]

    assert asyncio.run(main()) == "after"


def test_a_forked_child_runs_its_calls_on_threads_of_its_own() -> None:
    """The parent's store threads are started; a forked child has none of them and must not
    queue its calls for them (it would wait forever)."""

    async def main() -> tuple[str, str]:
        return await in_thread(where, "x")

    asyncio.run(main())  # the parent's threads are running
    pid = os.fork()
    if pid == 0:  # the child: answer within the alarm or die by it
        signal.alarm(20)
        try:
            os._exit(0 if asyncio.run(main())[1] == "x" else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_finishing_waits_for_the_call_under_way_then_threads_start_again() -> None:
    """At exit the registrar waits for a store call a cancelled handler left running: its
    write is not cut off by the process ending (daemon threads), as asyncio.run waited for
    to_thread calls."""
    started, done = threading.Event(), []

    def slow_write() -> None:
        started.set()
        time.sleep(0.5)
        done.append("committed")

    async def handler() -> None:
        await in_thread(slow_write)

    async def main() -> None:
        task = asyncio.create_task(handler())
        await asyncio.to_thread(started.wait, 10)
        task.cancel()  # the handler goes, its call goes on
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.to_thread(finish_store_calls, 10)
        assert done == ["committed"]
        thread, tag = await in_thread(where, "again")
        assert thread.startswith("registrar-store-") and tag == "again"

    asyncio.run(main())
