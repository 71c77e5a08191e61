"""actors/threads.py: a dedicated thread keeps nothing of a finished job alive.

An idle reader thread used to hold its last result (a query body of up to 64 MB) in a local
until its next job; the process then kept that memory for as long as the thread sat idle.
"""

from __future__ import annotations

import gc
import weakref

import trio

from kissvdb.actors.threads import DedicatedThread


class Payload:
    """Stands in for a large result; weakref-able, so the test can see when it is freed."""


async def test_an_idle_thread_keeps_neither_the_result_nor_the_arguments_alive():
    thread = DedicatedThread("test-idle")
    try:
        with trio.fail_after(10):
            argument = Payload()
            seen_argument = weakref.ref(argument)
            result = await thread.run(lambda arg: Payload(), argument)
            seen_result = weakref.ref(result)
            del argument, result
            gc.collect()
            assert seen_result() is None, "the thread still holds its last result"
            assert seen_argument() is None, "the thread still holds its last job's arguments"
    finally:
        await thread.aclose()
