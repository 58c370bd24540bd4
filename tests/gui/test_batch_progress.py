"""The batch dialog's clock (no Qt): an ETA before the first file ends that counts down between events,
and the target channel found by a name part, as Compare finds it."""

from __future__ import annotations

import pytest

from labelfree_app.errors import ChannelError
from labelfree_app.gui.batch.progress import BatchClock
from labelfree_app.io.channels import find_target_channel


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_eta_comes_from_the_running_files_steps_and_counts_down_between_them():
    clock = Clock()
    batch = BatchClock(clock)
    batch.job_started(0, 3)
    batch.job_progress(1, 1, "loading")
    assert batch.eta() is None and batch.status().startswith("Loading the model")
    clock.now = 10.0
    batch.job_progress(5, 25, "sampling")  # a fifth of the file in 10 s: 40 s left here, 2 × 50 s after it
    assert batch.eta() == pytest.approx(140.0)
    assert batch.status() == "Sampling: 5 of 25 (10 s on this file)"
    clock.now = 15.0
    assert batch.eta() == pytest.approx(135.0)  # no event: it counts down
    clock.now = 50.0
    batch.job_finished(50.0, True, 100.0)
    batch.job_started(1, 3)
    assert batch.eta() == pytest.approx(100.0)  # the finished files' mean, before any step
    clock.now = 60.0
    assert batch.eta() == pytest.approx(90.0)


def test_the_target_channel_is_found_by_index_name_or_a_name_part():
    names = ["Phase contrast", "DNA (DAPI, real stain)"]
    assert find_target_channel(names, "DAPI") == 1
    assert find_target_channel(names, "dna (dapi, real stain)") == 1
    assert find_target_channel(names, 1) == 1
    assert find_target_channel(["BF", "Hoechst 33342"], "DNA") == 1
    with pytest.raises(ChannelError, match='no channel named "GFP"'):
        find_target_channel(names, "GFP")
    with pytest.raises(ChannelError):
        find_target_channel(names, 5)
