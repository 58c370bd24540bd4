"""The networks' thread count is known without torch and is torch's own once torch is loaded."""

from __future__ import annotations

import pytest
import torch

from labelfree_app.core import threads
from labelfree_app.core.devices import Device, choose_device, parse_device
from labelfree_app.torch_build import torch_is_cpu_only, torch_version


def test_torch_is_described_as_it_describes_itself() -> None:
    assert torch_version() == str(torch.__version__)
    assert torch_is_cpu_only() == (torch.version.cuda is None and torch.version.hip is None)


def test_the_default_is_what_torch_starts_with(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_cpu_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert threads.default_cpu_threads() >= 1


def test_a_count_asked_for_is_handed_to_torch() -> None:
    before = torch.get_num_threads()
    try:
        threads.set_cpu_threads(1)
        assert torch.get_num_threads() == 1 and threads.cpu_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_devices_are_named_as_torch_names_them() -> None:
    assert str(Device("cuda", 1)) == str(torch.device("cuda", 1)) and str(Device("cpu")) == "cpu"
    assert parse_device(" CUDA:2 ") == Device("cuda", 2)
    with pytest.raises(ValueError):
        parse_device("cuda:x")
    assert str(choose_device(torch.device("cpu"))) == "cpu"
