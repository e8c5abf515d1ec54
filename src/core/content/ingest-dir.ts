// One ingest on disk: ingest/<sha256(ref) hex>/{ref,data,startedat,updatedat,total,expected}.
// The ref is hashed so no client string ever becomes a path component.
import { createHash } from "node:crypto";
import {
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { open, rename } from "node:fs/promises";
import path from "node:path";
import type { Status } from "./content.js";
import { isDigest } from "./digest.js";
import { isErrno } from "./fs-probe.js";

export interface IngestPaths {
  dir: string;
  ref: string;
  data: string;
  startedAt: string;
  updatedAt: string;
  total: string;
  expected: string;
}

export function ingestDirName(ref: string): string {
  return createHash("sha256").update(ref, "utf8").digest("hex");
}

export function ingestPaths(ingestRoot: string, ref: string): IngestPaths {
  const dir = path.join(ingestRoot, ingestDirName(ref));
  return ingestPathsOfDir(dir);
}

export function ingestPathsOfDir(dir: string): IngestPaths {
  return {
    dir,
    ref: path.join(dir, "ref"),
    data: path.join(dir, "data"),
    startedAt: path.join(dir, "startedat"),
    updatedAt: path.join(dir, "updatedat"),
    total: path.join(dir, "total"),
    expected: path.join(dir, "expected"),
  };
}

/**
 * Replaces a small file atomically (tmp + rename), so a crash leaves the old or the new value,
 * never a torn one. No fsync: these files only describe an ingest, and an ingest whose files did
 * not survive a crash is simply restarted; blob durability never depends on them.
 */
export async function replaceSmallFile(p: string, content: string): Promise<void> {
  const tmp = `${p}.tmp`;
  const fh = await open(tmp, "w", 0o600);
  try {
    await fh.writeFile(content, "utf8");
  } finally {
    await fh.close();
  }
  await rename(tmp, p);
}

/** writeFileSync with an explicit mode, creating or truncating p. */
function writeSmallFileSync(p: string, content: string): void {
  const fd = openSync(p, "w", 0o600);
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes the description of a new ingest. The ref file goes last (tmp + rename): it marks the
 * ingest as complete, so a crash half-way leaves a directory that readIngest rejects and writer()
 * restarts; the files before it need no rename of their own for the same reason.
 *
 * Synchronous system calls on purpose: a dozen tiny metadata operations in the page cache take
 * less time than one round trip through the libuv threadpool each, and a pull opens an ingest per
 * blob while its other blobs stream in.
 */
export async function initIngestFiles(
  p: IngestPaths,
  meta: { ref: string; startedAt: Date; total: number; expected: string },
): Promise<void> {
  rmSync(p.ref, { force: true });
  mkdirSync(p.dir, { recursive: true, mode: 0o700 });
  const ts = meta.startedAt.toISOString();
  writeSmallFileSync(p.startedAt, ts);
  writeSmallFileSync(p.updatedAt, ts);
  writeSmallFileSync(p.total, String(meta.total));
  writeSmallFileSync(p.expected, meta.expected);
  writeSmallFileSync(p.data, "");
  writeSmallFileSync(`${p.ref}.tmp`, meta.ref);
  renameSync(`${p.ref}.tmp`, p.ref);
}

// Reads of an ingest's tiny files are synchronous for the reason given at initIngestFiles.
function readText(p: string): string | undefined {
  try {
    return readFileSync(p, "utf8");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw err;
  }
}

function parseDate(s: string | undefined): Date | undefined {
  if (s === undefined) return undefined;
  const d = new Date(s.trim());
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/**
 * Reads an ingest's status from disk. Returns undefined when the ingest does not exist or is
 * incomplete (no data file, or no ref file as after a crash during creation). A ref file holding
 * a different ref (a hash collision or a corrupt layout) is also treated as absent for that ref.
 * When `ref` is omitted (listing), whatever ref the directory records is accepted.
 */
export async function readIngest(p: IngestPaths, ref?: string): Promise<Status | undefined> {
  const storedRef = readText(p.ref);
  if (storedRef === undefined || storedRef === "") return undefined;
  if (ref !== undefined && storedRef !== ref) return undefined;
  let dataStat;
  try {
    dataStat = statSync(p.data);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw err;
  }
  // Timestamps fall back to the data file's mtime rather than invalidating the ingest: losing a
  // timestamp must never cost the bytes already received.
  const startedAt = parseDate(readText(p.startedAt)) ?? dataStat.mtime;
  let updatedAt = parseDate(readText(p.updatedAt)) ?? dataStat.mtime;
  // updatedat is persisted on close only; while writes go on, the data file's mtime is newer.
  if (dataStat.mtime > updatedAt) updatedAt = dataStat.mtime;
  const totalText = readText(p.total)?.trim() ?? "";
  const total = /^\d+$/.test(totalText) ? Number(totalText) : 0;
  const expectedText = readText(p.expected)?.trim() ?? "";
  return {
    ref: storedRef,
    offset: dataStat.size,
    total: Number.isSafeInteger(total) ? total : 0,
    expected: isDigest(expectedText) ? expectedText : "",
    startedAt,
    updatedAt,
  };
}
