"""A model card for a person: what a model predicts, from which data (and under which terms), how
well it does and where it is weak, as plain sentences; the doors (window, CLI) only lay them out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class CardSection:
    """One titled part of a card: ``rows`` are (label, value) pairs, ``lines`` sentences."""

    title: str
    rows: tuple[tuple[str, str], ...] = ()
    lines: tuple[str, ...] = field(default_factory=tuple)


def _r(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) and value == value else "?"


def _share(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, (int, float)) and value == value else "?"


def split_description(text: str) -> tuple[str, str]:
    """The description and its "Known weaknesses:" part (empty when it has none)."""
    head, sep, tail = str(text or "").partition("Known weaknesses:")
    return head.strip(), tail.strip() if sep else ""


def _kind(manifest: Mapping[str, Any]) -> str:
    if manifest.get("kind") == "diffusion":
        return "Diffusion model: several samples give a mean (the prediction) and a spread (its uncertainty)"
    return "U-Net: one fast answer per image"


def _input(manifest: Mapping[str, Any]) -> str:
    block = manifest.get("input") or {}
    planes = int(block.get("channels", 1) or 1)
    dims = int(manifest.get("dims", 2) or 2)
    if block.get("z_as_channels") and planes > 1:
        return f"a {planes}-plane z-stack"
    if dims == 3:
        return "a 3D z-stack"
    return "one 2D plane" if planes == 1 else f"{planes} channels"


def _output_units(manifest: Mapping[str, Any]) -> str:
    output = (manifest.get("normalization") or {}).get("output") or {}
    params = output.get("params") or {}
    if "mean" in params and "std" in params:
        dtype = (manifest.get("output") or {}).get("dtype", "")
        counts = "counts" if str(dtype).startswith("uint") else "units"
        return f"the stain's own {counts} (typical mean {params['mean']:,.0f}, std {params['std']:,.0f})"
    return "z-scores of the stain (0 = average, 1 = one standard deviation brighter)"


def overview_rows(manifest: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The card's first table: what goes in, what comes out."""
    modality = str(manifest.get("input_modality", "?"))
    shape = _input(manifest)
    source = modality if "z-stack" in modality and "z-stack" in shape else f"{modality}, {shape}"
    rows = [("Predicts", str(manifest.get("target", "?"))),
            ("From", source),
            ("Kind", _kind(manifest)),
            ("Output in", _output_units(manifest))]
    diffusion = manifest.get("diffusion")
    if isinstance(diffusion, dict) and diffusion:
        text = (f"{diffusion.get('samples', '?')} samples × {diffusion.get('steps', '?')} steps "
                f"({diffusion.get('sampler', '?')})")
        fitted = diffusion.get("variance_scale")
        if isinstance(fitted, dict) and fitted.get("steps") == diffusion.get("steps"):
            text += (f"; spread × {fitted.get('scale')} to keep the calibration of {fitted.get('reference_steps')} "
                     "steps")
        rows.append(("Default sampling", text))
    rows.append(("Test-time augmentation", "yes (flips and rotations averaged)" if manifest.get("tta") else "no"))
    rows.append(("Version / id", f"{manifest.get('version', '?')} · {manifest.get('id', '?')}"))
    return tuple(rows)


def figure_lines(metrics: Mapping[str, Any], kind: str = "unet") -> list[str]:
    """How well the model does, in sentences, from whichever figures its manifest holds."""
    lines: list[str] = []
    if isinstance(metrics.get("pearson_r"), (int, float)):
        where = metrics.get("test_region") or "its test images"
        lines.append(f"Pearson r {_r(metrics['pearson_r'])} with the real stain on {where}.")
    per_source = metrics.get("per_source")
    if isinstance(per_source, dict) and per_source:
        parts = [f"{name} {_r(v.get('pearson_r') if isinstance(v, dict) else v)}" for name, v in per_source.items()]
        lines.append("By source (held-out fields): " + ", ".join(parts) + ".")
    baseline = (metrics.get("linear_baseline") or {}).get("mean") or {}
    if "pearson_r" in baseline:
        lines.append(f"A straight-line fit from the input reaches r {_r(baseline['pearson_r'])} on the same region "
                     "(the floor any model must beat).")
    evaluation = (metrics.get("evaluation") or {}).get("mean") or {}
    within = metrics.get("within_1sigma", evaluation.get("within_1sigma"))
    if isinstance(within, (int, float)):
        spread = "the spread of its samples" if kind == "diffusion" else "the spread between flipped copies"
        lines.append(f"Uncertainty ({spread}): {_share(within)} of pixels lie within one standard deviation of "
                     "the real stain (about 68% when the spread is honest).")
    loso = metrics.get("leave_one_source_out")
    if isinstance(loso, dict) and loso:
        parts = [f"{name} {_r((v or {}).get('zero_shot_r'))}" for name, v in loso.items()]
        lines.append("On a microscope it never saw (each source left out of training in turn): "
                     + ", ".join(parts) + ".")
    quick = metrics.get("quick_finetune_vs_scratch")
    if isinstance(quick, dict):
        parts = [f"{name} {_r(v.get('finetune_2min'))}" for name, v in quick.items() if isinstance(v, dict)]
        if parts:
            lines.append("After a 2-minute fine-tune on a few of that microscope's pairs: " + ", ".join(parts) + ".")
    validation = metrics.get("validation")
    if isinstance(validation, dict) and "pearson_r" in validation:
        where = validation.get("test_region") or validation.get("region") or "validation patches"
        lines.append(f"During training: r {_r(validation['pearson_r'])} on {where}.")
    int8 = metrics.get("int8")
    if isinstance(int8, dict):
        lines.append(f"Fast int8 network: offered (r {int8.get('r_fp32_int8', '?')} to full precision)."
                     if int8.get("passed") else
                     f"Fast int8 network: not offered (r {int8.get('r_fp32_int8', '?')} to full precision, "
                     "below the 0.999 required).")
    return lines or ["No figures recorded: its manifest holds no test results."]


def training_lines(manifest: Mapping[str, Any]) -> list[str]:
    """What the model was trained on and for how long."""
    training = manifest.get("training") or {}
    lines = []
    if training.get("data"):
        lines.append(str(training["data"]).rstrip(".") + ".")
    steps, seconds = training.get("steps"), training.get("seconds")
    if steps:
        took = f" in {float(seconds) / 60:.0f} min" if isinstance(seconds, (int, float)) else ""
        lines.append(f"{steps:,} training steps{took} on {str(training.get('device', '?')).upper()}.")
    parent = ((training.get("settings") or {}).get("init_from")) or None
    if isinstance(parent, dict) and parent.get("id"):
        lines.append(f"Fine-tuned from {parent['id']} {parent.get('version', '')}".rstrip() + ".")
    return lines or ["Not recorded."]


def weakness_lines(manifest: Mapping[str, Any]) -> list[str]:
    """Known weaknesses: those its authors wrote, then those its own figures and shape show."""
    _, written = split_description(str(manifest.get("description", "")))
    lines = [written] if written else []
    extra = manifest.get("known_weaknesses")
    if isinstance(extra, str) and extra:
        lines.append(extra)
    elif isinstance(extra, (list, tuple)):
        lines.extend(str(x) for x in extra)
    block = manifest.get("input") or {}
    if block.get("z_as_channels") and int(block.get("channels", 1) or 1) > 1:
        lines.append(f"Needs exactly {block['channels']} planes with the spacing and order it was trained on; "
                     "a single plane or another stack depth does not fit.")
    data = str((manifest.get("training") or {}).get("data", ""))
    if not written and "ISL" in data:
        lines.append("Trained on one lab's cultured neurons on one microscope (ISL condition B): other cells, "
                     "microscopes and magnifications are untested and likely weaker; fine-tune on a few of your "
                     "own pairs.")
    metrics = manifest.get("metrics") or {}
    within = metrics.get("within_1sigma", ((metrics.get("evaluation") or {}).get("mean") or {}).get("within_1sigma"))
    if manifest.get("kind") == "diffusion":
        lines.append("Slow: every sample runs the network once per step (see the estimate beside Steps).")
        if isinstance(within, (int, float)) and within < 0.6:
            lines.append(f"Its spread is too narrow: only {_share(within)} of pixels within one standard deviation "
                         "(68% would be honest), so read the variance as where it is unsure, not as an error bar.")
    elif not manifest.get("demo"):
        lines.append("Gives no uncertainty of its own: the variance shown is the spread between flipped copies.")
    if manifest.get("demo"):
        lines.append("Trained on synthetic cells: for trying the app only, not for real images.")
    return lines


def card_sections(manifest: Mapping[str, Any]) -> list[CardSection]:
    """The whole card, in the order a person reads it."""
    from labelfree_app.training.model_card import trust_card_lines  # its module imports torch: only here
    description, _ = split_description(str(manifest.get("description", "")))
    license_ = str(manifest.get("license") or "not stated: ask its authors before sharing predictions")
    terms = [("Licence", license_)]
    if manifest.get("attribution"):
        terms.append(("Credit", str(manifest["attribution"])))
    trust = [line.strip() for line in trust_card_lines(manifest)[1:]]
    kind = manifest.get("kind", "unet")
    return [
        CardSection("About", overview_rows(manifest), (description,) if description else ()),
        CardSection("How well it does", lines=tuple(figure_lines(manifest.get("metrics") or {}, str(kind)))),
        CardSection("Known weaknesses", lines=tuple(weakness_lines(manifest))),
        CardSection("Training data", lines=tuple(training_lines(manifest))),
        CardSection("Licence and credit", tuple(terms)),
        CardSection("Trust map and expected r", lines=tuple(trust)),
    ]
