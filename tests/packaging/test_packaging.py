"""Packaging: the frozen entry point, the installer scripts, and (opt-in) the full smoke test.

The smoke test builds the PyInstaller bundle, the .deb and the .run (~10 minutes on 2 cores,
~1 GB on disk) and checks them (packaging/smoke_test.sh), so it runs only with
LABELFREE_PACKAGING_TEST=1 (``make package-test`` does the same without pytest).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"


def _launcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location("labelfree_launcher", PACKAGING / "labelfree_launcher.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "executable, argv, expected",
    [
        ("/opt/labelfree/labelfree", [], ("gui", [])),
        ("/opt/labelfree/labelfree", ["gui", "a.tif"], ("gui", ["a.tif"])),
        ("/opt/labelfree/labelfree", ["--self-test"], ("cli", ["--self-test"])),
        ("/opt/labelfree/labelfree", ["self-test", "--device", "cpu"], ("cli", ["self-test", "--device", "cpu"])),
        ("/opt/labelfree/labelfree", ["predict", "x.tif", "-o", "out"], ("cli", ["predict", "x.tif", "-o", "out"])),
        (r"C:\Programs\LabelFree\labelfree-gui.exe", ["C:/data/cells.tif"], ("gui", ["C:/data/cells.tif"])),
    ],
)
def test_frozen_launcher_opens_the_gui_or_the_cli(
    monkeypatch: pytest.MonkeyPatch, executable: str, argv: list[str], expected: tuple[str, list[str]]
) -> None:
    import labelfree_app.__main__ as gui_entry
    import labelfree_app.cli.main as cli

    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(gui_entry, "main", lambda args: calls.append(("gui", list(args))) or 0)
    monkeypatch.setattr(cli, "main", lambda args: calls.append(("cli", list(args))) or 0)
    monkeypatch.setattr(sys, "executable", executable.replace("\\", "/"))
    monkeypatch.setattr(sys, "argv", [executable, *argv])
    assert _launcher().main() == 0
    assert calls == [expected]


def test_spec_bundles_models_demo_icons_and_expected_stats() -> None:
    spec = (PACKAGING / "labelfree.spec").read_text(encoding="utf-8")
    for needed in ('"resources" / "models"', '"resources" / "demo"', "selftest_expected.json", "ICONS",
                   'collect_submodules("imagecodecs")', "SPECPATH"):
        assert needed in spec, needed
    for name in ("selftest_expected.json", "icons/labelfree.png", "icons/labelfree.ico", "icons/labelfree.icns",
                 "demo/demo_phase_neurons.ome.tif"):
        assert (ROOT / "resources" / name).is_file(), name


def test_desktop_entry_template_validates(tmp_path: Path) -> None:
    if shutil.which("desktop-file-validate") is None:
        pytest.skip("desktop-file-validate is not installed (Debian package desktop-file-utils)")
    text = (PACKAGING / "linux" / "labelfree.desktop.in").read_text(encoding="utf-8")
    entry = tmp_path / "labelfree.desktop"
    entry.write_text(text.replace("@EXEC@", "/opt/labelfree/labelfree").replace("@ICON@", "labelfree"), encoding="utf-8")
    result = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_nsis_script_compiles_on_a_stand_in_payload(tmp_path: Path) -> None:
    if shutil.which("makensis") is None:
        pytest.skip("makensis is not installed (Debian package nsis)")
    result = subprocess.run(["bash", str(PACKAGING / "windows" / "check_nsis.sh")], capture_output=True, text=True,
                            env={**os.environ, "LABELFREE_PKG_DIR": str(tmp_path)}, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(tmp_path.glob("nsis-check/LabelFree-*-Setup.exe"))


def test_shell_scripts_parse() -> None:
    scripts = [PACKAGING / "build.sh", PACKAGING / "smoke_test.sh", *sorted((PACKAGING / "linux").glob("*.sh")),
               *sorted((PACKAGING / "macos").glob("*.sh")), *sorted((PACKAGING / "windows").glob("*.sh"))]
    for script in scripts:
        shell = "sh" if script.name == "install.sh" else "bash"  # the .run's installer is POSIX sh
        result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"


@pytest.mark.skipif(
    os.environ.get("LABELFREE_PACKAGING_TEST") != "1",
    reason="packaging smoke test builds a ~1 GB bundle, a .deb and a .run (~5 min): set LABELFREE_PACKAGING_TEST=1 (.ci/run does)",
)
def test_packaging_smoke_test() -> None:
    """Build (unless a bundle is there; LABELFREE_PACKAGING_REBUILD=1 forces it) and smoke-test."""
    bundle = Path(os.environ.get("LABELFREE_PKG_DIR", PACKAGING / "build")) / "dist" / "labelfree" / "labelfree"
    args = ["bash", str(PACKAGING / "smoke_test.sh")]
    if not bundle.exists() or os.environ.get("LABELFREE_PACKAGING_REBUILD") == "1":
        args.append("--build")
    env = {k: v for k, v in os.environ.items() if k not in ("LABELFREE_HOME", "QT_QPA_PLATFORM")}
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=3600)
    print(result.stdout[-6000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "FAIL" not in result.stdout
