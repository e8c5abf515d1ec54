#!/usr/bin/env bash
# Sets everything up, starts berthd on a private root, and drives it with the stock ctr:
# version, plugins, an image imported (and unpacked into overlayfs) from an archive built offline,
# a container run to completion through the Berth shim, one left running, and the events.
# berthd keeps serving in the foreground afterwards (the container keeps running); Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

work=${BERTH_DEMO_DIR:-/tmp/berth-demo}
# A previous demo may have left its shims and container mounts: end them before removing its files.
for r in "$work"/state/io.containerd.runtime.v2.task/.runc/*; do
  [ -d "$r" ] && runc --root "$r" list -q | xargs -r -n1 runc --root "$r" delete -f
done
pkill -f -- "-address $work/berthd.sock" 2>/dev/null || true
awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l
rm -rf "$work" && mkdir -p "$work"
sock="$work/berthd.sock"
bin/berthd --root "$work/root" --state "$work/state" --address "$sock" --log-level info 2>"$work/berthd.log" &
pid=$!
cleanup() {
  ctr -a "$sock" -n demo tasks kill -s 9 sleeper >/dev/null 2>&1 && sleep 0.5
  ctr -a "$sock" -n demo tasks rm -f sleeper >/dev/null 2>&1 || true
  kill $pid 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do ctr -a "$sock" version >/dev/null 2>&1 && break; sleep 0.1; done

run() { echo "+ ctr $*"; ctr -a "$sock" "$@"; }
ctr -a "$sock" events > "$work/events.txt" &
events=$!
node --import tsx scripts/build-demo-image.ts "$work/busybox-oci.tar"
run version
run plugins ls
run namespaces create demo team=berth
run -n demo images import "$work/busybox-oci.tar"
run -n demo images ls
run -n demo images check
run -n demo snapshots ls
mkdir -p "$work/fifo"
run -n demo run --rm --fifo-dir "$work/fifo" --runtime io.containerd.berth.v1 docker.io/library/busybox:demo hello \
  sh -c 'echo "hello from a container on berthd: $(uname -s) $(id -u)"'
run -n demo run -d --fifo-dir "$work/fifo" --runtime io.containerd.berth.v1 docker.io/library/busybox:demo sleeper sleep 86400
run -n demo tasks ls
run -n demo tasks exec --fifo-dir "$work/fifo" --exec-id hi sleeper echo "exec into the running container works"
run -n demo containers ls
sleep 0.2; kill $events
echo "+ events seen by 'ctr events':"; cat "$work/events.txt"
echo
echo "berthd is serving on $sock with container 'sleeper' running (logs: $work/berthd.log); Ctrl-C to stop."
wait $pid
