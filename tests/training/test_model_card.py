"""The model card's trust part, as text for people (`labelfree models info`)."""

from __future__ import annotations

import json
from pathlib import Path

from labelfree_app.training.model_card import calibration_figures, trust_card_lines

FIGURES = {"unet+profile": {"held_out_by_source": {"fields": 80, "spearman": 0.712, "mean_abs_error": 0.123,
                                                   "flagged_of_below_0.5": 0.85,
                                                   "flagged_of_at_least_0.5": 0.2}},
           "unet": {"held_out_by_source": {"fields": 80, "spearman": 0.6, "mean_abs_error": 0.15,
                                           "flagged_of_below_0.5": 0.7}}}


def test_the_card_gives_the_calibration_figures_of_the_models_family() -> None:
    with_profile = "\n".join(trust_card_lines({"dims": 2, "kind": "unet", "trust": {"input_profile": {"m": 1}}},
                                              FIGURES))
    assert with_profile.startswith("Trust\n") and "Input profile: yes" in with_profile
    assert "Spearman 0.71" in with_profile and "mean error 0.12" in with_profile and "85%" in with_profile
    assert "20% of those with r of 0.5 or more" in with_profile  # the false alarms are told too
    without = "\n".join(trust_card_lines({"dims": 2, "kind": "unet"}, FIGURES))
    assert "Input profile: no" in without and "Spearman 0.60" in without


def test_the_card_says_when_there_is_no_calibration_or_the_model_is_3d(tmp_path: Path) -> None:
    assert calibration_figures(tmp_path / "missing.json") == {}
    (tmp_path / "broken.json").write_text("{not json")
    assert calibration_figures(tmp_path / "broken.json") == {}
    (tmp_path / "cal.json").write_text(json.dumps({"models": {}, "figures": FIGURES}))
    assert calibration_figures(tmp_path / "cal.json") == FIGURES
    assert "none installed" in trust_card_lines({"dims": 2, "kind": "diffusion"}, {})[-1]
    assert "Not estimated for 3D models" in trust_card_lines({"dims": 3, "kind": "unet"}, FIGURES)[-1]
