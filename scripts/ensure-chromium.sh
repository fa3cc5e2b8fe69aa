#!/bin/sh
# Installs Debian's chromium for the browser tests where it is missing and apt-get can; otherwise says they skip.
set -u
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "chromium not found: installing it with apt-get for the browser tests (tests/web)"
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
        exit 0
    fi
    echo "apt-get could not install chromium: the browser tests (tests/web/test_page*) will skip"
    exit 0
fi
echo "chromium not found and cannot be installed here (needs root and apt-get):" \
    "the browser tests (tests/web/test_page*) will skip; install it with: sudo apt-get install chromium"
