"""Shows how far the shown prediction can be trusted: the note, the panel's title and frame, the map.

``TrustDisplay`` listens to the runner (``resultShown``) and the panels (``resultsCleared``); for a
result with a ``TrustEstimate`` (a huge image's ``SavedResult`` too) it fills the note under the
Prediction panel, adds the level to the panel's title in the level's colour and, unless the level
is good, frames the panel in it. The trust map toggle (``TrustMapView``) gets the result's map (a
``SavedResult`` has none: the note's tooltip says so). Improve for my images… is a callback.
"""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtWidgets import QWidget

from labelfree_app.gui.files.file_list import OpenFile
from labelfree_app.gui.predict.runner import PredictionRunner
from labelfree_app.gui.predict.trust_map import LEGEND, STREAMED_TIP, TrustMapView
from labelfree_app.gui.predict.trust_note import TrustNote
from labelfree_app.gui.streamed_run import SavedResult
from labelfree_app.gui.trust_levels import level_colour, trust_of
from labelfree_app.gui.viewer.panel_grid import PanelGrid

IMPROVED_FROM = "improve_from"  # record.extra key: the model and estimate that Improve set out to beat


def before_line(record: OpenFile) -> str:
    """'Before fine-tuning: lf-nuclei-2d, expected r 0.31 (…), not trustworthy.' for a result of another
    model than the one Improve for my images… started from ('' otherwise)."""
    before = record.extra.get(IMPROVED_FROM)
    result = record.result
    if not before or result is None or result.model_id == before["model_id"]:
        return ""
    return f"Before fine-tuning: {before['model_id']}, {before['summary']}."


class TrustDisplay:
    """The trust note, the title and frame of the Prediction panel, and the trust map toggle.

    ``model_target(model_id)`` names a model's stain ('' if unknown); ``improve()`` runs Improve for
    my images… for the shown file.
    """

    def __init__(self, panels: PanelGrid, runner: PredictionRunner, parent: QWidget, model_target: Callable[[str], str],
                 improve: Callable[[], Any]) -> None:
        self.panels = panels
        self.model_target = model_target
        self.note = TrustNote()
        self.note.improveRequested.connect(improve)
        panels.attach_under_results(self.note)
        self.map_view = TrustMapView(panels, parent, on_shown=lambda on: self.note.set_legend(LEGEND if on else ""))
        runner.resultShown.connect(self.show_record)
        panels.resultsCleared.connect(self.note.clear)

    def show_record(self, record: OpenFile | None) -> None:
        """Show what is known about the trust of ``record``'s result (nothing without a result)."""
        result = record.result if record is not None else None
        trust = trust_of(result)
        if result is None:
            self.note.clear()
            self.panels.set_prediction_note("")
        elif trust is None:
            self.note.show_not_estimated()
            self.panels.set_prediction_note("")
        else:
            self.note.show_trust(trust, target=self.model_target(result.model_id), before=before_line(record),
                                 tip=STREAMED_TIP if isinstance(result, SavedResult) else "")
            # A good result gets green words; the others a frame too, so they never look confident.
            self.panels.set_prediction_note(trust.level, level_colour(trust.level), framed=trust.level != "good")
        self.map_view.set_map(getattr(result, "trust_map", None) if result is not None else None)
