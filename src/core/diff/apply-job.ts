// The layer apply job, run inside a diff worker: stream the blob from the content store's file,
// hash the compressed bytes, decompress, hash the tar, and apply it under root. The caller learns
// the diffID (digest of the uncompressed tar) and how much was written.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { HashTap, pipelineAll } from "./hash-tap.js";

import { dataLoss, invalidArgument } from "../../errdefs/errors.js";
import { applyTar } from "./apply-tar.js";
import { decompressStream, type Compression } from "./decompress.js";
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
}

export interface ApplyResult {
  /** sha256 of the uncompressed tar. */
  diffId: string;
  /** Bytes of the uncompressed tar. */
  tarSize: number;
  entries: number;
  bytes: number;
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

  let applied: { entries: number; bytes: number } | undefined;
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
    applied = await applyTar(view, root, {
      whiteouts: job.whiteouts,
      parents: job.parents,
      maxBytes: job.maxBytes,
      maxEntries: job.maxEntries,
    });
    for (;;) {
      const next = await iterator.next();
      if (next.done) break;
    }
  };
  await pipelineAll(source, ...stages, sink);

  const digest = compressed.digest();
  if (compressed.count !== job.size)
    throw invalidArgument(
      `layer ${job.digest}: size ${compressed.count} does not match descriptor size ${job.size}`,
    );
  if (digest !== job.digest)
    throw dataLoss(`layer ${job.digest}: content digest mismatch, the blob hashes to ${digest}`);
  const diffId = `sha256:${uncompressed.digest("hex")}`;
  if (job.expectedDiffId !== undefined && job.expectedDiffId !== diffId)
    throw dataLoss(`layer ${job.digest}: uncompressed digest ${diffId} does not match ${job.expectedDiffId}`);
  if (applied === undefined) throw invalidArgument(`layer ${job.digest}: no tar stream`);
  return { diffId, tarSize, entries: applied.entries, bytes: applied.bytes };
}
