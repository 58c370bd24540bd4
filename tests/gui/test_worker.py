"""The generator worker: order, return value, send, cancel, errors, array copies, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6.QtCore import QObject, Slot

from labelfree_app.core.events import PredictionResult, Preview, Progress
from labelfree_app.errors import InputShapeError
from labelfree_app.gui.generator_worker import GeneratorWorker, stop_all_workers
from labelfree_app.gui.worker import CANCELLED, DONE, FAILED, EventWorker, call_in_thread


def _record(worker: EventWorker) -> list:
    seen: list = []
    worker.progress.connect(lambda e: seen.append(("progress", e)))
    worker.preview.connect(lambda e: seen.append(("preview", e)))
    worker.result.connect(lambda e: seen.append(("result", e)))
    worker.errored.connect(lambda text, user: seen.append(("error", text, user)))
    worker.finished.connect(lambda status: seen.append(("finished", status)))
    return seen


def test_worker_emits_events_in_order_and_finishes_done(qtbot):
    image = np.zeros((1, 1, 4, 4), np.float32)
    events = [Progress("loading", 1, 1), Preview("x_t", 0, 1, 2, image), Progress("sampling", 1, 2),
              PredictionResult(image)]
    worker = EventWorker(lambda: iter(events), progress_interval_s=0.0)
    seen = _record(worker)
    worker.run()
    assert [item[0] for item in seen] == ["progress", "preview", "progress", "result", "finished"]
    assert seen[-1] == ("finished", DONE)
    assert seen[3][1] is events[3]


class GuiReceiver(QObject):
    """Lives on the GUI thread, so signals from the worker thread are queued to it."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[int] = []
        self.statuses: list[str] = []

    @Slot(object)
    def on_result(self, _result: object) -> None:
        self.results.append(threading.get_ident())

    @Slot(str)
    def on_finished(self, status: str) -> None:
        self.statuses.append(status)


def _start(worker: EventWorker) -> tuple[EventWorker, GuiReceiver]:
    receiver = GuiReceiver()
    worker.result.connect(receiver.on_result)
    worker.finished.connect(receiver.on_finished)
    worker.start()
    return worker, receiver


def test_worker_in_a_qthread_delivers_signals_on_the_gui_thread(qtbot):
    gui_thread = threading.get_ident()
    worker_threads: list[int] = []

    def events():
        worker_threads.append(threading.get_ident())
        yield Progress("tiles", 1, 1)
        yield PredictionResult(np.ones((1, 1, 2, 2), np.float32))

    runner, receiver = _start(EventWorker(events))
    qtbot.waitUntil(lambda: receiver.statuses == [DONE], timeout=5000)
    assert runner.wait(2000)
    assert worker_threads and worker_threads[0] != gui_thread
    assert receiver.results == [gui_thread]


def test_cancel_stops_within_one_event_and_runs_the_generators_finally(qtbot):
    closed = threading.Event()
    produced: list[int] = []
    worker_box: list[EventWorker] = []

    def events():
        try:
            for step in range(1000):
                produced.append(step)
                if step == 3:
                    worker_box[0].cancel()  # as if the user pressed Cancel during step 3
                yield Progress("sampling", step + 1, 1000)
        finally:
            closed.set()

    worker = EventWorker(events, progress_interval_s=0.0)
    worker_box.append(worker)
    seen = _record(worker)
    worker.run()
    assert seen[-1] == ("finished", CANCELLED)
    assert closed.is_set()
    # The event produced while cancelling is not forwarded and nothing after it is produced.
    assert len(produced) == 4
    assert [e[1].done for e in seen if e[0] == "progress"] == [1, 2, 3]


def test_cancel_from_the_gui_thread_closes_an_endless_threaded_run(qtbot):
    closed = threading.Event()
    produced: list[int] = []

    def events():
        try:
            while True:  # never ends by itself: only the cancel can stop it
                produced.append(1)
                yield Progress("sampling", 1, 10)
                threading.Event().wait(0.005)
        finally:
            closed.set()

    worker = EventWorker(events)
    runner, receiver = _start(worker)
    qtbot.waitUntil(lambda: len(produced) > 3, timeout=5000)
    worker.cancel()
    qtbot.waitUntil(lambda: receiver.statuses == [CANCELLED], timeout=10000)
    assert closed.is_set()  # the generator's finally ran before ``finished``
    assert runner.wait(5000) and not runner.is_running()
    count = len(produced)
    qtbot.wait(50)
    assert len(produced) == count  # nothing is produced after the cancel


def test_a_labelfree_error_is_reported_as_its_sentence(qtbot):
    sentence = "The image 'a.tif' has 3 channels but the model takes 1; pick one channel."

    def events():
        yield Progress("loading", 0, 1)
        raise InputShapeError(sentence)

    worker = EventWorker(events)
    seen = _record(worker)
    worker.run()
    assert ("error", sentence, True) in seen
    assert seen[-1] == ("finished", FAILED)


def test_an_unexpected_exception_is_logged_and_reported_as_not_a_user_error(qtbot, caplog):
    def events():
        yield Progress("loading", 0, 1)
        raise RuntimeError("boom")

    worker = EventWorker(events)
    seen = _record(worker)
    with caplog.at_level("ERROR"):
        worker.run()
    errors = [e for e in seen if e[0] == "error"]
    assert errors == [("error", "RuntimeError: boom", False)]
    assert "boom" in caplog.text and "Traceback" in caplog.text


def test_every_preview_is_forwarded_because_the_engine_already_throttles():
    image = np.zeros((1, 1, 2, 2), np.float32)

    def events():
        for step in range(20):
            yield Preview("x_t", 0, step, 20, image)
            yield Preview("pred_x0", 0, step, 20, image)

    worker = EventWorker(events)
    seen = _record(worker)
    worker.run()
    assert [(e[1].kind, e[1].step) for e in seen if e[0] == "preview"] == [
        (kind, step) for step in range(20) for kind in ("x_t", "pred_x0")]


def test_forwarded_previews_are_copies_the_engine_can_reuse():
    buffer = np.zeros((1, 1, 3, 3), np.float32)

    def events():
        yield Preview("x_t", 0, 1, 2, buffer)
        buffer[...] = 7.0  # the engine reuses its buffer for the next step
        yield Progress("sampling", 2, 2)

    worker = EventWorker(events)
    seen = _record(worker)
    worker.run()
    forwarded = [e[1] for e in seen if e[0] == "preview"][0]
    assert forwarded.image is not buffer
    assert float(forwarded.image.max()) == 0.0


def test_final_progress_is_never_throttled_away():
    def events():
        for done in range(1, 51):
            yield Progress("tiles", done, 50)

    worker = EventWorker(events, progress_interval_s=10.0)
    seen = _record(worker)
    worker.run()
    dones = [e[1].done for e in seen if e[0] == "progress"]
    assert dones[0] == 1 and dones[-1] == 50 and len(dones) == 2


@pytest.mark.parametrize("fails", [False, True])
def test_call_in_thread_returns_value_or_exception_on_the_gui_thread(qtbot, fails):
    gui_thread = threading.get_ident()
    outcome: list = []

    def work():
        if fails:
            raise InputShapeError("no")
        return threading.get_ident()

    call_in_thread(work, lambda v: outcome.append(("done", v, threading.get_ident())),
                   lambda e: outcome.append(("failed", e, threading.get_ident())))
    qtbot.waitUntil(lambda: bool(outcome), timeout=3000)
    kind, value, thread = outcome[0]
    assert thread == gui_thread
    if fails:
        assert kind == "failed" and isinstance(value, InputShapeError)
    else:
        assert kind == "done" and value != gui_thread


@pytest.mark.parametrize("closed", [False, True])
def test_call_in_thread_drops_a_value_whose_owner_was_deleted_meanwhile(qtbot, closed):
    from PySide6.QtCore import QCoreApplication, QEvent
    from PySide6.QtWidgets import QWidget
    from shiboken6 import isValid

    owner = QWidget()
    release = threading.Event()
    outcome: list = []
    finished = threading.Event()

    def work():
        release.wait(5)
        finished.set()
        return 1

    call_in_thread(work, outcome.append, outcome.append, owner=owner)
    if closed:
        owner.deleteLater()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        assert not isValid(owner)
    release.set()
    qtbot.waitUntil(finished.is_set, timeout=3000)
    qtbot.wait(100)  # the queued result reaches the GUI thread
    assert outcome == ([] if closed else [1])
    if not closed:
        owner.deleteLater()


# --- the generic GeneratorWorker ----------------------------------------------------------------


def _record_generic(worker: GeneratorWorker) -> list:
    seen: list = []
    worker.yielded.connect(lambda e: seen.append(("yielded", e)))
    worker.returned.connect(lambda v: seen.append(("returned", v)))
    worker.errored.connect(lambda text, user: seen.append(("error", text, user)))
    worker.finished.connect(lambda status: seen.append(("finished", status)))
    return seen


def test_the_return_value_is_emitted_as_returned_after_the_yielded_events(qtbot):
    def events():
        yield "a"
        yield "b"
        return {"report": 42}

    worker = GeneratorWorker(events)
    seen = _record_generic(worker)
    worker.run()
    assert seen == [("yielded", "a"), ("yielded", "b"), ("returned", {"report": 42}), ("finished", DONE)]


def test_what_handle_returns_is_sent_into_the_generator(qtbot):
    class Doubler(GeneratorWorker):
        def handle(self, event):
            return event * 2

    def events():
        answers = []
        for question in (1, 5, 7):
            answers.append((yield question))
        return answers

    worker = Doubler(events)
    seen = _record_generic(worker)
    worker.run()
    assert ("returned", [2, 10, 14]) in seen


def test_a_cancelled_run_emits_no_returned_and_finishes_cancelled(qtbot):
    def events():
        yield 1
        worker.cancel()
        yield 2
        return "never"

    worker = GeneratorWorker(events)
    seen = _record_generic(worker)
    worker.run()
    assert seen == [("yielded", 1), ("finished", CANCELLED)]


def test_an_error_while_making_the_generator_is_reported_and_finishes_failed(qtbot):
    from labelfree_app.errors import LabelFreeError

    def make():
        raise LabelFreeError("The model folder is missing; install it again.")

    worker = GeneratorWorker(make)
    seen = _record_generic(worker)
    worker.run()
    assert seen == [("error", "The model folder is missing; install it again.", True), ("finished", FAILED)]


def test_the_generic_worker_runs_the_generator_on_its_own_thread(qtbot):
    gui_thread = threading.get_ident()
    ran_on: list[int] = []
    delivered_on: list[int] = []

    def events():
        ran_on.append(threading.get_ident())
        yield "x"
        return "r"

    worker = GeneratorWorker(events)
    receiver = GuiReceiver()
    worker.returned.connect(lambda value: delivered_on.append(threading.get_ident()))
    worker.finished.connect(receiver.on_finished)
    worker.start()
    qtbot.waitUntil(lambda: receiver.statuses == [DONE], timeout=5000)
    assert worker.wait(5000)
    assert ran_on and ran_on[0] != gui_thread


def test_stop_all_workers_cancels_and_waits_for_running_threads(qtbot):
    closed = threading.Event()

    def events():
        try:
            while True:
                yield 0
                threading.Event().wait(0.005)
        finally:
            closed.set()

    worker = GeneratorWorker(events)
    worker.start()
    qtbot.waitUntil(lambda: worker.events_seen > 0, timeout=5000)
    assert stop_all_workers(5000)
    assert closed.is_set() and not worker.is_running()


def test_a_worker_that_keeps_its_work_still_shows_the_event_that_arrived_after_cancel(qtbot):
    class Keeping(GeneratorWorker):
        drop_event_after_cancel = False

    def events():
        yield 1
        worker.cancel()  # Pause pressed while step 2 was computed: step 2 is checkpointed
        yield 2
        yield 3

    worker = Keeping(events)
    seen = _record_generic(worker)
    worker.run()
    assert seen == [("yielded", 1), ("yielded", 2), ("finished", CANCELLED)]
