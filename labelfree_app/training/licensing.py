"""The license and attribution a trained model carries: its training data's, and, for a fine-tuned
model, everything its parent's card requires too.

Fine-tuned weights are derived from the parent's weights, so the parent's terms (a copyleft license,
a noncommercial note, its data's attributions) pass on to the new model; the new training data's
terms are added. The license field keeps one SPDX id first (the stronger of the two: copyleft before
permissive), as bioimage.io export reads it, and the notes of both after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

UNSPECIFIED = "unspecified"
# Licenses whose terms reach derived works, strongest first; any other SPDX id counts as permissive.
_COPYLEFT = ("AGPL", "GPL", "LGPL", "CC-BY-NC-SA", "CC-BY-NC-ND", "CC-BY-NC", "CC-BY-SA", "CC-BY-ND", "EUPL", "MPL")


@dataclass(frozen=True)
class LicenseTerms:
    """A model card's ``license`` and ``attribution`` fields."""

    license: str
    attribution: str


def _split(text: str) -> tuple[str, str]:
    """(head, note) of "GPL-3.0-only; noncommercial research use only"; an empty text is unspecified."""
    head, _, note = (text or "").strip().partition(";")
    head = head.strip()
    return (head if head and head.casefold() != UNSPECIFIED else ""), note.strip()


def _strength(head: str) -> int:
    """Higher for terms that bind a derived model more: copyleft > permissive > unspecified."""
    if not head:
        return 0
    upper = head.upper()
    for rank, prefix in enumerate(_COPYLEFT):
        if upper.startswith(prefix):
            return len(_COPYLEFT) + 1 - rank
    return 1


def derived_terms(data_license: str, data_attribution: str, parent: Mapping[str, Any] | None) -> LicenseTerms:
    """The terms of a model trained on data under ``data_license`` (its ``data_attribution``), fine-tuned
    from ``parent`` (the card's ``init_from`` record with the parent's ``license`` and ``attribution``),
    or trained from scratch when ``parent`` is None."""
    data_head, data_note = _split(data_license)
    attribution = (data_attribution or "").strip()
    if not parent:
        return LicenseTerms("; ".join(p for p in (data_head or UNSPECIFIED, data_note) if p), attribution)
    parent_head, parent_note = _split(str(parent.get("license") or ""))
    head = parent_head if _strength(parent_head) >= _strength(data_head) else data_head
    name = " ".join(str(parent.get(key) or "") for key in ("id", "version")).strip()
    origin = (f"fine-tuned from {name} ({parent_head or 'license not given'}) on data "
              + (f"under {data_head}" if data_head else "whose license was not given"))
    notes = [n for n in (parent_note, data_note) if n]
    license_text = "; ".join([head or UNSPECIFIED, *dict.fromkeys(notes), origin])
    parent_attribution = str(parent.get("attribution") or "").strip()
    own = attribution or "Fine-tuning data: its source and license were not given."
    own = own if own.endswith(".") else own + "."
    inherited = f"Fine-tuned from {name}" + (f", whose attribution reads: {parent_attribution}" if parent_attribution
                                             else " (its card gives no attribution).")
    return LicenseTerms(license_text, f"{own} {inherited}".strip())
