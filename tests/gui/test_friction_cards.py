"""Issue 28 item 14: model cards written for a person, for every bundled model."""

from __future__ import annotations

import json
import re

import pytest

from labelfree_app.gui.models.card import model_card_dialog, model_card_html
from labelfree_app.paths import resources_dir
from labelfree_app.models.card_text import card_sections

BUNDLED = sorted(p.parent for p in (resources_dir() / "models").glob("*/manifest.json"))


@pytest.mark.parametrize("folder", BUNDLED, ids=[p.name for p in BUNDLED])
def test_every_bundled_card_reads_as_sentences_with_data_terms_figures_and_weaknesses(qtbot, folder):
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    dialog = model_card_dialog(None, manifest)
    qtbot.addWidget(dialog)
    text = dialog.browser.toPlainText()
    # no Python reprs: no braces, no quoted keys, no snake_case manifest keys
    assert "{" not in text and "': " not in text
    for key in ("pearson_r", "within_1sigma", "init_from", "test_region", "channel_names", "z_as_channels"):
        assert key not in text
    sections = {s.title: s for s in card_sections(manifest)}
    assert sections["Known weaknesses"].lines, "every bundled model names at least one weakness"
    assert re.search(r"Pearson r 0\.\d\d with the real stain", text)
    assert manifest["license"].split(";")[0] in text and "Licence" in text
    assert "Training data" in text and manifest["training"]["data"][:30] in text


def test_a_card_takes_its_weaknesses_out_of_the_description_and_lists_them_apart():
    manifest = {"name": "m", "target": "DNA", "description": "Predicts DNA. Known weaknesses: Bad on DIC.",
                "kind": "unet", "metrics": {"pearson_r": 0.5}}
    about, _, weak = (dict((s.title, s) for s in card_sections(manifest))[t]
                      for t in ("About", "How well it does", "Known weaknesses"))
    assert about.lines == ("Predicts DNA.",) and "Bad on DIC." in weak.lines


def test_a_card_without_figures_or_licence_says_so_instead_of_printing_nothing():
    text = model_card_html({"name": "bare", "target": "DNA"})
    assert "No figures recorded" in text and "not stated" in text
