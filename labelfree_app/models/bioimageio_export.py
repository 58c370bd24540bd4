"""Export a LabelFree U-Net as a bioimage.io model (format 0.5), built and validated with bioimageio.spec.

The zip holds ``pytorch_state_dict`` weights (with a standalone copy of ``unet.py`` as the architecture
source the spec asks for) and ``onnx`` weights (for Java runtimes such as deepImageJ), the engine's
input normalization as bioimage.io preprocessing, a test input and the output LabelFree's own engine
predicts for it, a cover, a model card, license, citations and the manifest's metrics. The test input
is a crop of the bundled demo image (real phase contrast from the In silico labeling data, Apache-2.0).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from labelfree_app import paths
from labelfree_app.errors import ModelError
from labelfree_app.models.package import ModelPackage

EXTRA_HINT = "install it with: pip install 'labelfree_app[bioimageio]'"
INPUT_ID, OUTPUT_ID = "input", "output"
DEMO_SOURCE = "in silico labeling"  # the DATA_SOURCES entry of the demo image the test input is cut from
OUNKOMOL_2018 = ("Ounkomol C, Seshamani S, Maleckar MM, Collman F, Johnson GR. Label-free prediction of "
                 "three-dimensional fluorescence images from transmitted-light microscopy. Nature Methods 2018.",
                 "10.1038/s41592-018-0111-2")
# Data sources the bundled manifests name (matched case-insensitively in training data / attribution).
DATA_SOURCES: dict[str, tuple[str, str | None, str | None]] = {  # key -> (text, doi, url)
    "in silico labeling": ("Christiansen EM et al. In silico labeling: predicting fluorescent labels in "
                           "unlabeled images. Cell 2018.", "10.1016/j.cell.2018.03.040", None),
    "sephace": ("sephaCe bright-field/DAPI data sets (bobbyali/sephace).", None, "https://github.com/bobbyali/sephace"),
    "celldetective": ("Celldetective MCF-7 bright-field/Hoechst data (remyeltorro/celldetective).", None,
                      "https://github.com/remyeltorro/celldetective"),
    "mlcp": ("MLCP Jurkat imaging flow cytometry data (minh-doan/MLCP).", None, "https://github.com/minh-doan/MLCP"),
}


class BioimageioUnavailableError(ModelError):
    """bioimageio.spec / bioimageio.core are not installed."""


class BioimageioExportError(ModelError):
    """The model cannot be described as a bioimage.io model."""


def require_bioimageio() -> None:
    """Raise BioimageioUnavailableError (one sentence) unless bioimageio.spec and .core import."""
    try:
        import bioimageio.core  # noqa: F401
        import bioimageio.spec  # noqa: F401
    except ImportError as exc:
        raise BioimageioUnavailableError(
            f"bioimage.io support needs the optional packages bioimageio.spec and bioimageio.core; {EXTRA_HINT}."
        ) from exc


def spdx_license(text: str) -> tuple[str, str]:
    """(SPDX id, remaining note) from a manifest's license string such as
    "GPL-3.0-only; noncommercial research use only (...)"; BioimageioExportError if none is SPDX."""
    from bioimageio.spec.model.v0_5 import LicenseId

    head, _, note = text.partition(";")
    head = head.strip()
    try:
        LicenseId(head)
    except Exception as exc:  # noqa: BLE001  pydantic's ValidationError
        raise BioimageioExportError(
            f"The model's license '{text or '(none)'}' does not start with an SPDX license id, which bioimage.io "
            "requires; give one with --license (e.g. --license MIT)."
        ) from exc
    return head, note.strip()


def _identifier(text: str, fallback: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")
    return name if name and not name[0].isdigit() else fallback


def demo_crop(side: int) -> np.ndarray:
    """The middle ``side``×``side`` of the demo image's transmitted-light channel, as float32."""
    from labelfree_app.io import read_image

    path = paths.demo_image()
    if not path.is_file():
        raise BioimageioExportError(f"The demo image {path}, from which the package's test input is cut, is "
                                    "missing; reinstall LabelFree.", path=path)
    plane = np.asarray(read_image(path).data[0, 0], dtype=np.float32)
    if min(plane.shape) < side:
        raise BioimageioExportError(f"The demo image {path} is smaller than the {side}-pixel test input the "
                                    "model needs; reinstall LabelFree.", path=path)
    y0, x0 = (plane.shape[0] - side) // 2, (plane.shape[1] - side) // 2
    return np.ascontiguousarray(plane[y0:y0 + side, x0:x0 + side])


def _test_image(manifest: Any, multiple: int) -> np.ndarray:
    """A crop of the demo image shaped for the model, as (C, Z, Y, X) of the image the engine reads;
    extra channels and planes are that crop scaled or blurred (a fixed input, not a realistic one)."""
    from scipy.ndimage import gaussian_filter

    side = max(multiple, (128 // multiple) * multiple)
    if manifest.dims == 3:
        side = max(multiple, (64 // multiple) * multiple)
    plane = demo_crop(side)
    if manifest.input.z_as_channels or manifest.dims == 3:
        count = manifest.input.channels if manifest.input.z_as_channels else max(multiple, 8)
        planes = np.stack([gaussian_filter(plane, 0.5 + abs(k - count // 2) * 0.4) for k in range(count)])
        stack = planes[None]  # 1 channel, planes as Z
        if manifest.dims == 3 and manifest.input.channels > 1:
            stack = np.stack([stack[0] * (1 + 0.1 * c) for c in range(manifest.input.channels)])
        return stack
    return np.stack([plane * (1 + 0.1 * c) for c in range(manifest.input.channels)])[:, None]


def engine_test_pair(package: ModelPackage) -> tuple[np.ndarray, np.ndarray]:
    """(input, output) tensors with a batch axis, the output predicted by LabelFree's PredictionEngine
    on the whole input in one tile without halo (so any runtime that runs the network once on the
    same input must reproduce it)."""
    from labelfree_app.core.engine import PredictionEngine, PredictSettings
    from labelfree_app.io.image import Image
    from labelfree_app.models.manifest import TilingSpec

    manifest = package.manifest
    multiple = 2 ** int(manifest.architecture.kwargs.get("depth", 4))
    czyx = _test_image(manifest, multiple)
    spatial = czyx.shape[1:] if manifest.dims == 3 else czyx.shape[2:]
    one_tile = dataclasses.replace(manifest, tiling=TilingSpec(tuple(spatial), (0,) * manifest.dims))
    engine = PredictionEngine(dataclasses.replace(package, manifest=one_tile), device="cpu")
    image = Image(data=czyx, axes="CZYX", channel_names=tuple(f"c{k}" for k in range(czyx.shape[0])))
    result = engine.predict(image, PredictSettings(tile_shape=tuple(spatial), device="cpu"))
    prediction = result.prediction  # (C, Z, Y, X)
    if manifest.dims == 3:
        return czyx[None].astype(np.float32), prediction[None].astype(np.float32)
    model_input = czyx[:, 0] if not manifest.input.z_as_channels else czyx[0]
    return model_input[None].astype(np.float32), prediction[:, 0][None].astype(np.float32)


def _cover(model_input: np.ndarray, output: np.ndarray, path: Path) -> None:
    """Input (middle channel / plane) and prediction side by side, each stretched to 8 bits."""
    from PIL import Image as PILImage

    def plane(a: np.ndarray) -> np.ndarray:
        a = a[0]
        a = a[a.shape[0] // 2]
        while a.ndim > 2:
            a = a[a.shape[0] // 2]
        lo, hi = np.percentile(a, [1, 99.8])
        return (np.clip((a - lo) / max(hi - lo, 1e-12), 0, 1) * 255).astype(np.uint8)

    left, right = plane(model_input), plane(output)
    gap = np.full((left.shape[0], 4), 255, np.uint8)
    PILImage.fromarray(np.concatenate([left, gap, right], axis=1)).resize(
        (2 * (2 * left.shape[1] + 4), 2 * left.shape[0]), PILImage.NEAREST).save(path)


def _model_card(manifest: Any, license_id: str, note: str) -> str:
    lines = [f"# {manifest.name}", "", manifest.description or f"Predicts {manifest.target} from {manifest.input_modality}.",
             "", f"- Target: {manifest.target}", f"- Input: {manifest.input_modality} "
             f"({manifest.input.channels} channel(s){', z-planes as channels' if manifest.input.z_as_channels else ''})",
             f"- Network: fnet U-Net (Ounkomol et al. 2018), {manifest.dims}D, settings "
             f"{json.dumps(manifest.architecture.kwargs)}",
             f"- Input normalization: {manifest.normalization.input.method} over the whole image (per sample)",
             "- Exported by LabelFree; the test output was predicted by LabelFree's own engine.",
             "- Test input: a crop of LabelFree's demo image, phase contrast from the In silico labeling data "
             "(Christiansen et al., Cell 2018; Apache-2.0).", ""]
    if manifest.training is not None:
        lines += ["## Training data", "", manifest.training.data or "(not recorded)", "",
                  f"Trained for {manifest.training.steps} steps.", ""]
    if manifest.metrics:
        lines += ["## Measured metrics", "", "```json", json.dumps(manifest.metrics, indent=2)[:20000], "```", ""]
    lines += ["## License", "", license_id + (f"; {note}" if note else ""), ""]
    if manifest.attribution:
        lines += ["## Attribution", "", manifest.attribution, ""]
    return "\n".join(lines)


def _citations(manifest: Any) -> list[Any]:
    from bioimageio.spec.model.v0_5 import CiteEntry, Doi, HttpUrl

    entries = [CiteEntry(text=OUNKOMOL_2018[0], doi=Doi(OUNKOMOL_2018[1]))]
    text = " ".join([manifest.attribution, manifest.training.data if manifest.training else ""]).lower()
    for key, (cite, doi, url) in DATA_SOURCES.items():
        if key in text or key == DEMO_SOURCE:  # the test input is cut from the demo image
            entries.append(CiteEntry(text=cite, doi=Doi(doi) if doi else None, url=HttpUrl(url) if url else None))
    return entries


def _preprocessing(manifest: Any, axes: list[str]) -> list[Any]:
    """The engine's input normalization (fitted on the whole image) as bioimage.io preprocessing."""
    from bioimageio.spec.model.v0_5 import (AxisId, EnsureDtypeDescr, EnsureDtypeKwargs, ScaleRangeDescr,
                                            ScaleRangeKwargs, ZeroMeanUnitVarianceDescr, ZeroMeanUnitVarianceKwargs)

    from labelfree_app.core.normalize import Normalizer

    spec = Normalizer.from_dict({"method": manifest.normalization.input.method,
                                 "params": manifest.normalization.input.params})
    joint = [AxisId(a) for a in axes]
    steps: list[Any] = [EnsureDtypeDescr(kwargs=EnsureDtypeKwargs(dtype="float32"))]
    if spec.method == "zscore":
        steps.append(ZeroMeanUnitVarianceDescr(kwargs=ZeroMeanUnitVarianceKwargs(axes=joint, eps=1e-6)))
    else:
        low, high = spec.percentiles if spec.method == "percentile" else (0.0, 100.0)
        steps.append(ScaleRangeDescr(kwargs=ScaleRangeKwargs(axes=joint, min_percentile=low, max_percentile=high,
                                                             eps=1e-6)))
    return steps


def _postprocessing(manifest: Any) -> list[Any]:
    """A fitted output normalization (back to the target's units) as a scale_linear; none otherwise."""
    from bioimageio.spec.model.v0_5 import ScaleLinearDescr, ScaleLinearKwargs

    from labelfree_app.core.normalize import Normalizer

    out = manifest.normalization.output
    if out is None or not out.params:
        return []
    ends = Normalizer.from_dict({"method": out.method, "params": out.params}).invert(np.array([0.0, 1.0], np.float32))
    return [ScaleLinearDescr(kwargs=ScaleLinearKwargs(gain=float(ends[1] - ends[0]), offset=float(ends[0])))]


def describe(package: ModelPackage, folder: Path, *, license: str | None = None,
             authors: Sequence[str] = ("LabelFree",)) -> Any:
    """Write the files into ``folder`` and return the validated bioimage.io ``ModelDescr``."""
    import torch
    from bioimageio.spec.model import v0_5 as bio

    from labelfree_app.models import unet as unet_module
    from labelfree_app.models.onnx_backend import _export

    manifest = package.manifest
    if manifest.kind != "unet" or manifest.architecture.id != "fnet_unet":
        raise BioimageioExportError(
            f"The model '{manifest.id}' is a {manifest.kind} model; only U-Net models can be exported to "
            "bioimage.io, whose format describes one network pass, not a diffusion sampler."
        )
    license_id, note = spdx_license(license if license is not None else manifest.license)
    kwargs = dict(manifest.architecture.kwargs)
    multiple = 2 ** int(kwargs.get("depth", 4))
    dims = manifest.dims
    network = package.build_network("cpu")

    source = folder / "labelfree_unet.py"
    source.write_text(Path(unet_module.__file__).read_text(encoding="utf-8"), encoding="utf-8")
    torch.save(package.state_dict(), folder / "weights.pt")
    spatial_names = ["z", "y", "x"][-dims:]
    example = torch.zeros((1, int(kwargs["in_channels"]), *([multiple] * dims)))
    dynamic = {0: "batch", **{2 + d: name for d, name in enumerate(spatial_names)}}
    (folder / "weights.onnx").write_bytes(_export(network, (example,), [INPUT_ID], {INPUT_ID: dynamic}))

    model_input, model_output = engine_test_pair(package)
    np.save(folder / "test_input.npy", model_input)
    np.save(folder / "test_output.npy", model_output)
    _cover(model_input, model_output, folder / "cover.png")
    (folder / "README.md").write_text(_model_card(manifest, license_id, note), encoding="utf-8")

    in_names = list(manifest.input.channel_names) or [f"channel{k}" for k in range(manifest.input.channels)]
    if manifest.input.z_as_channels:
        in_names = [f"z{k}" for k in range(manifest.input.channels)]
    out_names = list(manifest.output.channel_names) or [manifest.target] * manifest.output.channels
    halo = list(manifest.tiling.halo)
    min_size = multiple * max(1, -(-(2 * max(halo) + 1) // multiple))  # room for the halo on both sides
    input_axes: list[Any] = [bio.BatchAxis(), bio.ChannelAxis(channel_names=[
        bio.Identifier(_identifier(n, f"channel{k}")) for k, n in enumerate(in_names)])]
    output_axes: list[Any] = [bio.BatchAxis(), bio.ChannelAxis(channel_names=[
        bio.Identifier(_identifier(n, f"channel{k}")) for k, n in enumerate(out_names)])]
    for name, h in zip(spatial_names, halo):
        input_axes.append(bio.SpaceInputAxis(id=bio.AxisId(name), size=bio.ParameterizedSize(min=min_size, step=multiple)))
        output_axes.append(bio.SpaceOutputAxisWithHalo(
            id=bio.AxisId(name), halo=int(h),
            size=bio.SizeReference(tensor_id=bio.TensorId(INPUT_ID), axis_id=bio.AxisId(name))))
    joint_axes = ["channel", *spatial_names]
    inputs = [bio.InputTensorDescr(
        id=bio.TensorId(INPUT_ID), axes=input_axes, description=f"{manifest.input_modality}",
        test_tensor=bio.FileDescr(source=folder / "test_input.npy"),
        preprocessing=_preprocessing(manifest, joint_axes))]
    outputs = [bio.OutputTensorDescr(
        id=bio.TensorId(OUTPUT_ID), axes=output_axes,
        description=f"{manifest.target}, in z-score units of the target unless postprocessing says otherwise",
        test_tensor=bio.FileDescr(source=folder / "test_output.npy"),
        postprocessing=_postprocessing(manifest))]
    weights = bio.WeightsDescr(
        pytorch_state_dict=bio.PytorchStateDictWeightsDescr(
            source=folder / "weights.pt",
            architecture=bio.ArchitectureFromFileDescr(source=source, callable=bio.Identifier("UNet"), kwargs=kwargs),
            pytorch_version=bio.Version(torch.__version__.split("+")[0])),
        onnx=bio.OnnxWeightsDescr(source=folder / "weights.onnx", opset_version=17, parent="pytorch_state_dict"),
    )
    description = (manifest.description or f"Predicts {manifest.target} from {manifest.input_modality}.")[:1024]
    name = re.sub(r"[^A-Za-z0-9_+\- ()]+", " ", manifest.name).strip()[:128] or manifest.id
    try:
        return _model_descr(bio, name, description, manifest, authors, license_id, folder, inputs, outputs,
                            weights, dims)
    except ValueError as exc:  # pydantic's ValidationError: the first problem, in one sentence
        first = str(exc).splitlines()[1:3]
        raise BioimageioExportError(f"bioimage.io's validator rejects the description of '{manifest.id}' "
                                    f"({' '.join(line.strip() for line in first)[:300]}).") from exc


def _model_descr(bio: Any, name: str, description: str, manifest: Any, authors: Sequence[str], license_id: str,
                 folder: Path, inputs: list[Any], outputs: list[Any], weights: Any, dims: int) -> Any:
    return bio.ModelDescr(
        name=name, description=description,
        authors=[bio.Author(name=a) for a in authors],
        cite=_citations(manifest), license=bio.LicenseId(license_id),
        documentation=bio.FileDescr(source=folder / "README.md"), covers=[bio.FileDescr(source=folder / "cover.png")],
        tags=["label-free", "fluorescence-prediction", "in-silico-labeling", "unet", "fnet", f"{dims}d", "labelfree"],
        version=bio.Version(manifest.version) if re.fullmatch(r"\d+(\.\d+)*", manifest.version) else None,
        inputs=inputs, outputs=outputs, weights=weights,
        config=bio.Config(labelfree={"manifest": {k: v for k, v in manifest.to_dict().items() if k != "weights"},
                                     "weights_sha256": manifest.weights.sha256}),
    )


def export_bioimageio(package: ModelPackage, out: str | Path, *, license: str | None = None,
                      authors: Sequence[str] = ("LabelFree",), overwrite: bool = False) -> Path:
    """Write ``package`` as a bioimage.io model zip at ``out`` (atomically); returns the path."""
    require_bioimageio()
    from bioimageio.spec import save_bioimageio_package

    from labelfree_app.io.atomic import atomic_path

    out = Path(out).expanduser()
    if out.suffix.lower() != ".zip":
        raise BioimageioExportError(f"The output {out} must be a .zip file name (e.g. model.zip).", path=out)
    if out.exists() and not overwrite:
        raise BioimageioExportError(f"{out} already exists; choose another name or allow overwriting.", path=out)
    package.verify()
    with tempfile.TemporaryDirectory(prefix="labelfree-bioimageio-") as temp:
        folder = Path(temp) / "files"
        folder.mkdir()
        descr = describe(package, folder, license=license, authors=authors)
        built = save_bioimageio_package(descr, output_path=Path(temp) / "model.zip")
        with atomic_path(out) as target:
            shutil.copyfile(built, target)
    return out


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
