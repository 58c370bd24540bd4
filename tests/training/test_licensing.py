"""A derived model carries what its parent and its training data require (license and attribution)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelfree_app.models.package import load_package
from labelfree_app.paths import resources_dir
from labelfree_app.training.licensing import UNSPECIFIED, derived_terms
from labelfree_app.training.loop import train
from tests.factories import make_unet_package
from tests.training.conftest import tiny_config

GPL_PARENT = {"id": "lf-nuclei-2d", "version": "0.1.0",
              "license": "GPL-3.0-only; noncommercial research use only (training data: celldetective is GPL-3.0)",
              "attribution": "Training data: celldetective MCF-7 (remyeltorro/celldetective), GPL-3.0."}


def test_a_model_trained_from_scratch_carries_its_datas_terms_only():
    assert derived_terms("MIT", "My lab's images.", None).license == "MIT"
    assert derived_terms("", "", None).license == UNSPECIFIED


def test_a_gpl_noncommercial_parent_passes_its_terms_on_over_a_permissive_data_license():
    terms = derived_terms("Apache-2.0", "Training data: ISL condition B, Apache-2.0.", GPL_PARENT)
    assert terms.license.startswith("GPL-3.0-only; noncommercial research use only")  # SPDX id first
    assert "fine-tuned from lf-nuclei-2d 0.1.0 (GPL-3.0-only) on data under Apache-2.0" in terms.license
    assert terms.attribution.startswith("Training data: ISL condition B, Apache-2.0.")
    assert "celldetective" in terms.attribution and "Fine-tuned from lf-nuclei-2d 0.1.0" in terms.attribution


def test_data_whose_license_was_not_given_never_make_the_model_unspecified():
    terms = derived_terms(UNSPECIFIED, "", GPL_PARENT)
    assert terms.license.startswith("GPL-3.0-only; noncommercial")
    assert "whose license was not given" in terms.license
    assert "celldetective" in terms.attribution and "not given" in terms.attribution


def test_copyleft_data_bind_a_model_fine_tuned_from_a_permissive_parent():
    parent = {"id": "open-model", "version": "2.0", "license": "BSD-3-Clause", "attribution": ""}
    terms = derived_terms("GPL-3.0-or-later", "celldetective images", parent)
    assert terms.license.startswith("GPL-3.0-or-later;")
    assert "fine-tuned from open-model 2.0 (BSD-3-Clause)" in terms.license
    assert terms.attribution == "celldetective images. Fine-tuned from open-model 2.0 (its card gives no attribution)."


def test_a_real_fine_tune_of_a_gpl_parent_writes_its_terms_on_the_card(tmp_path, synthetic_pair):
    parent = make_unet_package(tmp_path / "models", model_id="gpl-parent", license=GPL_PARENT["license"],
                               attribution=GPL_PARENT["attribution"])
    out = train(tiny_config(synthetic_pair, tmp_path / "child", max_steps=3, val_every=2,
                            init_from=str(parent.path)))  # the Train page's fine-tune states no data license
    manifest = load_package(out).manifest
    assert manifest.license.startswith("GPL-3.0-only; noncommercial research use only")
    assert "fine-tuned from gpl-parent 0.1.0 (GPL-3.0-only)" in manifest.license
    assert "celldetective" in manifest.attribution
    init_from = manifest.training.settings["init_from"]
    assert init_from["license"] == GPL_PARENT["license"]  # what the parent required, as recorded at training


@pytest.mark.parametrize("model_id", ["isl-dapi-unet", "isl-map2-unet", "isl-dapi-diffusion", "isl-map2-diffusion"])
def test_each_bundled_isl_model_carries_its_parents_terms(model_id):
    folder = resources_dir() / "models" / model_id
    if not (folder / "manifest.json").is_file():
        pytest.skip(f"{model_id} is not bundled")
    manifest = json.loads((folder / "manifest.json").read_text())
    parent = manifest["training"]["settings"].get("init_from")
    if not parent:  # trained from scratch on the Apache-2.0 ISL data
        assert manifest["license"] == "Apache-2.0"
        return
    assert f"fine-tuned from {parent['id']} {parent['version']}" in manifest["license"]
    assert f"Fine-tuned from {parent['id']} {parent['version']}" in manifest["attribution"]
    load_package(folder).verify()  # editing the card's text left the weights and their sha256 alone
    parent_folder = Path(parent["path"]) if Path(parent["path"]).is_absolute() else resources_dir().parent / parent["path"]
    parent_manifest = json.loads((parent_folder / "manifest.json").read_text())
    if parent_manifest["weights"]["sha256"] != parent["sha256"]:
        return  # the parent was replaced since: its old terms are the ones checked above
    expected = derived_terms("Apache-2.0", manifest["attribution"].split(" Fine-tuned from")[0],
                             {**parent, "license": parent_manifest["license"],
                              "attribution": parent_manifest["attribution"]})
    assert manifest["license"] == expected.license
    assert manifest["attribution"] == expected.attribution


def test_the_command_line_states_the_datas_license_and_the_card_adds_the_parents(tmp_path, synthetic_pair, capsys):
    from labelfree_app.cli.main import main

    parent = make_unet_package(tmp_path / "models", model_id="gpl-parent", license=GPL_PARENT["license"],
                               attribution=GPL_PARENT["attribution"])
    out = tmp_path / "child"
    code = main(["train", "--input", str(synthetic_pair[0]), "--target", str(synthetic_pair[1]), "--out", str(out),
                 "--init-from", str(parent.path), "--license", "MIT", "--attribution", "My lab's fields.",
                 "--max-steps", "2", "--patch", "32", "32", "--batch-size", "2", "--val-region", "64:128,64:128",
                 "--val-every", "2", "--device", "cpu"])
    capsys.readouterr()
    assert code == 0
    manifest = load_package(out).manifest
    assert manifest.license.startswith("GPL-3.0-only; noncommercial")
    assert manifest.license.endswith("fine-tuned from gpl-parent 0.1.0 (GPL-3.0-only) on data under MIT")
    assert manifest.attribution.startswith("My lab's fields. Fine-tuned from gpl-parent 0.1.0")
