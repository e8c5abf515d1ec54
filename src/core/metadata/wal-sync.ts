// Durability of berthd's SQLite files (the metadata DB and every snapshotter's metastore) without
// blocking the event loop on fsync.
//
// The files run in WAL mode with synchronous=NORMAL: a COMMIT appends its frames to the -wal file
// (so it is atomic, and survives the process dying: the bytes are in the page cache) but does not
// fsync it. WalSync then fdatasyncs the -wal file on the libuv threadpool. Once that returns, every
// transaction committed before it started is as durable as with synchronous=FULL, which fsyncs the
// same file at the end of each COMMIT (SQLite's docs: FULL differs from NORMAL in WAL mode only by
// that sync; checkpoints sync the WAL before and the DB after copying, in both modes).
//
// The rule that keeps this equivalent to FULL (and to containerd's bolt, which fsyncs each commit):
// nothing that depends on a commit leaves the process, and no irreversible file system step that
// follows a commit is taken, before that commit is synced.
//   - Every gRPC response (unary reply, stream message, stream end) waits for durable(), which
//     syncs every registered file with commits not yet synced (grpc-adapter.ts). So does event
//     publication after a write. A client therefore never sees, nor hears of, a state a power
//     loss could take back; that includes state another call committed and this one only read.
//   - Where one file's commit must be durable before another's (a snapshotter's metastore row
//     before the metadata row that names it) or before files are removed (GC, snapshot removal),
//     the code awaits the file's flush() at that point.
//   - The snapshotters' metastores are not registered with durable(): every backend method that
//     writes flushes its own commit before it returns, and clients reach backend state only
//     through metadata rows committed after that. So a reply never waits for a metastore sync on
//     another call's behalf (a Containers.Delete for the backend removal that the Snapshots.Remove
//     before it started after its reply), and each reply checks one file, not three.
// Concurrent callers share one fdatasync (group commit): a flush started while another runs waits
// for it and then runs one more, covering everything committed meanwhile.
//
// The -wal file is written full of zeros up to WAL_PREALLOCATED_BYTES when it is opened (as
// PostgreSQL zero-fills its WAL segments). SQLite appends frames until a checkpoint (at 1000
// pages, about 4 MiB) and then writes them again from the start; without the zeros, each commit
// until that first checkpoint grows the file, so each fdatasync also commits the file system's
// journal (the new size and blocks), and waits for whatever else the journal holds (container
// rootfs directories, bundles). Over written blocks, fdatasync writes the data and nothing more.
// SQLite finds the end of the log by the salts and checksums of its frames, never by the file's
// size, so zeros past the last frame are what it reads as the end.
import {
  closeSync,
  constants,
  fdatasync,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  openSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";
import type Database from "better-sqlite3";

/** Past SQLite's automatic checkpoint (1000 pages of 4 KiB, plus frame headers). */
export const WAL_PREALLOCATED_BYTES = 8 << 20;

/** Writes zeros from the end of the file up to size bytes (nothing when it is that long already). */
export function zeroFillTo(fd: number, size: number): void {
  let offset = fstatSync(fd).size;
  if (offset >= size) return;
  const zeros = Buffer.alloc(Math.min(1 << 20, size - offset));
  while (offset < size) offset += writeSync(fd, zeros, 0, Math.min(zeros.length, size - offset), offset);
  fdatasyncSync(fd);
}

function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export class WalSync {
  readonly #db: Database.Database;
  #fd: number | undefined;
  readonly #changes: Database.Statement<[], number>;
  /** total_changes() at the start of the last completed sync: everything up to it is durable. */
  #durable: number;
  #running: Promise<void> | undefined;
  /**
   * A failed fdatasync, for good: Linux may drop the dirty pages it could not write and report it
   * once, so a later sync that succeeds proves nothing (as PostgreSQL learned). Every flush fails
   * from then on, and so does every call that needs one, until berthd is restarted.
   */
  #failed: Error | undefined;

  /**
   * Call after the database is in WAL mode and has been read (SQLite has created the -wal file).
   * Registers the file with durable() unless opts.registered is false: then every writer of the
   * file must flush() it before anything that depends on its commit leaves the process.
   */
  constructor(db: Database.Database, opts: { registered?: boolean } = {}) {
    this.#db = db;
    const wal = `${db.name}-wal`;
    // O_CREAT: an empty file is what SQLite would create itself; it keeps using this inode (it
    // rewrites the -wal file in place after checkpoints and deletes it only when the last
    // connection closes).
    this.#fd = openSync(wal, constants.O_RDWR | constants.O_CREAT, 0o644);
    zeroFillTo(this.#fd, WAL_PREALLOCATED_BYTES);
    fsyncDirSync(dirname(wal));
    this.#changes = db.prepare<[], number>("SELECT total_changes()").pluck();
    this.#durable = this.#changes.get() ?? 0;
    if (opts.registered !== false) registry.add(this);
  }

  /** True when some commit (or rolled-back write, which costs a needless sync) is not yet synced. */
  get pending(): boolean {
    if (this.#fd === undefined) return false;
    if (!this.#db.open) {
      // Closed without close(): SQLite synced it on closing; let the descriptor go.
      this.close();
      return false;
    }
    return this.#changes.get() !== this.#durable;
  }

  /** Resolves once every transaction committed before this call is on stable storage. */
  async flush(): Promise<void> {
    if (this.#failed !== undefined) throw this.#failed;
    if (!this.pending) return;
    // Only what is committed now: commits made while this waits are not its business (a steady
    // stream of them must not keep it waiting).
    const target = this.#changes.get() ?? 0;
    while (this.#durable < target && this.#fd !== undefined && this.#db.open) {
      if (this.#running === undefined) {
        // One sync for everything committed so far, whoever asked for it.
        this.#running = this.#sync(this.#changes.get() ?? target).finally(() => {
          this.#running = undefined;
        });
      }
      await this.#running;
    }
  }

  async #sync(target: number): Promise<void> {
    const fd = this.#fd;
    if (fd === undefined) return;
    try {
      await new Promise<void>((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
    } catch (err) {
      this.#failed = new Error(
        `syncing ${this.#db.name}-wal failed; commits since the last sync may be lost: ${String(err)}`,
        { cause: err },
      );
      throw this.#failed;
    }
    this.#durable = Math.max(this.#durable, target);
  }

  /** Forgets the file (closing the database syncs it: SQLite checkpoints on the last close). */
  close(): void {
    registry.delete(this);
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd !== undefined) closeSync(fd);
  }
}

const registry = new Set<WalSync>();

/** True when some registered file has a commit not yet synced (cheap: no promise when false). */
export function durabilityPending(): boolean {
  for (const w of registry) if (w.pending) return true;
  return false;
}

/** Resolves once every commit made so far, in every registered file, is on stable storage. */
export async function durable(): Promise<void> {
  const pending = [...registry].filter((w) => w.pending);
  await Promise.all(pending.map((w) => w.flush()));
}
