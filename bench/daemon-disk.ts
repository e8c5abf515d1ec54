// What a daemon holds on disk, read straight from its root (berthd lays it out as containerd does):
// the proof that a timed pull starts cold (no blob of the image on disk) and really unpacked (one
// new snapshot directory per layer).
import { readdir } from "node:fs/promises";
import { join } from "node:path";

/** `<root>/io.containerd.content.v1.content/blobs/sha256/<hex>` of each digest. */
export function blobPaths(root: string, digests: readonly string[]): string[] {
  return digests.map((d) => {
    const [alg, hex, ...rest] = d.split(":");
    if (alg !== "sha256" || hex === undefined || rest.length > 0 || !/^[0-9a-f]{64}$/.test(hex)) {
      throw new Error(`not a sha256 digest: ${d}`);
    }
    return join(root, "io.containerd.content.v1.content", "blobs", "sha256", hex);
  });
}

/** `<root>/io.containerd.snapshotter.v1.<name>/snapshots`: one entry per snapshot on disk. */
export function snapshotsDir(root: string, snapshotter = "overlayfs"): string {
  return join(root, `io.containerd.snapshotter.v1.${snapshotter}`, "snapshots");
}

/** The names in a directory; none when it does not exist (yet). */
export async function dirEntries(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

/** Those of the blobs that are on disk. */
export async function presentBlobs(root: string, digests: readonly string[]): Promise<string[]> {
  const paths = blobPaths(root, digests);
  const blobDir = join(root, "io.containerd.content.v1.content", "blobs", "sha256");
  const present = new Set(await dirEntries(blobDir));
  return paths.filter((p) => present.has(p.slice(blobDir.length + 1)));
}

/** Polls until none of the blobs is on disk; throws after timeoutMs (at once for 0). */
export async function waitBlobsGone(
  root: string,
  digests: readonly string[],
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await presentBlobs(root, digests);
    if (left.length === 0) return;
    if (Date.now() >= deadline) {
      throw new Error(`${what}: still on disk after ${timeoutMs} ms: ${left.slice(0, 5).join(", ")}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** How many snapshot directories the overlayfs backend has (whatever their namespace). */
export async function snapshotCount(root: string): Promise<number> {
  return (await dirEntries(snapshotsDir(root))).length;
}
