"""drive() runs a generator to its end (replies, return value, closes on error); relay() passes one on."""

from __future__ import annotations

from typing import Any, Generator

import pytest

from labelfree_app.core.drive import drive, relay


def test_every_event_is_seen_in_order_and_the_return_value_comes_back() -> None:
    def work() -> Generator[int, None, str]:
        yield 1
        yield 2
        return "report"

    seen: list[int] = []
    assert drive(work(), seen.append) == "report"
    assert seen == [1, 2]


def test_what_on_event_returns_is_sent_into_the_generator() -> None:
    def ask() -> Generator[int, Any, list[Any]]:
        answers = []
        for question in (3, 4):
            answers.append((yield question))
        return answers

    assert drive(ask(), lambda q: q * 10) == [30, 40]


def test_an_exception_in_on_event_closes_the_generator_and_propagates() -> None:
    closed: list[bool] = []
    produced: list[int] = []

    def work() -> Generator[int, None, None]:
        try:
            for i in range(100):
                produced.append(i)
                yield i
        finally:
            closed.append(True)

    def stop_at_two(event: int) -> None:
        if event == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        drive(work(), stop_at_two)
    assert closed == [True] and produced == [0, 1, 2]


def test_an_exception_in_the_generator_propagates() -> None:
    def work() -> Generator[int, None, None]:
        yield 1
        raise ValueError("bad tile")

    with pytest.raises(ValueError, match="bad tile"):
        drive(work(), lambda e: None)


def test_a_plain_iterator_is_driven_and_returns_none() -> None:
    seen: list[str] = []
    assert drive(iter("ab"), seen.append) is None
    assert seen == ["a", "b"]


def test_drive_without_on_event_runs_to_the_end() -> None:
    def work() -> Generator[int, None, str]:
        yield 1
        return "done"

    assert drive(work()) == "done"


def test_relay_passes_converted_events_on_and_returns_the_value() -> None:
    def inner() -> Generator[int, None, str]:
        yield from (1, 2, 3)
        return "inner done"

    def outer() -> Generator[str, None, str]:
        result = yield from relay(inner(), lambda e: f"e{e}" if e != 2 else None)
        return result.upper()

    seen: list[str] = []
    assert drive(outer(), seen.append) == "INNER DONE"
    assert seen == ["e1", "e3"]


def test_relay_checks_before_each_step_and_closes_the_inner_generator_when_stopped() -> None:
    steps: list[int] = []
    closed: list[bool] = []

    def inner() -> Generator[int, None, None]:
        try:
            for i in range(10):
                steps.append(i)
                yield i
        finally:
            closed.append(True)

    def before() -> None:
        if len(steps) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        drive(relay(inner(), before_step=before))
    assert steps == [0, 1] and closed == [True]


def test_closing_the_relay_closes_the_inner_generator() -> None:
    closed: list[bool] = []

    def inner() -> Generator[int, None, None]:
        try:
            yield from range(10)
        finally:
            closed.append(True)

    outer = relay(inner())
    assert next(outer) == 0
    outer.close()
    assert closed == [True]
