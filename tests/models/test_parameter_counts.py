"""Parameter counts are remembered, so reading a known manifest needs no torch; the count is torch's own."""

from __future__ import annotations

import pytest

from labelfree_app import paths
from labelfree_app.models import architectures, parameter_counts
from labelfree_app.models.parameter_counts import remembered_parameter_count

TINY = {"dims": 2, "in_channels": 1, "out_channels": 1, "depth": 2, "base_channels": 4}


def test_a_count_is_torchs_and_is_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = architectures.parameter_count("fnet_unet", TINY)
    assert remembered_parameter_count("fnet_unet", TINY) == expected
    assert (paths.user_cache_dir() / parameter_counts.CACHE_FILE).is_file()

    def no_counting(*_args: object) -> int:
        raise AssertionError("counted again")

    monkeypatch.setattr(architectures, "parameter_count", no_counting)
    assert remembered_parameter_count("fnet_unet", TINY) == expected
    with pytest.raises(AssertionError, match="counted again"):
        remembered_parameter_count("fnet_unet", {**TINY, "depth": 3})


def test_a_damaged_cache_only_costs_the_count() -> None:
    path = paths.user_cache_dir() / parameter_counts.CACHE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    assert remembered_parameter_count("fnet_unet", TINY) == architectures.parameter_count("fnet_unet", TINY)


def test_bad_settings_are_refused_and_not_remembered() -> None:
    with pytest.raises(TypeError):
        remembered_parameter_count("fnet_unet", {**TINY, "colour": 3})
    assert architectures.network_problem("fnet_unet", {**TINY, "colour": 3}) is not None
    assert not (paths.user_cache_dir() / parameter_counts.CACHE_FILE).exists()
