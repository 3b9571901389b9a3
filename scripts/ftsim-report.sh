#!/usr/bin/env bash
# ftsim-report.sh reproduces the ftmirror figures of issue 10 with
# tools/ftsim (which prints each run and the medians itself):
#
#   release   5 runs at 100 checkpoints a second (-mem 1g -dirty-rate 50000
#             -epoch 10ms): release p99, median of 5 (goal: epoch + 5 ms)
#   failover  20 runs killing the primary: failover median and max
#             (goal: under 50 ms)
#   false     20 runs of 30 s with a busy loop pinned to CPU 1: how many
#             runs lost a live primary (goal: none)
#   wire      3 runs each of compression off, s2 and zstd (issue 12, "Bytes
#             on the wire"), with the simulator's random words and with its
#             compressible guest (-compressible): wire bytes against raw
#             dirty bytes per checkpoint, and release latency
#
# Usage: scripts/ftsim-report.sh [release|failover|false|wire|all] (default
# all). The issue-10 parts run with -compress off: their figures were
# taken before compression existed, and over loopback TCP (about 1 GB/s)
# compression only costs time.
# RUNS overrides the run count of each part. Every part prints `uptime`
# before and after: on a shared machine the figures depend on the load.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
what=${1:-all}
bin=$(mktemp -d)/ftsim
trap 'rm -rf "$(dirname "$bin")"; [[ -n ${busy:-} ]] && kill "$busy" 2>/dev/null; true' EXIT
go build -o "$bin" ./tools/ftsim

part() { # title, then ftsim flags
  local title=$1
  shift
  echo "== $title"
  echo "uptime before: $(uptime)"
  local rc=0
  "$bin" "$@" || rc=$?
  echo "uptime after: $(uptime)"
  return $rc
}

rc=0
if [[ $what == release || $what == all ]]; then
  part "release latency at 100 checkpoints/s" -runs "${RUNS:-5}" \
    -mem 1g -dirty-rate 50000 -epoch 10ms -duration 10s -loopback-bytes 0 -compress off || rc=1
fi
if [[ $what == failover || $what == all ]]; then
  part "failover" -runs "${RUNS:-20}" -mem 64m -duration 2s -loopback-bytes 0 -compress off || rc=1
fi
if [[ $what == false || $what == all ]]; then
  # The other core busy: a spinning loop pinned to CPU 1 for the whole part.
  taskset -c 1 bash -c 'while :; do :; done' &
  busy=$!
  part "false failovers, 30 s runs beside a busy loop on CPU 1" -runs "${RUNS:-20}" \
    -mem 64m -duration 30s -loopback-bytes 0 -compress off || rc=1
  kill "$busy"
  busy=
fi
if [[ $what == wire || $what == all ]]; then
  for guest in false true; do
    for zip in off s2 zstd; do
      part "wire bytes: -compress $zip -compressible=$guest" -runs "${RUNS:-3}" \
        -mem 64m -dirty-rate 12000 -epoch 25ms -duration 5s -loopback-bytes 0 \
        -compress "$zip" -compressible="$guest" || rc=1
    done
  done
fi
exit $rc
