"""The training log: one CSV row per logged step (step, seconds, train_loss, val_r, lr).

A ``train_loss`` row is the mean loss since the previous one; a ``val_r`` row is written at each
validation. A resumed run first drops rows past its checkpoint, so the curve continues cleanly.
"""

from __future__ import annotations

import csv
from pathlib import Path

LOG_COLUMNS = ("step", "seconds", "train_loss", "val_r", "lr")


def append_log(path: Path, step: int, seconds: float, loss: float | None, val_r: float | None, lr: float) -> None:
    """Add one row (a header first if the file is new); empty cells for what this row lacks."""
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(LOG_COLUMNS)
        writer.writerow([step, f"{seconds:.2f}", "" if loss is None else f"{loss:.6g}",
                         "" if val_r is None else f"{val_r:.5f}", f"{lr:.6g}"])


def truncate_log(path: Path, step: int) -> None:
    """Drop log rows past ``step`` (written after the checkpoint a resume starts from)."""
    if not path.exists():
        return
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) <= step] if rows else []
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(kept)


def read_log(path: Path) -> list[dict[str, str]]:
    """The rows of a training ``log.csv`` as dicts (for plots in the GUI and for tests)."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
