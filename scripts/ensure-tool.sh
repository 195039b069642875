#!/usr/bin/env bash
# ensure-tool.sh COMMAND DEBIAN_PACKAGE...: makes COMMAND available.
#
# Does nothing when COMMAND is already on PATH. Otherwise, as root on a Debian-like
# system, installs the packages with `apt-get install --no-install-recommends` (running
# `apt-get update` first only if the package lists are empty or the first attempt
# fails); anywhere else it says what to install and fails.
set -euo pipefail

tool="$1"
shift
command -v "$tool" >/dev/null 2>&1 && exit 0

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-tool: '$tool' is missing; install it (Debian/Ubuntu: apt-get install $*)" >&2
    exit 1
fi

echo "ensure-tool: installing $* for '$tool' (apt-get)" >&2
apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
if [[ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$' -e '^auxfiles$')" ]] ||
    ! apt_install "$@"; then
    apt-get update -qq || true # a stale mirror or signature warning must not stop a retry
    apt_install "$@"
fi
command -v "$tool" >/dev/null 2>&1 || {
    echo "ensure-tool: '$tool' is still missing after installing $*" >&2
    exit 1
}
