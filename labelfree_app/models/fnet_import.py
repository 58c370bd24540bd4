"""Import a pytorch_fnet model (``model.p`` + ``train_options.json``) as a LabelFree package.

``model.p`` is a ``torch.save`` pickle; it is read with ``torch.load(weights_only=True)`` only, so a
file that would need to run code to load is refused. fnet's recursive layer names
(``net_recurse.sub_u.sub_u.sub_2conv_more.conv1.weight`` ...) are mapped onto our flat ``UNet``
(``encoders.2.conv1.weight`` ...), and the architecture (dims, depth, widths) is read from the
weight shapes rather than trusted from the options.
"""

from __future__ import annotations

import json
import pickle
import re
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from labelfree_app.errors import ModelError, UnsafeModelError
from labelfree_app.models.package import save_package, unet_manifest
from labelfree_app.models.unet import UNet

MODEL_FILE = "model.p"
TRAIN_OPTIONS_FILE = "train_options.json"
_STATE_KEYS = ("nn_state", "nn_net_state", "state_dict", "model_state_dict", "net")
_DEFAULT_TILING = {2: ([512, 512], [32, 32]), 3: ([32, 256, 256], [8, 32, 32])}
# fnet's per-level layer names -> ours (relative to the level's prefix)
_LEVEL_LAYERS = {
    "sub_2conv_more.": "encoders.{level}.",
    "sub_2conv_less.": "decoders.{level}.",
    "conv_down.": "downs.{level}.conv.",
    "bn0.": "downs.{level}.bn.",
    "convt.": "ups.{level}.conv.",
    "bn1.": "ups.{level}.bn.",
}


_PICKLE_START = b"\x80"  # torch.save's legacy format: a pickle, protocol 2 or later
_ZIP_START = b"PK"  # torch.save's format since PyTorch 1.6: a zip of pickled records


def _not_a_checkpoint(model_path: Path, what: str) -> ModelError:
    return ModelError(
        f"The model file {model_path} {what}; give fnet's {MODEL_FILE} (the file pytorch_fnet saved after training).",
        path=model_path,
    )


def _check_looks_like_torch(model_path: Path) -> None:
    """Refuse at once what torch.save never writes (empty, text, a foreign zip): torch.load would stop
    with a KeyError or a C++ message instead."""
    try:
        with open(model_path, "rb") as handle:
            start = handle.read(2)
    except OSError as exc:
        raise ModelError(
            f"The model file {model_path} cannot be read ({exc.strerror or exc}); check its permissions.",
            path=model_path,
        ) from exc
    if not start:
        raise _not_a_checkpoint(model_path, "is empty (0 bytes)")
    if start == _ZIP_START:
        try:
            with zipfile.ZipFile(model_path) as archive:
                names: list[str] | None = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            names = None  # a damaged zip: torch.load below says so
        if names is not None and not any(name.endswith("data.pkl") for name in names):
            raise _not_a_checkpoint(model_path, "is a zip file but not a PyTorch checkpoint")
    elif not start.startswith(_PICKLE_START):
        raise _not_a_checkpoint(model_path, "is not a PyTorch checkpoint (it looks like text or another format)")


def load_fnet_checkpoint(model_path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``; refuses pickles that need code (UnsafeModelError)."""
    _check_looks_like_torch(model_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pickle-protocol chatter from old checkpoints
            return torch.load(model_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" in str(exc).lower():
            raise UnsafeModelError(
                f"The model file {model_path} contains Python objects that would run code when loaded; "
                "it was refused (only plain weights can be imported).",
                path=model_path,
            ) from exc
        # The weights-only unpickler also stops at pickle opcodes it does not support, which a
        # crafted file can use too: refuse without guessing whether the file is merely damaged.
        raise UnsafeModelError(
            f"The model file {model_path} cannot be read as plain weights (it is damaged, or uses pickle "
            "features that could run code); it was refused.",
            path=model_path,
        ) from exc
    except (EOFError, RuntimeError, ValueError, OSError, KeyError, IndexError, TypeError, AttributeError,
            UnicodeDecodeError, struct.error) as exc:  # what torch.load raises on a damaged file
        raise _not_a_checkpoint(model_path, "is damaged or not a PyTorch checkpoint, so it could not be imported") from exc


def _find_state_dict(checkpoint: Any, model_path: Path) -> Mapping[str, torch.Tensor]:
    def is_weights(value: Any) -> bool:
        return isinstance(value, Mapping) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())

    if isinstance(checkpoint, Mapping):
        for key in _STATE_KEYS:
            if is_weights(checkpoint.get(key)):
                return checkpoint[key]
        if is_weights(checkpoint):
            return checkpoint
    raise ModelError(
        f"The model file {model_path} holds no network weights (looked for {', '.join(_STATE_KEYS)}); "
        "it is not an fnet model.",
        path=model_path,
    )


def map_fnet_state_dict(
    fnet_state: Mapping[str, torch.Tensor], *, source: Path | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Rename an fnet ``Net`` state dict to our ``UNet``'s keys and infer the UNet's kwargs."""
    where = f" in {source}" if source is not None else ""
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in fnet_state.items():
        name = key[len("module.") :] if key.startswith("module.") else key  # saved from DataParallel
        if name.startswith("conv_out."):
            mapped["head." + name[len("conv_out.") :]] = tensor
            continue
        match = re.fullmatch(r"net_recurse\.((?:sub_u\.)*)(.+)", name)
        layer = None
        if match:
            level = len(match.group(1)) // len("sub_u.")
            rest = match.group(2)
            for fnet_prefix, ours in _LEVEL_LAYERS.items():
                if rest.startswith(fnet_prefix):
                    layer = ours.format(level=level) + rest[len(fnet_prefix) :]
                    break
        if layer is None:
            raise ModelError(
                f"The weights{where} have a layer '{key}' that fnet's U-Net does not have; "
                "only fnet_nn_2d / fnet_nn_3d models can be imported.",
                path=source,
            )
        mapped[layer] = tensor
    first = mapped.get("encoders.0.conv1.weight")
    head = mapped.get("head.weight")
    if first is None or head is None or first.dim() not in (4, 5):
        raise ModelError(
            f"The weights{where} lack fnet's first or last convolution; only fnet U-Net models can be imported.",
            path=source,
        )
    levels = [int(k.split(".")[1]) for k in mapped if k.startswith("encoders.") and k.endswith(".conv1.weight")]
    kwargs = {
        "dims": first.dim() - 2,
        "in_channels": int(first.shape[1]),
        "out_channels": int(head.shape[0]),
        "depth": max(levels),
        "base_channels": int(first.shape[0]),
        "out_kernel_size": int(head.shape[-1]),
    }
    # Checkpoints from PyTorch < 0.4 predate BatchNorm's num_batches_tracked buffer.
    for key in [k for k in mapped if k.endswith(".running_mean")]:
        mapped.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
    try:
        UNet(**kwargs).load_state_dict(mapped, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise ModelError(
            f"The weights{where} do not have the layout of fnet's U-Net ({str(exc).splitlines()[0]}); "
            "they could not be imported.",
            path=source,
        ) from exc
    return {k: v.float() if v.is_floating_point() else v for k, v in mapped.items()}, kwargs


def _read_train_options(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"The fnet options file {path} cannot be read as JSON ({exc}).", path=path) from exc
    if not isinstance(data, dict):
        raise ModelError(f"The fnet options file {path} is not a JSON object.", path=path)
    return data


def _fnet_settings(options: Mapping[str, Any]) -> dict[str, Any]:
    """The training settings worth keeping, from old (v0.1) or new (v0.2) train_options.json."""
    model_kwargs = options.get("fnet_model_kwargs") if isinstance(options.get("fnet_model_kwargs"), dict) else {}
    bpds = options.get("bpds_kwargs") if isinstance(options.get("bpds_kwargs"), dict) else {}
    dataset = options.get("dataset_train_kwargs") if isinstance(options.get("dataset_train_kwargs"), dict) else {}
    candidates = {
        "fnet_nn_class": options.get("nn_module") or model_kwargs.get("nn_class"),
        "fnet_nn_kwargs": options.get("nn_kwargs") or model_kwargs.get("nn_kwargs"),
        "patch_shape": bpds.get("patch_shape") or bpds.get("patch_size") or options.get("patch_size"),
        "transform_signal": options.get("transform_signal") or dataset.get("transform_signal"),
        "transform_target": options.get("transform_target") or dataset.get("transform_target"),
        "batch_size": options.get("batch_size"),
        "n_iter": options.get("n_iter"),
        "lr": options.get("lr") or model_kwargs.get("lr"),
    }
    return {key: value for key, value in candidates.items() if value not in (None, "", [], {})}


def import_fnet_model(
    model_path: str | Path,
    train_options: str | Path | None,
    out_dir: str | Path,
    *,
    model_id: str,
    name: str,
    target: str,
    version: str = "1.0.0",
    description: str = "",
    input_modality: str = "bright-field",
    license: str = "",
    attribution: str = "Trained with pytorch_fnet (Ounkomol et al., Nature Methods 2018).",
    tile_shape: list[int] | None = None,
    halo: list[int] | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert fnet's ``model.p`` (a file, or the folder holding it and train_options.json) into a
    model package at ``out_dir``; returns ``out_dir``. Inputs are z-scored as fnet did."""
    model_path = Path(model_path).expanduser()
    if model_path.is_dir():
        if train_options is None and (model_path / TRAIN_OPTIONS_FILE).is_file():
            train_options = model_path / TRAIN_OPTIONS_FILE
        model_path = model_path / MODEL_FILE
    if not model_path.is_file():
        raise ModelError(
            f"No fnet model file found at {model_path}; give the path of fnet's {MODEL_FILE}.", path=model_path
        )
    options = _read_train_options(Path(train_options).expanduser() if train_options is not None else None)
    checkpoint = load_fnet_checkpoint(model_path)
    state, kwargs = map_fnet_state_dict(_find_state_dict(checkpoint, model_path), source=model_path)
    dims = kwargs["dims"]
    default_tile, default_halo = _DEFAULT_TILING[dims]
    multiple = 2 ** kwargs["depth"]
    tile = list(tile_shape) if tile_shape else [max(multiple, (t // multiple) * multiple) for t in default_tile]
    settings = _fnet_settings(options)
    resizes = [t for t in settings.get("transform_signal", []) if isinstance(t, str) and "Resizer" in t]
    if resizes:
        description = (description + " " if description else "") + (
            f"fnet rescaled its inputs during training ({resizes[0]}); give images at that pixel size."
        )
    count_iter = checkpoint.get("count_iter") if isinstance(checkpoint, Mapping) else None
    manifest = unet_manifest(
        kwargs,
        model_id=model_id,
        name=name,
        target=target,
        version=version,
        input_modality=input_modality,
        tile_shape=tile,
        halo=list(halo) if halo is not None else default_halo,
        description=description,
        training={
            "data": str(options.get("path_dataset_train_csv") or options.get("path_dataset_csv") or ""),
            "steps": count_iter if isinstance(count_iter, int) and count_iter >= 0 else 0,
            "seconds": 0,
            "device": "",
            "settings": {"imported_from": "pytorch_fnet", **settings},
        },
        license=license,
        attribution=attribution,
    )
    if kwargs["in_channels"] == 1:
        manifest["input"]["channel_names"] = [input_modality]
    return save_package(out_dir, manifest, state, overwrite=overwrite)
