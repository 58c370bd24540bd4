"""How often a model paints structure where there is none: empty background, measured.

    python scripts/measure_empty_background.py MODEL [MODEL ...]
    python scripts/measure_empty_background.py --test-fields resources/models/lf-nuclei-2d   # a model that trained on aiSEGcell

``--test-fields``: the empty crops come only from the aiSEGcell fields that the generalist keeps for
testing (two sessions; ``scripts/train_generalist.py``), for a model trained on the others.

Two sets of held-out pixels with no stained structure (from ../shared/data; never trained on by the
models compared, see each row's note):

- **empty crops**: 256x256 windows of aiSEGcell fields (sparse cells in wells and traps) whose
  nuclear stain stays below the field's Otsu threshold everywhere, predicted *alone*, as a user
  opening a field of empty medium would (the input is normalized by its own percentiles);
- **E. coli background**: the pixels of the five ColiCoords fields farther than 5 px from any
  cell (cytoplasmic stain below Otsu), predicted on the whole field.

A pixel counts as painted when the prediction (z-score units of the stain) exceeds the stain's
background level: the mean plus two standard deviations of the field's own below-Otsu stain pixels,
z-scored over the field as the models' training targets are. Prints the share per set and model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data" / "paired"
CROP = 256


def background_level(target: np.ndarray) -> tuple[float, np.ndarray]:
    """The background level in the field's z-scores, and the field's z-scored stain."""
    from skimage.filters import threshold_otsu

    t = target.astype(np.float64)
    z = (t - t.mean()) / (t.std() or 1.0)
    below = z[z <= threshold_otsu(z)]
    return float(below.mean() + 2 * below.std()), z


def empty_crops(limit_per_field: int = 2, only: set[str] | None = None) -> list[tuple[str, np.ndarray, float]]:
    """(name, input crop, background level) of cell-free aiSEGcell windows (of the ``only`` input files)."""
    from skimage.filters import threshold_otsu

    from labelfree_app.io import read_image

    out = []
    for path in sorted((DATA / "aisegcell_hspc").glob("*_input.tif")):
        if only is not None and path.name not in only:
            continue
        target = np.asarray(read_image(str(path).replace("_input.tif", "_target_nuc.tif")).data[0, 0], np.float64)
        level, z = background_level(target)
        otsu = threshold_otsu(z)
        image = np.asarray(read_image(path).data[0, 0], np.float32)
        found = 0
        for y in range(0, z.shape[0] - CROP + 1, CROP):
            for x in range(0, z.shape[1] - CROP + 1, CROP):
                window = z[y:y + CROP, x:x + CROP]
                if float(window.max()) < otsu and found < limit_per_field:
                    out.append((f"{path.name[:-10]}@{y},{x}", image[y:y + CROP, x:x + CROP], level))
                    found += 1
    return out


def ecoli_fields() -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """(name, input, mask of background pixels far from cells, background level) of each field."""
    from scipy.ndimage import binary_dilation
    from skimage.filters import threshold_otsu

    from labelfree_app.io import read_image

    out = []
    for path in sorted((DATA / "colicoords_ecoli").glob("*_input.tif")):
        targets = sorted(path.parent.glob(path.name.replace("_input.tif", "_target_*.tif")))
        target = np.asarray(read_image(targets[0]).data[0, 0], np.float64)
        level, z = background_level(target)
        cells = binary_dilation(z > threshold_otsu(z), iterations=5)
        out.append((path.name[:-10], np.asarray(read_image(path).data[0, 0], np.float32), ~cells, level))
    return out


def painted_share(engine, image: np.ndarray, level: float, mask: np.ndarray | None = None) -> float:
    from labelfree_app.io.image import Image

    result = engine.predict(Image.from_array(image[None, None], "CZYX"))
    pred = result.prediction[0, 0]
    out_norm = engine._output_normalizer()
    if out_norm is not None and out_norm.params:  # back to the network's z-scores
        pred = out_norm.apply(pred)
    values = pred[mask] if mask is not None else pred.ravel()
    return float(np.mean(values > level))


def main() -> int:
    import torch

    from labelfree_app.core.engine import PredictionEngine
    from labelfree_app.models.package import load_package

    if not DATA.is_dir():
        print(f"The data is not at {DATA}.", file=sys.stderr)
        return 1
    torch.set_num_threads(2)
    models = [a for a in sys.argv[1:] if a != "--test-fields"]
    only = None
    if "--test-fields" in sys.argv:
        sys.path.insert(0, str(ROOT / "scripts"))
        import train_generalist as gen

        only = {Path(item.spec.input).name for item in gen.test_items("aisegcell", gen.WORK)}
    crops, ecoli = empty_crops(only=only), ecoli_fields()
    results = {}
    for model in models:
        engine = PredictionEngine(load_package(model), device="cpu")
        crop_shares = [painted_share(engine, image, level) for _, image, level in crops]
        ecoli_shares = [painted_share(engine, image, level, mask) for _, image, mask, level in ecoli]
        results[model] = {"empty_crops": len(crops), "empty_crops_painted": round(float(np.mean(crop_shares)), 4),
                          "ecoli_fields": len(ecoli), "ecoli_background_painted": round(float(np.mean(ecoli_shares)), 4)}
        print(model, json.dumps(results[model]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
