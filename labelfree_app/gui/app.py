"""Starting the desktop app: QApplication, logging to a file, the icon, the main window.

Nothing here imports torch: the window appears first and the models are listed in the background.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Sequence


from labelfree_app import __version__, paths
from labelfree_app.logfile import LOG_FILE_NAME, log_dir, setup_logging  # noqa: F401  (re-exported)

EXPOSE_WAIT_LIMIT_S = 10.0
_log = logging.getLogger("labelfree_app.gui")


def app_icon():  # -> QIcon
    """A drawn icon: a grey bright-field square turning into green fluorescence."""
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QColor, QFont, QIcon, QLinearGradient, QPainter, QPixmap

    icon = QIcon()
    for size in (16, 32, 64, 128, 256):
        pixmap = QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        gradient = QLinearGradient(0, 0, size, size)
        gradient.setColorAt(0.0, QColor(120, 120, 120))
        gradient.setColorAt(0.55, QColor(40, 40, 40))
        gradient.setColorAt(1.0, QColor(40, 220, 90))
        painter.setBrush(gradient)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawRoundedRect(QRectF(0, 0, size, size), size * 0.18, size * 0.18)
        painter.setPen(QColor(255, 255, 255))
        font = QFont()
        font.setBold(True)
        font.setPixelSize(max(int(size * 0.42), 6))
        painter.setFont(font)
        painter.drawText(QRectF(0, 0, size, size), Qt.AlignmentFlag.AlignCenter, "LF")
        painter.end()
        icon.addPixmap(pixmap)
    return icon


def show_splash(app):  # -> QSplashScreen | None
    """A splash with the icon and version while the window is built (none on the offscreen and
    minimal platforms, where nobody would see it)."""
    if app.platformName() in ("offscreen", "minimal"):
        return None
    from PySide6.QtCore import QSize, Qt
    from PySide6.QtGui import QColor, QPainter, QPixmap
    from PySide6.QtWidgets import QSplashScreen

    pixmap = QPixmap(360, 200)
    pixmap.fill(QColor(40, 40, 40))
    painter = QPainter(pixmap)
    painter.drawPixmap(24, 36, app_icon().pixmap(QSize(128, 128)))
    painter.setPen(QColor(230, 230, 230))
    painter.drawText(170, 90, "LabelFree")
    painter.drawText(170, 115, f"version {__version__}")
    painter.drawText(170, 140, "starting…")
    painter.end()
    splash = QSplashScreen(pixmap, Qt.WindowType.WindowStaysOnTopHint)
    splash.show()
    app.processEvents()
    return splash


def install_excepthook(window_getter, log_file: Path) -> None:
    """Unexpected exceptions in slots are logged in full and shown as a dialog naming the log."""

    def hook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        import shiboken6

        from labelfree_app.errors import LabelFreeError
        from labelfree_app.gui.dialogs import unexpected_error_box

        window = window_getter()
        if window is not None and not shiboken6.isValid(window):
            window = None  # the app is closing
        if isinstance(error, LabelFreeError):
            if window is not None:
                window.report_error(str(error))
            else:
                _log.warning("%s", error)
            return
        _log.error("unexpected error", exc_info=(kind, error, trace))
        if window is not None:
            window.dialogs.append(unexpected_error_box(window, f"{kind.__name__}: {error}", log_file))

    sys.excepthook = hook


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="labelfree-gui", description="LabelFree desktop app")
    parser.add_argument("files", nargs="*", type=Path, help="images or folders to open")
    parser.add_argument("--version", action="version", version=f"LabelFree {__version__}")
    parser.add_argument(
        "--startup-time", action="store_true", help="print the seconds from launch to a visible window, then quit"
    )
    parser.add_argument("--screenshot", type=Path, help="predict the first file, save the window as this PNG, quit")
    parser.add_argument("--model", default="", help="model id for --screenshot (default: the target's default)")
    parser.add_argument("--samples", type=int, help="diffusion samples for --screenshot")
    parser.add_argument("--steps", type=int, help="diffusion steps for --screenshot")
    parser.add_argument("--size", default="1600x900", help="window size for --screenshot, e.g. 1600x900")
    return parser.parse_args(list(argv))


def process_age_s() -> float:
    """Seconds since this process started (interpreter start included)."""
    import psutil

    return time.time() - psutil.Process().create_time()


def _sweep_stale_runs() -> None:
    """Remove huge-image predictions a crashed or killed window left in the cache (off the GUI thread)."""
    from labelfree_app.gui.streamed_run import sweep_stale_runs

    try:
        removed = sweep_stale_runs()
    except OSError as exc:  # a cache the user cannot list: nothing to clean, nothing to tell
        logging.getLogger(__name__).info("could not clean the prediction cache: %s", exc)
        return
    if removed:
        logging.getLogger(__name__).info("removed %d prediction folder(s) left by a window that did not close: %s",
                                         len(removed), ", ".join(str(p) for p in removed))


def main(argv: Sequence[str] | None = None) -> int:
    """Start the GUI; returns the exit code."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    log_file = setup_logging()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName(paths.APP_NAME)
    app.setOrganizationName(paths.APP_AUTHOR)
    app.setApplicationVersion(__version__)
    app.setWindowIcon(app_icon())
    splash = show_splash(app)  # the window's imports take a moment on a cold (frozen) start

    import pyqtgraph as pg

    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.gui.settings import GuiSettings

    pg.setConfigOptions(imageAxisOrder="row-major")
    window = MainWindow(CoreBackend(), GuiSettings(), log_file=log_file)
    install_excepthook(lambda: window, log_file)
    torch_before_show = "torch" in sys.modules
    window.show()
    if splash is not None:
        splash.finish(window)
    threading.Thread(target=_sweep_stale_runs, name="sweep-stale-runs", daemon=True).start()
    if args.files:  # the same door as a drop; --screenshot has nobody to ask, so a plane series is a stack
        window.open_inputs(args.files, ask=args.screenshot is None)
    if args.startup_time:
        poll = QTimer()
        poll.setInterval(5)

        def report() -> None:
            handle = window.windowHandle()
            exposed = handle is not None and handle.isExposed()
            if not exposed and process_age_s() < EXPOSE_WAIT_LIMIT_S:
                return  # wait for the window system to put it on screen
            poll.stop()
            sys.stdout.write(
                f"window visible after {process_age_s():.2f} s "
                f"(exposed={exposed}, torch imported before show={torch_before_show})\n"
            )
            sys.stdout.flush()
            app.quit()

        poll.timeout.connect(report)
        poll.start()
    if args.screenshot is not None:
        from labelfree_app.gui.screenshot import ScreenshotRun

        width, height = (int(v) for v in args.size.lower().split("x"))
        window.resize(width, height)
        settings = {k: v for k, v in (("samples", args.samples), ("steps", args.steps)) if v is not None}
        shot = ScreenshotRun(window, args.screenshot, model_id=args.model, settings=settings)
        shot.start()
    code = app.exec()
    window.shut_down()
    return int(code)
