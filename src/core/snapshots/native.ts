// The native snapshotter (containerd 1.6's snapshots/native): every active snapshot is a full copy
// of its parent in `<root>/snapshots/<id>`, bind-mounted. It needs nothing from the kernel beyond
// bind mounts, so it works on any file system; it pays for that in copy time and space. A view of
// a parent makes no copy: it binds the parent's directory read-only.
import { chmod, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Mount } from "../mount/mount-types.js";
import type { SnapshotOptions, Snapshotter } from "./snapshotter.js";
import { MetaStore, wrapError, type StoredSnapshot } from "./storage.js";
import { SnapshotDirs } from "./snapshot-dirs.js";
import { diskUsage } from "./disk-usage.js";
import { copyTree } from "./copy-tree.js";

export interface NativeOptions {
  root: string;
}

export async function createNativeSnapshotter(opts: NativeOptions): Promise<Snapshotter> {
  const dirs = SnapshotDirs.open(opts.root);
  const ms = MetaStore.open(join(opts.root, "metadata.db"));

  const mounts = (s: StoredSnapshot): Mount[] => {
    const nearest = s.parentIds[0];
    const source = nearest === undefined || s.kind === "active" ? dirs.path(s.id) : dirs.path(nearest);
    return [{ type: "bind", source, options: ["rbind", s.kind === "view" ? "ro" : "rw"] }];
  };

  const createSnapshot = (kind: "active" | "view", key: string, parent: string, o?: SnapshotOptions) =>
    ms.exclusive(async (): Promise<Mount[]> => {
      let td = "";
      let installed = "";
      try {
        // Only an active snapshot, or a view of nothing, gets a directory of its own.
        if (kind === "active" || parent === "") {
          try {
            td = await dirs.makeTemp();
          } catch (err) {
            throw wrapError(err, "failed to create temp dir");
          }
          try {
            await chmod(td, 0o755);
          } catch (err) {
            throw wrapError(err, `failed to chmod ${td} to 0755`);
          }
        }
        let parentIds: string[];
        try {
          parentIds = ms.checkCreate(key, parent);
        } catch (err) {
          throw wrapError(err, "failed to create snapshot");
        }
        const nearest = parentIds[0];
        if (td !== "" && nearest !== undefined) {
          try {
            await copyTree(dirs.path(nearest), td);
          } catch (err) {
            throw wrapError(err, "copying of parent failed");
          }
        }
        const s = ms.write((): StoredSnapshot => {
          let created: StoredSnapshot;
          try {
            created = ms.createSnapshot(kind, key, parent, o?.labels);
          } catch (err) {
            throw wrapError(err, "failed to create snapshot");
          }
          if (td !== "") {
            try {
              installed = dirs.install(td, created.id);
            } catch (err) {
              throw wrapError(err, "failed to rename");
            }
            td = "";
          }
          return created;
        });
        installed = ""; // committed: the directory is the record's now
        // Durable before the caller records it (the metadata DB names it) or answers.
        await ms.durable();
        return mounts(s);
      } catch (err) {
        if (td !== "") await rm(td, { recursive: true, force: true }).catch(() => undefined);
        if (installed !== "") await rm(installed, { recursive: true, force: true }).catch(() => undefined);
        throw err;
      }
    });

  const snapshotter: Snapshotter = {
    async stat(key) {
      return ms.getInfo(key).info;
    },

    async update(info, fieldpaths = []) {
      const updated = ms.updateInfo(info, fieldpaths);
      await ms.durable();
      return updated;
    },

    async usage(key) {
      const { id, info, usage } = ms.getInfo(key);
      // An active snapshot is measured now: its own full copy, parent's files included.
      if (info.kind === "active") return diskUsage(dirs.path(id));
      return usage;
    },

    async mounts(key) {
      let s: StoredSnapshot;
      try {
        s = ms.getSnapshot(key);
      } catch (err) {
        throw wrapError(err, "failed to get snapshot mount");
      }
      return mounts(s);
    },

    prepare: (key, parent, o) => createSnapshot("active", key, parent, o),
    view: (key, parent, o) => createSnapshot("view", key, parent, o),

    commit: (name, key, o) =>
      ms.exclusive(async () => {
        const { id, info } = ms.getInfo(key);
        // Only an active snapshot has anything to measure; for the others commitActive reports
        // why not (the name taken first, as containerd checks it first).
        const usage = info.kind === "active" ? await diskUsage(dirs.path(id)) : { size: 0, inodes: 0 };
        try {
          ms.commitActive(key, name, usage, o?.labels);
        } catch (err) {
          throw wrapError(err, "failed to commit snapshot");
        }
        await ms.durable();
      }),

    async remove(key) {
      const { deletion } = await ms.exclusive(async () => {
        let id: string;
        try {
          ({ id } = ms.remove(key));
        } catch (err) {
          throw wrapError(err, "failed to remove");
        }
        // The record is gone for good (synced) before the bytes go.
        await ms.durable();
        // (Wrapped: a promise returned bare would hold the section until the deletion ends.)
        return { deletion: dirs.retire(id) };
      });
      await deletion;
    },

    async walk(fn, filters = []) {
      for (const { info } of ms.walkInfo(filters)) await fn(info);
    },

    // containerd's native snapshotter has no Cleanup; this one sweeps what a crash left behind.
    async cleanup() {
      const garbage = await ms.exclusive(async () => dirs.garbage(ms.idMap()));
      await Promise.all(garbage.map((p) => dirs.discard(p)));
    },

    async close() {
      if (!ms.closed) await ms.closeWhenIdle();
      await dirs.idle();
    },
  };
  return snapshotter;
}
