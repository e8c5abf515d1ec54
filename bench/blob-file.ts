// Writes the blob that `content ingest` is timed with: incompressible, cheap to make, known digest.
import { createHash, randomBytes } from "node:crypto";
import { open } from "node:fs/promises";

export interface BlobFile {
  path: string;
  size: number;
  /** "sha256:<hex>". */
  digest: string;
}

const CHUNK = 1024 * 1024;
const PAGE = 4096;

/**
 * `mib` MiB made of one random 1 MiB buffer repeated, with the chunk number stamped into every
 * 4 KiB page so that no page repeats (nothing on the path can dedupe or compress it away).
 */
export async function writeBlobFile(path: string, mib: number): Promise<BlobFile> {
  const chunk = randomBytes(CHUNK);
  const hash = createHash("sha256");
  const file = await open(path, "w");
  try {
    for (let i = 0; i < mib; i++) {
      for (let off = 0; off < CHUNK; off += PAGE) chunk.writeUInt32LE(i, off);
      hash.update(chunk);
      await file.write(chunk, 0, CHUNK);
    }
  } finally {
    await file.close();
  }
  return { path, size: mib * CHUNK, digest: `sha256:${hash.digest("hex")}` };
}
