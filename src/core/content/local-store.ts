// The namespace-less filesystem content store (containerd's content/local): verified blobs under
// blobs/sha256/<hex>, resumable ingests under ingest/<sha256(ref)>. Namespaces and labels live above it.
import { createHash, type Hash } from "node:crypto";
import { chmod, mkdir, open, readdir, rm, stat, unlink, type FileHandle } from "node:fs/promises";
import { closeSync, constants as fsConstants, fstatSync, openSync, readSync } from "node:fs";
import path from "node:path";
import { alreadyExists, dataLoss, invalidArgument, notFound, outOfRange } from "../../errdefs/errors.js";
import type { Info, Status, Writer, WriterOptions } from "./content.js";
import { isSha256Hex, sha256Digest, validateDigest } from "./digest.js";
import {
  ingestPaths,
  ingestPathsOfDir,
  initIngestFiles,
  readIngest,
  replaceSmallFile,
  type IngestPaths,
} from "./ingest-dir.js";
import { isErrno, pathExists, pathExistsSync } from "./fs-probe.js";
import { LocalWriter } from "./local-writer.js";
import { RefLocks, type RefLock } from "./ref-locks.js";

/** Largest chunk read() yields, matching the 1 MiB messages clients expect. */
export const readChunkSize = 1 << 20;

export interface LocalContentStore {
  readonly root: string;
  info(digest: string): Promise<Info>;
  /** Streams [offset, offset+length) of a committed blob; length <= 0 means to the end. */
  read(digest: string, offset: number, length: number): AsyncIterable<Uint8Array>;
  writer(opts: WriterOptions): Promise<Writer>;
  status(ref: string): Promise<Status>;
  /** Every ingest on disk; filtering belongs to the metadata layer. */
  listStatuses(): Promise<Status[]>;
  abort(ref: string): Promise<void>;
  delete(digest: string): Promise<void>;
  /** Every committed blob, labels always {}. */
  walk(fn: (info: Info) => void | Promise<void>): Promise<void>;
  /** Where the blob for digest lives (whether or not it exists); InvalidArgument for a bad digest. */
  blobPath(digest: string): string;
}

export async function createLocalContentStore(root: string): Promise<LocalContentStore> {
  const absRoot = path.resolve(root);
  const blobDir = path.join(absRoot, "blobs", "sha256");
  const ingestRoot = path.join(absRoot, "ingest");
  for (const dir of [absRoot, path.join(absRoot, "blobs"), blobDir, ingestRoot]) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
  }

  // Live writers of this store instance, by ref. Deliberately per instance and in memory: a
  // restarted daemon (a new instance) may resume any ingest its predecessor left behind.
  const locks = new RefLocks<LocalWriter>();

  const blobPath = (digest: string): string => path.join(blobDir, validateDigest(digest));

  function validateRef(ref: string): void {
    if (typeof ref !== "string" || ref.length === 0) throw invalidArgument("ref must not be empty");
  }

  async function blobInfo(digest: string): Promise<Info> {
    const p = blobPath(digest);
    try {
      const st = await stat(p);
      return { digest, size: st.size, createdAt: st.mtime, updatedAt: st.mtime, labels: {} };
    } catch (err) {
      if (isErrno(err, "ENOENT")) throw notFound(`content digest ${digest}`);
      throw err;
    }
  }

  async function* read(digest: string, offset: number, length: number): AsyncGenerator<Uint8Array> {
    const p = blobPath(digest);
    if (!Number.isFinite(offset) || !Number.isFinite(length)) {
      throw invalidArgument(`invalid read range offset=${offset} size=${length}`);
    }
    const small = readSmall(p, digest, offset, length);
    if (small !== undefined) {
      if (small.length > 0) yield small;
      return;
    }
    let fh: FileHandle;
    try {
      fh = await open(p, "r");
    } catch (err) {
      if (isErrno(err, "ENOENT")) throw notFound(`content digest ${digest}`);
      throw err;
    }
    try {
      const { size } = await fh.stat();
      let pos = Math.max(0, Math.trunc(offset));
      if (pos > size) throw outOfRange(`read past object length ${size} bytes`);
      const want = Math.trunc(length);
      const end = want <= 0 || pos + want > size ? size : pos + want;
      while (pos < end) {
        // A fresh buffer per chunk: consumers may keep the chunks they are given.
        const buf = Buffer.allocUnsafe(Math.min(readChunkSize, end - pos));
        const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
        if (bytesRead === 0) break;
        pos += bytesRead;
        yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
      }
    } finally {
      await fh.close();
    }
  }

  async function openWriter(opts: WriterOptions, lock: RefLock<LocalWriter>): Promise<LocalWriter> {
    const ref = opts.ref;
    // A negative total means "unknown", as containerd only ever acts on total > 0.
    const total = Math.max(0, opts.total ?? 0);
    const expected = opts.expected ?? "";
    if (!Number.isSafeInteger(total)) throw invalidArgument(`invalid total ${opts.total}`);
    if (expected !== "") {
      const target = blobPath(expected);
      if (pathExistsSync(target)) throw alreadyExists(`content ${expected}`);
    }

    const paths = ingestPaths(ingestRoot, ref);
    const found = await readIngest(paths, ref);
    // Like containerd, a different declared total means a different upload: start over.
    const restart = found === undefined || (total > 0 && found.total > 0 && total !== found.total);
    if (restart) {
      const now = new Date();
      await initIngestFiles(paths, { ref, startedAt: now, total, expected });
      const fh = await openData(paths);
      return newWriter(lock, paths, fh, createHash("sha256"), 0, total, expected, now, now);
    }

    if (total > 0 && found.total === 0) await replaceSmallFile(paths.total, String(total));
    if (expected !== "" && expected !== found.expected) await replaceSmallFile(paths.expected, expected);
    const fh = await openData(paths);
    try {
      // Recompute the running digest from what is on disk, so a resumed commit verifies it all.
      const { size } = await fh.stat();
      const hash = await hashFile(paths.data, size);
      return newWriter(
        lock,
        paths,
        fh,
        hash,
        size,
        total > 0 ? total : found.total,
        expected !== "" ? expected : found.expected,
        found.startedAt,
        found.updatedAt,
      );
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  }

  function newWriter(
    lock: RefLock<LocalWriter>,
    paths: IngestPaths,
    fh: FileHandle,
    hash: Hash,
    offset: number,
    total: number,
    expected: string,
    startedAt: Date,
    updatedAt: Date,
  ): LocalWriter {
    return new LocalWriter({
      ref: lock.ref,
      paths,
      fh,
      hash,
      offset,
      total,
      expected,
      startedAt,
      updatedAt,
      blobDir,
      release: () => locks.release(lock),
    });
  }

  return {
    root: absRoot,
    blobPath,
    info: blobInfo,
    read,

    async writer(opts: WriterOptions): Promise<Writer> {
      validateRef(opts.ref);
      const ref = opts.ref;
      // Claim the ref synchronously, before any await, so two concurrent calls cannot both win.
      const lock = locks.tryLock(ref);
      try {
        lock.holder = await openWriter(opts, lock);
        return lock.holder;
      } catch (err) {
        locks.release(lock);
        throw err;
      }
    },

    async status(ref: string): Promise<Status> {
      validateRef(ref);
      const st = await readIngest(ingestPaths(ingestRoot, ref), ref);
      if (st === undefined) throw notFound(`ingest ref ${JSON.stringify(ref)}`);
      return st;
    },

    async listStatuses(): Promise<Status[]> {
      const out: Status[] = [];
      for (const name of await readdir(ingestRoot)) {
        if (!isSha256Hex(name)) continue;
        // Ingests may finish or be aborted while we list: a vanished one is simply skipped.
        const st = await readIngest(ingestPathsOfDir(path.join(ingestRoot, name))).catch((err: unknown) => {
          if (isErrno(err, "ENOENT") || isErrno(err, "ENOTDIR")) return undefined;
          throw err;
        });
        if (st !== undefined) out.push(st);
      }
      return out.sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
    },

    async abort(ref: string): Promise<void> {
      validateRef(ref);
      const paths = ingestPaths(ingestRoot, ref);
      await locks.holder(ref)?.detach();
      if (!(await pathExists(paths.dir))) throw notFound(`ingest ref ${JSON.stringify(ref)}`);
      await rm(paths.dir, { recursive: true, force: true });
    },

    async delete(digest: string): Promise<void> {
      const p = blobPath(digest);
      try {
        await unlink(p);
      } catch (err) {
        if (isErrno(err, "ENOENT")) throw notFound(`content digest ${digest}`);
        throw err;
      }
    },

    async walk(fn: (info: Info) => void | Promise<void>): Promise<void> {
      const entries = await readdir(blobDir, { withFileTypes: true });
      for (const entry of entries) {
        if (!entry.isFile() || !isSha256Hex(entry.name)) continue;
        let st;
        try {
          st = await stat(path.join(blobDir, entry.name));
        } catch (err) {
          if (isErrno(err, "ENOENT")) continue; // deleted while walking
          throw err;
        }
        const digest = sha256Digest(entry.name);
        await fn({ digest, size: st.size, createdAt: st.mtime, updatedAt: st.mtime, labels: {} });
      }
    },
  };
}

/** Ranges up to this size are read with synchronous calls (see readSmall). */
export const smallReadSize = 64 * 1024;

/**
 * The bytes of [offset, offset+length) of the blob (digest, at p) when the range is at most smallReadSize
 * (manifests, configs, indexes), read with synchronous calls: open, fstat, read and close of a
 * page-cached file take less than one threadpool round trip. Undefined for a larger range (the
 * caller streams it); the same errors as the streaming read otherwise.
 */
function readSmall(p: string, digest: string, offset: number, length: number): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(p, "r");
  } catch (err) {
    if (isErrno(err, "ENOENT")) throw notFound(`content digest ${digest}`);
    throw err;
  }
  try {
    const { size } = fstatSync(fd);
    const pos = Math.max(0, Math.trunc(offset));
    if (pos > size) throw outOfRange(`read past object length ${size} bytes`);
    const want = Math.trunc(length);
    const end = want <= 0 || pos + want > size ? size : pos + want;
    if (end - pos > smallReadSize) return undefined;
    const buf = Buffer.allocUnsafe(end - pos);
    let done = 0;
    while (done < buf.length) {
      const n = readSync(fd, buf, done, buf.length - done, pos + done);
      if (n === 0) break;
      done += n;
    }
    return done === buf.length ? buf : buf.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

async function openData(paths: IngestPaths): Promise<FileHandle> {
  return open(paths.data, fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT, 0o600);
}

async function hashFile(p: string, size: number): Promise<Hash> {
  const hash = createHash("sha256");
  const fh = await open(p, "r");
  try {
    const buf = Buffer.allocUnsafe(readChunkSize);
    let pos = 0;
    while (pos < size) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    if (pos !== size) throw dataLoss(`ingest data shrank while resuming: ${pos} of ${size} bytes`);
    return hash;
  } finally {
    await fh.close();
  }
}
