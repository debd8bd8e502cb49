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
python -m ruff check modelrouter tests benchmarks examples scripts setup.py
python -m mypy modelrouter
# the request-path benchmarks of issue 17 (scripts, not a package: checked from their folder)
(cd benchmarks && python -m mypy --ignore-missing-imports bench_server.py _fixed_rate.py \
  profile_server.py simulate_server.py server_apps.py count_instructions.py bench_middleware.py \
  footprint.py bench_cold.py gc_server.py perf_server.py)
python -m pytest "$@"
# the request path's Python twins, as they run where the compiled ones were not built
# (modelrouter/config/extensions.py); tests/asgi/test_compiled_twins.py compares the two
if [ "$#" -eq 0 ]; then
  MODELROUTER_NO_EXTENSIONS=1 python -m pytest -q tests/asgi tests/routing tests/test_router.py \
    tests/store/test_journal.py tests/store/test_lock.py tests/store/test_memory.py \
    tests/store/test_persistence.py tests/store/test_protocol.py tests/store/test_ring.py \
    tests/store/test_fork_store_lock.py tests/store/test_forksafe.py tests/store/test_memory_budget.py \
    tests/store/test_group_rows.py tests/store/test_losses_kept.py
fi
