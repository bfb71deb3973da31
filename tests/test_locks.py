"""The core's backpressure primitives: fair slots and a byte budget."""

from __future__ import annotations

import asyncio

from bot.locks import ByteBudget, FairSlots


async def test_slots_are_handed_out_in_arrival_order() -> None:
    slots = FairSlots(1)
    assert slots.join() is None  # free: taken at once
    waiters = [slots.join() for _ in range(3)]
    served: list[int] = []

    async def wait(index: int) -> None:
        waiter = waiters[index]
        assert waiter is not None
        await slots.wait(waiter)
        served.append(index)
        slots.release()

    tasks = [asyncio.create_task(wait(i)) for i in (2, 0, 1)]  # started out of order
    await asyncio.sleep(0)
    slots.release()
    await asyncio.gather(*tasks)
    assert served == [0, 1, 2]


async def test_a_cancelled_waiter_passes_its_slot_on() -> None:
    slots = FairSlots(1)
    assert slots.join() is None
    gone, next_one = slots.join(), slots.join()
    assert gone is not None and next_one is not None
    slots.leave(gone)
    slots.release()
    await asyncio.wait_for(slots.wait(next_one), 1)
    assert slots.waiting == 0


async def test_downloads_wait_for_room_in_the_byte_budget() -> None:
    budget = ByteBudget(100)
    inside = asyncio.Event()
    order: list[str] = []

    async def hold(name: str, amount: int, until: asyncio.Event | None = None) -> None:
        async with budget.hold(amount):
            order.append(name)
            inside.set()
            if until is not None:
                await until.wait()

    release = asyncio.Event()
    first = asyncio.create_task(hold("first", 80, release))
    await inside.wait()
    second = asyncio.create_task(hold("second", 50))
    big = asyncio.create_task(hold("big", 500))  # over the whole budget: waits to be alone
    await asyncio.sleep(0.01)
    assert order == ["first"]
    release.set()
    await asyncio.gather(first, second, big)
    assert set(order[1:]) == {"second", "big"}
