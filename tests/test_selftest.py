"""The self-test logic: statistics, tolerances, reports, and a real run on the bundled models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from labelfree_app import selftest
from labelfree_app.cli.main import main as cli_main
from labelfree_app.selftest import ImageStats, ModelCheck, SelfTestReport, Tolerance, compare_stats, image_stats


def _stats(seed: int = 0, scale: float = 1.0, offset: float = 0.0) -> ImageStats:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64]
    image = np.sin(yy / 7.0) + np.cos(xx / 5.0) + 0.05 * rng.standard_normal((64, 64))
    return image_stats((image * scale + offset)[np.newaxis, np.newaxis].astype(np.float32))


def test_image_stats_of_a_constant_image_are_that_constant() -> None:
    stats = image_stats(np.full((1, 1, 16, 16), 3.0, dtype=np.float32))
    assert (stats.mean, stats.std, stats.p01, stats.p50, stats.p99) == (3.0, 0.0, 3.0, 3.0, 3.0)
    assert stats.shape == (1, 1, 16, 16)
    assert len(stats.blocks) == selftest.GRID**2


def test_stats_survive_a_json_round_trip() -> None:
    stats = _stats()
    again = ImageStats.from_json(json.loads(json.dumps(stats.to_json())))
    assert compare_stats(again, stats, Tolerance(rel=1e-4, min_r=0.9999)) == []


def test_matching_stats_pass_and_small_noise_is_tolerated() -> None:
    tolerance = selftest.TOLERANCES["unet"]
    assert compare_stats(_stats(), _stats(), tolerance) == []
    assert compare_stats(_stats(seed=1), _stats(seed=0), tolerance) == []  # only the faint noise differs


@pytest.mark.parametrize(
    "actual, word",
    [
        (_stats(offset=0.5), "mean"),
        (_stats(scale=1.5), "std"),
    ],
)
def test_stats_outside_the_tolerance_are_named(actual: ImageStats, word: str) -> None:
    problems = compare_stats(actual, _stats(), selftest.TOLERANCES["unet"])
    assert any(p.startswith(word) for p in problems), problems


def test_a_different_pattern_with_the_same_histogram_fails_on_block_correlation() -> None:
    expected = _stats()
    flipped = ImageStats(expected.mean, expected.std, expected.p01, expected.p50, expected.p99, expected.shape,
                         blocks=tuple(reversed(expected.blocks)))
    problems = compare_stats(flipped, expected, selftest.TOLERANCES["unet"])
    assert len(problems) == 1 and "block correlation" in problems[0]


def test_a_wrong_shape_is_reported_alone() -> None:
    expected = _stats()
    other = ImageStats(**{**expected.__dict__, "shape": (1, 1, 32, 32)})
    assert compare_stats(other, expected, selftest.TOLERANCES["unet"]) == [
        "the prediction has shape (1, 1, 32, 32), expected (1, 1, 64, 64)"
    ]


def test_nan_statistics_fail() -> None:
    expected = _stats()
    broken = ImageStats(**{**expected.__dict__, "mean": float("nan")})
    assert any(p.startswith("mean") for p in compare_stats(broken, expected, selftest.TOLERANCES["unet"]))


def test_report_is_ok_only_when_every_check_passes() -> None:
    good = ModelCheck("a", "unet", 1.0)
    bad = ModelCheck("b", "diffusion", 2.0, problems=("std is 2, expected 1 ± 0.1",))
    assert SelfTestReport(checks=(good,)).ok
    assert not SelfTestReport(checks=(good, bad)).ok
    assert not SelfTestReport(checks=()).ok  # nothing checked is not a pass
    assert not SelfTestReport(checks=(good,), problems=("model c: expected but not bundled",)).ok
    text = SelfTestReport(checks=(good, bad), seconds=3.0).summary()
    assert "FAIL b (diffusion) 2.0 s" in text and "std is 2" in text and "Self-test FAILED: 1/2" in text


def test_an_unreadable_expected_file_is_one_sentence(tmp_path: Path) -> None:
    bad = tmp_path / "expected.json"
    bad.write_text("{not json", encoding="utf-8")
    report = selftest.run_self_test(expected_file=bad, out_dir=tmp_path / "out")
    assert not report.ok and len(report.problems) == 1 and "cannot be read" in report.problems[0]


def test_the_bundled_expected_file_names_every_bundled_model() -> None:
    expected = selftest.load_expected()["models"]
    bundled = {p.manifest.id for p in selftest.bundled_packages()}
    assert set(expected) == bundled
    for package in selftest.bundled_packages():
        assert expected[package.manifest.id]["weights_sha256"] == package.manifest.weights.sha256, (
            f"{package.manifest.id} changed: run scripts/make_selftest_expected.py"
        )


def test_a_model_whose_expected_stats_do_not_match_fails(tmp_path: Path) -> None:
    data = selftest.load_expected()
    entry = data["models"]["isl-map2-unet"]["stats"]
    entry["mean"] += 10 * max(entry["std"], 1.0)
    tampered = tmp_path / "expected.json"
    tampered.write_text(json.dumps(data), encoding="utf-8")
    report = selftest.run_self_test(device="cpu", expected_file=tampered, out_dir=tmp_path / "out",
                                    model_ids=["isl-map2-unet"])
    assert not report.ok
    (check,) = report.checks
    assert check.model_id == "isl-map2-unet" and any(p.startswith("mean is") for p in check.problems)
    assert "FAIL isl-map2-unet" in report.summary()


def test_cli_self_test_passes_with_the_bundled_models_and_writes_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real thing: every bundled model on the demo crop (diffusion 2 samples x 5 steps)."""
    code = cli_main(["--self-test", "--device", "cpu", "-o", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    n = len(selftest.bundled_packages())
    assert n >= 5 and f"Self-test passed: {n}/{n}" in out
    assert len(list(tmp_path.glob("*.ome.tif"))) >= n


def test_cli_self_test_fails_with_exit_1_for_a_model_that_is_not_bundled(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["self-test", "--model", "no-such-model"]) == 1
    assert "no-such-model: it is not bundled" in capsys.readouterr().out
