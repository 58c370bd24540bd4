"""Build the bundled demo input: a real phase-contrast field with its real nuclear stain.

    python scripts/make_demo_resources.py

Writes resources/demo/demo_phase_neurons.ome.tif from the "In silico labeling" condition-B field
(Christiansen et al., Cell 2018, Finkbeiner lab; Apache-2.0, ../shared/data/isl_condition_b):
the bottom-right 512×512 quadrant (rows and columns 512-1023, the ISL test region that no bundled
model was trained on), channel 0 = phase contrast (plane z_depth-6 of the 13-plane stack, the middle
plane), channel 1 = the DAPI confocal max projection of the same field (the real stain, for
Compare with ground truth). The synthetic demo models this script used to train now live in
tests/fixtures/models as test fixtures only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labelfree_app.io import read_image, write_image  # noqa: E402

ISL = ROOT.parent / "shared" / "data" / "isl_condition_b"
PLANE = 6
QUADRANT = (slice(512, 1024), slice(512, 1024))
DEMO = ROOT / "resources" / "demo" / "demo_phase_neurons.ome.tif"


def main() -> int:
    if not ISL.is_dir():
        print(f"The ISL data is not at {ISL}; cannot build the demo.", file=sys.stderr)
        return 1
    phase = np.asarray(read_image(ISL / f"z_depth-{PLANE}_PHASE_CONTRAST.png").data[0, 0])[QUADRANT]
    dapi = np.asarray(read_image(ISL / "depth_computation-MAXPROJECT_DAPI_CONFOCAL.png").data[0, 0])[QUADRANT]
    data = np.stack([phase, dapi])[:, None]  # C, Z, Y, X
    DEMO.parent.mkdir(parents=True, exist_ok=True)
    if DEMO.exists():
        DEMO.unlink()
    write_image(DEMO, data, "CZYX", channel_names=["Phase contrast", "DNA (DAPI, real stain)"],
                provenance={"content": "real demo image: In silico labeling condition B (Christiansen et al., "
                                       "Cell 2018, Finkbeiner lab), Apache-2.0",
                            "crop": "rows 512-1023, columns 512-1023 (the ISL test quadrant)",
                            "input": f"z_depth-{PLANE}_PHASE_CONTRAST.png",
                            "target": "depth_computation-MAXPROJECT_DAPI_CONFOCAL.png"},
                compression="zlib")
    print(DEMO, data.shape, data.dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
