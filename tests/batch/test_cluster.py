"""The same batch on a Dask LocalCluster (2 worker processes) gives the same files and report."""

from __future__ import annotations


import numpy as np
import pytest

from labelfree_app.batch import BatchOptions, plan_batch, run_batch
from labelfree_app.batch.plan import resolve_models
from labelfree_app.core.engine import PredictSettings
from labelfree_app.io import read_image

distributed = pytest.importorskip("distributed", reason="Dask is an optional extra: pip install '.[cluster]'")


def _drain(events):
    *_, done = list(events)
    return done


def test_a_dask_batch_writes_the_same_pixels_and_report_as_a_local_one(tmp_path, fields_dir, unet_package,
                                                                       diffusion_package):
    from labelfree_app.batch import cluster

    models = resolve_models([str(unet_package.path), str(diffusion_package.path)])
    options = BatchOptions(settings=PredictSettings(samples=2, steps=3, seed=0), target_channel="Hoechst")
    local = _drain(run_batch(plan_batch([fields_dir], models, tmp_path / "local"), options))

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as lc, distributed.Client(lc) as client:
        remote = _drain(cluster.run_batch_dask(plan_batch([fields_dir], models, tmp_path / "dask"), options,
                                               client))
        loaded = client.run(lambda: 0 if cluster._WORKER_ENGINES is None else len(cluster._WORKER_ENGINES._engines))

    assert [(r.key, r.model, r.status) for r in remote.rows] == [(r.key, r.model, r.status) for r in local.rows]
    assert {r.status for r in remote.rows} == {"done"} and len(remote.rows) == 6
    for a, b in zip(local.rows, remote.rows):
        assert a.pearson_r == pytest.approx(b.pearson_r, abs=1e-5)
    assert all(n <= 2 for n in loaded.values()) and sum(loaded.values()) >= 2  # each model once per worker
    assert len(loaded) == 2
    for name in sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.ome.tif")):
        here, there = read_image(tmp_path / "local" / name).data, read_image(tmp_path / "dask" / name).data
        if "test-unet" in name.name:
            assert here.tobytes() == there.tobytes(), name  # U-Net pixels are byte-identical
        else:
            # Diffusion: same seeds and noise; float sums may run in another order with 1 thread per worker.
            np.testing.assert_allclose(here, there, atol=1e-5, rtol=1e-5)
    assert (tmp_path / "dask" / "batch_report.csv").is_file()


def test_an_unreachable_scheduler_is_one_sentence():
    from labelfree_app.batch.cluster import ClusterError, connect

    with pytest.raises(ClusterError, match="Cannot reach the Dask scheduler"):
        connect("tcp://127.0.0.1:9", timeout="1s")
