"""Drive a generator to its end: one loop instead of hand-written ``next``/``StopIteration`` blocks.

Qt-free. The engine, the batch, training and the self-test are generators that yield events and
``return`` a final value; every door (CLI, GUI worker, tests) consumes them with :func:`drive`, and a
generator that runs another passes its events on with ``result = yield from relay(...)``.
"""

from __future__ import annotations

from typing import Any, Callable, Generator, Iterator, TypeVar, overload

R = TypeVar("R")


@overload
def drive(generator: Generator[Any, Any, R], on_event: Callable[[Any], Any] | None = None) -> R: ...
@overload
def drive(generator: Iterator[Any], on_event: Callable[[Any], Any] | None = None) -> None: ...


def drive(generator: Generator[Any, Any, R] | Iterator[Any], on_event: Callable[[Any], Any] | None = None) -> R | None:
    """Call ``on_event`` (if given) for each yielded event and return the generator's return value.

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
            reply = on_event(event) if on_event is not None else None
    finally:
        if not finished:
            close = getattr(generator, "close", None)
            if close is not None:
                close()


def relay(generator: Generator[Any, Any, R], convert: Callable[[Any], Any] | None = None, *,
          before_step: Callable[[], None] | None = None) -> Generator[Any, None, R]:
    """Pass ``generator``'s events on from inside another generator: ``result = yield from relay(...)``.

    Each event is yielded as ``convert(event)``, or dropped where that is ``None``; ``before_step``
    runs before each step and may raise to stop. Whatever stops the relay early (an exception, or
    its own ``close()``) closes ``generator``, so its ``finally`` runs.
    """
    finished = False
    try:
        while True:
            if before_step is not None:
                before_step()
            try:
                event = next(generator)
            except StopIteration as stop:
                finished = True
                return stop.value  # type: ignore[no-any-return]
            passed = event if convert is None else convert(event)
            if passed is not None:
                yield passed
    finally:
        if not finished:
            generator.close()
