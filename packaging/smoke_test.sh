#!/usr/bin/env bash
# Smoke-test the frozen bundle and the Linux installers (Linux; Xvfb, ImageMagick, xdotool, dpkg,
# makeself; the .deb and the per-user .run checks need root to install a package / add a user).
#
#   bash packaging/smoke_test.sh           test what packaging/build holds
#   bash packaging/smoke_test.sh --build   build the bundle and both installers first
#
# 1. the frozen `labelfree --self-test` passes (every bundled model on the demo input), and the
#    frozen `labelfree predict` reads a TIFF too big to read whole and an OME-Zarr (lazy readers);
# 2. the frozen GUI shows its main window under Xvfb (seconds to the window, a screenshot);
# 3. `dpkg -i` then `dpkg -r` of the .deb leaves no file behind in /opt, /usr, /etc;
# 4. the .run installs into a normal user's ~/.local, `labelfree self-test` passes there, and
#    its uninstaller (--purge) leaves the home folder as it was.
# Prints one "ok:" or "FAIL:" line per check and exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
OUT_BASE="${LABELFREE_PKG_DIR:-$ROOT/packaging/build}"
BUNDLE="$OUT_BASE/dist/labelfree"
INSTALLERS="$OUT_BASE/installers"
RESULTS="$OUT_BASE/smoke"
TEST_USER="${LABELFREE_SMOKE_USER:-lfsmoke}"
DEMO="$ROOT/resources/demo/demo_phase_neurons.ome.tif"
failures=0
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
skip() { echo "skipped: $*"; }

if [ "${1:-}" = "--build" ]; then
    bash packaging/build.sh && bash packaging/linux/make_deb.sh && bash packaging/linux/make_run.sh \
        || { echo "FAIL: the build failed"; exit 1; }
fi
[ -x "$BUNDLE/labelfree" ] || { echo "FAIL: no bundle at $BUNDLE (run with --build)"; exit 1; }
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
echo "bundle: $(du -sh "$BUNDLE" | cut -f1) in $BUNDLE"

# --- 1. self-test of the frozen binary --------------------------------------------------------
home="$(mktemp -d)"
start=$(date +%s%3N)
if LABELFREE_HOME="$home" "$BUNDLE/labelfree" --self-test --device cpu -o "$RESULTS/selftest" > "$RESULTS/selftest.log" 2>&1; then
    ms=$(( $(date +%s%3N) - start ))
    ok "frozen --self-test passed in $((ms / 1000)).$(( (ms % 1000) / 100 )) s (process start included): $(tail -1 "$RESULTS/selftest.log")"
else
    fail "frozen --self-test: $(cat "$RESULTS/selftest.log")"
fi
rm -rf "$home"

# --- 1b. lazy inputs: a 6144² tiled zlib TIFF (72 MiB of pixels: read region by region) and an OME-Zarr
if [ -x "$ROOT/.venv/bin/python" ]; then
    inputs="$RESULTS/inputs"
    mkdir -p "$inputs"
    "$ROOT/.venv/bin/python" - "$DEMO" "$inputs" <<'PY'
import sys
from pathlib import Path

import numpy as np
import tifffile

from labelfree_app.io import read_image
from labelfree_app.io.ome_zarr import write_ome_zarr

demo, folder = read_image(sys.argv[1]), Path(sys.argv[2])
phase = np.asarray(demo.data[0, 0])
tifffile.imwrite(folder / "big_phase.tif", np.tile(phase, (12, 12)), tile=(512, 512), compression="zlib")
write_ome_zarr(folder / "demo.ome.zarr", np.asarray(demo.data), "CZYX", channel_names=demo.channel_names)
PY
    for input in big_phase.tif demo.ome.zarr; do
        home="$(mktemp -d)"
        if LABELFREE_HOME="$home" "$BUNDLE/labelfree" predict "$inputs/$input" -m lf-nuclei-2d --channel 0 --device cpu \
                -o "$RESULTS/lazy" -q > "$RESULTS/lazy-$input.log" 2>&1; then
            ok "frozen predict read $input: $(tail -1 "$RESULTS/lazy-$input.log")"
        else
            fail "frozen predict of $input: $(tail -3 "$RESULTS/lazy-$input.log")"
        fi
        rm -rf "$home"
    done
    rm -rf "$inputs" "$RESULTS/lazy"
else
    skip "lazy-input predictions (no .venv to write the inputs with)"
fi

# Debian packages named in the .deb's Depends that are not installed (the Qt xcb plugin needs most).
missing_depends() {
    dpkg-deb -f "$1" Depends | tr ',' '\n' | sed 's/(.*)//; s/|.*//; s/ //g' | while read -r pkg; do
        [ -n "$pkg" ] && ! dpkg -s "$pkg" >/dev/null 2>&1 && printf '%s ' "$pkg"
    done
}

# --- 2. the frozen GUI under Xvfb -------------------------------------------------------------
unset QT_QPA_PLATFORM  # a real X server (Xvfb): not the offscreen platform test runners set
if command -v xvfb-run >/dev/null; then
    home="$(mktemp -d)"
    line="$(LABELFREE_HOME="$home" timeout 120 xvfb-run -a -s "-screen 0 1600x900x24" \
        "$BUNDLE/labelfree" gui --startup-time 2>"$RESULTS/gui-startup.err" | tail -1)"
    case "$line" in
        "window visible after"*"exposed=True"*) ok "frozen GUI: $line" ;;
        *) fail "frozen GUI did not show its window: $line $(tail -5 "$RESULTS/gui-startup.err")" ;;
    esac
    if command -v Xvfb >/dev/null && command -v import >/dev/null && command -v xdotool >/dev/null; then
        display=":$((90 + RANDOM % 100))"
        Xvfb "$display" -screen 0 1440x860x24 -nolisten tcp >/dev/null 2>&1 &
        xvfb_pid=$!
        sleep 1
        DISPLAY="$display" LABELFREE_HOME="$home" "$BUNDLE/labelfree" gui "$DEMO" >"$RESULTS/gui.log" 2>&1 &
        app_pid=$!
        shown=""
        for _ in $(seq 1 120); do
            if DISPLAY="$display" xdotool search --onlyvisible --name '^LabelFree' >/dev/null 2>&1; then shown=1; break; fi
            sleep 0.5
        done
        sleep 4  # let the demo image load and the models list fill in
        if [ -n "$shown" ] && kill -0 "$app_pid" 2>/dev/null && DISPLAY="$display" import -window root "$RESULTS/frozen_app.png"; then
            ok "frozen GUI window on screen; screenshot $RESULTS/frozen_app.png"
        else
            fail "frozen GUI window not found on $display: $(tail -5 "$RESULTS/gui.log")"
        fi
        kill "$app_pid" 2>/dev/null; wait "$app_pid" 2>/dev/null
        kill "$xvfb_pid" 2>/dev/null; wait "$xvfb_pid" 2>/dev/null
    else
        skip "GUI screenshot (needs Xvfb, ImageMagick's import and xdotool)"
    fi
    rm -rf "$home"
else
    skip "GUI checks (no xvfb-run)"
fi

# --- 3. .deb install and removal --------------------------------------------------------------
deb="$(ls -t "$INSTALLERS"/labelfree_*.deb 2>/dev/null | head -1)"
if [ -z "$deb" ]; then
    skip ".deb checks (no .deb in $INSTALLERS)"
elif [ "$(id -u)" != 0 ]; then
    skip ".deb checks (need root)"
elif dpkg -s labelfree >/dev/null 2>&1; then
    fail "labelfree is already installed with dpkg; remove it first (dpkg -r labelfree)"
elif missing="$(missing_depends "$deb")" && [ -n "$missing" ]; then
    # dpkg -i does not fetch dependencies (apt install ./file.deb does, but then leaves them behind,
    # which the no-files-left check would see): install them first.
    fail "the .deb needs packages this machine lacks: apt-get install $missing"
else
    echo "deb: $(du -h "$deb" | cut -f1) $deb"
    snapshot() { find /opt /usr /etc /var/lib/dpkg/info -xdev 2>/dev/null | sort; }
    snapshot > "$RESULTS/deb-before.txt"
    if dpkg -i "$deb" > "$RESULTS/deb-install.log" 2>&1; then
        ok "dpkg -i $(basename "$deb")"
        [ -L /usr/bin/labelfree ] && [ -f /usr/share/applications/labelfree.desktop ] \
            && [ -f /usr/share/icons/hicolor/256x256/apps/labelfree.png ] \
            && ok "deb installs /opt/labelfree, /usr/bin/labelfree, a desktop entry and an icon" \
            || fail "deb did not install the launcher, desktop entry or icon"
        if command -v desktop-file-validate >/dev/null; then
            desktop-file-validate /usr/share/applications/labelfree.desktop && ok "desktop entry validates" \
                || fail "desktop-file-validate found problems"
        fi
        home="$(mktemp -d)"
        if LABELFREE_HOME="$home" labelfree self-test --device cpu -m lf-nuclei-2d > "$RESULTS/deb-selftest.log" 2>&1; then
            ok "installed /usr/bin/labelfree self-test: $(tail -1 "$RESULTS/deb-selftest.log")"
        else
            fail "installed labelfree self-test: $(cat "$RESULTS/deb-selftest.log")"
        fi
        rm -rf "$home"
        dpkg -r labelfree > "$RESULTS/deb-remove.log" 2>&1 && ok "dpkg -r labelfree" || fail "dpkg -r labelfree: $(cat "$RESULTS/deb-remove.log")"
        snapshot > "$RESULTS/deb-after.txt"
        left="$(comm -13 "$RESULTS/deb-before.txt" "$RESULTS/deb-after.txt")"
        if [ -z "$left" ] && ! dpkg -s labelfree >/dev/null 2>&1; then
            ok "dpkg -r left no files behind (/opt /usr /etc /var/lib/dpkg/info compared)"
        else
            fail "files left after dpkg -r: $left"
        fi
    else
        fail "dpkg -i: $(tail -5 "$RESULTS/deb-install.log")"
    fi
fi

# --- 4. the per-user .run installer ------------------------------------------------------------
run="$(ls -t "$INSTALLERS"/LabelFree-*.run 2>/dev/null | head -1)"
if [ -z "$run" ]; then
    skip ".run checks (no .run in $INSTALLERS)"
elif [ "$(id -u)" != 0 ]; then
    skip ".run checks as another user (need root to create $TEST_USER); run the .run by hand"
else
    echo "run: $(du -h "$run" | cut -f1) $run"
    id "$TEST_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$TEST_USER"
    user_home="$(getent passwd "$TEST_USER" | cut -d: -f6)"
    shared="$(mktemp -d)"
    chmod 755 "$shared"
    cp "$run" "$shared/" && chmod 644 "$shared/$(basename "$run")"
    as_user() { su - "$TEST_USER" -s /bin/bash -c "$1"; }
    (cd "$user_home" && find . | sort) > "$RESULTS/run-before.txt"
    if as_user "sh '$shared/$(basename "$run")'" > "$RESULTS/run-install.log" 2>&1; then
        ok ".run installed as $TEST_USER (uid $(id -u "$TEST_USER")): $(grep 'installed in' "$RESULTS/run-install.log")"
        [ -x "$user_home/.local/bin/labelfree" ] && [ -f "$user_home/.local/share/applications/labelfree.desktop" ] \
            && ok ".run put labelfree in ~/.local/bin and a desktop entry in ~/.local/share/applications" \
            || fail ".run did not install the launcher or the desktop entry"
        if as_user "~/.local/bin/labelfree self-test" > "$RESULTS/run-selftest.log" 2>&1; then
            ok "self-test as $TEST_USER: $(tail -1 "$RESULTS/run-selftest.log")"
        else
            fail "self-test as $TEST_USER: $(cat "$RESULTS/run-selftest.log")"
        fi
        as_user "~/.local/lib/labelfree/uninstall.sh --purge" > "$RESULTS/run-uninstall.log" 2>&1 \
            && ok "uninstall.sh --purge: $(cat "$RESULTS/run-uninstall.log")" || fail "uninstall.sh: $(cat "$RESULTS/run-uninstall.log")"
        (cd "$user_home" && find . | sort) > "$RESULTS/run-after.txt"
        # ONNX Runtime itself (not LabelFree) keeps a device id under ~/.cache/Microsoft whenever it runs.
        ort='^\./\.cache(/Microsoft(/DeveloperTools(/\.onnxruntime(/.*)?)?)?)?$'
        comm -13 "$RESULTS/run-before.txt" "$RESULTS/run-after.txt" | grep -E "$ort" > "$RESULTS/run-left-by-onnxruntime.txt"
        left="$(comm -13 "$RESULTS/run-before.txt" "$RESULTS/run-after.txt" | grep -v -E "$ort" | grep -v -E '^\./\.(bash_history|lesshst)$')"
        [ -z "$left" ] && ok "the home folder is as before the install$([ -s "$RESULTS/run-left-by-onnxruntime.txt" ] && echo " (but for ONNX Runtime's own ~/.cache/Microsoft/DeveloperTools/.onnxruntime)")" \
            || fail "left in $user_home: $left"
    else
        fail ".run install as $TEST_USER: $(tail -5 "$RESULTS/run-install.log")"
    fi
    rm -rf "$shared"
    [ -n "${LABELFREE_SMOKE_KEEP_USER:-}" ] || userdel -r "$TEST_USER" 2>/dev/null
fi

echo "smoke test: $failures failed (details in $RESULTS)"
[ "$failures" -eq 0 ]
