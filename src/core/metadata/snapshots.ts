// Snapshot records in the metadata DB, per namespace and snapshotter. This is the read side that
// `ctr images check` and `ctr snapshots ls` need; Prepare/Commit/Remove arrive with the
// snapshotter backends (overlayfs, native), which own the bytes.
import type { MetadataDB } from "./db.js";
import type { RequestContext } from "../context.js";
import { notFound } from "../../errdefs/errors.js";
import { decodeStringMap } from "./field-paths.js";
import { requireNamespace } from "./store-support.js";
import { parseFilters } from "../filters/filter.js";
import { snapshotAdaptor } from "../filters/adaptors.js";

export type SnapshotKind = "view" | "active" | "committed";
const kinds: Record<number, SnapshotKind> = { 1: "view", 2: "active", 3: "committed" };

export interface SnapshotInfo {
  name: string;
  parent: string;
  kind: SnapshotKind;
  labels: Record<string, string>;
  createdAt: Date;
  updatedAt: Date;
}

interface SnapshotRow {
  key: string;
  parent: string;
  kind: number;
  labels: string;
  created_at: number;
  updated_at: number;
}

const toInfo = (r: SnapshotRow): SnapshotInfo => ({
  name: r.key,
  parent: r.parent,
  kind: kinds[r.kind] ?? "active",
  labels: decodeStringMap(r.labels),
  createdAt: new Date(r.created_at),
  updatedAt: new Date(r.updated_at),
});

export interface SnapshotRecords {
  /** NotFound `snapshot <key> does not exist` as containerd says it. */
  stat(ctx: RequestContext, snapshotter: string, key: string): SnapshotInfo;
  list(ctx: RequestContext, snapshotter: string, filters?: string[]): SnapshotInfo[];
}

export function createSnapshotRecords(db: MetadataDB): SnapshotRecords {
  const columns = "key, parent, kind, labels, created_at, updated_at";
  const get = db.prepare<[string, string, string], SnapshotRow>(
    `SELECT ${columns} FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?`,
  );
  const all = db.prepare<[string, string], SnapshotRow>(
    `SELECT ${columns} FROM snapshots WHERE namespace = ? AND snapshotter = ? ORDER BY key`,
  );
  return {
    stat(ctx, snapshotter, key) {
      const row = get.get(requireNamespace(ctx), snapshotter, key);
      if (!row) throw notFound(`snapshot ${key} does not exist`);
      return toInfo(row);
    },
    list(ctx, snapshotter, filters = []) {
      const filter = parseFilters(filters);
      return all
        .all(requireNamespace(ctx), snapshotter)
        .map(toInfo)
        .filter((i) => filter.match(snapshotAdaptor(i)));
    },
  };
}
