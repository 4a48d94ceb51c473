#!/usr/bin/env bash
# Installs the browsers of the browser end-to-end tests, unless they are
# already there: Debian's headless-capable Chromium (and its driver) at
# /usr/bin/chromium, and Firefox ESR at /usr/bin/firefox-esr (the users'
# kernels run in both engines, V8 and SpiderMonkey).
set -euo pipefail

packages=()
if [[ -x /usr/bin/chromium ]]; then
    echo "chromium is already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
else
    packages+=(chromium chromium-driver fonts-liberation)
fi
if [[ -x /usr/bin/firefox-esr ]]; then
    echo "firefox-esr is already installed: $(/usr/bin/firefox-esr --version 2>/dev/null || echo /usr/bin/firefox-esr)"
else
    packages+=(firefox-esr)
fi
if [[ ${#packages[@]} == 0 ]]; then
    exit 0
fi

sudo=()
if [[ "$(id -u)" != 0 ]]; then
    sudo=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y --no-install-recommends "${packages[@]}"
/usr/bin/chromium --version
/usr/bin/firefox-esr --version
