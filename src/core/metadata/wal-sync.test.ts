import { test } from "node:test";
import assert from "node:assert/strict";
import {
  closeSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { WAL_PREALLOCATED_BYTES, WalSync, durabilityPending, durable, zeroFillTo } from "./wal-sync.js";
import { closeMetadataDB, metadataDurable, openMetadataDB } from "./db.js";

function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "berth-wal-sync-"));
  return fn(dir).finally(() => rmSync(dir, { recursive: true, force: true }));
}

function openWal(path: string): Database.Database {
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.exec("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
  return db;
}

/** A WAL database x.db in a fresh directory, with its WalSync; both closed afterwards. */
function withWal(
  opts: { registered?: boolean },
  fn: (db: Database.Database, wal: WalSync, dir: string) => Promise<void>,
): Promise<void> {
  return withDir(async (dir) => {
    const db = openWal(join(dir, "x.db"));
    const wal = new WalSync(db, opts);
    try {
      await fn(db, wal, dir);
    } finally {
      wal.close();
      db.close();
    }
  });
}

void test("a commit is in the -wal file at once and pending until flushed", async () => {
  await withWal({}, async (db, wal, dir) => {
    await wal.flush();
    assert.equal(wal.pending, false);
    db.prepare("INSERT INTO t VALUES (?, ?)").run("k1", "marker-one");
    assert.equal(wal.pending, true);
    assert.equal(durabilityPending(), true);
    // Atomic and visible to a crash of the process: the frames are written by COMMIT.
    assert.ok(readFileSync(join(dir, "x.db-wal")).includes("marker-one"));
    await wal.flush();
    assert.equal(wal.pending, false);
    assert.equal(durabilityPending(), false);
    // A read changes nothing that needs syncing.
    db.prepare("SELECT v FROM t").all();
    assert.equal(wal.pending, false);
  });
});

void test("concurrent flushes share syncs and cover commits made while one runs", async () => {
  await withWal({}, async (db, wal) => {
    const insert = db.prepare("INSERT INTO t VALUES (?, ?)");
    insert.run("a", "1");
    const first = wal.flush();
    insert.run("b", "2"); // committed while the first sync may be running
    const second = wal.flush();
    await Promise.all([first, second, wal.flush()]);
    assert.equal(wal.pending, false);
    insert.run("c", "3");
    await durable();
    assert.equal(wal.pending, false);
    assert.deepEqual(db.prepare("SELECT k FROM t ORDER BY k").pluck().all(), ["a", "b", "c"]);
  });
});

void test("a closed database is forgotten, whether closed through WalSync or not", async () => {
  await withDir(async (dir) => {
    const db = openWal(join(dir, "x.db"));
    const wal = new WalSync(db);
    db.prepare("INSERT INTO t VALUES (?, ?)").run("a", "1");
    db.close();
    assert.equal(wal.pending, false);
    await durable();
    await wal.flush();
    wal.close();
  });
});

void test("the metadata DB commits without syncing and metadataDurable syncs it", async () => {
  await withDir(async (dir) => {
    const db = openMetadataDB(join(dir, "meta.db"));
    try {
      // 1 = NORMAL: COMMIT leaves the fsync to WalSync.
      assert.equal(db.pragma("synchronous", { simple: true }), 1);
      await metadataDurable(db);
      assert.equal(durabilityPending(), false);
      db.prepare("INSERT INTO leases (namespace, id, labels, created_at) VALUES ('ns', 'l', '{}', 0)").run();
      assert.equal(durabilityPending(), true);
      await metadataDurable(db);
      assert.equal(durabilityPending(), false);
    } finally {
      closeMetadataDB(db);
    }
    // Closing checkpoints: the row is in the database file itself.
    const again = new Database(join(dir, "meta.db"), { readonly: true });
    try {
      assert.equal(again.prepare("SELECT id FROM leases").pluck().get(), "l");
    } finally {
      again.close();
    }
  });
});

void test("zeroFillTo extends a file with zeros and never touches what is there", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "f");
    writeFileSync(path, "frames");
    const fd = openSync(path, "r+");
    try {
      zeroFillTo(fd, 3 << 20);
      const bytes = readFileSync(path);
      assert.equal(bytes.length, 3 << 20);
      assert.equal(bytes.subarray(0, 6).toString(), "frames");
      assert.ok(bytes.subarray(6).every((b) => b === 0));
      zeroFillTo(fd, 16); // longer already: nothing to do
      assert.equal(statSync(path).size, 3 << 20);
    } finally {
      closeSync(fd);
    }
  });
});

void test("the -wal file is written ahead with zeros, and a crash keeps every synced commit, across checkpoints", async () => {
  await withWal({}, async (db, wal, dir) => {
    assert.equal(statSync(join(dir, "x.db-wal")).size, WAL_PREALLOCATED_BYTES);
    const insert = db.prepare("INSERT INTO t VALUES (?, ?)");
    // 6 MiB of rows: past the automatic checkpoint, so the log is also written again from its start.
    for (let i = 0; i < 300; i++) {
      insert.run(`k${String(i).padStart(3, "0")}`, `v${i}`.padEnd(20_000, "."));
      if (i % 50 === 0) await wal.flush();
    }
    insert.run("last", "the final commit");
    await wal.flush();
    // A crash: the files as they are now, opened elsewhere without the writer's shared memory.
    const crashed = join(dir, "crashed");
    rmSync(crashed, { recursive: true, force: true });
    mkdirSync(crashed);
    copyFileSync(join(dir, "x.db"), join(crashed, "x.db"));
    copyFileSync(join(dir, "x.db-wal"), join(crashed, "x.db-wal"));
    const after = new Database(join(crashed, "x.db"));
    try {
      assert.equal(after.pragma("integrity_check", { simple: true }), "ok");
      assert.equal(after.prepare("SELECT count(*) FROM t").pluck().get(), 301);
      assert.equal(after.prepare("SELECT v FROM t WHERE k = 'last'").pluck().get(), "the final commit");
    } finally {
      after.close();
    }
  });
});

void test("an unregistered file is left to its writers: durable() does not sync it, flush() does", async () => {
  await withWal({ registered: false }, async (db, wal) => {
    db.prepare("INSERT INTO t VALUES (?, ?)").run("k", "v");
    assert.equal(wal.pending, true);
    assert.equal(durabilityPending(), false);
    await durable();
    assert.equal(wal.pending, true, "durable() is not this file's business");
    await wal.flush();
    assert.equal(wal.pending, false);
  });
});
