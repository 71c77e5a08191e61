"""PendingWrites: the FIFO of writes awaiting the WAL's verdict that every write actor drains."""

import trio
import trio.testing

from kissvdb.actors.mailbox import PendingWrites


class _Write:
    def __init__(self):
        self.done = trio.Event()


class _Item:
    def __init__(self, name):
        self.name = name
        self.write = _Write()


async def test_settled_counts_only_the_head_that_has_a_verdict_in_order():
    q = PendingWrites()
    a, b, c = _Item("a"), _Item("b"), _Item("c")
    for item in (a, b, c):
        q.push(item)
    got = []

    async def take():
        got.append(await q.settled())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(take)
        b.write.done.set()  # a verdict behind the head: nothing may be taken yet
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        a.write.done.set()
    assert got == [2]
    assert [q.pop().name, q.pop().name] == ["a", "b"]
    assert len(q) == 1 and list(q) == [c]


async def test_room_and_drained_wake_on_changes():
    q = PendingWrites()
    items = [_Item(str(i)) for i in range(3)]
    for item in items:
        q.push(item)
    order = []

    async def wait_room():
        await q.room(3)
        order.append("room")

    async def wait_drained():
        await q.drained()
        order.append("drained")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_room)
        nursery.start_soon(wait_drained)
        await trio.testing.wait_all_tasks_blocked()
        assert order == []
        items[0].write.done.set()
        assert await q.settled() == 1
        q.pop()
        q.changed()
        await trio.testing.wait_all_tasks_blocked()
        assert order == ["room"]
        for item in items[1:]:
            item.write.done.set()
        for _ in range(await q.settled()):
            q.pop()
        q.changed()
    assert order == ["room", "drained"]
