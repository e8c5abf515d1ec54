// The walking differ (containerd's io.containerd.differ.v1.walking): Apply unpacks a layer blob onto
// mounts, Compare writes the changes between two mount sets as a new layer blob. The heavy work runs
// in worker threads (apply-job.ts, diff-job.ts) so the daemon keeps answering meanwhile.
import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { RequestContext } from "../context.js";
import type { Store } from "../content/content.js";
import { ingestFile } from "../content/ingest-file.js";
import type { Mount } from "../mount/mount-types.js";
import { notImplemented, invalidArgument } from "../../errdefs/errors.js";
import type { WorkerPool } from "./worker-pool.js";
import type { ApplyJob, ApplyResult } from "./apply-job.js";
import type { DiffJob, DiffResult } from "./diff-job.js";
import { layerCompression } from "./decompress.js";
import type { UnpackAhead } from "./unpack-ahead.js";

export interface LayerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

export const uncompressedLabel = "containerd.io/uncompressed";
export const mediaTypes = {
  layer: "application/vnd.oci.image.layer.v1.tar",
  layerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
} as const;

export interface DifferOptions {
  /** The namespaced content store of a request. */
  contentFor(ctx: RequestContext): Store;
  /** The backend file of a committed blob (read by the worker directly). */
  blobPath(digest: string): string;
  /** A private directory for temporary mounts and diff output. */
  workDir: string;
  pool: WorkerPool;
  maxLayerBytes: number;
  maxLayerEntries: number;
  /** Layers unpacked before they are asked for (unpack-ahead.ts); an Apply takes them when it can. */
  unpackAhead?: UnpackAhead;
}

export interface CompareOptions {
  mediaType?: string;
  ref?: string;
  labels?: Record<string, string>;
}

export interface Differ {
  apply(ctx: RequestContext, desc: LayerDescriptor, mounts: Mount[]): Promise<LayerDescriptor>;
  compare(
    ctx: RequestContext,
    left: Mount[],
    right: Mount[],
    opts?: CompareOptions,
  ): Promise<LayerDescriptor>;
}

/** The overlay upper and lower dirs of a single overlay mount, or undefined. */
function overlayDirs(mounts: Mount[]): { upper: string; lowers: string[] } | undefined {
  if (mounts.length !== 1 || mounts[0]?.type !== "overlay") return undefined;
  let upper: string | undefined;
  let lowers: string[] = [];
  for (const o of mounts[0].options) {
    if (o.startsWith("upperdir=")) upper = o.slice("upperdir=".length);
    else if (o.startsWith("lowerdir=")) lowers = o.slice("lowerdir=".length).split(":");
  }
  return upper === undefined ? undefined : { upper, lowers };
}

/** The source of a single writable bind mount, or undefined. */
function bindSource(mounts: Mount[]): string | undefined {
  const m = mounts[0];
  if (mounts.length !== 1 || m === undefined || m.type !== "bind" || m.options.includes("ro"))
    return undefined;
  return m.source;
}

/** containerd's uniqueRef: nanoseconds and randomness. */
function uniqueRef(): string {
  return `${process.hrtime.bigint()}-${randomBytes(9).toString("base64url")}`;
}

export function createWalkingDiffer(opts: DifferOptions): Differ {
  const tempParent = join(opts.workDir, "mounts");
  const outDir = join(opts.workDir, "out");
  const ready = Promise.all([
    mkdir(tempParent, { recursive: true, mode: 0o700 }),
    mkdir(outDir, { recursive: true, mode: 0o700 }),
  ]);

  return {
    async apply(ctx, desc, mounts) {
      await ready;
      const compression = layerCompression(desc.mediaType);
      const store = opts.contentFor(ctx);
      const info = await store.info(desc.digest);
      if (desc.size !== info.size)
        throw invalidArgument(
          `layer ${desc.digest}: descriptor size ${desc.size} does not match stored size ${info.size}`,
        );
      const job: ApplyJob = {
        blobPath: opts.blobPath(desc.digest),
        digest: desc.digest,
        size: desc.size,
        compression,
        whiteouts: "delete",
        parents: [],
        maxBytes: opts.maxLayerBytes,
        maxEntries: opts.maxLayerEntries,
      };
      const expected = info.labels[uncompressedLabel];
      if (expected !== undefined) job.expectedDiffId = expected;
      const overlay = overlayDirs(mounts);
      const bind = bindSource(mounts);
      if (overlay !== undefined) {
        job.root = overlay.upper;
        job.whiteouts = "overlay";
        job.parents = overlay.lowers;
      } else if (bind !== undefined) {
        job.root = bind;
      } else {
        job.mounts = mounts;
        job.tempParent = tempParent;
      }
      const r =
        (await opts.unpackAhead?.claim(job, ctx.signal)) ??
        (await opts.pool.run<ApplyResult>("apply", job, ctx.signal));
      return { mediaType: mediaTypes.layer, digest: r.diffId, size: r.tarSize };
    },

    async compare(ctx, left, right, o = {}) {
      await ready;
      const mediaType = o.mediaType === undefined || o.mediaType === "" ? mediaTypes.layerGzip : o.mediaType;
      let compression: DiffJob["compression"];
      if (mediaType === mediaTypes.layer) compression = "none";
      else if (mediaType === mediaTypes.layerGzip) compression = "gzip";
      else throw notImplemented(`unsupported diff media type: ${mediaType}`);
      const store = opts.contentFor(ctx);
      const outPath = join(outDir, `${uniqueRef()}.tar`);
      try {
        const job: DiffJob = { left, right, tempParent, outPath, compression };
        const r = await opts.pool.run<DiffResult>("diff", job, ctx.signal);
        const labels = { ...(o.labels ?? {}) };
        if (compression !== "none") labels[uncompressedLabel] = r.diffId;
        await ingestFile(store, outPath, o.ref || uniqueRef(), r, labels);
        return { mediaType, digest: r.digest, size: r.size };
      } finally {
        await rm(outPath, { force: true });
      }
    },
  };
}
