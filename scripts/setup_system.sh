#!/usr/bin/env bash
# System packages pip cannot bring: MagickWand (medmnistc's motion blur) and Chromium + ChromeDriver (browser check).
# Needs root (CI runs as root); elsewhere it prints what to install and carries on.
set -euo pipefail
pkgs=(libmagickwand-6.q16-6 chromium chromium-driver)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "installed system packages: ${missing[*]}"
else
  echo "warning: please install the system packages: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
fi
