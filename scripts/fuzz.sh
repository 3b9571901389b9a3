#!/usr/bin/env bash
# fuzz.sh runs every target in scripts/fuzz-targets.txt for a short time
# (FUZZTIME, default 8s each), on top of the seed corpus that go test runs
# anyway. A crash fails the run and leaves the input under testdata/fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-8s}
grep -v -E '^\s*(#|$)' scripts/fuzz-targets.txt | while read -r pkg target; do
  echo "fuzz: $pkg $target for $fuzztime"
  go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
done
