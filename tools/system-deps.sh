#!/usr/bin/env bash
# Install the Debian packages listed in requirements/system.txt ("command package" per line) when the
# command is missing.  Idempotent; needs root or sudo only when something is missing.
set -euo pipefail
needed=()
while read -r cmd pkg; do
  [ -z "${cmd:-}" ] || [ "${cmd:0:1}" = "#" ] && continue
  command -v "$cmd" >/dev/null 2>&1 || needed+=("$pkg")
done < "$(dirname "$0")/../requirements/system.txt"
[ ${#needed[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "system-deps: installing ${needed[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${needed[@]}"
