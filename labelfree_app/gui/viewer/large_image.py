"""Huge planes in the panels: a block-mean overview first, the visible region at full resolution on zoom.

A plane larger than the backend's ``large_plane_pixels`` is never shown whole: a block-mean
overview (at most ``io.overview.OVERVIEW_MAX_SIDE`` on its longest side) is built band by band on
the thread pool and drawn at full-resolution coordinates, so the axes, the crosshair's values and
the linked panels read full-resolution pixels. When the user zooms in until the visible region
holds at most ``region_max_pixels`` full-resolution pixels (all planes together), that region
(plus a margin, for small pans) is read on the thread pool and drawn over the overview; zooming
out again drops it. The panel title says which of the two the user is looking at.

``OverviewView`` does this for one panel and one volume (the input, or a prediction streamed to a
file); ``InputView`` is the Input panel's, for any image.
"""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import QObject, QTimer, Signal

from labelfree_app.gui.backend import channel_volume, is_large_image, time_point_note
from labelfree_app.gui.viewer.image_panel import ImagePanel
from labelfree_app.gui.viewer.panel_grid import PanelGrid
from labelfree_app.gui.worker import call_in_thread
from labelfree_app.io.overview import build_overview, clamp_region, read_region

# Full-resolution pixels (all planes together) read for the visible region: 32 MiB as float32,
# more than any panel shows on screen.
REGION_MAX_PIXELS = 8 * 1024 * 1024
REGION_MARGIN = 0.25  # read this fraction of the visible size more on every side
SETTLE_MS = 150  # wait for the zoom or pan to settle before reading
KEPT_OVERVIEWS = 3  # overviews kept per view for going back to a file or channel at once


class OverviewView(QObject):
    """One panel showing a huge lazy (Z, Y, X) volume as an overview plus a full-resolution region.

    ``draw(overview)`` puts an ``io.overview.Overview`` into the panel (the caller decides what else
    changes with it); ``label`` starts the panel's title. ``regionLoaded((y0, y1, x0, x1))`` when a
    full-resolution region is drawn, ``overviewShown()`` when an overview is, ``message(text)`` for
    the status bar.
    """

    regionLoaded = Signal(tuple)
    overviewShown = Signal()
    message = Signal(str)
    building = Signal(int, int, int)  # generation, bands read, bands in all (from the worker thread)

    def __init__(self, panels: PanelGrid, panel: ImagePanel, label: str, draw: Callable[[Any], None], *,
                 region_max_pixels: int = REGION_MAX_PIXELS, settle_ms: int = SETTLE_MS) -> None:
        super().__init__()
        self.panels, self.panel, self.label, self._draw = panels, panel, label, draw
        self.region_max_pixels = int(region_max_pixels)
        self.volume: Any = None  # the shown huge (Z, Y, X) volume, lazy; None when none is shown
        self.overview: Any = None  # its io.overview.Overview once built
        self.loaded: tuple[int, int, int, int] | None = None  # the region drawn at full resolution
        self._generation = 0  # bumped whenever what is shown changes: late reads are dropped
        self._reading = False
        self._pending = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(int(settle_ms))
        self._timer.timeout.connect(self.update_region)
        self.panel.view_box.sigRangeChanged.connect(lambda *_: self._timer.start() if self.overview else None)
        self._waiting = ""
        self.building.connect(self._on_building)
        self._kept: list[tuple[dict[Any, Any], Any]] = []  # (cache, key) of the overviews kept, oldest first

    def show_volume(self, open_volume: Callable[[], Any], cache: dict[Any, Any], key: Any, waiting: str) -> None:
        """Show the volume ``open_volume()`` gives (called on the thread pool) as an overview built
        there too; both are kept in ``cache[key]`` so showing it again is immediate. ``waiting`` is
        the panel's note meanwhile."""
        self.stop()
        if key in cache:
            self.volume, overview = cache[key]
            self._keep(cache, key)
            self._show_overview(overview)
            return
        self.panel.clear(waiting)
        self.panel.set_title(f"{self.label} — reading an overview")
        self._waiting = waiting
        generation = self._generation

        def build() -> tuple[Any, Any]:
            volume = open_volume()
            return volume, build_overview(volume, should_stop=lambda: generation != self._generation,
                                          progress=lambda done, total: self.building.emit(generation, done, total))

        def built(found: tuple[Any, Any]) -> None:
            if generation == self._generation:
                cache[key] = found
                self._keep(cache, key)
                self.volume = found[0]
                self._show_overview(found[1])

        def failed(exc: BaseException) -> None:
            if generation == self._generation:
                self.panel.clear("The overview could not be read")
                self.message.emit(str(exc))

        call_in_thread(build, built, failed, owner=self.panel)

    def _keep(self, cache: dict[Any, Any], key: Any) -> None:
        """Mark ``cache[key]`` as just used; the least recently used beyond ``KEPT_OVERVIEWS`` are dropped
        (each holds up to a 4096² float32 overview: 64 MiB)."""
        self._kept = [(c, k) for c, k in self._kept if not (c is cache and k == key)] + [(cache, key)]
        while len(self._kept) > KEPT_OVERVIEWS:
            old_cache, old_key = self._kept.pop(0)
            old_cache.pop(old_key, None)

    def _on_building(self, generation: int, done: int, total: int) -> None:
        """The panel's note counts the overview's progress while it is still the one wanted."""
        if generation == self._generation and self.overview is None and total:
            self.panel.set_message(f"{self._waiting} {100 * done // total} %")

    def stop(self) -> None:
        """Forget the shown volume: reads in flight are dropped when they come back."""
        self._generation += 1
        self._timer.stop()
        self.volume = self.overview = self.loaded = None
        self._pending = False

    def _show_overview(self, overview: Any) -> None:
        self.overview = overview
        self._draw(overview)
        self._title()
        self.overviewShown.emit()
        self._timer.start()

    def _title(self) -> None:
        # Short enough for a quarter of the window; the window title and the file list name the file.
        if self.overview.factor == 1:  # a small file shown this way (a watch's result): every pixel is there
            self.panel.set_title(self.label)
        elif self.loaded is not None:
            self.panel.set_title(f"{self.label} — full resolution")
        else:
            self.panel.set_title(f"{self.label} — overview 1:{self.overview.factor}, zoom in for full res.")

    # --- the visible region ---------------------------------------------------------------
    def update_region(self) -> None:
        """Read the visible region at full resolution if it fits the budget, else show the overview."""
        if self.overview is None or self.volume is None or self.overview.factor == 1:  # 1:1 is full resolution
            return
        depth, height, width = self.overview.full_shape
        (x_lo, x_hi), (y_lo, y_hi) = self.panel.view_box.viewRange()
        top, bottom, left, right = clamp_region((height, width), y_lo, y_hi, x_lo, x_hi)
        pixels = depth * (bottom - top) * (right - left)
        if pixels == 0 or pixels > self.region_max_pixels:
            if self.loaded is not None or self._reading:
                self._generation += 1  # a read in flight is no longer wanted
                self.loaded = None
                self.panel.set_detail(None)
                self._title()
            return
        if self.loaded is not None and _contains(self.loaded, (top, bottom, left, right)):
            return
        if self._reading:
            self._pending = True
            return
        grow_y, grow_x = int((bottom - top) * REGION_MARGIN), int((right - left) * REGION_MARGIN)
        grown = clamp_region((height, width), top - grow_y, bottom + grow_y, left - grow_x, right + grow_x)
        wanted = grown if depth * (grown[1] - grown[0]) * (grown[3] - grown[2]) <= self.region_max_pixels else (
            top, bottom, left, right)
        self._read(wanted)

    def _read(self, bounds: tuple[int, int, int, int]) -> None:
        self._reading = True
        generation, volume = self._generation, self.volume

        def done(region: Any) -> None:
            self._reading = False
            if generation == self._generation:
                self.loaded = bounds
                self.panel.set_detail(region, bounds[0], bounds[2], z=self.panels.z,
                                      max_projection=self.panels.max_projection)
                self._title()
                self.regionLoaded.emit(bounds)
            self._read_pending()

        def failed(exc: BaseException) -> None:
            self._reading = False
            if generation == self._generation:
                self.message.emit(str(exc))
            self._read_pending()

        call_in_thread(lambda: read_region(volume, *bounds), done, failed, owner=self.panel)

    def _read_pending(self) -> None:
        if self._pending or self.overview is not None:
            self._pending = False
            self.update_region()


class InputView(OverviewView):
    """Shows a record's input channel in the Input panel; a huge one as overview + full-resolution region."""

    def __init__(self, panels: PanelGrid, backend: Any, *, region_max_pixels: int = REGION_MAX_PIXELS,
                 settle_ms: int = SETTLE_MS) -> None:
        super().__init__(panels, panels.input_panel, "Input", self._draw_input, region_max_pixels=region_max_pixels,
                         settle_ms=settle_ms)
        self.backend = backend  # its ``large_plane_pixels`` says which images are huge
        self._name = self._time_note = ""

    def is_large(self, image: Any) -> bool:
        return is_large_image(image, self.backend.large_plane_pixels)

    def show_channel(self, record: Any) -> None:
        """Another channel of the shown record: its results stay (an ordinary image keeps its view too)."""
        if self.overview is None and not self.is_large(record.image):
            self.panel.set_volume(channel_volume(record.image, record.channel), self.panels.z,
                                  self.panels.max_projection)
        else:
            self.show(record)

    def show(self, record: Any) -> None:
        """Show ``record``'s chosen channel: whole, or as an overview built in the background (once per
        channel; kept in ``record.extra``). The result panels are the runner's to fill."""
        volume = channel_volume(record.image, record.channel)
        count = int(getattr(record.image, "n_timepoints", 1))
        note = time_point_note(record.image, record.name, slider=not self.is_large(record.image))
        if note:
            self.message.emit(note)
        if not self.is_large(record.image):
            self.stop()
            self.panels.set_input(volume)
            self.panel.set_title(f"Input — {record.name}" + (f" (time point 1 of {count})" if count > 1 else ""))
            return
        self._name, self._time_note = record.name, note
        depth, height, width = (int(n) for n in volume.shape[-3:])
        self.show_volume(lambda: volume, record.extra, ("overview", record.channel),
                         f"Building an overview of this {width}×{height} image…")

    def _draw_input(self, overview: Any) -> None:
        depth, height, width = overview.full_shape
        self.panels.set_input(overview.pixels, scale=overview.factor, full_size=(height, width), keep_results=True)
        self.message.emit(f"{self._name} is {width}×{height} pixels: shown as an overview (1:{overview.factor}); "
                          "zoom in to see full resolution." + (f" {self._time_note}" if self._time_note else ""))


def _contains(outer: tuple[int, int, int, int], inner: tuple[int, int, int, int]) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1] and outer[2] <= inner[2] and inner[3] <= outer[3]
