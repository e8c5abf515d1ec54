// The local store's Writer: appends to ingest/<h>/data through one open fd, hashes as it goes, and
// on commit verifies, fsyncs and renames the data into blobs/sha256/<hex> (never before).
import { createHash, type Hash } from "node:crypto";
import { fchmodSync, fstatSync, futimesSync, renameSync } from "node:fs";
import { rm, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { alreadyExists, failedPrecondition } from "../../errdefs/errors.js";
import type { Status, Writer } from "./content.js";
import { fsyncDir, isErrno, pathExistsSync } from "./fs-probe.js";
import { replaceSmallFile, type IngestPaths } from "./ingest-dir.js";

export interface LocalWriterInit {
  ref: string;
  paths: IngestPaths;
  /** The data file, opened O_WRONLY|O_APPEND, holding `offset` bytes already fed to `hash`. */
  fh: FileHandle;
  hash: Hash;
  offset: number;
  total: number;
  expected: string;
  startedAt: Date;
  updatedAt: Date;
  /** Directory holding committed blobs (fsynced after each rename). */
  blobDir: string;
  /** Called once when the writer lets go of its ref (commit, close, abort). */
  release: () => void;
}

export class LocalWriter implements Writer {
  readonly ref: string;
  #fh: FileHandle | undefined;
  #hash: Hash;
  #offset: number;
  #total: number;
  #expected: string;
  readonly #startedAt: Date;
  #updatedAt: Date;
  readonly #paths: IngestPaths;
  readonly #blobDir: string;
  #release: (() => void) | undefined;
  // Operations run one at a time in call order, so an un-awaited write followed by commit still
  // commits what was written.
  #queue: Promise<unknown> = Promise.resolve();

  constructor(init: LocalWriterInit) {
    this.ref = init.ref;
    this.#fh = init.fh;
    this.#hash = init.hash;
    this.#offset = init.offset;
    this.#total = init.total;
    this.#expected = init.expected;
    this.#startedAt = init.startedAt;
    this.#updatedAt = init.updatedAt;
    this.#paths = init.paths;
    this.#blobDir = init.blobDir;
    this.#release = init.release;
  }

  async status(): Promise<Status> {
    return {
      ref: this.ref,
      offset: this.#offset,
      total: this.#total,
      expected: this.#expected,
      startedAt: this.#startedAt,
      updatedAt: this.#updatedAt,
    };
  }

  digest(): string {
    return `sha256:${this.#hash.copy().digest("hex")}`;
  }

  write(data: Uint8Array): Promise<number> {
    return this.#serial(async () => {
      const fh = this.#live("write");
      const before = this.#hash.copy();
      let done = 0;
      const pending = (async () => {
        while (done < data.length) {
          const { bytesWritten } = await fh.write(data, done, data.length - done);
          done += bytesWritten;
        }
      })();
      // Hash on the main thread while the write runs on the threadpool.
      this.#hash.update(data);
      try {
        await pending;
      } catch (err) {
        // Put file and hash back to the last good offset so the writer stays consistent.
        this.#hash = before;
        await fh.truncate(this.#offset).catch(() => undefined);
        throw err;
      }
      this.#offset += data.length;
      this.#updatedAt = new Date();
      return this.#offset;
    });
  }

  truncate(): Promise<void> {
    return this.#serial(async () => {
      const fh = this.#live("truncate");
      await fh.truncate(0);
      this.#hash = createHash("sha256");
      this.#offset = 0;
      this.#updatedAt = new Date();
    });
  }

  commit(size: number, expected: string, _labels?: Record<string, string>): Promise<string> {
    return this.#serial(async () => {
      const fh = this.#fh;
      if (fh === undefined) throw failedPrecondition("cannot commit on closed writer");
      // As in containerd, a commit ends the writer whatever its outcome; a failed one leaves the
      // ingest on disk for a new writer to resume.
      this.#fh = undefined;
      try {
        // The fsyncs and the removal of the ingest dir go through the threadpool (deleting files
        // can wait for the disk: a discard per freed extent on the bench VM); the metadata calls
        // around them are synchronous: each costs less than a threadpool round trip.
        await fh.sync();
        const { size: onDisk } = fstatSync(fh.fd);
        if (size > 0 && size !== onDisk) {
          throw failedPrecondition(`unexpected commit size ${onDisk}, expected ${size}`);
        }
        if (onDisk !== this.#offset) {
          // Something else wrote to the ingest file: the running digest no longer describes it.
          throw failedPrecondition(
            `ingest ${this.ref} changed on disk: ${onDisk} bytes, wrote ${this.#offset}`,
          );
        }
        const actual = this.digest();
        if (expected !== "" && expected !== actual) {
          throw failedPrecondition(`unexpected commit digest ${actual}, expected ${expected}`);
        }
        const target = path.join(this.#blobDir, actual.slice("sha256:".length));
        if (pathExistsSync(target)) {
          await rm(this.#paths.dir, { recursive: true, force: true });
          throw alreadyExists(`content ${actual}`);
        }
        // Read-only and timestamped before the rename, so the blob is never visible otherwise.
        fchmodSync(fh.fd, 0o444);
        const now = new Date();
        futimesSync(fh.fd, now, now);
        try {
          renameSync(this.#paths.data, target);
        } catch (err) {
          // Leave the ingest writable again so that it can still be resumed.
          try {
            fchmodSync(fh.fd, 0o600);
          } catch {
            // the rename's error is the one to report
          }
          throw err;
        }
        await fh.close();
        await fsyncDir(this.#blobDir);
        // The blob is committed; a leftover ingest dir without data is ignored and later reused.
        await rm(this.#paths.dir, { recursive: true, force: true }).catch(() => undefined);
        return actual;
      } finally {
        await fh.close().catch(() => undefined);
        this.#letGo();
      }
    });
  }

  close(): Promise<void> {
    return this.#serial(async () => {
      const fh = this.#fh;
      if (fh === undefined) return;
      this.#fh = undefined;
      try {
        await fh.sync();
        await fh.close();
        // The ingest may be gone (aborted, or committed by a newer store instance); that is fine.
        await replaceSmallFile(this.#paths.updatedAt, this.#updatedAt.toISOString()).catch((err: unknown) => {
          if (!isErrno(err, "ENOENT")) throw err;
        });
      } finally {
        await fh.close().catch(() => undefined);
        this.#letGo();
      }
    });
  }

  /** Used by abort: ends the writer without touching the ingest, which the caller removes. */
  detach(): Promise<void> {
    return this.#serial(async () => {
      const fh = this.#fh;
      this.#fh = undefined;
      await fh?.close().catch(() => undefined);
      this.#letGo();
    });
  }

  #live(op: string): FileHandle {
    if (this.#fh === undefined) throw failedPrecondition(`cannot ${op} on closed writer ${this.ref}`);
    return this.#fh;
  }

  #letGo(): void {
    const release = this.#release;
    this.#release = undefined;
    release?.();
  }

  #serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(op, op);
    this.#queue = run.catch(() => undefined);
    return run;
  }
}
