// The disk usage of a directory tree as containerd measures a snapshot (continuity's fs.DiskUsage):
// every entry, the root included, counted once per inode (hard links are one), by the blocks it
// has allocated (st_blocks * 512), never following symlinks.
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { hasCode } from "../../sys/errno.js";
import type { SnapshotUsage } from "./snapshotter.js";

/** How many lstat calls one directory may have in flight. */
const parallelism = 32;

export async function diskUsage(root: string, signal?: AbortSignal): Promise<SnapshotUsage> {
  const seen = new Set<string>();
  let size = 0n;

  const count = async (path: string, isRoot: boolean): Promise<boolean> => {
    let st;
    try {
      st = await lstat(path, { bigint: true });
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
  if (await count(root, true)) dirs.push(root);
  for (let dir = dirs.pop(); dir !== undefined; dir = dirs.pop()) {
    signal?.throwIfAborted();
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if (dir !== root && hasCode(err, "ENOENT")) continue;
      throw err;
    }
    for (let i = 0; i < names.length; i += parallelism) {
      const batch = names.slice(i, i + parallelism).map((n) => join(dir, n));
      const isDir = await Promise.all(batch.map((p) => count(p, false)));
      batch.forEach((p, j) => {
        if (isDir[j] === true) dirs.push(p);
      });
    }
  }
  return { size: Number(size), inodes: seen.size };
}
