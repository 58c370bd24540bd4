"""Small real model packages for tests (random weights, tiny networks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from labelfree_app.models.diffusion.denoiser import ConditionalDenoiser
from labelfree_app.models.package import ModelPackage, load_package, save_package, unet_manifest
from labelfree_app.models.unet import UNet


def make_unet_package(folder: Path, *, dims: int = 2, in_channels: int = 1, depth: int = 2, base: int = 4,
                      model_id: str = "test-unet", z_as_channels: bool = False, seed: int = 0,
                      **fields: Any) -> ModelPackage:
    torch.manual_seed(seed)
    net = UNet(dims=dims, in_channels=in_channels, out_channels=1, depth=depth, base_channels=base)
    manifest = unet_manifest(net.architecture_kwargs(), model_id=model_id, name=model_id, **{"target": "DNA", **fields})
    if z_as_channels:
        manifest["input"]["z_as_channels"] = True
    return load_package(save_package(folder / model_id, manifest, net.state_dict()))


def diffusion_manifest(kwargs: dict[str, Any], model_id: str, **diffusion: Any) -> dict[str, Any]:
    settings = {"schedule": "cosine", "train_steps": 1000, "prediction": "v", "sampler": "ddim",
                "steps": 5, "samples": 3, "eta": 0.0, **diffusion}
    return {
        "format_version": 1, "id": model_id, "name": model_id, "version": "0.1.0", "kind": "diffusion",
        "target": "DNA", "input_modality": "bright-field",
        "architecture": {"id": "cond_denoiser_unet", "kwargs": kwargs},
        "dims": kwargs.get("dims", 2),
        "input": {"axes": "CYX", "channels": kwargs.get("in_channels", 1)},
        "output": {"axes": "CYX", "channels": kwargs.get("out_channels", 1)},
        "normalization": {"input": {"method": "zscore", "params": {}}, "output": None},
        "tiling": {"tile_shape": [64, 64], "halo": [8, 8]},
        "diffusion": settings,
    }


def make_diffusion_package(folder: Path, *, model_id: str = "test-diffusion", seed: int = 0,
                           **diffusion: Any) -> ModelPackage:
    torch.manual_seed(seed)
    kwargs = {"dims": 2, "in_channels": 1, "out_channels": 1, "base_channels": 8, "channel_mults": [1, 2],
              "num_res_blocks": 1}
    net = ConditionalDenoiser(**kwargs)
    return load_package(save_package(folder / model_id, diffusion_manifest(kwargs, model_id, **diffusion),
                                     net.state_dict()))


def write_field(path: Path, *, seed: int, shape: tuple[int, int] = (64, 80)) -> Path:
    """A synthetic field as an OME-TIFF with a Brightfield and a Hoechst channel."""
    import numpy as np

    from labelfree_app.io import write_image
    from tests.synthetic_cells import render_cells

    cells = render_cells(shape, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, np.stack([cells.brightfield, cells.nuclei])[:, None], "CZYX",
                channel_names=["Brightfield", "Hoechst"])
    return path


def stack_and_plane_entries(folder: Path) -> list[Any]:
    """Registry entries of two tiny U-Nets: one takes a 13-plane z-stack as channels, one a single plane."""
    from labelfree_app.models.registry import ModelRegistry

    make_unet_package(folder, in_channels=13, z_as_channels=True, model_id="stack-model")
    make_unet_package(folder, model_id="plane-model")
    return ModelRegistry(bundled_dir=folder, user_dir=folder / "user").list()


def trust_block(seed: int = 0, shape: tuple[int, int] = (64, 80)) -> dict[str, Any]:
    """A manifest ``trust`` field whose input profile was fitted to normalized synthetic bright-field fields."""
    import numpy as np

    from labelfree_app.core.trust import METHOD, InputProfile
    from tests.synthetic_cells import render_cells

    planes = []
    for k in range(3):
        plane = render_cells(shape, seed=seed + k).brightfield.astype(np.float32)
        planes.append((plane - plane.mean()) / (plane.std() + 1e-6))
    return {"input_profile": InputProfile.fit(planes).to_dict(), "method": METHOD}


def constant_calibration(expected_r: float, half_width: float = 0.1) -> dict[str, Any]:
    """Trust models (for ``core.trust_recorder.bundled_calibration``) that expect ``expected_r`` for any
    prediction of a U-Net or diffusion model, with or without an input profile."""
    from labelfree_app.core.trust import TrustModel

    model = TrustModel(("pred_sd",), (0.0,), (1.0,), (0.0,), expected_r, half_width, half_width)
    return {key: model for key in ("unet", "unet+profile", "unet-tta", "unet-tta+profile", "diffusion",
                                   "diffusion+profile")}
