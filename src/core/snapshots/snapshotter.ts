// The snapshotter contract (containerd's snapshots.Snapshotter): a tree of file system snapshots
// addressed by string keys. Committed snapshots are immutable and may be parents; active ones are
// writable and may be committed; views are read-only and may not. Backends (overlayfs, native)
// implement it over one flat key space; the metadata layer implements it again per namespace on
// top of a backend. snapshotter-conformance.ts is the definition of done for every implementation.
import type { Mount } from "../mount/mount-types.js";

export type SnapshotKind = "view" | "active" | "committed";

export interface SnapshotInfo {
  /** The key (active/view) or the name (committed). */
  name: string;
  /** The committed parent's name, "" for none. */
  parent: string;
  kind: SnapshotKind;
  labels: Record<string, string>;
  createdAt: Date;
  updatedAt: Date;
}

export interface SnapshotUsage {
  /** Bytes used by this snapshot alone (parents excluded). */
  size: number;
  inodes: number;
}

export interface SnapshotOptions {
  labels?: Record<string, string>;
}

export interface Snapshotter {
  /** NotFound when key does not exist. */
  stat(key: string): Promise<SnapshotInfo>;
  /**
   * Replaces the labels (all of them when fieldpaths is empty, else only `labels` or
   * `labels.<k>` paths); returns the updated info. NotFound when missing.
   */
  update(
    info: { name: string; labels: Record<string, string> },
    fieldpaths?: string[],
  ): Promise<SnapshotInfo>;
  usage(key: string): Promise<SnapshotUsage>;
  /** Mounts of an active or view snapshot; NotFound when missing; FailedPrecondition for committed. */
  mounts(key: string): Promise<Mount[]>;
  /**
   * New active snapshot on top of committed parent ("" for none). AlreadyExists for a duplicate
   * key, NotFound for a missing parent, InvalidArgument for a parent that is not committed.
   */
  prepare(key: string, parent: string, opts?: SnapshotOptions): Promise<Mount[]>;
  /** Like prepare, but read-only and never committable. */
  view(key: string, parent: string, opts?: SnapshotOptions): Promise<Mount[]>;
  /**
   * Turns active key into committed name (same parent); key disappears. NotFound for a missing
   * key, FailedPrecondition when key is not active, AlreadyExists when name is taken.
   */
  commit(name: string, key: string, opts?: SnapshotOptions): Promise<void>;
  /** NotFound when missing; FailedPrecondition when it has children. */
  remove(key: string): Promise<void>;
  /** Calls fn for every snapshot matching the filters (containerd's filter grammar). */
  walk(fn: (info: SnapshotInfo) => void | Promise<void>, filters?: string[]): Promise<void>;
  /** Frees backend resources no longer referenced (optional in containerd). */
  cleanup?(): Promise<void>;
  close(): Promise<void>;
}
