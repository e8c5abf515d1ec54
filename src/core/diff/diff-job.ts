// The diff job, run inside a diff worker: mount both sides read-only, write the changes from left
// to right as a layer tar (optionally gzip-compressed) into a file, and report both digests.
import { createWriteStream } from "node:fs";
import { PassThrough } from "node:stream";
import { HashTap, pipelineAll } from "./hash-tap.js";

import { createGzip } from "node:zlib";
import type { Mount } from "../mount/mount-types.js";
import { withTempMount } from "../mount/mount.js";
import { readonlyMounts } from "../mount/readonly.js";
import { writeDiff } from "./write-diff.js";

export interface DiffJob {
  left: Mount[];
  right: Mount[];
  /** Where the temporary mount points go (under the daemon's state dir). */
  tempParent: string;
  /** The file the layer is written to. */
  outPath: string;
  compression: "none" | "gzip";
}

export interface DiffResult {
  digest: string;
  size: number;
  /** sha256 of the uncompressed tar. */
  diffId: string;
}

export async function runDiffJob(job: DiffJob): Promise<DiffResult> {
  return withTempMount(readonlyMounts(job.left), job.tempParent, (lower: string) =>
    withTempMount(readonlyMounts(job.right), job.tempParent, async (upper: string) => {
      const tar = new PassThrough({ highWaterMark: 1 << 20 });
      const uncompressed = new HashTap();
      const compressed = new HashTap();
      const stages: NodeJS.ReadWriteStream[] = [uncompressed];
      if (job.compression === "gzip") stages.push(createGzip());
      stages.push(compressed);
      const written = pipelineAll(tar, ...stages, createWriteStream(job.outPath, { mode: 0o600 }));
      try {
        await writeDiff(lower, upper, tar);
        tar.end();
      } catch (err) {
        tar.destroy(err as Error);
      }
      await written;
      return {
        digest: compressed.digest(),
        size: compressed.count,
        diffId: uncompressed.digest(),
      };
    }),
  );
}
