"""bioimage.io export (checked by bioimageio.core's own test) and import without running package code."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("bioimageio.core", reason="the [bioimageio] extra is not installed")

from bioimageio.core import test_model as core_test_model  # noqa: E402
from bioimageio.spec import save_bioimageio_package  # noqa: E402
from bioimageio.spec.model import v0_5 as bio  # noqa: E402

from labelfree_app.core.engine import PredictionEngine, PredictSettings  # noqa: E402
from labelfree_app.io.image import Image  # noqa: E402
from labelfree_app.models.bioimageio_export import (  # noqa: E402
    BioimageioExportError,
    BioimageioUnavailableError,
    demo_crop,
    export_bioimageio,
    require_bioimageio,
)
from labelfree_app.models.bioimageio_import import (  # noqa: E402
    BioimageioImportError,
    import_bioimageio,
    install_bioimageio,
)
from labelfree_app.models.package import load_package  # noqa: E402
from labelfree_app.models.registry import ModelRegistry  # noqa: E402
from tests.synthetic_cells import render_cells  # noqa: E402
from tests.factories import make_unet_package  # noqa: E402


def _image(shape: tuple[int, int] = (72, 88), seed: int = 3) -> Image:
    plane = render_cells(shape, seed=seed).brightfield.astype(np.float32)
    return Image(data=plane[None, None], axes="CZYX", channel_names=("Brightfield",))


def _predict(package, image: Image) -> np.ndarray:
    return PredictionEngine(package, device="cpu").predict(image, PredictSettings(device="cpu")).prediction


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    folder = tmp_path_factory.mktemp("export")
    package = make_unet_package(folder, license="MIT", description="A tiny test U-Net.",
                                training={"data": "In silico labeling condition B (test)", "steps": 3},
                                metrics={"pearson_r": 0.5})
    return export_bioimageio(package, folder / "model.zip"), package


def test_exported_unet_passes_bioimageio_cores_own_test_for_both_weight_formats(exported):
    zip_path, _ = exported
    summary = core_test_model(zip_path)
    assert summary.status == "passed", summary.format_md()
    names = " ".join(d.name for d in summary.details)
    assert "Reproduce test outputs from test inputs (onnx)" in names
    assert "Reproduce test outputs from test inputs (pytorch_state_dict)" in names
    files = set(zipfile.ZipFile(zip_path).namelist())
    assert {"weights.pt", "weights.onnx", "labelfree_unet.py", "cover.png", "README.md", "test_input.npy",
            "test_output.npy", "rdf.yaml"} <= files
    rdf = zipfile.ZipFile(zip_path).read("rdf.yaml").decode()
    assert "zero_mean_unit_variance" in rdf and "10.1038/s41592-018-0111-2" in rdf
    assert "10.1016/j.cell.2018.03.040" in rdf  # the training data's source is cited


def test_the_test_input_is_a_crop_of_the_real_demo_image(exported):
    zip_path, _ = exported
    model_input = np.load(io.BytesIO(zipfile.ZipFile(zip_path).read("test_input.npy")))
    assert model_input.shape[-2:] == (128, 128)
    np.testing.assert_array_equal(model_input[0, 0], demo_crop(128))
    assert model_input[0, 0].std() > 0  # real pixels, not a blank stand-in


def test_percentile_normalization_is_exported_as_scale_range(tmp_path):
    package = make_unet_package(tmp_path, license="Apache-2.0",
                                normalization={"input": {"method": "percentile", "params": {}}, "output": None})
    zip_path = export_bioimageio(package, tmp_path / "p.zip")
    rdf = zipfile.ZipFile(zip_path).read("rdf.yaml").decode()
    assert "scale_range" in rdf and "99.8" in rdf
    assert core_test_model(zip_path).status == "passed"


def test_round_trip_gives_the_same_prediction(exported, tmp_path):
    zip_path, original = exported
    imported = load_package(import_bioimageio(zip_path, tmp_path / "back", model_id="round-trip"))
    assert imported.manifest.architecture.id == "fnet_unet"
    assert imported.manifest.architecture.kwargs == original.manifest.architecture.kwargs
    assert imported.manifest.normalization == original.manifest.normalization
    image = _image()
    np.testing.assert_allclose(_predict(imported, image), _predict(original, image), rtol=1e-5, atol=1e-5)


def test_a_license_that_is_not_spdx_is_refused_with_a_sentence(tmp_path):
    package = make_unet_package(tmp_path, license="all rights reserved")
    with pytest.raises(BioimageioExportError, match="SPDX"):
        export_bioimageio(package, tmp_path / "m.zip")
    assert not (tmp_path / "m.zip").exists()


def test_missing_extra_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "bioimageio.core", None)
    with pytest.raises(BioimageioUnavailableError, match=r"pip install 'labelfree_app\[bioimageio\]'"):
        require_bioimageio()


# --- a bioimage.io model not made by LabelFree -----------------------------------------------
class _OneConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _foreign_model(folder: Path, *, weights: str = "onnx", tamper: bool = False) -> Path:
    """A 1-conv network described with bioimageio.spec alone (ONNX or torchscript weights)."""
    torch.manual_seed(1)
    net = _OneConv().eval()
    folder.mkdir(parents=True, exist_ok=True)
    x = render_cells((64, 64), seed=5).brightfield.astype(np.float32)[None, None]
    with torch.no_grad():
        y = net(torch.from_numpy((x - x.mean()) / (x.std() + 1e-6))).numpy()
    if tamper:
        y = y + 0.5
    np.save(folder / "in.npy", x)
    np.save(folder / "out.npy", y)
    if weights == "onnx":
        buffer = io.BytesIO()
        torch.onnx.export(net, torch.from_numpy(x), buffer, input_names=["raw"], output_names=["pred"],
                          dynamic_axes={"raw": {0: "b", 2: "y", 3: "x"}, "pred": {0: "b", 2: "y", 3: "x"}},
                          opset_version=17, dynamo=False)
        (folder / "net.onnx").write_bytes(buffer.getvalue())
        entries = bio.WeightsDescr(onnx=bio.OnnxWeightsDescr(source=folder / "net.onnx", opset_version=17))
    else:
        torch.jit.script(net).save(str(folder / "net.pt"))
        entries = bio.WeightsDescr(torchscript=bio.TorchscriptWeightsDescr(
            source=folder / "net.pt", pytorch_version=bio.Version("2.0")))
    size = bio.ParameterizedSize(min=16, step=8)
    descr = bio.ModelDescr(
        name="one conv", description="a single 3x3 convolution", authors=[bio.Author(name="Someone Else")],
        cite=[bio.CiteEntry(text="A paper", doi=bio.Doi("10.1000/xyz123"))], license=bio.LicenseId("MIT"),
        inputs=[bio.InputTensorDescr(
            id=bio.TensorId("raw"), test_tensor=bio.FileDescr(source=folder / "in.npy"),
            axes=[bio.BatchAxis(), bio.ChannelAxis(channel_names=[bio.Identifier("bf")]),
                  bio.SpaceInputAxis(id=bio.AxisId("y"), size=size), bio.SpaceInputAxis(id=bio.AxisId("x"), size=size)],
            preprocessing=[bio.ZeroMeanUnitVarianceDescr(kwargs=bio.ZeroMeanUnitVarianceKwargs(
                axes=[bio.AxisId("channel"), bio.AxisId("y"), bio.AxisId("x")]))])],
        outputs=[bio.OutputTensorDescr(
            id=bio.TensorId("pred"), test_tensor=bio.FileDescr(source=folder / "out.npy"),
            axes=[bio.BatchAxis(), bio.ChannelAxis(channel_names=[bio.Identifier("dna")]),
                  *[bio.SpaceOutputAxis(id=bio.AxisId(a), size=bio.SizeReference(
                      tensor_id=bio.TensorId("raw"), axis_id=bio.AxisId(a))) for a in ("y", "x")]])],
        weights=entries,
    )
    return save_bioimageio_package(descr, output_path=folder / "foreign.zip")


def test_a_foreign_onnx_model_imports_installs_and_predicts_like_its_network(tmp_path):
    zip_path = _foreign_model(tmp_path / "src")
    registry = ModelRegistry(bundled_dir=tmp_path / "none", user_dir=tmp_path / "user")
    entry = install_bioimageio(zip_path, registry, model_id="one-conv")
    package = registry.get(entry.id)
    assert package.manifest.architecture.id == "onnx_graph"
    assert package.manifest.normalization.input.method == "zscore"
    image = _image((40, 56))
    prediction = _predict(package, image)
    x = image.data[0, 0]
    torch.manual_seed(1)
    with torch.no_grad():
        expected = _OneConv().eval()(torch.from_numpy((x - x.mean()) / x.std())[None, None]).numpy()[0]
    inner = (slice(None), slice(1, -1), slice(1, -1))  # the engine pads borders by reflection
    np.testing.assert_allclose(prediction[:, 0][inner], expected[inner], rtol=1e-4, atol=1e-4)


def test_a_model_whose_test_output_does_not_reproduce_is_refused(tmp_path):
    zip_path = _foreign_model(tmp_path / "src", tamper=True)
    with pytest.raises(BioimageioImportError, match="not reproduced"):
        import_bioimageio(zip_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_torchscript_weights_are_refused_with_one_sentence(tmp_path):
    zip_path = _foreign_model(tmp_path / "src", weights="torchscript")
    with pytest.raises(BioimageioImportError) as info:
        import_bioimageio(zip_path, tmp_path / "out")
    message = str(info.value)
    assert "need code from the package" in message and "never runs" in message
    assert message.count(". ") == 0 and message.endswith(".")
    assert not (tmp_path / "out").exists()
