#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run it.
# System services the tests start themselves: redis-server (store tests), chromium (dashboard).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -x /usr/bin/chromium ] || need+=(chromium)
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "note: missing ${need[*]}; the tests that need them will be skipped" >&2
  fi
fi
python -m pip install -q --disable-pip-version-check -e ".[test]"
python -m ruff check modelrouter tests benchmarks examples
python -m mypy modelrouter
python -m pytest "$@"
