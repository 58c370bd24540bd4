"""Write resources/selftest_expected.json: what `labelfree --self-test` expects of each bundled model.

Run it again whenever a bundled model, the demo input or the self-test settings change:

    python scripts/make_selftest_expected.py            # CPU, torch backend
    python scripts/make_selftest_expected.py --check    # compare with the stored file instead

The statistics are taken with the plain torch backend on the CPU; the self-test's tolerances
cover ONNX Runtime and GPU differences.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "resources" / "selftest_expected.json")
    parser.add_argument("--check", action="store_true", help="run the self-test against --out instead of writing it")
    args = parser.parse_args(argv)

    from labelfree_app import selftest

    if args.check:
        report = selftest.run_self_test(on_event=lambda e: print(e.line()) if isinstance(e, selftest.ModelCheck) else None,
                                        device="cpu", expected_file=args.out)
        print(report.summary().splitlines()[-1])
        return 0 if report.ok else 1

    os.environ["LABELFREE_BACKEND"] = "torch"  # the reference: eager PyTorch on the CPU
    import torch

    image = selftest.demo_input()
    models = {}
    for package in selftest.bundled_packages():
        _, stats, backend = selftest.predict_stats(package, image, device="cpu")
        models[package.manifest.id] = selftest.expected_entry(package, stats)
        print(f"{package.manifest.id}: mean={stats.mean:.4f} std={stats.std:.4f} ({backend})")
    data = {
        "format_version": selftest.FORMAT_VERSION,
        "about": "Expected statistics for `labelfree --self-test`; made by scripts/make_selftest_expected.py.",
        "input": {"file": f"resources/demo/{selftest.DEMO_FILE}", "channel": 0,
                  "crop_yx": [[s.start, s.stop] for s in selftest.CROP]},
        "made_with": {"torch": torch.__version__, "python": platform.python_version(), "device": "cpu",
                      "backend": "torch"},
        "models": models,
    }
    args.out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
