// The metadata database: SQLite (better-sqlite3) in WAL mode, one transaction per API write, made
// durable off the event loop (synchronous=NORMAL plus WalSync's fdatasync before anything depending
// on a commit leaves the process: see wal-sync.ts). Every table is keyed by namespace first; labels
// are JSON objects.
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { WalSync } from "./wal-sync.js";

export type MetadataDB = Database.Database;

const schemaVersion = 1;

const schema = `
CREATE TABLE IF NOT EXISTS namespaces (
  name TEXT PRIMARY KEY,
  labels TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
  namespace TEXT NOT NULL,
  name TEXT NOT NULL,
  target_media_type TEXT NOT NULL,
  target_digest TEXT NOT NULL,
  target_size INTEGER NOT NULL,
  target_annotations TEXT NOT NULL DEFAULT '{}',
  labels TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (namespace, name)
);
CREATE TABLE IF NOT EXISTS containers (
  namespace TEXT NOT NULL,
  id TEXT NOT NULL,
  labels TEXT NOT NULL DEFAULT '{}',
  image TEXT NOT NULL DEFAULT '',
  runtime_name TEXT NOT NULL,
  runtime_options_type TEXT,
  runtime_options BLOB,
  spec_type TEXT,
  spec BLOB,
  snapshotter TEXT NOT NULL DEFAULT '',
  snapshot_key TEXT NOT NULL DEFAULT '',
  extensions TEXT NOT NULL DEFAULT '{}',
  sandbox TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (namespace, id)
);
CREATE TABLE IF NOT EXISTS leases (
  namespace TEXT NOT NULL,
  id TEXT NOT NULL,
  labels TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  PRIMARY KEY (namespace, id)
);
CREATE TABLE IF NOT EXISTS lease_resources (
  namespace TEXT NOT NULL,
  lease_id TEXT NOT NULL,
  type TEXT NOT NULL,
  id TEXT NOT NULL,
  PRIMARY KEY (namespace, lease_id, type, id)
);
CREATE TABLE IF NOT EXISTS content (
  namespace TEXT NOT NULL,
  digest TEXT NOT NULL,
  size INTEGER NOT NULL,
  labels TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (namespace, digest)
);
CREATE TABLE IF NOT EXISTS ingests (
  namespace TEXT NOT NULL,
  ref TEXT NOT NULL,
  backend_ref TEXT NOT NULL,
  expected TEXT NOT NULL DEFAULT '',
  expires_at INTEGER,
  PRIMARY KEY (namespace, ref)
);
CREATE TABLE IF NOT EXISTS snapshots (
  namespace TEXT NOT NULL,
  snapshotter TEXT NOT NULL,
  key TEXT NOT NULL,
  backend_key TEXT NOT NULL,
  parent TEXT NOT NULL DEFAULT '',
  kind INTEGER NOT NULL,
  labels TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (namespace, snapshotter, key)
);
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
`;

const walSyncs = new WeakMap<MetadataDB, WalSync>();

/** Opens (creating if needed) the metadata DB at path with durable settings and the schema applied. */
export function openMetadataDB(path: string): MetadataDB {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  // Commits are synced by WalSync (before replies, events and file removals), not inside COMMIT.
  db.pragma("synchronous = NORMAL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  db.exec(schema);
  db.prepare("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)").run(
    String(schemaVersion),
  );
  walSyncs.set(db, new WalSync(db));
  return db;
}

/** Resolves once every transaction committed on db so far is on stable storage. */
export function metadataDurable(db: MetadataDB): Promise<void> {
  return walSyncs.get(db)?.flush() ?? Promise.resolve();
}

/** Closes db (SQLite syncs and checkpoints the WAL on close) and its WalSync. */
export function closeMetadataDB(db: MetadataDB): void {
  walSyncs.get(db)?.close();
  walSyncs.delete(db);
  if (db.open) db.close();
}

/** Records that a namespace exists (namespaces appear on their first write). Call inside a transaction. */
export function ensureNamespace(db: MetadataDB, namespace: string, now = Date.now()): boolean {
  const r = cachedStatement(
    db,
    "INSERT OR IGNORE INTO namespaces (name, labels, created_at, updated_at) VALUES (?, '{}', ?, ?)",
  ).run(namespace, now, now);
  return r.changes > 0;
}

const statementCaches = new WeakMap<MetadataDB, Map<string, Database.Statement>>();

/** db.prepare(sql), prepared once per database (preparing costs more than running a small one). */
export function cachedStatement(db: MetadataDB, sql: string): Database.Statement {
  let cache = statementCaches.get(db);
  if (cache === undefined) statementCaches.set(db, (cache = new Map()));
  let stmt = cache.get(sql);
  if (stmt === undefined) cache.set(sql, (stmt = db.prepare(sql)));
  return stmt;
}

export function parseLabels(json: string): Record<string, string> {
  return JSON.parse(json) as Record<string, string>;
}
