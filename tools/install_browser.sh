#!/bin/sh
# Install Debian's headless Chromium for the HTML-report rendering test, when we are root on a
# Debian-like system. Never fails the build: without a browser that one test skips with a reason.
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 &&
    exit 0
fi
echo "note: chromium is not installed; the HTML report rendering test will skip" >&2
exit 0
