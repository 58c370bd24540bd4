from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from labelfree_app.core import devices
from labelfree_app.core.devices import (
    DeviceInfo,
    available_devices,
    free_memory_bytes,
    is_out_of_memory,
    select_device,
)
from labelfree_app.errors import DeviceError

GIB = 2**30


@pytest.fixture()
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)


@pytest.fixture()
def two_fake_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend to have two CUDA GPUs so the CUDA paths run on a CPU-only machine."""
    names = ["NVIDIA GeForce RTX 4090", "NVIDIA A100-SXM4-80GB"]
    totals = [24 * GIB, 80 * GIB]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: SimpleNamespace(name=names[i], total_memory=totals[i]))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (totals[i] // 2, totals[i]))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda i: 3 * GIB)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda i: 1 * GIB)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)


def test_auto_falls_back_to_cpu_without_a_gpu(no_gpu: None) -> None:
    assert select_device("auto") == torch.device("cpu")
    assert select_device() == torch.device("cpu")
    assert select_device(" CPU ") == torch.device("cpu")


def test_auto_prefers_cuda(two_fake_gpus: None) -> None:
    assert select_device("auto") == torch.device("cuda", 0)
    assert select_device("cuda:1") == torch.device("cuda", 1)


def test_auto_prefers_mps_over_cpu(no_gpu: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_mps_available", lambda: True)
    assert select_device("auto") == torch.device("mps")


@pytest.mark.parametrize("request_name", ["cuda", "cuda:0", "mps"])
def test_missing_device_raises_a_sentence_naming_what_is_available(no_gpu: None, request_name: str) -> None:
    with pytest.raises(DeviceError) as err:
        select_device(request_name)
    message = str(err.value)
    assert "not available" in message and "cpu" in message and message.endswith(".")


def test_missing_gpu_index_lists_the_real_gpus(two_fake_gpus: None) -> None:
    with pytest.raises(DeviceError, match="cuda:2") as err:
        select_device("cuda:2")
    assert "RTX 4090" in str(err.value) and "cuda:1" in str(err.value)


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu", ""])
def test_unknown_device_names_are_refused(no_gpu: None, name: str) -> None:
    if name == "":
        assert select_device(name) == torch.device("cpu")  # empty means auto
        return
    with pytest.raises(DeviceError, match="not a device name"):
        select_device(name)


def test_available_devices_lists_gpus_first_with_readable_labels(two_fake_gpus: None) -> None:
    found = available_devices()
    assert [d.name for d in found] == ["cuda:0", "cuda:1", "cpu"]
    assert found[0].label == "NVIDIA GeForce RTX 4090 (24 GB)"
    assert found[1].label == "NVIDIA A100-SXM4-80GB (80 GB)"
    assert found[0].total_memory == 24 * GIB
    assert found[0].free_memory == 12 * GIB + 2 * GIB  # driver-free plus torch's unused cache


def test_cpu_is_always_listed_with_its_cores(no_gpu: None) -> None:
    found = available_devices()
    assert len(found) == 1 and isinstance(found[0], DeviceInfo)
    cpu = found[0]
    assert cpu.kind == "cpu" and cpu.label.startswith("CPU (") and "core" in cpu.label
    assert cpu.total_memory is not None and 0 < (cpu.free_memory or 0) <= cpu.total_memory


@pytest.fixture()
def fake_ram(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """16 GiB of RAM of which 5 GiB are available; 3 GiB more are 'free' (a different figure)."""
    memory = SimpleNamespace(total=16 * GIB, available=5 * GIB, free=8 * GIB, used=11 * GIB)
    monkeypatch.setattr(devices.psutil, "virtual_memory", lambda: memory)
    monkeypatch.setattr(devices.os, "cpu_count", lambda: 6)
    return memory


def test_free_memory_on_cpu_is_the_available_ram_not_the_free_ram(fake_ram: SimpleNamespace) -> None:
    assert free_memory_bytes("cpu") == 5 * GIB
    assert free_memory_bytes(torch.device("cpu")) == 5 * GIB


def test_the_cpu_entry_reports_the_machines_cores_and_memory(no_gpu: None, fake_ram: SimpleNamespace) -> None:
    (cpu,) = available_devices()
    assert cpu.label == "CPU (6 cores)"
    assert (cpu.total_memory, cpu.free_memory) == (16 * GIB, 5 * GIB)


def test_free_memory_on_cuda_counts_the_unused_cache(two_fake_gpus: None) -> None:
    assert free_memory_bytes(torch.device("cuda", 1)) == 40 * GIB + 2 * GIB


def test_out_of_memory_errors_are_recognised() -> None:
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 8 GB)"))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                                         "can't allocate memory: you tried to allocate 68719476736 bytes."))
    assert is_out_of_memory(MemoryError())


def test_other_errors_are_not_out_of_memory() -> None:
    assert not is_out_of_memory(RuntimeError("Expected all tensors to be on the same device"))
    assert not is_out_of_memory(ValueError("out of memory"))
    assert not is_out_of_memory(KeyError("memory"))


def test_a_real_cpu_allocation_failure_is_recognised() -> None:
    try:
        torch.empty(2**62, dtype=torch.uint8)
    except Exception as exc:  # noqa: BLE001 - the allocator's exact type varies by platform
        assert is_out_of_memory(exc), repr(exc)
    else:
        pytest.skip("the allocator accepted an absurd request (overcommit)")
