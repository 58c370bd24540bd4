"""Work-arounds for bugs in the Qt bindings, applied once when ``labelfree_app.gui`` is imported.

PySide6 6.12.0 (an abi3 wheel) on CPython < 3.12 returns ``None`` from every void method and
``True`` from ``SignalInstance.emit()`` without taking a new reference, as if those objects were
immortal (they are from CPython 3.12 on). Each call drops one reference, so after some thousands
of calls CPython frees ``None`` or ``True`` and aborts ("none_dealloc: deallocating None").
We detect the leak with a few probe calls and, only then, give ``None``, ``True`` and ``False`` a
huge extra reference count, which is what CPython 3.12 does for them.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal

_EXTRA_REFERENCES = 1 << 40
_PROBE_CALLS = 8


class _Probe(QObject):
    ping = Signal(int)


def singleton_references_leak() -> bool:
    """True when Qt calls from Python lose references to ``None`` or ``True`` (PySide6 6.12.0)."""
    probe = _Probe()
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(_PROBE_CALLS):
        probe.setObjectName("labelfree-probe")  # a void method: returns None
        probe.ping.emit(0)  # emit() returns True
    lost_none = none_before - sys.getrefcount(None)
    lost_true = true_before - sys.getrefcount(True)
    return lost_none >= _PROBE_CALLS or lost_true >= _PROBE_CALLS


def _add_references(obj: object, count: int) -> None:
    refcount = ctypes.c_ssize_t.from_address(id(obj))  # ob_refcnt is PyObject's first field
    refcount.value += count


def make_singletons_immortal_if_needed() -> bool:
    """Apply the work-around if this interpreter and PySide6 need it; returns whether it did."""
    if sys.version_info >= (3, 12) or not singleton_references_leak():
        return False
    for singleton in (None, True, False):
        _add_references(singleton, _EXTRA_REFERENCES)
    return True


SINGLETON_WORKAROUND_APPLIED = make_singletons_immortal_if_needed()
