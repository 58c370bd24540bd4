"""``batch_report.csv`` and ``batch_report.json``: one row per input × model, written atomically."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from labelfree_app import __version__
from labelfree_app.errors import LabelFreeError
from labelfree_app.io import atomic_write_bytes

STATUSES = ("done", "skipped", "failed", "cancelled", "not run")
CSV_COLUMNS = ("input", "model", "status", "seconds", "outputs", "error", "pearson_r", "note", "device",
               "expected_r", "expected_r_low", "expected_r_high", "trust")
TRUST_FIELDS = ("expected_r", "expected_r_low", "expected_r_high", "trust", "trust_reason", "trust_advice")


@dataclass
class BatchRow:
    """What happened to one input × model."""

    index: int
    input: str
    key: str
    model: str
    status: str = "not run"
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    error: str = ""
    pearson_r: float | None = None
    note: str = ""
    device: str = ""
    # The reliability estimate (``core.trust.TrustEstimate``): the Pearson r with a real stain the
    # prediction is likely to reach, its interval, the level ("good", "uncertain", "not trustworthy")
    # and one sentence why and one what to do; None / "" when not estimated.
    expected_r: float | None = None
    expected_r_low: float | None = None
    expected_r_high: float | None = None
    trust: str = ""
    trust_reason: str = ""
    trust_advice: str = ""
    # What each output looked like when written or verified ({path relative to the output folder:
    # {"bytes", "shape", "dtype", "pages"}}), so the next resume can tell a replaced or cut file.
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("done", "skipped")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def trust_estimate(self) -> Any:
        """The recorded estimate as a ``core.trust.TrustEstimate`` (without its features), or None."""
        if self.expected_r is None or not self.trust:
            return None
        from labelfree_app.core.trust import TrustEstimate

        low = self.expected_r if self.expected_r_low is None else self.expected_r_low
        high = self.expected_r if self.expected_r_high is None else self.expected_r_high
        return TrustEstimate(self.expected_r, low, high, self.trust, self.trust_reason, self.trust_advice)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BatchRow":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def summarize(rows: Iterable[BatchRow]) -> dict[str, int]:
    counts = {status: 0 for status in STATUSES}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts


def _number(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.4f}"


def _csv_text(rows: list[BatchRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([row.input, row.model, row.status, f"{row.seconds:.3f}", ";".join(row.outputs),
                         row.error, _number(row.pearson_r), row.note, row.device, _number(row.expected_r),
                         _number(row.expected_r_low), _number(row.expected_r_high), row.trust])
    return buffer.getvalue()


def write_report(rows: Iterable[BatchRow], out_dir: Path, name: str, *,
                 extra: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``<name>.csv`` and ``<name>.json`` in ``out_dir`` (each atomically); returns both paths."""
    ordered = sorted(rows, key=lambda r: r.index)
    document = {
        "software": "LabelFree",
        "app_version": __version__,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "summary": summarize(ordered),
        **(extra or {}),
        "rows": [row.to_dict() for row in ordered],
    }
    csv_path = atomic_write_bytes(out_dir / f"{name}.csv", _csv_text(ordered).encode("utf-8"))
    json_path = atomic_write_bytes(out_dir / f"{name}.json",
                                   json.dumps(document, indent=2, default=str).encode("utf-8"))
    return csv_path, json_path


def read_report(path: Path) -> list[BatchRow]:
    """The rows of a ``batch_report*.json``; [] when it does not exist or cannot be read."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        return [BatchRow.from_dict(item) for item in document.get("rows", [])]
    except (OSError, ValueError, TypeError):
        return []


def _finished(previous: list[BatchRow]) -> dict[tuple[str, str], BatchRow]:
    return {(r.key, r.model): r for r in previous if r.status in ("done", "skipped")}


def carry_forward(rows: list[BatchRow], previous: list[BatchRow]) -> None:
    """Skipped rows keep the Pearson r, device and trust estimate of when they were done (over any number
    of resumes)."""
    finished = _finished(previous)
    for row in rows:
        before = finished.get((row.key, row.model))
        if row.status == "skipped" and before is not None:
            row.pearson_r = before.pearson_r if row.pearson_r is None else row.pearson_r
            row.device = row.device or before.device
            if row.expected_r is None:
                for name in TRUST_FIELDS:
                    setattr(row, name, getattr(before, name))


def recorded_files(previous: list[BatchRow]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """What the previous report recorded about each finished job's outputs, by (input key, model)."""
    return {key: row.files for key, row in _finished(previous).items() if row.files}


def _damaged(part: Path, why: str) -> LabelFreeError:
    return LabelFreeError(f"The shard report {part} is damaged ({why}); run that shard again (the same batch "
                          "command with its --shard K/N) and merge again.", path=part)


def read_shard_report(part: Path) -> tuple[list[BatchRow], int | None]:
    """The rows of one shard report and the batch's input count it implies (None when it does not say),
    refused with a sentence naming the shard when it is cut, edited or holds fewer rows than it counts."""
    try:
        document = json.loads(Path(part).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise _damaged(part, f"it cannot be read: {getattr(exc, 'strerror', None) or exc}") from exc
    except ValueError as exc:
        raise _damaged(part, "it is not complete JSON, as when a write was cut short") from exc
    items = document.get("rows") if isinstance(document, dict) else None
    summary = document.get("summary") if isinstance(document, dict) else None
    if not isinstance(items, list) or not isinstance(summary, dict):
        raise _damaged(part, "it has no rows or no summary")
    names = {f.name for f in fields(BatchRow)}
    rows = []
    for item in items:
        if not (isinstance(item, dict) and all(isinstance(item.get(k), str) for k in ("input", "key", "model"))
                and item.get("status") in STATUSES and isinstance(item.get("index", 0), int)):
            raise _damaged(part, "a row lacks its input, model or status")
        try:
            rows.append(BatchRow(**{k: v for k, v in item.items() if k in names}))
        except TypeError as exc:
            raise _damaged(part, "a row has unknown fields") from exc
    counted = summary
    numbers = [v for v in counted.values() if isinstance(v, int) and not isinstance(v, bool)]
    if len(numbers) != len(counted) or sum(numbers) != len(rows) or summarize(rows) != {
            status: counted.get(status, 0) for status in summarize(rows)}:
        raise _damaged(part, f"it holds {len(rows)} row(s) but its summary counts {sum(numbers)}")
    others = document.get("inputs_in_other_shards")
    models = document.get("models")
    if isinstance(others, int) and isinstance(models, list) and models:
        return rows, len({row.key for row in rows}) + others
    return rows, None


def merge_shard_reports(out_dir: Path, name: str = "batch_report") -> tuple[Path, Path, dict[str, int]]:
    """Combine ``<name>.shard-K-of-N.json`` files into one report (rows ordered by input and model)."""
    parts = sorted(Path(out_dir).glob(f"{name}.shard-*-of-*.json"))
    if not parts:
        raise LabelFreeError(f"No shard reports ({name}.shard-K-of-N.json) are in {out_dir}; "
                             "run the shards first.", path=out_dir)
    totals = {p.name.rsplit("-of-", 1)[1].split(".")[0] for p in parts}
    if len(totals) != 1:
        raise LabelFreeError(f"The shard reports in {out_dir} come from different shard counts "
                             f"({', '.join(sorted(totals))}); remove the stale ones.", path=out_dir)
    expected = int(totals.pop())
    if len(parts) != expected:
        raise LabelFreeError(f"{len(parts)} of {expected} shard reports are in {out_dir}; "
                             "wait for the missing shards or run them again.", path=out_dir)
    read = [read_shard_report(part) for part in parts]
    totals_of_inputs = {total for _, total in read if total is not None}
    if len(totals_of_inputs) > 1:
        raise LabelFreeError(f"The shard reports in {out_dir} disagree on how many inputs the batch has "
                             f"({', '.join(str(n) for n in sorted(totals_of_inputs))}); a shard report is stale or "
                             "damaged, so run its shard again and merge again.", path=out_dir)
    rows = [row for part_rows, _ in read for row in part_rows]
    rows.sort(key=lambda r: (r.key, r.model))
    for index, row in enumerate(rows):
        row.index = index
    csv_path, json_path = write_report(rows, Path(out_dir), name, extra={"merged_from": [p.name for p in parts]})
    return csv_path, json_path, summarize(rows)
