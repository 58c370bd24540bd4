"""Training on paired images (no Qt): datasets, patch sampling, the training loop, evaluation.

The CLI and the GUI call::

    config = TrainConfig(pairs=pairs_from_csv("pairs.csv"), out_dir=Path("my-model"), ...)
    package_dir = train(config, progress=on_event)          # or: for event in run_training(config)
    report = evaluate(package_dir, pairs, region="512:1024,512:1024")
    print(report.to_table()); report.to_json()
"""

from __future__ import annotations

from labelfree_app.training.config import DiffusionSettings, PairSpec, TrainConfig, UNetSettings
from labelfree_app.training.datasets import (check_pairs_exist, load_pair, pairs_from_csv, pairs_from_dirs,
                                             pairs_from_multichannel)
from labelfree_app.training.evaluate import EvaluationReport, EvaluationRow, evaluate, linear_baseline
from labelfree_app.training.events import (CheckpointSaved, LoadingData, StepDone, TrainEvent, TrainFinished,
                                           TrainStarted, ValidationDone)
from labelfree_app.training.log import read_log
from labelfree_app.training.loop import run_training, train

__all__ = [
    "CheckpointSaved",
    "DiffusionSettings",
    "EvaluationReport",
    "EvaluationRow",
    "LoadingData",
    "PairSpec",
    "StepDone",
    "TrainConfig",
    "TrainEvent",
    "TrainFinished",
    "TrainStarted",
    "UNetSettings",
    "ValidationDone",
    "check_pairs_exist",
    "evaluate",
    "linear_baseline",
    "load_pair",
    "pairs_from_csv",
    "pairs_from_dirs",
    "pairs_from_multichannel",
    "read_log",
    "run_training",
    "train",
]
