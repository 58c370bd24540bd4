"""Play/pause and a step slider for replaying the denoising frames."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSlider, QWidget

REPLAY_INTERVAL_MS = 100  # 10 frames per second


class FramePlayer(QWidget):
    """Steps through ``count`` frames; ``frameChanged(index)`` tells the panel which one to show."""

    frameChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Replay the denoising steps")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("Denoising step")
        self.slider.setMinimumWidth(120)  # never just its handle (issue 28 item 17)
        self.label = QLabel("")
        self.label.setMinimumWidth(90)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.play_button)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.label)

        self._timer = QTimer(self)
        self._timer.setInterval(REPLAY_INTERVAL_MS)
        self._timer.timeout.connect(self._advance)
        self.play_button.toggled.connect(self._on_play_toggled)
        self.slider.valueChanged.connect(self._on_slider)
        self._step_labels: list[str] = []
        self.set_frame_count(0)

    def set_frame_count(self, count: int, step_labels: list[str] | None = None) -> None:
        """Reset to ``count`` frames (0 hides the controls' effect and stops playback)."""
        self.pause()
        self._step_labels = list(step_labels or [])
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(count - 1, 0))
        self.slider.setValue(max(count - 1, 0))
        self.slider.blockSignals(False)
        self.setEnabled(count > 1)
        self._update_label()

    @property
    def count(self) -> int:
        return self.slider.maximum() + 1 if self.isEnabled() else 0

    @property
    def index(self) -> int:
        return self.slider.value()

    def is_playing(self) -> bool:
        return self._timer.isActive()

    def play(self) -> None:
        self.play_button.setChecked(True)

    def pause(self) -> None:
        self.play_button.setChecked(False)

    def show_frame(self, index: int) -> None:
        self.slider.setValue(index)

    def _on_play_toggled(self, playing: bool) -> None:
        self.play_button.setText("Pause" if playing else "Play")
        if playing:
            if self.slider.value() >= self.slider.maximum():
                self.slider.setValue(0)
            self._timer.start()
        else:
            self._timer.stop()

    def _advance(self) -> None:
        if self.slider.value() >= self.slider.maximum():
            self.pause()
            return
        self.slider.setValue(self.slider.value() + 1)

    def _on_slider(self, value: int) -> None:
        self._update_label()
        self.frameChanged.emit(value)

    def _update_label(self) -> None:
        value = self.slider.value()
        if not self.isEnabled():
            self.label.setText("")
        elif value < len(self._step_labels):
            self.label.setText(self._step_labels[value])
        else:
            self.label.setText(f"frame {value + 1}/{self.slider.maximum() + 1}")
