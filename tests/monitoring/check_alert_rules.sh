#!/bin/sh
# ctest packaging.alert_rules: packaging/prometheus/pvgate-alerts.yml is valid
# (`promtool check rules`) and its unit tests pass (`promtool test rules`: for every alert a
# case where it fires and one where it does not).
#
# promtool comes with Debian's `prometheus` package (scripts/install-deps installs it, so CI
# runs this). Without promtool the test is skipped (exit 77, ctest's SKIP_RETURN_CODE) with a
# message saying so; it never passes without checking.
set -eu
dir="$(cd "$(dirname "$0")/../../packaging/prometheus" && pwd)"
if ! command -v promtool >/dev/null 2>&1; then
  echo "SKIPPED: promtool not found (Debian package prometheus; scripts/install-deps installs it)"
  exit 77
fi
promtool check rules "$dir/pvgate-alerts.yml"
promtool test rules "$dir/pvgate-alerts.test.yml"
