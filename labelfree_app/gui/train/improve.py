"""Improve for my images…: fine-tune the model behind a doubtful result on the open image, then re-run.

``plan_improvement`` decides what to train on: the open file's input channel (the one the
prediction used) against a fluorescence channel of the same file, the model's stain by name if
there is one; without one, the file goes on the input list and a sentence asks for a stained
field. ``open_improve`` opens the Train page with *Start from* the result's model and the *Quick
fine-tune (2 min)* preset; when that training ends, the new model is installed, selected and run on
the same file, so its own expected r shows under the Prediction panel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from PySide6.QtWidgets import QWidget

from labelfree_app.gui.backend import image_facts, is_large_image
from labelfree_app.gui.files.file_list import FileList, OpenFile
from labelfree_app.gui.predict.trust_display import IMPROVED_FROM
from labelfree_app.gui.train.page import TrainDialog, UseModel, open_train_dialog
from labelfree_app.gui.trust_levels import interval_text, trust_of
from labelfree_app.gui.viewer.compare import matching_channel
from labelfree_app.models.fit import FINETUNABLE, start_problem

_TRANSMITTED = re.compile(r"bright|phase|dic|trans|\bbf\b|\btl\b|\bpc\b", re.IGNORECASE)


@dataclass(frozen=True)
class ImprovePlan:
    """What the Train page is set to: the model to start from and the pair(s) to train on."""

    model_id: str
    model_type: str  # "unet" | "diffusion"
    path: Path | None  # the open file, or None when the user has to add the pairs
    input_channel: int
    target_channel: int | None  # None: no fluorescence channel in the file
    target: str  # the stain, as the model names it
    name: str  # the new model's display name
    intro: str  # the sentence above the Train page


def looks_transmitted(name: str) -> bool:
    return bool(_TRANSMITTED.search(str(name)))


def fluorescence_channel(names: Sequence[str], target: str, exclude: int) -> tuple[int | None, bool]:
    """The channel to learn: one named like ``target`` (True), else the first other channel that does
    not look like transmitted light (False), else None."""
    index = matching_channel(names, target, exclude=exclude)
    if index is not None:
        return index, True
    others = [i for i, name in enumerate(names) if i != exclude and not looks_transmitted(name)]
    return (others[0], False) if others else (None, False)


def model_type_of(model: Any) -> str:
    manifest = getattr(model, "manifest", None)
    architecture = getattr(getattr(manifest, "architecture", None), "id", "")
    return FINETUNABLE.get(architecture) or ("diffusion" if str(model.kind).startswith("diffusion") else "unet")


def plan_improvement(record: OpenFile, model: Any) -> ImprovePlan:
    """What to fine-tune ``model`` on for ``record``'s image (see the module docstring)."""
    image = record.image
    names = [str(n) for n in (getattr(image, "channel_names", ()) or ())]
    channels = int(image.data.shape[-4])
    names += [f"channel {i}" for i in range(len(names), channels)]
    target = str(model.target)
    file = record.name
    after = (f"When it finishes, the new model is installed and run on {file}, and its own expected r "
             "shows under the Prediction panel.")
    start = f"Fine-tune {model.id} on {file} (Quick fine-tune, about 2 minutes)"
    stem = Path(record.name).stem.split(".")[0][:32]
    plan = dict(model_id=model.id, model_type=model_type_of(model), input_channel=record.channel, target=target,
                name=f"{model.id} for {stem}")
    single_file = not record.extra.get("plane_paths")
    index, by_name = fluorescence_channel(names, target, record.channel) if channels > 1 else (None, False)
    if index is not None and single_file:
        check = "" if by_name else f" Check that '{names[index]}' is a {target} stain; if not, pick the right channel."
        intro = (f"{start}: '{names[record.channel]}' as the input, '{names[index]}' as the target.{check} "
                 f"Press Start training. {after}")
        return ImprovePlan(path=record.path, target_channel=index, intro=intro, **plan)
    where = ("its fluorescence image (the same field, the same size) on the Fluorescence (target) list"
             if channels == 1 and single_file else "pairs of your images on the two lists")
    intro = (f"{start}. Add a stained field: {file} has no {target} channel, so drop {where}; a few stained "
             f"fields of your own microscope help most. Then press Start training. {after}")
    return ImprovePlan(path=record.path if channels == 1 and single_file else None, target_channel=None,
                       intro=intro, **plan)


def apply_plan(dialog: TrainDialog, plan: ImprovePlan) -> None:
    """Set the Train page's set-up to ``plan``."""
    setup = dialog.setup
    setup.prepare_fine_tune(plan.model_id, plan.model_type, plan.intro)
    setup.target_edit.setText(plan.target)
    setup.name_edit.setText(plan.name)
    if plan.path is not None and plan.target_channel is not None:
        setup.pairs_box.use_multichannel_file(plan.path, plan.input_channel, plan.target_channel)
    elif plan.path is not None:
        setup.pairs_box.use_input_file(plan.path)


def open_improve(parent: QWidget, backend: Any, dialogs: list[QWidget], models: Sequence[Any], files: FileList,
                 use_model: UseModel, say: Callable[[str], Any]) -> TrainDialog | None:
    """Improve for my images… for the shown file's result; returns the Train page, or None (with a
    sentence to ``say``) when there is nothing to improve."""
    record = files.current()
    if record is None or record.result is None or record.image is None:
        say("Run a prediction first; Improve for my images… fine-tunes the model that made it.")
        return None
    model_id = record.result.model_id
    model = next((m for m in models if m.id == model_id), None)
    manifest = getattr(model, "manifest", None)
    if model is None or manifest is None:
        say(f"{model_id} is not an installed model LabelFree can fine-tune; train a model on the Train page.")
        return None
    if is_large_image(record.image, backend.large_plane_pixels):
        say(f"{record.name} is too large to fine-tune on as a whole; crop a stained field of it (a few thousand "
            "pixels a side) and use Improve for my images… on the crop.")
        return None
    problem = start_problem(manifest, image_facts(record.image).planes, model_type_of(model))
    if problem:
        say(f"{model_id} {problem}; train a new model for these images on the Train page (Models ▸ Train).")
        return None

    def run_on_record(new_id: str, installed: list[Any]) -> str | None:
        if files.index_of(record) >= 0:
            files.select(record)
        return use_model(new_id, installed)

    dialog = open_train_dialog(parent, backend, dialogs, models, use_model)
    dialog.setup.set_models(list(models))
    if not dialog.prepare_for(run_on_record):
        say("A training is already running on the Train page; wait for it to finish or stop it first.")
        return dialog
    apply_plan(dialog, plan_improvement(record, model))
    trust = trust_of(record.result)
    if trust is not None:
        record.extra[IMPROVED_FROM] = {"model_id": model_id, "summary": f"{interval_text(trust)}, {trust.level}"}
    return dialog
