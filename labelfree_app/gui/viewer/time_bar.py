"""The T slider: which time point every panel shows, with play/pause at a chosen frame rate."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSlider, QSpinBox, QWidget

DEFAULT_FPS = 5
MAX_FPS = 30


class TimeBar(QWidget):
    """``timeChanged(t)`` whenever the shown time point changes (slider, playback or ``set_time``).

    Hidden for images with fewer than two time points. Playback loops until paused; it moves on only
    to a time point for which ``ready(t)`` is true (the frames are read), else it waits a tick."""

    timeChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("Time point shown in every panel")
        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Play the time series (loops)")
        self.fps_spin = QSpinBox()
        self.fps_spin.setRange(1, MAX_FPS)
        self.fps_spin.setValue(DEFAULT_FPS)
        self.fps_spin.setSuffix(" fps")
        self.fps_spin.setToolTip("Frames per second while playing")
        self.label = QLabel("")
        self.label.setMinimumWidth(80)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("T"))
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.label)
        layout.addWidget(self.play_button)
        layout.addWidget(self.fps_spin)
        self.ready: Callable[[int], bool] | None = None
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._advance)
        self.play_button.toggled.connect(self._on_play_toggled)
        self.fps_spin.valueChanged.connect(lambda _: self._set_interval())
        self.slider.valueChanged.connect(self._on_slider)
        self._set_interval()
        self.set_count(1)

    @property
    def count(self) -> int:
        return self.slider.maximum() + 1

    @property
    def time(self) -> int:
        return self.slider.value()

    def set_count(self, count: int, t: int = 0) -> None:
        """``count`` time points, showing ``t`` (no signal); hidden and paused below two."""
        self.pause()
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(int(count) - 1, 0))
        self.slider.setValue(min(max(int(t), 0), max(int(count) - 1, 0)))
        self.slider.blockSignals(False)
        self.setVisible(count > 1)
        self._update_label()

    def set_time(self, t: int) -> None:
        self.slider.setValue(int(t))

    def set_fps(self, fps: int) -> None:
        self.fps_spin.setValue(int(fps))

    def is_playing(self) -> bool:
        return self._timer.isActive()

    def play(self) -> None:
        self.play_button.setChecked(True)

    def pause(self) -> None:
        self.play_button.setChecked(False)

    def _set_interval(self) -> None:
        self._timer.setInterval(max(1, round(1000 / self.fps_spin.value())))

    def _on_play_toggled(self, playing: bool) -> None:
        self.play_button.setText("Pause" if playing else "Play")
        if playing and self.count > 1:
            self._timer.start()
        else:
            self._timer.stop()

    def _advance(self) -> None:
        following = (self.slider.value() + 1) % self.count
        if self.ready is None or self.ready(following):
            self.slider.setValue(following)

    def _on_slider(self, value: int) -> None:
        self._update_label()
        self.timeChanged.emit(int(value))

    def _update_label(self) -> None:
        self.label.setText(f"t {self.slider.value() + 1}/{self.count}")
