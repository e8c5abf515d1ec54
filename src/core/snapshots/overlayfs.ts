// The overlayfs snapshotter (containerd 1.6's snapshots/overlay): every snapshot is a directory
// `<root>/snapshots/<id>` with `fs` (its own changes: the overlay upper dir, and a lower dir once
// committed) and, for active snapshots, `work` (overlay's work dir). The mounts returned are
// exactly containerd's, so clients and the differ read them the same way:
//   no parent            bind <id>/fs, ["rw"|"ro", "rbind"]
//   view of one parent   bind <parent>/fs, ["ro", "rbind"]
//   otherwise            overlay ["index=off"?, "workdir=…", "upperdir=…", "lowerdir=<nearest>/fs:…"]
//                        (a view has lowerdir only)
import { chmodSync, existsSync, lchownSync, mkdirSync, statSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Mount } from "../mount/mount-types.js";
import { mountAll, mountPointsUnder, unmountAll } from "../mount/mount.js";
import { MNT } from "../../sys/mount.js";
import type { SnapshotInfo, SnapshotOptions, Snapshotter } from "./snapshotter.js";
import { MetaStore, wrapError, type StoredSnapshot } from "./storage.js";
import { SnapshotDirs } from "./snapshot-dirs.js";
import { diskUsage } from "./disk-usage.js";

/** The label that tells where a snapshot's upper dir is, when upperdirLabel is on. */
export const upperdirLabel = "containerd.io/snapshot/overlay.upperdir";

export interface OverlayOptions {
  root: string;
  /** Remove leaves the directories to cleanup() (containerd's AsynchronousRemove). */
  asyncRemove?: boolean;
  /** Report each snapshot's upper dir in the `containerd.io/snapshot/overlay.upperdir` label. */
  upperdirLabel?: boolean;
}

/** Whether the kernel knows overlay's index feature, so "index=off" may be passed (containerd's probe). */
function supportsIndex(): boolean {
  return existsSync("/sys/module/overlay/parameters/index");
}

/**
 * Whether an overlay with two lower dirs mounts on root's file system (containerd's
 * overlayutils.Supported), tried for real in a scratch directory under root.
 */
export async function overlaySupported(root: string): Promise<boolean> {
  await mkdir(root, { recursive: true, mode: 0o700 });
  const td = await mkdtemp(join(root, "overlayfs-check-"));
  try {
    for (const d of ["lower1", "lower2", "upper", "work", "merged"]) await mkdir(join(td, d));
    const merged = join(td, "merged");
    try {
      mountAll(
        [
          {
            type: "overlay",
            source: "overlay",
            options: [
              `lowerdir=${join(td, "lower2")}:${join(td, "lower1")}`,
              `upperdir=${join(td, "upper")}`,
              `workdir=${join(td, "work")}`,
            ],
          },
        ],
        merged,
      );
    } catch {
      return false;
    }
    try {
      unmountAll(merged);
    } catch {
      unmountAll(merged, MNT.DETACH);
    }
    return true;
  } finally {
    // Only once nothing is mounted under it: a recursive delete must not reach through a mount.
    if (mountPointsUnder(td).length === 0)
      await rm(td, { recursive: true, force: true }).catch(() => undefined);
  }
}

export async function createOverlaySnapshotter(opts: OverlayOptions): Promise<Snapshotter> {
  const dirs = SnapshotDirs.open(opts.root);
  const ms = MetaStore.open(join(opts.root, "metadata.db"));
  const indexOff = supportsIndex();
  const asyncRemove = opts.asyncRemove ?? false;
  const withUpperdir = opts.upperdirLabel ?? false;

  const upperPath = (id: string) => join(dirs.path(id), "fs");
  const workPath = (id: string) => join(dirs.path(id), "work");

  const labelled = (id: string, info: SnapshotInfo): SnapshotInfo =>
    withUpperdir ? { ...info, labels: { ...info.labels, [upperdirLabel]: upperPath(id) } } : info;

  const mounts = (s: StoredSnapshot): Mount[] => {
    const nearest = s.parentIds[0];
    if (nearest === undefined) {
      // A single layer: overlay needs a lower dir, so bind the snapshot's own dir.
      return [{ type: "bind", source: upperPath(s.id), options: [s.kind === "view" ? "ro" : "rw", "rbind"] }];
    }
    const options: string[] = [];
    if (indexOff) options.push("index=off");
    if (s.kind === "active") {
      options.push(`workdir=${workPath(s.id)}`, `upperdir=${upperPath(s.id)}`);
    } else if (s.parentIds.length === 1) {
      // A read-only overlay needs two lower dirs: a view of one layer is a read-only bind of it.
      return [{ type: "bind", source: upperPath(nearest), options: ["ro", "rbind"] }];
    }
    options.push(`lowerdir=${s.parentIds.map(upperPath).join(":")}`);
    return [{ type: "overlay", source: "overlay", options }];
  };

  const createSnapshot = (kind: "active" | "view", key: string, parent: string, o?: SnapshotOptions) =>
    ms.exclusive(async (): Promise<Mount[]> => {
      let td = "";
      let installed = "";
      try {
        try {
          td = await dirs.makeTemp();
          mkdirSync(join(td, "fs"));
          chmodSync(join(td, "fs"), 0o755);
          if (kind === "active") {
            mkdirSync(join(td, "work"));
            chmodSync(join(td, "work"), 0o711);
          }
        } catch (err) {
          throw wrapError(err, "failed to create prepare snapshot dir");
        }
        const s = ms.write((): StoredSnapshot => {
          let created: StoredSnapshot;
          try {
            created = ms.createSnapshot(kind, key, parent, o?.labels);
          } catch (err) {
            throw wrapError(err, "failed to create snapshot");
          }
          const nearest = created.parentIds[0];
          if (nearest !== undefined) {
            // The new upper dir belongs to whoever owns the parent's root (user-namespaced images).
            let st;
            try {
              st = statSync(upperPath(nearest));
            } catch (err) {
              throw wrapError(err, "failed to stat parent");
            }
            try {
              lchownSync(join(td, "fs"), st.uid, st.gid);
            } catch (err) {
              throw wrapError(err, "failed to chown");
            }
          }
          try {
            installed = dirs.install(td, created.id);
          } catch (err) {
            throw wrapError(err, "failed to rename");
          }
          td = "";
          return created;
        });
        installed = ""; // committed: the directory is the record's now
        // Durable before the caller records it (the metadata DB names it) or answers.
        await ms.durable();
        return mounts(s);
      } catch (err) {
        // The record was rolled back (or never made): nothing on disk may stay under its id.
        if (td !== "") await rm(td, { recursive: true, force: true }).catch(() => undefined);
        if (installed !== "") await rm(installed, { recursive: true, force: true }).catch(() => undefined);
        throw err;
      }
    });

  const snapshotter: Snapshotter = {
    async stat(key) {
      const { id, info } = ms.getInfo(key);
      return labelled(id, info);
    },

    async update(info, fieldpaths = []) {
      const updated = ms.updateInfo(info, fieldpaths);
      await ms.durable();
      return withUpperdir ? labelled(ms.getInfo(updated.name).id, updated) : updated;
    },

    async usage(key) {
      const { id, info, usage } = ms.getInfo(key);
      // Active: measure the upper dir now (slow on big trees). Committed: measured at commit.
      if (info.kind === "active") return diskUsage(upperPath(id));
      return usage;
    },

    async mounts(key) {
      let s: StoredSnapshot;
      try {
        s = ms.getSnapshot(key);
      } catch (err) {
        throw wrapError(err, "failed to get active mount");
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
        const usage = info.kind === "active" ? await diskUsage(upperPath(id)) : { size: 0, inodes: 0 };
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
          throw wrapError(err, `failed to remove snapshot ${key}`);
        }
        // The record is gone (for good: synced before the bytes go), so the key is free again;
        // the bytes follow (or wait for cleanup).
        await ms.durable();
        // (Wrapped: a promise returned bare would hold the section until the deletion ends.)
        return { deletion: asyncRemove ? undefined : dirs.retire(id) };
      });
      await deletion;
    },

    async walk(fn, filters = []) {
      for (const { id, info } of ms.walkInfo(filters)) await fn(labelled(id, info));
    },

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
