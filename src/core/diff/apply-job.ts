// The layer apply job, run inside a diff worker: stream the blob from the content store's file,
// hash the compressed bytes, decompress, hash the tar, and apply it under root. The caller learns
// the diffID (digest of the uncompressed tar) and how much was written.
import { createHash } from "node:crypto";
import { closeSync, createReadStream, openSync, readSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { HashTap, pipelineAll } from "./hash-tap.js";

import { dataLoss, invalidArgument } from "../../errdefs/errors.js";
import { applyTar, type ApplyTarResult, type ImpliedDirs } from "./apply-tar.js";
import { RingFailed } from "./byte-ring.js";
import { decompressStream, detectCompression, type Compression } from "./decompress.js";
import { decodeLayer } from "./layer-decoder.js";
import type { Mount } from "../mount/mount-types.js";
import { withTempMount } from "../mount/mount.js";

export interface ApplyJob {
  /** The committed blob's file (content store backend). */
  blobPath: string;
  /** The descriptor's digest and size; both are verified. */
  digest: string;
  size: number;
  compression: Compression;
  /** Where the tar goes: an overlay upperdir or a writable bind source... */
  root?: string;
  /** ...or mounts to mount under tempParent for the duration of the apply. */
  mounts?: Mount[];
  tempParent?: string;
  whiteouts: "overlay" | "delete";
  /** Overlay lowerdirs, nearest first (overlay mode only). */
  parents: string[];
  /** Bounds on what one layer may write (decompression bombs, inode floods). */
  maxBytes: number;
  maxEntries: number;
  /** When known (the blob's containerd.io/uncompressed label), the diffID must match it. */
  expectedDiffId?: string;
  /**
   * How the blob is read: "decoder", in the worker's decoder thread (layer-decoder.ts), while this
   * thread applies; "stream", all in this thread; "whole", read and inflated in one go (small
   * blobs; anything it does not handle falls back to "stream"). By default by size: "whole" up to
   * SMALL_BLOB, "decoder" from DECODER_MIN_SIZE on, "stream" in between.
   */
  reader?: "decoder" | "stream" | "whole";
  /** Report the implied directories (ApplyResult.implied), for unpack-ahead. */
  trackImplied?: boolean;
}

/** Blobs this large or larger are decoded in the decoder thread unless the job says otherwise. */
export const DECODER_MIN_SIZE = 1 << 20;

export interface ApplyResult {
  /** sha256 of the uncompressed tar. */
  diffId: string;
  /** Bytes of the uncompressed tar. */
  tarSize: number;
  entries: number;
  bytes: number;
  /** With trackImplied. */
  implied?: ImpliedDirs;
}

/** Bytes per read of the blob file. */
const READ_CHUNK = 1 << 20;

export async function runApplyJob(job: ApplyJob): Promise<ApplyResult> {
  if (job.root !== undefined) return applyAt(job, job.root);
  if (job.mounts === undefined || job.tempParent === undefined)
    throw invalidArgument("apply needs a root or mounts");
  return withTempMount(job.mounts, job.tempParent, (root: string) => applyAt(job, root));
}

async function applyAt(job: ApplyJob, root: string): Promise<ApplyResult> {
  const reader =
    job.reader ?? (job.size >= DECODER_MIN_SIZE ? "decoder" : job.size <= SMALL_BLOB ? "whole" : "stream");
  if (reader === "decoder") return applyDecoded(job, root);
  if (reader === "whole") {
    const r = await applySmall(job, root);
    if (r !== null) return r;
  }
  return applyInThread(job, root);
}

/** Blobs up to this size are read and decompressed in one go (small layers: the fixed cost counts). */
export const SMALL_BLOB = 256 * 1024;
/** ...when they decompress to at most this much; larger ones take the streaming path. */
const SMALL_TAR = 8 << 20;

/**
 * A small blob without streams: one synchronous read, one inflate call bounded by SMALL_TAR, both
 * hashes, then the tar from memory. It spares the thread-pool round trips of a read stream and an
 * async inflate (several per call), which are most of a small layer's time. null: take the
 * streaming path (zstd, or a tar larger than SMALL_TAR).
 */
async function applySmall(job: ApplyJob, root: string): Promise<ApplyResult | null> {
  // One byte more than the descriptor says, to notice a longer file without reading all of it.
  const blob = readUpTo(job.blobPath, job.size + 1);
  // A longer file: the streaming path reads all of it, to report its real size.
  if (blob.length > job.size) return null;
  let tar = blob;
  if (job.compression !== "none") {
    const kind = detectCompression(blob, true) ?? "none";
    if (kind === "zstd") return null;
    if (kind === "gzip") {
      try {
        tar = gunzipSync(blob, { maxOutputLength: SMALL_TAR });
      } catch (err) {
        if ((err as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE") return null;
        throw invalidArgument(`gzip: ${(err as Error).message}`, err);
      }
    }
  }
  if (blob.length < job.size) return verify(job, "", blob.length, "", 0, undefined);
  const digest = `sha256:${createHash("sha256").update(blob).digest("hex")}`;
  const diffId = `sha256:${createHash("sha256").update(tar).digest("hex")}`;
  // The whole layer is in memory and hashed: a blob that is not what the descriptor says is
  // refused before a single file is written.
  verify(job, digest, blob.length, diffId, tar.length, { entries: 0, bytes: 0 });
  const applied = await applyTar(
    (async function* () {
      yield tar;
    })(),
    root,
    tarOptions(job),
  );
  return verify(job, digest, blob.length, diffId, tar.length, applied);
}

function readUpTo(path: string, max: number): Buffer {
  const buf = Buffer.allocUnsafe(max);
  const fd = openSync(path, "r");
  try {
    let n = 0;
    while (n < max) {
      const got = readSync(fd, buf, n, max - n, null);
      if (got === 0) break;
      n += got;
    }
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** The decoder thread reads, hashes and decompresses; this thread applies the tar meanwhile. */
async function applyDecoded(job: ApplyJob, root: string): Promise<ApplyResult> {
  const layer = decodeLayer(job.blobPath, job.compression);
  const tar = layer.tar;
  let applied: ApplyTarResult;
  try {
    applied = await applyTar({ [Symbol.asyncIterator]: () => tar }, root, tarOptions(job));
    // As below: trailing data is read, so that both digests cover the whole stream.
    for (;;) {
      const next = await tar.next();
      if (next.done === true) break;
    }
  } catch (err) {
    // Stop the decoder and wait for it, so that it is idle for the next job; when decoding is what
    // failed (a corrupt stream, an unreadable blob), its error is the one to report.
    layer.abort();
    const decodeError = await layer.result.then(
      () => null,
      (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
    );
    // RingFailed: the decoder failed; the same error: the consumer raced it in (thread death).
    if (decodeError !== null && (err instanceof RingFailed || err === decodeError)) throw decodeError;
    throw err;
  }
  const r = await layer.result;
  return verify(job, r.digest, r.size, r.diffId, r.tarSize, applied);
}

function tarOptions(job: ApplyJob): Parameters<typeof applyTar>[2] {
  return {
    whiteouts: job.whiteouts,
    parents: job.parents,
    maxBytes: job.maxBytes,
    maxEntries: job.maxEntries,
    ...(job.trackImplied === true ? { trackImplied: true } : {}),
  };
}

function verify(
  job: ApplyJob,
  digest: string,
  size: number,
  diffId: string,
  tarSize: number,
  applied: ApplyTarResult | undefined,
): ApplyResult {
  if (size !== job.size)
    throw invalidArgument(`layer ${job.digest}: size ${size} does not match descriptor size ${job.size}`);
  if (digest !== job.digest)
    throw dataLoss(`layer ${job.digest}: content digest mismatch, the blob hashes to ${digest}`);
  if (job.expectedDiffId !== undefined && job.expectedDiffId !== diffId)
    throw dataLoss(`layer ${job.digest}: uncompressed digest ${diffId} does not match ${job.expectedDiffId}`);
  if (applied === undefined) throw invalidArgument(`layer ${job.digest}: no tar stream`);
  const r: ApplyResult = { diffId, tarSize, entries: applied.entries, bytes: applied.bytes };
  if (applied.implied !== undefined) r.implied = applied.implied;
  return r;
}

/** Everything in this thread: zlib on the libuv threadpool, hashing and applying here. */
async function applyInThread(job: ApplyJob, root: string): Promise<ApplyResult> {
  const compressed = new HashTap();
  const source = createReadStream(job.blobPath, { highWaterMark: READ_CHUNK });
  const stages: NodeJS.ReadWriteStream[] = [compressed];
  if (job.compression !== "none") stages.push(decompressStream(job.compression));
  // The tar is hashed here, by the consumer, not by a Transform after the decompressor: a piped
  // Transform runs synchronously inside the decompressor's push(), which would hold back the next
  // inflate (on the libuv threadpool) until the hash and everything after it are done. Read from
  // the decompressor's buffer instead, inflating goes on while this thread hashes and writes files.
  const uncompressed = createHash("sha256");
  let tarSize = 0;

  let applied: ApplyTarResult | undefined;
  const sink = async (input: AsyncIterable<Buffer>): Promise<void> => {
    const raw = input[Symbol.asyncIterator]();
    const iterator: AsyncIterator<Buffer> = {
      async next() {
        const next = await raw.next();
        if (next.done !== true) {
          uncompressed.update(next.value);
          tarSize += next.value.length;
        }
        return next;
      },
    };
    // applyTar stops at the tar's end-of-archive; whatever follows is drained so that both
    // digests cover the whole stream, as containerd reads trailing data too.
    const view: AsyncIterable<Buffer> = { [Symbol.asyncIterator]: () => iterator };
    applied = await applyTar(view, root, tarOptions(job));
    for (;;) {
      const next = await iterator.next();
      if (next.done) break;
    }
  };
  await pipelineAll(source, ...stages, sink);
  const diffId = `sha256:${uncompressed.digest("hex")}`;
  return verify(job, compressed.digest(), compressed.count, diffId, tarSize, applied);
}
