// Checks the on-disk checks of the pull rounds (run: node --import tsx --test bench/daemon-disk.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blobPaths, presentBlobs, snapshotCount, snapshotsDir, waitBlobsGone } from "./daemon-disk.js";

const HEX = "ab".repeat(32);
const DIGEST = `sha256:${HEX}`;

void test("blob paths follow containerd's layout and refuse anything but sha256", () => {
  assert.deepEqual(blobPaths("/r", [DIGEST]), [`/r/io.containerd.content.v1.content/blobs/sha256/${HEX}`]);
  assert.equal(snapshotsDir("/r"), "/r/io.containerd.snapshotter.v1.overlayfs/snapshots");
  for (const bad of [`sha512:${HEX}`, "sha256:../../etc", HEX, `${DIGEST}:x`]) {
    assert.throws(() => blobPaths("/r", [bad]), /not a sha256 digest/);
  }
});

void test("present blobs and snapshot count; waitBlobsGone waits for the blobs to go", async () => {
  const root = await mkdtemp(join(tmpdir(), "bench-disk-"));
  try {
    assert.deepEqual(await presentBlobs(root, [DIGEST]), [], "a root without the dirs has nothing");
    assert.equal(await snapshotCount(root), 0);
    const [blob] = blobPaths(root, [DIGEST]);
    assert.ok(blob);
    await mkdir(join(blob, ".."), { recursive: true });
    await writeFile(blob, "x");
    await writeFile(join(blob, "..", "cd".repeat(32)), "other blobs do not count");
    await mkdir(join(snapshotsDir(root), "7"), { recursive: true });
    await mkdir(join(snapshotsDir(root), "8"), { recursive: true });
    assert.deepEqual(await presentBlobs(root, [DIGEST]), [blob]);
    assert.equal(await snapshotCount(root), 2);
    await assert.rejects(waitBlobsGone(root, [DIGEST], 0, "cold"), /^Error: cold: still on disk/);
    setTimeout(() => void rm(blob), 150);
    await waitBlobsGone(root, [DIGEST], 5000, "gone");
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
