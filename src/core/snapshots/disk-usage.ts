// The disk usage of a directory tree as containerd measures a snapshot (continuity's fs.DiskUsage):
// every entry, the root included, counted once per inode (hard links are one), by the blocks it
// has allocated (st_blocks * 512), never following symlinks.
//
// The walk makes synchronous lstat/readdir calls in slices of at most sliceMs, yielding to the event
// loop between slices: a call on an inode in the page cache (a tree just unpacked) takes a few
// microseconds, a round trip through the libuv threadpool ten times that in CPU and more in
// latency, and a commit of a small layer needs only one slice.
import { lstatSync, opendirSync, type Dir } from "node:fs";
import { join } from "node:path";
import { hasCode } from "../../sys/errno.js";
import type { SnapshotUsage } from "./snapshotter.js";

/** Longest the walk blocks the event loop before it yields. */
const sliceMs = 2;

export async function diskUsage(root: string, signal?: AbortSignal): Promise<SnapshotUsage> {
  const seen = new Set<string>();
  let size = 0n;
  let sliceStart = performance.now();
  const sliceOver = (): boolean => performance.now() - sliceStart >= sliceMs;
  const yieldNow = async (): Promise<void> => {
    await new Promise<void>((resolve) => setImmediate(resolve));
    sliceStart = performance.now();
  };

  const count = (path: string, isRoot: boolean): boolean => {
    let st;
    try {
      st = lstatSync(path, { bigint: true });
    } catch (err) {
      // An entry removed between readdir and lstat (a running container) is simply gone.
      if (!isRoot && hasCode(err, "ENOENT")) return false;
      throw err;
    }
    const key = `${st.dev}:${st.ino}`;
    if (!seen.has(key)) {
      seen.add(key);
      size += st.blocks * 512n;
    }
    return st.isDirectory();
  };

  const dirs: string[] = [];
  if (count(root, true)) dirs.push(root);
  for (let dir = dirs.pop(); dir !== undefined; dir = dirs.pop()) {
    signal?.throwIfAborted();
    let entries: Dir;
    try {
      entries = opendirSync(dir, { bufferSize: 128 });
    } catch (err) {
      if (dir !== root && hasCode(err, "ENOENT")) continue;
      throw err;
    }
    // Entry by entry (getdents in batches), not readdirSync's whole listing at once: a directory
    // with a million entries, which any container can make, must not hold the event loop for it.
    try {
      for (let e = entries.readSync(); e !== null; e = entries.readSync()) {
        const p = join(dir, e.name);
        if (count(p, false)) dirs.push(p);
        if (sliceOver()) await yieldNow();
      }
    } finally {
      entries.closeSync();
    }
    if (sliceOver()) await yieldNow();
  }
  return { size: Number(size), inodes: seen.size };
}
