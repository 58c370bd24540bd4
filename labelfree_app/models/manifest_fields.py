"""Checked reads of a manifest's fields: each wrong type, range or choice is a ``ManifestError``
naming the dotted field and the file; the manifest reader in ``manifest.py`` builds on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from labelfree_app.errors import ManifestError

MISSING = object()  # "no default": the field is required


class FieldReader:
    """Typed reads of one manifest's fields; ``source`` names the file in every message."""

    def __init__(self, source: str | Path | None) -> None:
        self.where = f"the model manifest {source}" if source is not None else "the model manifest"
        self.source = source

    def fail(self, name: str, problem: str, advice: str = "fix the manifest or re-export the model") -> ManifestError:
        return ManifestError(
            f"Field '{name}' in {self.where} {problem}; {advice}.",
            field=name,
            path=self.source,
        )

    def get(self, data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], default: Any = MISSING) -> Any:
        key = name.rsplit(".", 1)[-1]
        if key not in data or (data[key] is None and default is not MISSING):
            if default is MISSING:
                raise ManifestError(
                    f"{self.where[0].upper()}{self.where[1:]} is missing the required field '{name}'; "
                    "add it or re-export the model.",
                    field=name,
                    path=self.source,
                )
            return default
        value = data[key]
        bad_bool = isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))
        if not isinstance(value, kind) or bad_bool:
            names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
            raise self.fail(name, f"must be of type {names}, not {type(value).__name__} ({value!r:.60})")
        return value

    def section(self, data: Mapping[str, Any], name: str, optional: bool = False) -> Mapping[str, Any] | None:
        return self.get(data, name, dict, None) if optional else self.get(data, name, dict)

    def int_at_least(self, data: Mapping[str, Any], name: str, low: int, default: Any = MISSING,
                     high: int | None = None) -> int:
        value = self.get(data, name, int, default)
        if value < low or (high is not None and value > high):
            limit = f"at least {low}" if high is None else f"between {low} and {high}"
            raise self.fail(name, f"must be {limit}, not {value}")
        return value

    def choice(self, data: Mapping[str, Any], name: str, options: tuple[str, ...], default: Any = MISSING) -> str:
        value = self.get(data, name, str, default)
        if value not in options:
            raise self.fail(name, f"is '{value}' but must be one of: {', '.join(options)}")
        return value

    def int_list(
        self, data: Mapping[str, Any], name: str, length: int, low: int, default: Any = MISSING
    ) -> tuple[int, ...]:
        value = self.get(data, name, list, default)
        if len(value) != length or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in value):
            raise self.fail(name, f"must be a list of {length} integers >= {low} (one per spatial axis), not {value!r}")
        return tuple(value)

    def names(self, data: Mapping[str, Any], name: str, count: int) -> tuple[str, ...]:
        value = self.get(data, name, list, [])
        if value and (len(value) != count or not all(isinstance(v, str) for v in value)):
            raise self.fail(name, f"must list {count} channel names, not {value!r}")
        return tuple(value)
