#!/bin/sh
# Installs Debian's chromium for the browser tests (and a CJK font, so screenshots show Chinese file names)
# where they are missing and apt-get can; otherwise says that the browser tests skip.
set -u
packages=""
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
    packages="chromium"
fi
if command -v fc-list >/dev/null 2>&1 && [ -z "$(fc-list :lang=zh 2>/dev/null)" ]; then
    packages="$packages fonts-wqy-microhei"
fi
[ -z "$packages" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing$packages with apt-get for the browser tests (tests/web)"
    # shellcheck disable=SC2086  # a list of package names
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null; then
        exit 0
    fi
    echo "apt-get could not install$packages"
fi
case "$packages" in
chromium*)
    echo "chromium not found and not installable here (needs root and apt-get): the browser tests" \
        "(tests/service/web/test_page*) will skip; install it with: sudo apt-get install chromium" ;;
*)
    echo "no CJK font: Chinese file names show as boxes in screenshots (sudo apt-get install fonts-wqy-microhei)" ;;
esac
exit 0
