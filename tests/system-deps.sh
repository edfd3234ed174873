#!/usr/bin/env bash
# The Debian packages the test suite drives for real: Redis, headless Chromium
# (the room page), promtool (the alert rules' own tests) and HAProxy (the
# balancer's config, in front of real nodes). Installed when
# missing and running as root (as on this project's machines and in CI).
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "the tests need these Debian packages: ${missing[*]} (apt-get install them as root)" >&2
    exit 1
fi
echo "installing ${missing[*]} for the tests" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
