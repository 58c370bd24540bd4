"""An int8 variant of a U-Net's ONNX export, offered only where it was checked against float32.

The variant is static QDQ quantization (ONNX Runtime's ``quantize_static``: int8 weights per output
channel, uint8 activations) with activation ranges calibrated on the model's own training inputs. On a
CPU with AVX-512 VNNI it runs ~2× faster than float32; dynamic quantization (ConvInteger) was slower
than float32 here, so it is not used.

Whether a model may run in int8 is a measured verdict, never a guess:
``scripts/check_int8.py`` calibrates the ranges (written beside the weights as ``int8_calibration.json``,
ONNX Runtime's own calibration-cache format), predicts held-out images with both networks and records
``metrics["int8"]`` in the manifest: r between the two predictions, the held-out r of each with the real
stain, the sha256 of the calibration file and of the int8 network that was checked, and ``passed``
(r ≥ ``R_WITH_FP32`` on every held-out image and the mean r with the stain within ``STAIN_TOLERANCE``).

On the user's machine the int8 network is rebuilt from the verified float32 export and those ranges
(no torch, no data), and used only when its sha256 is the one that was checked; otherwise the model runs
in float32 (``--precision auto``) or ``--precision int8`` is refused with the reason (``refusal``).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

CALIBRATION_FILE = "int8_calibration.json"
METRIC = "int8"  # the verdict's key in manifest.metrics
R_WITH_FP32 = 0.999  # Pearson r between the int8 and float32 predictions, on every held-out image
STAIN_TOLERANCE = 0.005  # |mean held-out r with the stain, int8 - float32|


@dataclass(frozen=True)
class Int8Verdict:
    """The recorded check of a model's int8 network on held-out data (``manifest.metrics["int8"]``)."""

    passed: bool
    r_fp32_int8: float  # the lowest over the held-out images
    r_stain_fp32: float  # mean over the held-out images
    r_stain_int8: float
    held_out: str
    calibration_sha256: str
    int8_sha256: str

    @classmethod
    def of(cls, manifest: Any) -> Int8Verdict | None:
        """The verdict recorded in ``manifest`` (a ``Manifest`` or its dict); None when it has none."""
        metrics = manifest.get("metrics") if isinstance(manifest, Mapping) else getattr(manifest, "metrics", None)
        data = (metrics or {}).get(METRIC)
        if not isinstance(data, Mapping):
            return None
        try:
            return cls(passed=bool(data["passed"]), r_fp32_int8=float(data["r_fp32_int8"]),
                       r_stain_fp32=float(data["r_stain_fp32"]), r_stain_int8=float(data["r_stain_int8"]),
                       held_out=str(data.get("held_out", "")), calibration_sha256=str(data["calibration_sha256"]),
                       int8_sha256=str(data["int8_sha256"]))
        except (KeyError, TypeError, ValueError):
            return None

    def failure(self) -> str:
        """Why the check failed, in words ("" when it passed)."""
        if self.passed:
            return ""
        return (f"on its held-out images the int8 network's prediction matched float32 with r {self.r_fp32_int8:.4f} "
                f"(needed ≥ {R_WITH_FP32}) and its r with the real stain was {self.r_stain_int8:.3f} against "
                f"{self.r_stain_fp32:.3f} in float32 (needed within {STAIN_TOLERANCE})")


def judge(r_fp32_int8: Iterable[float], r_stain_fp32: Iterable[float], r_stain_int8: Iterable[float]) -> bool:
    """The rule: every image's r between the two ≥ ``R_WITH_FP32``, mean r with the stain within the tolerance."""
    between = list(r_fp32_int8)
    fp32, int8 = float(np.mean(list(r_stain_fp32))), float(np.mean(list(r_stain_int8)))
    return bool(between) and min(between) >= R_WITH_FP32 and abs(int8 - fp32) <= STAIN_TOLERANCE


def refusal(manifest: Any, package_path: Path | None) -> str:
    """Why this model cannot run in int8 here, as the end of a sentence ("" when it can)."""
    arch = (manifest.get("architecture") or {}) if isinstance(manifest, Mapping) else {}
    if isinstance(manifest, Mapping) and (manifest.get("kind") != "unet" or arch.get("id") != "fnet_unet"):
        return "only U-Nets have an int8 network"
    verdict = Int8Verdict.of(manifest)
    if verdict is None:
        return "its int8 network was never checked against float32 on held-out data (scripts/check_int8.py)"
    if not verdict.passed:
        return verdict.failure()
    calibration = package_path / CALIBRATION_FILE if package_path is not None else None
    if calibration is None or not calibration.is_file():
        return f"its package has no {CALIBRATION_FILE}"
    if _sha256(calibration.read_bytes()) != verdict.calibration_sha256:
        return f"its {CALIBRATION_FILE} is not the one that was checked"
    return ""


def calibrate(fp32_model: bytes, batches: Iterable[np.ndarray], input_name: str = "input") -> bytes:
    """Activation ranges (min/max) of the float32 network over ``batches`` of normalized tiles, as the
    JSON bytes of ONNX Runtime's calibration cache."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, create_calibrator
    from onnxruntime.quantization.calibrate import save_tensors_data

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self._items, None)
            return None if item is None else {input_name: np.ascontiguousarray(item, dtype=np.float32)}

    with tempfile.TemporaryDirectory(prefix="labelfree-int8-") as tmp:
        model = Path(tmp) / "fp32.onnx"
        model.write_bytes(fp32_model)
        calibrator = create_calibrator(model, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=CalibrationMethod.MinMax)
        calibrator.collect_data(Reader())
        ranges = Path(tmp) / "ranges.json"
        save_tensors_data(calibrator.compute_data(), ranges)
        return ranges.read_bytes()


def quantize(fp32_model: bytes, calibration: bytes) -> bytes:
    """The int8 QDQ network from the float32 export and calibrated ranges (deterministic: the same
    inputs give the same bytes, so a rebuilt network can be matched to the one that was checked).

    The first and last convolutions stay float32: they see the raw normalized input (13 z-planes for
    the ISL models) and make the output, where int8 steps cost the most accuracy for little time."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory(prefix="labelfree-int8-") as tmp:
        model, ranges, out = Path(tmp) / "fp32.onnx", Path(tmp) / "ranges.json", Path(tmp) / "int8.onnx"
        model.write_bytes(fp32_model)
        ranges.write_bytes(calibration)
        convs = [node.name for node in onnx.load(str(model)).graph.node if node.op_type == "Conv"]
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process is for other models
        try:
            quantize_static(model, out, None, quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=[convs[0], convs[-1]], calibration_cache_path=ranges)
        finally:
            logging.getLogger().setLevel(quiet)
        return out.read_bytes()


def int8_cache_path(manifest: Any) -> Path:
    """Where the int8 network of this U-Net is cached (beside its float32 export, keyed by the checked sha256)."""
    from labelfree_app.models.onnx_backend import cache_path

    verdict = Int8Verdict.of(manifest)
    arch = manifest.architecture
    return cache_path(manifest.weights.sha256, arch.id, dict(arch.kwargs),
                      extra=f"int8:{verdict.int8_sha256 if verdict else ''}")


def build_int8(fp32_model: bytes, package_path: Path, manifest: Any) -> bytes | None:
    """The checked int8 network rebuilt here, or None when the rebuild differs from the one checked
    (another ONNX Runtime or torch version made a different network)."""
    verdict = Int8Verdict.of(manifest)
    if verdict is None:
        return None
    network = quantize(fp32_model, (package_path / CALIBRATION_FILE).read_bytes())
    return network if _sha256(network) == verdict.int8_sha256 else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def choose(asked: str, manifest: Any, package_path: Path | None, device: Any) -> str:
    """The precision a U-Net runs at: "int8" where asked ("int8" or "auto") and it can run here, else
    "fp32"; asking for "int8" where it cannot is a ``SettingsError`` naming the reason."""
    from labelfree_app.errors import SettingsError
    from labelfree_app.models.onnx_backend import onnx_wanted

    if asked == "fp32":
        return "fp32"
    reason = refusal(manifest, package_path)
    if not reason and not onnx_wanted(device):
        reason = f"int8 runs on the CPU through ONNX Runtime, not on {device}"
    if reason and asked == "int8":
        name = manifest.get("id", "this model") if isinstance(manifest, Mapping) else "this model"
        raise SettingsError(f"{name} cannot run in int8: {reason}; use --precision fp32 or auto.")
    return "fp32" if reason else "int8"
