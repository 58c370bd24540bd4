"""Import a bioimage.io model (zip, folder or rdf.yaml) as a LabelFree package, never running its code.

Accepted weights: ``pytorch_state_dict`` whose weights have the layout of our fnet U-Net (recognised by
loading them strictly into ``UNet`` built from the fixed table; the package's architecture source file
is never imported) read with ``torch.load(weights_only=True)``; otherwise ``onnx`` weights, stored as
an ``onnx_graph`` network that ONNX Runtime runs. Every file's sha256 is checked, the preprocessing is
mapped onto our normalization, and the model's own test input must reproduce its test output within
``RTOL`` / ``ATOL`` (relative to the output's largest magnitude) or the import is refused.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelfree_app.errors import ModelError
from labelfree_app.models.bioimageio_export import require_bioimageio
from labelfree_app.models.bioimageio_guard import check_package
from labelfree_app.models.package import ModelPackage, load_package, save_package, unet_manifest

RTOL = 1e-3  # |ours - theirs| <= ATOL * max|theirs| + RTOL * |theirs|, elementwise
ATOL = 1e-3
NEEDS_CODE = ("its weights need code from the package (keras/tensorflow/torchscript/custom architecture), "
              "which LabelFree never runs")


class BioimageioImportError(ModelError):
    """A bioimage.io model that LabelFree cannot (or will not) run."""


def _refuse(source: Path, why: str) -> BioimageioImportError:
    return BioimageioImportError(f"The bioimage.io model {source} cannot be imported: {why}.", path=source)


def load_description(source: Path) -> Any:
    """The validated bioimage.io model description (format 0.5, older ones updated); refuses invalid ones."""
    check_package(source)  # bounded, and naming only its own files, before bioimageio.spec opens any
    require_bioimageio()
    from bioimageio.spec import InvalidDescr, load_model_description

    try:
        descr = load_model_description(source, format_version="latest", perform_io_checks=True)
    except Exception as exc:  # noqa: BLE001  the spec raises many kinds for unreadable sources
        raise _refuse(source, spec_problem(exc)) from exc
    if isinstance(descr, InvalidDescr) or getattr(descr, "type", None) != "model":
        errors = getattr(getattr(descr, "validation_summary", None), "errors", None) or []
        first = f" ({errors[0].loc}: {errors[0].msg})" if errors else ""
        raise _refuse(source, f"bioimage.io's validator rejects its description{first}")
    return descr


PICKLED = ("is a pickled .npy file (Python objects), which LabelFree never loads because unpickling can run "
           "code; ask its authors for a plain numeric .npy")


def spec_problem(exc: BaseException) -> str:
    """What bioimage.io's loader found wrong, as the clause of one sentence: a file that fails its sha256, a
    pickled test tensor, else the first problem it lists (its message starts with a bare heading line)."""
    lines = [line.strip(" -") for line in str(exc).splitlines() if line.strip(" -")]
    details = [line for line in lines if not line.rstrip().endswith(":")] or lines or [type(exc).__name__]
    for line in details:
        found = re.search(r"SHA256 mismatch for (?::zipfile:/)?(\S+?)\.? Expected", line)
        if found:
            name = Path(found.group(1)).name
            return (f"its file {name} does not match the sha256 its rdf.yaml records, so it was changed or damaged "
                    "on the way; download the model again")
        if "allow_pickle" in line or "Object arrays cannot be loaded" in line:
            where = line.split(":", 1)[0].strip() or "a test tensor"
            return f"its {where if where.endswith('test_tensor') else 'test tensor'} {PICKLED}"
    first = re.sub(r"\s+", " ", details[0])[:200].rstrip(". ")
    return f"it is not a readable bioimage.io model ({first})"


def _read_file(source: Path, descr: Any, what: str) -> bytes:
    """The bytes of a file the description names, checked against its sha256."""
    from bioimageio.spec.utils import get_reader

    data = get_reader(descr.source).read()
    declared = getattr(descr, "sha256", None)
    if declared is not None and hashlib.sha256(data).hexdigest() != str(declared):
        raise _refuse(source, f"its {what} does not match the sha256 in its description (changed or damaged)")
    return data


def _axes(source: Path, tensor: Any) -> tuple[list[str], Any]:
    """Axis ids of one tensor, refused unless they are batch, channel, (z,) y, x in that order."""
    ids = [str(a.id) for a in tensor.axes]
    if ids not in (["batch", "channel", "y", "x"], ["batch", "channel", "z", "y", "x"]):
        raise _refuse(source, f"its tensor '{tensor.id}' has axes {ids}, but LabelFree runs images with axes "
                              "batch, channel, (z,) y, x")
    return ids, tensor.axes


def _multiple(source: Path, axes: Any) -> tuple[int, int]:
    """(required multiple, smallest size) of the spatial input axes."""
    steps, mins = [], []
    for axis in axes[2:]:
        size = axis.size
        if isinstance(size, int):
            steps.append(size)
            mins.append(size)
        elif hasattr(size, "step") and size.min % size.step == 0:
            steps.append(size.step)
            mins.append(size.min)
        else:
            raise _refuse(source, f"its input size along '{axis.id}' is not a multiple of a fixed step")
    return math.lcm(*steps), max(mins)


def _normalization(source: Path, steps: Any, channels: int, axes: list[str]) -> dict[str, Any]:
    """The input preprocessing as our normalization (fitted on the whole image)."""
    method: dict[str, Any] | None = None
    every = set(axes) - {"batch"}
    for step in steps:
        kind, kwargs = str(step.id), getattr(step, "kwargs", None)
        if kind == "ensure_dtype" and str(kwargs.dtype).startswith("float"):
            continue
        if kind in ("zero_mean_unit_variance", "scale_range") and method is None:
            joint = set(str(a) for a in kwargs.axes) if kwargs.axes is not None else every
            if not (every <= joint or (channels == 1 and every - {"channel"} <= joint)):
                raise _refuse(source, f"its {kind} normalizes parts of the image separately ({sorted(joint)}), "
                                      "while LabelFree normalizes the whole image")
            if kind == "zero_mean_unit_variance":
                method = {"method": "zscore", "params": {}}
            elif getattr(kwargs, "reference_tensor", None) not in (None, "input"):
                raise _refuse(source, "its scale_range refers to another tensor")
            elif (kwargs.min_percentile, kwargs.max_percentile) == (0, 100):
                method = {"method": "minmax", "params": {}}
            else:
                method = {"method": "percentile", "params": {"low": float(kwargs.min_percentile),
                                                             "high": float(kwargs.max_percentile)}}
            continue
        raise _refuse(source, f"its preprocessing step '{kind}' has no equivalent in LabelFree's normalization")
    if method is None:
        raise _refuse(source, "it declares no per-image normalization (zero_mean_unit_variance or scale_range), "
                              "and LabelFree always normalizes its input")
    return method


def _output_normalization(source: Path, steps: Any) -> dict[str, Any] | None:
    """A scalar scale_linear postprocessing as an output normalization ``x * std + mean``."""
    result = None
    for step in steps:
        kind, kwargs = str(step.id), getattr(step, "kwargs", None)
        if kind == "ensure_dtype" and str(kwargs.dtype).startswith("float"):
            continue
        if kind == "scale_linear" and result is None and isinstance(kwargs.gain, (int, float)) \
                and isinstance(kwargs.offset, (int, float)) and kwargs.gain > 0:
            result = {"method": "zscore", "params": {"mean": float(kwargs.offset), "std": float(kwargs.gain)}}
            continue
        raise _refuse(source, f"its postprocessing step '{kind}' has no equivalent in LabelFree")
    return result


def _unet_state(source: Path, descr: Any) -> tuple[dict[str, torch.Tensor], dict[str, int]] | None:
    """Our U-Net's weights and kwargs when the pytorch_state_dict weights have its exact layout, else None."""
    from labelfree_app.models.architectures import network_problem
    from labelfree_app.models.unet import UNet

    entry = descr.weights.pytorch_state_dict
    kwargs = getattr(entry.architecture, "kwargs", None) if entry is not None else None
    if not isinstance(kwargs, dict) or set(kwargs) - {"dims", "in_channels", "out_channels", "depth",
                                                     "base_channels", "out_kernel_size"}:
        return None
    if network_problem("fnet_unet", dict(kwargs)) is not None:
        return None
    data = _read_file(source, entry, "pytorch_state_dict weights")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError) as exc:
        raise _refuse(source, "its pytorch_state_dict file cannot be read as plain weights (it would need to "
                              "run code to load, or it is damaged)") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return None
    try:
        UNet(**kwargs).load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError):
        return None
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, dict(kwargs)


def _model_id(descr: Any, given: str | None) -> str:
    if given:
        return given
    name = re.sub(r"[^a-z0-9._-]+", "-", str(getattr(descr, "id", None) or descr.name).lower()).strip("-._")
    return ("bioimageio-" + name)[:64] if name else "bioimageio-model"


def build_manifest(source: Path, descr: Any, model_id: str | None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The LabelFree manifest dict and weights for the description, or a sentence saying why not."""
    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise _refuse(source, f"it has {len(descr.inputs)} input(s) and {len(descr.outputs)} output(s), while "
                              "LabelFree runs models with one image in and one image out")
    tin, tout = descr.inputs[0], descr.outputs[0]
    in_ids, in_axes = _axes(source, tin)
    out_ids, out_axes = _axes(source, tout)
    if in_ids != out_ids or any(getattr(a, "size", None) is None or str(getattr(a.size, "axis_id", "")) != str(a.id)
                                or getattr(a.size, "offset", 0) != 0 for a in out_axes[2:]):
        raise _refuse(source, "its output is not the same size as its input, which LabelFree's tiling needs")
    dims = len(in_ids) - 2
    channels_in = len(in_axes[1].channel_names)
    channels_out = len(out_axes[1].channel_names)
    multiple, smallest = _multiple(source, in_axes)
    halo = [int(getattr(a, "halo", 0)) for a in out_axes[2:]]
    normalization = {"input": _normalization(source, tin.preprocessing, channels_in, in_ids),
                     "output": _output_normalization(source, tout.postprocessing)}
    ours = (descr.config.model_extra or {}).get("labelfree") if descr.config is not None else None
    card = ours.get("manifest") if isinstance(ours, dict) and isinstance(ours.get("manifest"), dict) else {}
    unet = _unet_state(source, descr)
    if unet is not None:
        state, kwargs = unet
        arch = {"id": "fnet_unet", "kwargs": kwargs}
    elif descr.weights.onnx is not None:
        data = _read_file(source, descr.weights.onnx, "onnx weights")
        if descr.weights.onnx.external_data is not None:
            raise _refuse(source, "its ONNX weights keep data in a separate file, which LabelFree does not read")
        state = {"onnx_model": torch.frombuffer(bytearray(data), dtype=torch.uint8)}
        arch = {"id": "onnx_graph", "kwargs": {"dims": dims, "in_channels": channels_in, "out_channels": channels_out,
                                               "required_multiple": multiple, "onnx_bytes": len(data)}}
    else:
        raise _refuse(source, NEEDS_CODE)
    tile = [max(smallest, -(-max(256 if dims == 2 else 64, 2 * h + multiple) // multiple) * multiple) for h in halo]
    names = [str(n) for n in in_axes[1].channel_names]
    manifest = unet_manifest(
        arch["kwargs"] if arch["id"] == "fnet_unet" else {"dims": dims, "in_channels": channels_in,
                                                          "out_channels": channels_out},
        model_id=_model_id(descr, model_id), name=str(descr.name), target=str(card.get("target") or descr.name),
        version=str(descr.version) if descr.version is not None else "0.1.0",
        input_modality=str(card.get("input_modality") or tin.description or "transmitted light"),
        tile_shape=tile, halo=halo,
        description=(str(descr.description) + f" Imported from bioimage.io ({source.name}).").strip(),
        license=str(descr.license or ""),
        attribution="; ".join(c.text for c in descr.cite)[:2000],
    )
    manifest["architecture"] = arch
    manifest["normalization"] = normalization
    manifest["input"]["channel_names"] = names
    manifest["output"]["channel_names"] = [str(n) for n in out_axes[1].channel_names]
    for key in ("metrics", "training"):
        if isinstance(card.get(key), dict):
            manifest[key] = card[key]
    if card.get("input", {}).get("z_as_channels") and dims == 2:
        manifest["input"]["z_as_channels"] = True
    return manifest, state


def reproduce_test(source: Path, descr: Any, package: ModelPackage) -> float:
    """Run the model's own test input through LabelFree (normalize the whole input, one pass of the
    network) and compare with its test output; returns the largest error, refuses beyond tolerance."""

    from labelfree_app.core.normalize import Normalizer

    arrays = []
    for tensor, what in ((descr.inputs[0], "test input"), (descr.outputs[0], "test output")):
        if tensor.test_tensor is None:
            raise _refuse(source, f"it has no {what}, so LabelFree cannot check that it runs it correctly")
        raw = _read_file(source, tensor.test_tensor, what)
        try:
            arrays.append(np.load(io.BytesIO(raw), allow_pickle=False).astype(np.float32))
        except ValueError as exc:
            why = PICKLED if "allow_pickle" in str(exc) else "is not a numeric .npy array"
            raise _refuse(source, f"its {what} {why}") from exc
    test_in, expected = arrays
    norm = package.manifest.normalization
    fitted = Normalizer.from_dict({"method": norm.input.method, "params": norm.input.params})
    network = package.build_network("cpu")
    outputs = []
    with torch.inference_mode():
        for sample in test_in:
            x = fitted.fit(sample).apply(sample)
            y = network(torch.from_numpy(np.ascontiguousarray(x[None]))).float().numpy()[0]
            if norm.output is not None and norm.output.params:
                y = Normalizer.from_dict({"method": norm.output.method, "params": norm.output.params}).invert(y)
            outputs.append(y)
    ours = np.stack(outputs)
    if ours.shape != expected.shape:
        raise _refuse(source, f"its test input gives an output of shape {ours.shape} in LabelFree, not the "
                              f"{expected.shape} of its test output")
    scale = float(np.abs(expected).max()) or 1.0
    error = np.abs(ours - expected)
    if not np.all(error <= ATOL * scale + RTOL * np.abs(expected)):
        raise _refuse(source, f"its test output is not reproduced (largest difference {float(error.max()):.3g}, "
                              f"tolerance {ATOL:g} of the output's range plus {RTOL:g} relative)")
    return float(error.max())


def import_bioimageio(source: str | Path, out_dir: str | Path, *, model_id: str | None = None,
                      overwrite: bool = False) -> Path:
    """Convert a bioimage.io model into a LabelFree package folder at ``out_dir`` (written atomically)."""
    source = Path(source).expanduser()
    if not source.exists():
        raise BioimageioImportError(f"No bioimage.io model found at {source}; check the path.", path=source)
    descr = load_description(source)
    manifest, state = build_manifest(source, descr, model_id)
    out_dir = Path(out_dir).expanduser()
    with tempfile.TemporaryDirectory(prefix=".bioimageio-", dir=out_dir.parent if out_dir.parent.exists() else None) as t:
        staged = load_package(save_package(Path(t) / "package", manifest, state))
        reproduce_test(source, descr, staged)
    return save_package(out_dir, manifest, state, overwrite=overwrite)


def install_bioimageio(source: str | Path, registry: Any, *, model_id: str | None = None,
                       overwrite: bool = False) -> Any:
    """Import into a temporary package and install it into ``registry``; returns the registry entry."""
    with tempfile.TemporaryDirectory(prefix="labelfree-bioimageio-") as temp:
        folder = import_bioimageio(source, Path(temp) / "package", model_id=model_id)
        return registry.install(folder, overwrite=overwrite)
