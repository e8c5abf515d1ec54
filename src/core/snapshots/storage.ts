// The metastore every snapshotter backend keeps beside its data (containerd's snapshots/storage):
// one SQLite file in the backend's root, one row per snapshot with a numeric id that never changes
// (commit renames the key, the id and so the directory stay), the parent link, kind, labels,
// times and, for committed snapshots, the usage measured at commit. Ids are never reused, so a
// directory named after a removed snapshot can never be mistaken for a new one. The error kinds and
// texts are containerd's, which clients print verbatim.
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import {
  BerthError,
  alreadyExists,
  failedPrecondition,
  invalidArgument,
  notFound,
} from "../../errdefs/errors.js";
import { parseFilters } from "../filters/filter.js";
import { snapshotAdaptor } from "../filters/adaptors.js";
import type { SnapshotInfo, SnapshotKind, SnapshotUsage } from "./snapshotter.js";
import { WalSync } from "../metadata/wal-sync.js";

/** An active or view snapshot as a backend needs it to build mounts. */
export interface StoredSnapshot {
  id: string;
  kind: SnapshotKind;
  /** Ids of the committed parents, the immediate parent first. */
  parentIds: string[];
}

export interface StoredInfo {
  id: string;
  info: SnapshotInfo;
  /** Stored at commit; zero for active and view snapshots (backends measure those live). */
  usage: SnapshotUsage;
}

// The wire enum (containerd.services.snapshots.v1.Kind) as the stored kind.
const kindCode: Record<SnapshotKind, number> = { view: 1, active: 2, committed: 3 };
const kindName: Record<number, SnapshotKind> = { 1: "view", 2: "active", 3: "committed" };

const schema = `
CREATE TABLE IF NOT EXISTS snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  key TEXT NOT NULL UNIQUE,
  parent_id INTEGER REFERENCES snapshots (id),
  kind INTEGER NOT NULL,
  labels TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  inodes INTEGER NOT NULL DEFAULT 0,
  size INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS snapshots_children ON snapshots (parent_id);
`;

interface Row {
  id: number;
  key: string;
  parent: string | null;
  parent_id: number | null;
  kind: number;
  labels: string;
  created_at: number;
  updated_at: number;
  inodes: number;
  size: number;
}

/** Go's %q for the strings we quote (keys and field paths). */
const quote = (s: string): string => JSON.stringify(s);

/** Labels as stored: no empty values (containerd drops them on write), keys sorted. */
function compactLabels(labels: Readonly<Record<string, string>> | undefined): Record<string, string> {
  return Object.fromEntries(
    Object.entries(labels ?? {})
      .filter(([, v]) => typeof v === "string" && v !== "")
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
}

/** Prefixes an error's message the way Go's fmt.Errorf("prefix: %w") does, keeping its code. */
export function wrapError(err: unknown, prefix: string): Error {
  if (err instanceof BerthError) return new BerthError(err.code, `${prefix}: ${err.message}`, { cause: err });
  if (err instanceof Error) return new Error(`${prefix}: ${err.message}`, { cause: err });
  return new Error(`${prefix}: ${String(err)}`);
}

function requireKey(key: string): void {
  if (key === "") throw invalidArgument("key must not be empty");
}

export class MetaStore {
  readonly #db: Database.Database;
  readonly #wal: WalSync;
  #tail: Promise<void> = Promise.resolve();
  readonly #stmts;

  private constructor(db: Database.Database) {
    this.#db = db;
    // Not awaited by every reply: each backend write flushes it itself (see wal-sync.ts).
    this.#wal = new WalSync(db, { registered: false });
    const select = `SELECT s.id, s.key, p.key AS parent, s.parent_id, s.kind, s.labels, s.created_at,
        s.updated_at, s.inodes, s.size
      FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id`;
    this.#stmts = {
      byKey: db.prepare<[string], Row>(`${select} WHERE s.key = ?`),
      all: db.prepare<[], Row>(`${select} ORDER BY s.key`),
      chain: db.prepare<[number], { id: number }>(
        `WITH RECURSIVE chain (id, parent_id, depth) AS (
           SELECT id, parent_id, 0 FROM snapshots WHERE id = ?
           UNION ALL
           SELECT s.id, s.parent_id, c.depth + 1 FROM snapshots s JOIN chain c ON s.id = c.parent_id
         )
         SELECT id FROM chain ORDER BY depth`,
      ),
      hasChild: db.prepare<[number], { one: number }>(
        "SELECT 1 AS one FROM snapshots WHERE parent_id = ? LIMIT 1",
      ),
      insert: db.prepare<[string, number | null, number, string, number, number]>(
        `INSERT INTO snapshots (key, parent_id, kind, labels, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?)`,
      ),
      updateLabels: db.prepare<[string, number, number]>(
        "UPDATE snapshots SET labels = ?, updated_at = ? WHERE id = ?",
      ),
      commit: db.prepare<[string, number, string, number, number, number, number, number]>(
        `UPDATE snapshots SET key = ?, kind = ?, labels = ?, created_at = ?, updated_at = ?,
           inodes = ?, size = ? WHERE id = ?`,
      ),
      delete: db.prepare<[number]>("DELETE FROM snapshots WHERE id = ?"),
      ids: db.prepare<[], { id: number; key: string }>("SELECT id, key FROM snapshots"),
    };
  }

  /**
   * Opens (creating if needed) the metastore file: WAL, synchronous=NORMAL and commits synced by
   * WalSync, like the metadata DB. Backends await durable() after each write, before the
   * metadata DB records what they did and before they remove anything a removed row named.
   */
  static open(file: string): MetaStore {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    const db = new Database(file);
    try {
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      db.pragma("foreign_keys = ON");
      db.pragma("busy_timeout = 5000");
      db.exec(schema);
    } catch (err) {
      db.close();
      throw err;
    }
    return new MetaStore(db);
  }

  get closed(): boolean {
    return !this.#db.open;
  }

  /** Closes the database; closing twice is fine. */
  close(): void {
    this.#wal.close();
    if (this.#db.open) this.#db.close();
  }

  /** Resolves once every write committed so far is on stable storage. */
  durable(): Promise<void> {
    return this.#wal.flush();
  }

  /** Closes the database once the exclusive sections queued so far have finished. */
  async closeWhenIdle(): Promise<void> {
    await this.#tail;
    this.close();
  }

  #checkOpen(): void {
    if (!this.#db.open) throw new Error("database not open");
  }

  /**
   * Runs fn while no other exclusive section runs: backends hold it across the file system work
   * of a write (a copy, a usage walk), as containerd holds bolt's single write transaction.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(() => {
      this.#checkOpen();
      return fn();
    });
    this.#tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** fn in one write transaction (BEGIN IMMEDIATE): all of it is committed, or none. */
  write<T>(fn: () => T): T {
    this.#checkOpen();
    return this.#db.transaction(fn).immediate();
  }

  /** fn in one read transaction: every read sees the same state. */
  read<T>(fn: () => T): T {
    this.#checkOpen();
    return this.#db.transaction(fn).deferred();
  }

  #row(key: string): Row | undefined {
    this.#checkOpen();
    return this.#stmts.byKey.get(key);
  }

  #info(r: Row): SnapshotInfo {
    return {
      name: r.key,
      parent: r.parent ?? "",
      kind: kindName[r.kind] ?? "active",
      labels: JSON.parse(r.labels) as Record<string, string>,
      createdAt: new Date(r.created_at),
      updatedAt: new Date(r.updated_at),
    };
  }

  #parentIds(parentId: number | null): string[] {
    if (parentId === null) return [];
    return this.#stmts.chain.all(parentId).map((r) => String(r.id));
  }

  /** The id, info and stored usage of key. NotFound when missing. */
  getInfo(key: string): StoredInfo {
    const r = this.#row(key);
    if (r === undefined) throw notFound("snapshot does not exist");
    return { id: String(r.id), info: this.#info(r), usage: { size: r.size, inodes: r.inodes } };
  }

  /**
   * Replaces the labels (no field paths, or "labels"), or copies single `labels.<k>` entries from
   * info (an absent or empty value removes the label). Any other path is InvalidArgument.
   */
  updateInfo(
    info: { name: string; labels: Record<string, string> },
    fieldpaths: readonly string[] = [],
  ): SnapshotInfo {
    return this.write(() => {
      const r = this.#row(info.name);
      if (r === undefined) throw notFound("snapshot does not exist");
      let labels = new Map(Object.entries(JSON.parse(r.labels) as Record<string, string>));
      const given = info.labels ?? {};
      if (fieldpaths.length === 0) labels = new Map(Object.entries(given));
      for (const path of fieldpaths) {
        if (path.startsWith("labels.")) {
          const k = path.slice("labels.".length);
          labels.set(k, Object.hasOwn(given, k) ? (given[k] as string) : "");
        } else if (path === "labels") {
          labels = new Map(Object.entries(given));
        } else {
          throw invalidArgument(`cannot update ${quote(path)} field on snapshot ${quote(info.name)}`);
        }
      }
      const stored = compactLabels(Object.fromEntries(labels));
      const now = Date.now();
      this.#stmts.updateLabels.run(JSON.stringify(stored), now, r.id);
      return { ...this.#info(r), labels: stored, updatedAt: new Date(now) };
    });
  }

  /** Every snapshot matching filters (containerd's grammar; none means all), in key order. */
  walkInfo(filters: readonly string[] = []): { id: string; info: SnapshotInfo }[] {
    const filter = parseFilters(filters);
    this.#checkOpen();
    return this.#stmts.all
      .all()
      .map((r) => ({ id: String(r.id), info: this.#info(r) }))
      .filter(({ info }) => filter.match(snapshotAdaptor(info)));
  }

  /** An active or view snapshot with its parent chain. NotFound, or FailedPrecondition for committed. */
  getSnapshot(key: string): StoredSnapshot {
    return this.read(() => {
      const r = this.#row(key);
      if (r === undefined) throw notFound("snapshot does not exist");
      const kind = kindName[r.kind];
      if (kind !== "active" && kind !== "view")
        throw failedPrecondition(`requested snapshot ${key} not active or view`);
      return { id: String(r.id), kind, parentIds: this.#parentIds(r.parent_id) };
    });
  }

  /**
   * The checks of createSnapshot without the write: the parent chain a new snapshot on parent
   * would get. Lets a backend do slow preparation (a copy) before the write transaction.
   */
  checkCreate(key: string, parent: string): string[] {
    return this.read(() => this.#checkCreate(key, parent).parentIds);
  }

  #checkCreate(key: string, parent: string): { parentId: number | null; parentIds: string[] } {
    requireKey(key);
    let parentId: number | null = null;
    if (parent !== "") {
      const p = this.#row(parent);
      if (p === undefined) throw notFound(`missing parent ${quote(parent)} bucket`);
      if (p.kind !== kindCode.committed)
        throw invalidArgument(`parent ${quote(parent)} is not committed snapshot`);
      parentId = p.id;
    }
    if (this.#row(key) !== undefined) throw alreadyExists(`snapshot ${key}`);
    return { parentId, parentIds: this.#parentIds(parentId) };
  }

  /**
   * Records a new active or view snapshot on committed parent ("" for none). NotFound for a
   * missing parent, InvalidArgument for one that is not committed, AlreadyExists for the key.
   */
  createSnapshot(
    kind: "active" | "view",
    key: string,
    parent: string,
    labels?: Record<string, string>,
  ): StoredSnapshot {
    return this.write(() => {
      const { parentId, parentIds } = this.#checkCreate(key, parent);
      const now = Date.now();
      const r = this.#stmts.insert.run(
        key,
        parentId,
        kindCode[kind],
        JSON.stringify(compactLabels(labels)),
        now,
        now,
      );
      return { id: String(r.lastInsertRowid), kind, parentIds };
    });
  }

  /** Deletes the record of key; returns its id and kind. NotFound; FailedPrecondition with children. */
  remove(key: string): { id: string; kind: SnapshotKind } {
    return this.write(() => {
      const r = this.#row(key);
      if (r === undefined) throw notFound(`snapshot ${key}`);
      if (this.#stmts.hasChild.get(r.id) !== undefined)
        throw failedPrecondition("cannot remove snapshot with child");
      this.#stmts.delete.run(r.id);
      return { id: String(r.id), kind: kindName[r.kind] ?? "active" };
    });
  }

  /**
   * Turns active key into committed name with the same id and parent, the given labels (not the
   * active's) and usage; returns the id. AlreadyExists for name, NotFound for key,
   * FailedPrecondition when key is not active.
   */
  commitActive(key: string, name: string, usage: SnapshotUsage, labels?: Record<string, string>): string {
    return this.write(() => {
      requireKey(name);
      if (this.#row(name) !== undefined) throw alreadyExists(`committed snapshot ${name}`);
      const r = this.#row(key);
      if (r === undefined) throw notFound(`failed to get active snapshot ${quote(key)}`);
      if (r.kind !== kindCode.active) throw failedPrecondition(`snapshot ${quote(key)} is not active`);
      const now = Date.now();
      this.#stmts.commit.run(
        name,
        kindCode.committed,
        JSON.stringify(compactLabels(labels)),
        now,
        now,
        usage.inodes,
        usage.size,
        r.id,
      );
      return String(r.id);
    });
  }

  /** Every id in use, mapped to its key. */
  idMap(): Map<string, string> {
    this.#checkOpen();
    return new Map(this.#stmts.ids.all().map((r) => [String(r.id), r.key]));
  }
}
