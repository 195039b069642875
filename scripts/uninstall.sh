#!/usr/bin/env bash
# Removes a tinybrain installed by scripts/install.sh:
#
#   scripts/uninstall.sh --prefix DIR        (DESTDIR is honoured as by install.sh)
#
# Reads DIR/share/tinybrain/install_manifest.txt, removes every file and symlink it
# lists, then every directory install.sh created, if it is empty now. Nothing else is
# touched: directories that existed before the install stay.
set -euo pipefail

prefix=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "uninstall.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[[ -n "$prefix" ]] || { echo "uninstall.sh: --prefix DIR is required" >&2; exit 2; }
root="${DESTDIR:-}$(realpath -m "$prefix")"
manifest="$root/share/tinybrain/install_manifest.txt"
[[ -f "$manifest" ]] || { echo "uninstall.sh: no tinybrain install manifest at $manifest" >&2; exit 1; }

mapfile -t entries <"$manifest"
for rel in "${entries[@]}"; do # a manifest names paths inside the prefix, nothing else
    if [[ -z "$rel" || "$rel" == /* || "/$rel/" == */../* ]]; then
        echo "uninstall.sh: refusing the manifest entry '$rel'" >&2
        exit 1
    fi
done
removed=0
for rel in "${entries[@]}"; do
    if [[ "$rel" != */ ]] && { [[ -e "$root/$rel" ]] || [[ -L "$root/$rel" ]]; }; then
        rm -f -- "$root/$rel"
        removed=$((removed + 1))
    fi
done
# Deepest directories first: a child sorts after its parent, so reverse order.
printf '%s\n' "${entries[@]}" | grep '/$' | sort -r | while IFS= read -r rel; do
    rmdir -- "$root/$rel" 2>/dev/null || true
done
echo "uninstalled tinybrain from $root ($removed files)"
