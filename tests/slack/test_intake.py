"""Acks before answers (`adapters.slack.intake.AckFirst`)."""

from __future__ import annotations

import asyncio
import time

from adapters.slack.intake import AckFirst


async def test_an_answer_starts_at_once_when_few_requests_are_being_acknowledged() -> None:
    intake = AckFirst(crowd=3)
    with intake.acking(), intake.acking():  # a mention and its message event
        await asyncio.wait_for(intake.turn(), 1)


async def test_answers_wait_for_a_crowd_of_acks_to_go() -> None:
    intake = AckFirst(crowd=3, patience=30)
    order: list[str] = []

    async def answer() -> None:
        await intake.turn()
        order.append("answer starts")

    with intake.acking():
        with intake.acking(), intake.acking():
            waiting = asyncio.create_task(answer())
            await asyncio.sleep(0)  # it ran up to its wait
            order.append("crowd acknowledged")
        await waiting  # two of three left: below the crowd, while one is still acking
    assert order == ["crowd acknowledged", "answer starts"]


async def test_under_an_endless_crowd_an_answer_waits_no_longer_than_its_patience() -> None:
    intake = AckFirst(crowd=1, patience=0.05)
    with intake.acking():
        started = time.monotonic()
        await asyncio.wait_for(intake.turn(), 5)
    assert time.monotonic() - started >= 0.05


async def test_connections_not_yet_accepted_count_in_the_crowd() -> None:
    """On uvloop a burst waits mostly in the kernel's accept queue, while the few requests
    read are acknowledged at once: those connections make the crowd too."""
    waiting = 2
    intake = AckFirst(crowd=3, patience=0.05, waiting=lambda: waiting)
    with intake.acking():  # one request in progress, two connections behind it
        started = time.monotonic()
        await asyncio.wait_for(intake.turn(), 5)
        assert time.monotonic() - started >= 0.05  # it waited (here: its patience)
    waiting = 0
    with intake.acking(), intake.acking():  # (the crowd gone, a mention and its companion)
        await asyncio.wait_for(intake.turn(), 1)
