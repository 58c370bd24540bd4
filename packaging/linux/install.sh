#!/bin/sh
# Per-user LabelFree installer (run from the self-extracting LabelFree-*.run; no root needed).
#   ./LabelFree-<version>-linux-x86_64.run                 install into ~/.local
#   ./LabelFree-<version>-linux-x86_64.run -- --prefix DIR install into DIR (bin/, lib/, share/ under it)
#   ~/.local/lib/labelfree/uninstall.sh [--purge]          remove it (--purge: also models, settings, caches)
set -eu
PREFIX="${HOME}/.local"
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX="$2"; shift 2 ;;
        --prefix=*) PREFIX="${1#--prefix=}"; shift ;;
        *) echo "Unknown option $1 (use --prefix DIR)." >&2; exit 2 ;;
    esac
done
here="$(cd "$(dirname "$0")" && pwd)"
app="$PREFIX/lib/labelfree"
bin="$PREFIX/bin"
apps="$PREFIX/share/applications"
icons="$PREFIX/share/icons/hicolor/256x256/apps"

if [ -x "$app/uninstall.sh" ]; then
    echo "Replacing the LabelFree installed in $app."
    "$app/uninstall.sh" --quiet
fi
# Folders this install creates (deepest first), so the uninstaller can remove them again if empty.
created=""
for d in "$PREFIX" "$PREFIX/lib" "$bin" "$PREFIX/share" "$apps" "$PREFIX/share/icons" \
         "$PREFIX/share/icons/hicolor" "$PREFIX/share/icons/hicolor/256x256" "$icons"; do
    [ -d "$d" ] || created="$d
$created"
done
mkdir -p "$PREFIX/lib" "$bin" "$apps" "$icons"
tmp="$app.partial.$$"
rm -rf "$tmp"
cp -R "$here/labelfree" "$tmp"
mv "$tmp" "$app"
ln -sf "$app/labelfree" "$bin/labelfree"
sed -e "s|@EXEC@|$app/labelfree|g" -e "s|@ICON@|labelfree|g" "$here/labelfree.desktop.in" > "$apps/labelfree.desktop"
cp "$here/labelfree.png" "$icons/labelfree.png"
{
    echo "#!/bin/sh"
    echo "# Removes LabelFree from $PREFIX. --purge also removes your models, settings and caches."
    echo "set -eu"
    echo 'quiet=0; purge=0'
    echo 'for a in "$@"; do case "$a" in --quiet) quiet=1 ;; --purge) purge=1 ;; esac; done'
    echo "rm -f '$bin/labelfree' '$apps/labelfree.desktop' '$icons/labelfree.png'"
    echo "rm -rf '$app'"
    echo "command -v update-desktop-database >/dev/null && update-desktop-database -q '$apps' 2>/dev/null || true"
    echo 'if [ "$purge" = 1 ]; then'
    echo '    rm -rf "${XDG_DATA_HOME:-$HOME/.local/share}/LabelFree" "${XDG_CONFIG_HOME:-$HOME/.config}/LabelFree" \'
    echo '           "${XDG_CACHE_HOME:-$HOME/.cache}/LabelFree" "${XDG_STATE_HOME:-$HOME/.local/state}/LabelFree"'
    echo '    # the standard folders LabelFree may have been first to create, when nothing else is in them'
    echo '    rmdir "${XDG_STATE_HOME:-$HOME/.local/state}" "${XDG_CACHE_HOME:-$HOME/.cache}" "${XDG_CONFIG_HOME:-$HOME/.config}" 2>/dev/null || true'
    echo 'fi'
    echo "# folders the install created, removed when nothing else is in them"
    printf '%s\n' "$created" | while IFS= read -r d; do
        [ -n "$d" ] || continue
        if [ "$d" = "$apps" ]; then  # update-desktop-database's cache is all that is left of ours
            echo "[ \"\$(ls -A '$d' 2>/dev/null)\" = mimeinfo.cache ] && rm -f '$d/mimeinfo.cache'"
        fi
        echo "rmdir '$d' 2>/dev/null || true"
    done
    echo '[ "$quiet" = 1 ] || echo "LabelFree removed from '"$PREFIX"'."'
} > "$app/uninstall.sh"
chmod 755 "$app/uninstall.sh"
command -v update-desktop-database >/dev/null && update-desktop-database -q "$apps" 2>/dev/null || true
echo "LabelFree installed in $app."
echo "Start it from your applications menu, or run: $bin/labelfree  (check it: labelfree --self-test)"
case ":$PATH:" in *":$bin:"*) ;; *) echo "Note: $bin is not on your PATH; add it to run 'labelfree' from a terminal." ;; esac
echo "Remove it with: $app/uninstall.sh"
