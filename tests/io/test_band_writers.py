"""Band writers: a tiled OME-TIFF laid out without writing its pixels first is filled row band by row band."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from labelfree_app.io.band_writers import TiledTiffBandWriter


@pytest.mark.parametrize("shape", [(2, 2, 1, 300, 520), (1, 1, 1, 256, 256), (3, 1, 2, 40, 30)])
def test_tiled_band_writer_fills_every_page_in_uneven_bands(tmp_path, shape):
    rng = np.random.default_rng(0)
    data = rng.normal(size=shape).astype(np.float32)
    path = tmp_path / "out.ome.tif"
    with TiledTiffBandWriter(path, shape, np.float32, channel_names=[f"c{k}" for k in range(shape[1])]) as writer:
        for t in range(shape[0]):
            for z in range(shape[2]):
                for y0, y1 in ((0, 7), (7, 260), (260, shape[3])):
                    for c in range(shape[1]):
                        if y0 < min(y1, shape[3]):
                            writer.write_rows(t, c, z, y0, data[t, c, z, y0:y1])
        writer.finish({"model": "test"})
    with tifffile.TiffFile(path) as tif:
        assert tif.pages.first.is_tiled
        read = tif.series[0].asarray().reshape(shape)
    np.testing.assert_array_equal(read, data)
    assert not list(tmp_path.glob(".*.part"))


def test_tiled_band_writer_left_early_leaves_no_file(tmp_path):
    path = tmp_path / "out.ome.tif"
    with pytest.raises(KeyboardInterrupt):
        with TiledTiffBandWriter(path, (1, 1, 1, 600, 600), np.uint16) as writer:
            writer.write_rows(0, 0, 0, 0, np.ones((10, 600), np.uint16))
            raise KeyboardInterrupt
    assert not path.exists() and not list(tmp_path.iterdir())
