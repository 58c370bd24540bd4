"""A bounded fuzz pass (Hypothesis) over the metadata a hostile or damaged file controls: NGFF attributes of an
OME-Zarr (multiscales, axes, datasets, transforms, OMERO channels, plates and wells) and the fields of a
bioimage.io ``rdf.yaml``. Every generated document must end in a result or one ``LabelFreeError`` sentence,
never in another exception (what the CLI's unexpected-error net would catch). Issue 29, "Show".

Bounded in time: a fixed number of examples without a per-example deadline (about 20 s in all on a loaded two-core machine).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="the [dev] extra is not installed")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from labelfree_app.errors import LabelFreeError  # noqa: E402

FUZZ = settings(max_examples=80, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 10 ** 12), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                           st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the well-formed value, sometimes any JSON value in its place."""
    return st.one_of(strategy, strategy, strategy, json_values)


paths = st.sampled_from(["s0", "s1", "missing", "../outside", "/etc", "", "s0/../s0", "A/1/0"])
axis_names = st.sampled_from(["t", "c", "z", "y", "x", "q", "Y", ""])
axes = st.lists(maybe(st.one_of(axis_names, st.fixed_dictionaries(
    {"name": maybe(axis_names)}, optional={"type": maybe(st.sampled_from(["space", "channel", "time", "other"])),
                                           "unit": maybe(st.sampled_from(["micrometer", "nanometer", "parsec", ""]))}))),
                min_size=0, max_size=6)
scale = maybe(st.lists(maybe(st.floats(-2, 5, allow_nan=False)), max_size=6))
transforms = maybe(st.lists(maybe(st.fixed_dictionaries({"type": maybe(st.sampled_from(["scale", "translation"]))},
                                                        optional={"scale": scale, "translation": scale})), max_size=3))
datasets = maybe(st.lists(maybe(st.fixed_dictionaries({"path": maybe(paths)},
                                                      optional={"coordinateTransformations": transforms})), max_size=3))
multiscale = st.fixed_dictionaries({"datasets": datasets}, optional={"axes": maybe(axes), "version": json_values,
                                                                     "name": json_values})
omero = st.fixed_dictionaries({"channels": maybe(st.lists(maybe(st.fixed_dictionaries(
    {}, optional={"label": json_values})), max_size=3))})
wells = maybe(st.lists(maybe(st.fixed_dictionaries({"path": maybe(st.sampled_from(["A/1", "B/2", "../x", "A"]))})),
                       max_size=3))
plate = st.fixed_dictionaries({"wells": wells}, optional={"rows": json_values, "columns": json_values})
well_images = maybe(st.lists(maybe(st.fixed_dictionaries({"path": maybe(st.sampled_from(["0", "1", "../../..", ""]))})),
                             max_size=2))
ngff_documents = st.fixed_dictionaries({}, optional={"multiscales": maybe(st.lists(maybe(multiscale), max_size=2)),
                                                     "omero": maybe(omero), "plate": maybe(plate)})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small OME-Zarr with arrays s0 (1, 32, 32) and s1, a well A/1 and a field A/1/0 to point at."""
    import zarr

    path = tmp_path_factory.mktemp("fuzz") / "in.ome.zarr"
    group = zarr.open_group(str(path), mode="w")
    pixels = np.random.default_rng(0).random((1, 32, 32), dtype=np.float32) + 1
    group.create_array("s0", shape=pixels.shape, dtype=np.float32, chunks=(1, 16, 16))[...] = pixels
    group.create_array("s1", shape=(1, 16, 16), dtype=np.float32)[...] = pixels[:, ::2, ::2]
    field = group.require_group("A").require_group("1").require_group("0")
    field.create_array("s0", shape=pixels.shape, dtype=np.float32)[...] = pixels
    return path


def _set_attributes(group_folder: Path, attributes: dict[str, Any]) -> None:
    meta = group_folder / "zarr.json"
    document = json.loads(meta.read_text())
    document["attributes"] = attributes
    meta.write_text(json.dumps(document))


def _ends_well(call: Any) -> None:
    """A result, or one LabelFreeError sentence: anything else is what the bug net would catch."""
    try:
        call()
    except LabelFreeError as exc:
        assert str(exc).strip() and "\n" not in str(exc), repr(exc)


@FUZZ
@given(document=ngff_documents, images=well_images, nested=st.booleans())
def test_any_ngff_metadata_ends_in_an_image_or_one_sentence(store: Path, document: dict[str, Any], images: Any,
                                                            nested: bool) -> None:
    from labelfree_app.io import read_image

    _set_attributes(store, {"ome": {"version": "0.5", **document}} if nested else document)
    _set_attributes(store / "A" / "1", {"ome": {"well": {"images": images}}})
    _set_attributes(store / "A" / "1" / "0", {"ome": {"multiscales": [{"axes": ["c", "y", "x"],
                                                                       "datasets": [{"path": "s0"}]}]}})

    def read() -> None:
        image = read_image(store, lazy=True, position="A/1/0" if "plate" in document else None)
        np.asarray(image.data[..., :4, :4])

    _ends_well(read)


# --- bioimage.io rdf fields -------------------------------------------------------------------------
def _tensor(name: str) -> st.SearchStrategy[dict[str, Any]]:
    axis = st.fixed_dictionaries({"type": maybe(st.sampled_from(["batch", "channel", "space", "time", "index"]))},
                                 optional={"id": maybe(st.sampled_from(["y", "x", "z", "channel"])),
                                           "size": maybe(st.one_of(st.integers(-1, 64), st.fixed_dictionaries(
                                               {"min": maybe(st.integers(-1, 64)), "step": maybe(st.integers(-1, 16))}))),
                                           "channel_names": maybe(st.lists(st.sampled_from(["bf", "dna"]), max_size=2))})
    return st.fixed_dictionaries({"id": maybe(st.just(name)), "axes": maybe(st.lists(maybe(axis), max_size=5))},
                                 optional={"test_tensor": maybe(st.fixed_dictionaries(
                                     {"source": maybe(st.sampled_from(["in.npy", "out.npy", "../in.npy", "/etc/passwd"]))},
                                     optional={"sha256": maybe(st.sampled_from(["0" * 64, "nothex"]))})),
                                     "preprocessing": maybe(st.lists(maybe(st.fixed_dictionaries(
                                         {"id": maybe(st.sampled_from(["zero_mean_unit_variance", "scale_range",
                                                                       "binarize"]))})), max_size=2))})


rdf_documents = st.fixed_dictionaries(
    {"type": maybe(st.just("model")), "format_version": maybe(st.sampled_from(["0.5.4", "0.4.10", "9.9"]))},
    optional={"name": maybe(st.text(max_size=20)), "description": json_values, "license": maybe(st.sampled_from(
        ["MIT", "not-a-licence"])), "authors": maybe(st.lists(maybe(st.fixed_dictionaries(
            {"name": maybe(st.text(max_size=8))})), max_size=2)), "cite": json_values,
        "inputs": maybe(st.lists(_tensor("raw"), max_size=2)), "outputs": maybe(st.lists(_tensor("pred"), max_size=2)),
        "weights": maybe(st.fixed_dictionaries({}, optional={
            fmt: maybe(st.fixed_dictionaries({"source": maybe(st.sampled_from(["net.onnx", "../net.onnx", "/abs.pt",
                                                                                "missing.onnx"]))},
                                             optional={"sha256": maybe(st.sampled_from(["0" * 64])),
                                                       "opset_version": maybe(st.integers(0, 20))}))
            for fmt in ("onnx", "pytorch_state_dict", "torchscript", "keras_hdf5")})),
        "config": json_values})


@settings(max_examples=10, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(document=rdf_documents)
def test_any_rdf_fields_end_in_a_package_or_one_sentence(tmp_path_factory: pytest.TempPathFactory,
                                                         document: dict[str, Any]) -> None:
    pytest.importorskip("bioimageio.spec", reason="the [bioimageio] extra is not installed")
    import yaml

    from labelfree_app.models.bioimageio_import import import_bioimageio

    folder = tmp_path_factory.mktemp("rdf") / "model"
    folder.mkdir()
    np.save(folder / "in.npy", np.ones((1, 1, 16, 16), np.float32))
    np.save(folder / "out.npy", np.ones((1, 1, 16, 16), np.float32))
    (folder / "net.onnx").write_bytes(b"\x08\x07not a real graph")
    (folder / "rdf.yaml").write_text(yaml.safe_dump(document))
    try:
        _ends_well(lambda: import_bioimageio(folder, folder.parent / "out"))
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
