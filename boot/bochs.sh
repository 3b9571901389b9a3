#!/usr/bin/env bash
# bochs.sh ISO [CPUS] [MEGS] [MODEL] [INPUT] boots ISO in Bochs 2.7 with COM1
# on a local socket, prints the console, types INPUT (default "hello
# bochs") when the Go side asks for a line, and stops at power off or
# after $BOCHS_TIMEOUT seconds (default 600). For boot/testprog.
set -euo pipefail
iso=$(realpath "$1") cpus=${2:-2} megs=${3:-512} model=${4:-corei7_skylake_x}
input=${5:-hello bochs}
dir=$(mktemp -d)
port=$(( 20000 + RANDOM % 20000 ))
bash "$(dirname "$0")/../scripts/bochsrc.sh" "$iso" "$port" "$cpus" "$megs" "$model" > "$dir/bochsrc"
echo c > "$dir/cont"
bochs -q -f "$dir/bochsrc" -rc "$dir/cont" > "$dir/bochs.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
start=$(date +%s.%N)
python3 - "$port" "$input" "${BOCHS_TIMEOUT:-600}" "$start" <<'PY'
import socket, sys, time
port, line, limit, t0 = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
for _ in range(100):
    try:
        s = socket.create_connection(("127.0.0.1", port)); break
    except OSError:
        time.sleep(0.2)
s.settimeout(1)
buf, sent, seen = b"", False, set()
while time.time() - t0 < limit:
    try:
        d = s.recv(4096)
    except socket.timeout:
        continue
    if not d:
        break
    sys.stdout.buffer.write(d); sys.stdout.flush()
    buf += d
    for mark in (b"boot: doppel", b"testprog: hello", b"boot: exit"):
        if mark in buf and mark not in seen:
            seen.add(mark)
            print("\n[bochs.sh: %r after %.1f s wall]" % (mark.decode(), time.time() - t0), flush=True)
    if not sent and b"type a line" in buf:
        s.sendall(line.encode() + b"\r"); sent = True
    if b"boot: power off" in buf or b"boot: halted" in buf or b"boot: fatal" in buf:
        time.sleep(1); break
PY
