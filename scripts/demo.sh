#!/usr/bin/env bash
# Sets everything up, starts berthd on a private root, and drives it with the stock ctr:
# version, plugins, an image imported from an archive built offline, a container record, events.
# berthd keeps serving in the foreground afterwards; Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

work=${BERTH_DEMO_DIR:-/tmp/berth-demo}
rm -rf "$work" && mkdir -p "$work"
sock="$work/berthd.sock"
bin/berthd --root "$work/root" --state "$work/state" --address "$sock" --log-level info 2>"$work/berthd.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do ctr -a "$sock" version >/dev/null 2>&1 && break; sleep 0.1; done

run() { echo "+ ctr $*"; ctr -a "$sock" "$@"; }
ctr -a "$sock" events > "$work/events.txt" &
events=$!
node --import tsx scripts/build-demo-image.ts "$work/busybox-oci.tar"
run version
run plugins ls
run namespaces create demo team=berth
run -n demo images import --no-unpack "$work/busybox-oci.tar"
run -n demo images ls
run -n demo images check
mkdir -p "$work/rootfs"
run -n demo containers create --rootfs "$work/rootfs" hello /bin/sh
run -n demo containers ls
run -n demo content ls
sleep 0.2; kill $events
echo "+ events seen by 'ctr events':"; cat "$work/events.txt"
echo
echo "berthd is serving on $sock (logs: $work/berthd.log); Ctrl-C to stop."
wait $pid
