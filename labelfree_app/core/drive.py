"""Drive a generator to its end: one loop instead of hand-written ``next``/``StopIteration`` blocks.

Qt-free. The engine, the batch, training and the self-test are generators that yield events and
``return`` a final value; every door (CLI, GUI worker, tests) consumes them with :func:`drive`.
"""

from __future__ import annotations

from typing import Any, Callable, Generator, Iterator, TypeVar

R = TypeVar("R")


def drive(generator: Generator[Any, Any, R] | Iterator[Any], on_event: Callable[[Any], Any]) -> R | None:
    """Call ``on_event`` for each yielded event and return the generator's return value.

    Whatever ``on_event`` returns is sent back into the generator (``None`` is a plain ``next``),
    so a generator can ask its driver a question. If ``on_event`` raises, the generator is closed
    (its ``finally`` runs) and the exception propagates: that is how a caller cancels between events.
    Plain iterators are accepted too; they return ``None``.
    """
    send = getattr(generator, "send", None)
    finished = False
    try:
        reply: Any = None
        while True:
            try:
                event = send(reply) if send is not None and reply is not None else next(generator)
            except StopIteration as stop:
                finished = True
                return stop.value  # type: ignore[no-any-return]
            reply = on_event(event)
    finally:
        if not finished:
            close = getattr(generator, "close", None)
            if close is not None:
                close()
