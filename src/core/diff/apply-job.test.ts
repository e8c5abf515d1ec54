import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { compress as zstdCompress } from "zstd-napi";
import { BerthError } from "../../errdefs/errors.js";
import { runApplyJob, type ApplyJob } from "./apply-job.js";
import { TAR_END, craftTar, type CraftEntry } from "./tar-craft.js";
import { formatTree, snapshotTree } from "./tree-snapshot.js";

function scratch(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), "berth-apply-job-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const sha256 = (b: Buffer): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;

const RANDOM = randomBytes(3 * 1024 * 1024 + 4321);
const SMALL = Array.from({ length: 300 }, (_, i) => randomBytes(i * 37).toString("base64"));

/** Large random files (several ring slots each), many small ones, links, xattrs, odd modes. */
function layerEntries(): CraftEntry[] {
  const entries: CraftEntry[] = [
    { name: "big/", type: "dir", mode: 0o755 },
    { name: "big/random.bin", content: RANDOM, mode: 0o644, uid: 5, gid: 6 },
    { name: "big/zeros.bin", content: Buffer.alloc(2 * 1024 * 1024 + 1), mode: 0o600 },
    { name: "small/", type: "dir", mode: 0o750, uid: 1, gid: 2, mtime: 1234567 },
  ];
  for (let i = 0; i < 300; i++) {
    entries.push({
      name: `small/f${i}`,
      content: SMALL[i],
      mode: i % 3 === 0 ? 0o755 : 0o444,
      uid: i % 4,
      gid: i % 5,
      mtime: 1_600_000_000 + i,
    });
  }
  entries.push(
    { name: "small/link", type: "symlink", linkname: "f1" },
    { name: "small/hard", type: "link", linkname: "small/f2" },
    { name: "small/attr", content: "x", pax: [["SCHILY.xattr.user.k", "v"]] },
    { name: "setuid", content: "#!/bin/sh\n", mode: 0o4755 },
  );
  return entries;
}

interface Layer {
  blobPath: string;
  blob: Buffer;
  tar: Buffer;
}

function writeLayer(dir: string, tar: Buffer, compress: (b: Buffer) => Buffer, name = "blob"): Layer {
  const blob = compress(tar);
  const blobPath = join(dir, name);
  writeFileSync(blobPath, blob);
  return { blobPath, blob, tar };
}

function job(layer: Layer, root: string, extra: Partial<ApplyJob> = {}): ApplyJob {
  return {
    blobPath: layer.blobPath,
    digest: sha256(layer.blob),
    size: layer.blob.length,
    compression: "gzip",
    root,
    whiteouts: "delete",
    parents: [],
    maxBytes: 1 << 30,
    maxEntries: 100_000,
    ...extra,
  };
}

function listing(root: string): string[] {
  return formatTree(snapshotTree(root), { mtimeFor: ["file", "dir", "symlink"] });
}

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof BerthError, `not a BerthError: ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message !== undefined) assert.match(err.message, message);
    return true;
  });
}

void test("the decoder thread, the stream and the whole-blob readers apply the same tree, with the same digests", async (t) => {
  const dir = scratch(t);
  // Trailing bytes after the end-of-archive blocks count in the diffID, as containerd reads them.
  const tar = Buffer.concat([craftTar(layerEntries()), Buffer.alloc(4096, 7)]);
  const layer = writeLayer(dir, tar, (b) => gzipSync(b));
  const results = [];
  for (const reader of ["decoder", "stream", "whole"] as const) {
    const root = join(dir, `root-${reader}`);
    mkdirSync(root);
    const r = await runApplyJob(job(layer, root, { reader }));
    assert.equal(r.diffId, sha256(tar));
    assert.equal(r.tarSize, tar.length);
    results.push({ r, tree: listing(root) });
  }
  assert.deepEqual(results[0]!.r, results[1]!.r);
  assert.deepEqual(results[0]!.tree, results[1]!.tree);
  assert.deepEqual(results[2]!.r, results[1]!.r);
  assert.deepEqual(results[2]!.tree, results[1]!.tree);
  const root = join(dir, "root-decoder");
  assert.equal(sha256(readFileSync(join(root, "big/random.bin"))), sha256(RANDOM));
  assert.match(
    results[0]!.tree.find((l) => l.startsWith("setuid "))!,
    /^setuid file mode=4755 uid=0 gid=0 size=10 /,
  );
  assert.match(
    results[0]!.tree.find((l) => l.startsWith("small/f3 "))!,
    /^small\/f3 file mode=0755 uid=3 gid=3 /,
  );
});

void test("uncompressed and zstd layers go through the decoder thread too", async (t) => {
  const dir = scratch(t);
  const tar = craftTar(layerEntries());
  const plain = writeLayer(dir, tar, (b) => b, "plain");
  const zstd = writeLayer(dir, tar, (b) => zstdCompress(b), "zstd");
  const trees = [];
  for (const [name, layer, compression] of [
    ["plain", plain, "none"],
    ["zstd", zstd, "zstd"],
  ] as const) {
    const root = join(dir, `root-${name}`);
    mkdirSync(root);
    const r = await runApplyJob(job(layer, root, { compression, reader: "decoder" }));
    assert.equal(r.diffId, sha256(tar));
    trees.push(listing(root));
  }
  assert.deepEqual(trees[0], trees[1]);
});

void test("decoder thread: a corrupt gzip stream fails the apply, and the next apply works", async (t) => {
  const dir = scratch(t);
  const tar = craftTar(layerEntries());
  const good = writeLayer(dir, tar, (b) => gzipSync(b), "good");
  const bad = writeLayer(
    dir,
    tar,
    (b) => {
      const gz = gzipSync(b);
      gz.writeUInt32LE((gz.readUInt32LE(gz.length - 8) ^ 1) >>> 0, gz.length - 8); // the CRC
      return gz;
    },
    "bad",
  );
  const fds = openFds();
  mkdirSync(join(dir, "a"));
  await rejectsWith(runApplyJob(job(bad, join(dir, "a"), { reader: "decoder" })), "invalid-argument", /gzip/);
  const truncated = writeLayer(dir, tar, (b) => gzipSync(b).subarray(0, 100_000), "truncated");
  mkdirSync(join(dir, "b"));
  await rejectsWith(
    runApplyJob(job(truncated, join(dir, "b"), { reader: "decoder" })),
    "invalid-argument",
    /gzip/,
  );
  mkdirSync(join(dir, "c"));
  const r = await runApplyJob(job(good, join(dir, "c"), { reader: "decoder" }));
  assert.equal(r.diffId, sha256(tar));
  assert.equal(openFds(), fds, "file descriptors leaked");
});

void test("decoder thread: digest, size and diffID mismatches fail the apply", async (t) => {
  const dir = scratch(t);
  const tar = craftTar(layerEntries());
  const layer = writeLayer(dir, tar, (b) => gzipSync(b));
  const root = (name: string): string => {
    mkdirSync(join(dir, name));
    return join(dir, name);
  };
  const other = sha256(Buffer.from("other"));
  await rejectsWith(
    runApplyJob(job(layer, root("a"), { reader: "decoder", digest: other })),
    "data-loss",
    /content digest mismatch/,
  );
  await rejectsWith(
    runApplyJob(job(layer, root("b"), { reader: "decoder", size: layer.blob.length + 1 })),
    "invalid-argument",
    /does not match descriptor size/,
  );
  await rejectsWith(
    runApplyJob(job(layer, root("c"), { reader: "decoder", expectedDiffId: other })),
    "data-loss",
    /uncompressed digest/,
  );
  await rejectsWith(
    runApplyJob(job({ ...layer, blobPath: join(dir, "missing") }, root("d"), { reader: "decoder" })),
    "invalid-argument",
    /ENOENT|no such file/,
  );
});

void test("decoder thread: an applier error stops the decoder mid-stream, and the next apply works", async (t) => {
  const dir = scratch(t);
  const tar = craftTar(layerEntries());
  const layer = writeLayer(dir, tar, (b) => gzipSync(b));
  const fds = openFds();
  for (let i = 0; i < 3; i++) {
    mkdirSync(join(dir, `limit-${i}`));
    await rejectsWith(
      runApplyJob(job(layer, join(dir, `limit-${i}`), { reader: "decoder", maxEntries: 1 })),
      "resource-exhausted",
    );
  }
  // A tar that breaks right after a large entry: the decoder is ahead by several slots.
  const broken = writeLayer(
    dir,
    Buffer.concat([craftTar(layerEntries().slice(0, 3), { end: false }), Buffer.alloc(512, 0x41), TAR_END]),
    (b) => gzipSync(b),
    "broken",
  );
  mkdirSync(join(dir, "root-broken"));
  await rejectsWith(
    runApplyJob(job(broken, join(dir, "root-broken"), { reader: "decoder" })),
    "invalid-argument",
    /invalid tar header/,
  );
  mkdirSync(join(dir, "ok"));
  const r = await runApplyJob(job(layer, join(dir, "ok"), { reader: "decoder" }));
  assert.equal(r.diffId, sha256(tar));
  assert.equal(openFds(), fds, "file descriptors leaked");
});

/** A small layer: a few files, some larger than the rest. */
function smallTar(): Buffer {
  return craftTar([
    { name: "etc/", type: "dir", mode: 0o755, mtime: 1000 },
    { name: "etc/conf", content: "a=b\n", mode: 0o640, uid: 3, gid: 4 },
    { name: "bin/", type: "dir" },
    { name: "bin/tool", content: RANDOM.subarray(0, 70_000), mode: 0o755 },
    { name: "bin/t", type: "symlink", linkname: "tool" },
    { name: "etc/.wh.old", content: "" },
  ]);
}

void test("small blobs read whole apply as the stream reader does, gzip, zstd and plain", async (t) => {
  const dir = scratch(t);
  const tar = smallTar();
  for (const [name, compress, compression] of [
    ["gzip", (b: Buffer) => gzipSync(b), "gzip"],
    ["zstd", (b: Buffer) => zstdCompress(b), "zstd"], // falls back to the stream reader
    ["plain", (b: Buffer) => b, "none"],
    ["sniffed", (b: Buffer) => gzipSync(b), "none"], // "none": not sniffed, applied as a tar... and refused
  ] as const) {
    const layer = writeLayer(dir, tar, compress, name);
    const trees: string[][] = [];
    const outcomes: unknown[] = [];
    for (const reader of ["whole", "stream"] as const) {
      const root = join(dir, `${name}-${reader}`);
      mkdirSync(root);
      try {
        const r = await runApplyJob(job(layer, root, { reader, compression }));
        assert.equal(r.diffId, sha256(tar), `${name} ${reader}`);
        outcomes.push(r);
      } catch (err) {
        assert.ok(err instanceof BerthError);
        outcomes.push(err.code);
      }
      trees.push(listing(root));
    }
    assert.deepEqual(outcomes[0], outcomes[1], name);
    assert.deepEqual(trees[0], trees[1], name);
  }
});

void test("whole-blob reader: a tar larger than its bound goes through the stream reader", async (t) => {
  const dir = scratch(t);
  const tar = craftTar([{ name: "zeros", content: Buffer.alloc(9 << 20) }]);
  const layer = writeLayer(dir, tar, (b) => gzipSync(b));
  assert.ok(layer.blob.length < 256 * 1024);
  mkdirSync(join(dir, "root"));
  const r = await runApplyJob(job(layer, join(dir, "root"), { reader: "whole" }));
  assert.equal(r.diffId, sha256(tar));
  assert.deepEqual(readFileSync(join(dir, "root/zeros")), Buffer.alloc(9 << 20));
});

void test("whole-blob reader: corrupt data, sizes and digests that do not match fail the apply", async (t) => {
  const dir = scratch(t);
  const tar = smallTar();
  const layer = writeLayer(dir, tar, (b) => gzipSync(b));
  const root = (name: string): string => {
    mkdirSync(join(dir, name));
    return join(dir, name);
  };
  const corrupt = writeLayer(dir, tar, (b) => gzipSync(b).subarray(0, 300), "corrupt");
  await rejectsWith(runApplyJob(job(corrupt, root("a"), { reader: "whole" })), "invalid-argument", /gzip/);
  await rejectsWith(
    runApplyJob(job(layer, root("b"), { reader: "whole", size: layer.blob.length + 10 })),
    "invalid-argument",
    new RegExp(`size ${layer.blob.length} does not match descriptor size ${layer.blob.length + 10}`),
  );
  await rejectsWith(
    runApplyJob(job(layer, root("c"), { reader: "whole", size: layer.blob.length - 10 })),
    "invalid-argument",
    new RegExp(`size ${layer.blob.length} does not match descriptor size ${layer.blob.length - 10}`),
  );
  await rejectsWith(
    runApplyJob(job(layer, root("d"), { reader: "whole", digest: sha256(Buffer.from("x")) })),
    "data-loss",
    /content digest mismatch/,
  );
  await rejectsWith(
    runApplyJob(job(layer, root("e"), { reader: "whole", expectedDiffId: sha256(Buffer.from("x")) })),
    "data-loss",
    /uncompressed digest/,
  );
  // The whole blob is checked before anything is applied: the refused layers wrote nothing.
  for (const name of ["d", "e"]) assert.deepEqual(readdirSync(join(dir, name)), [], `${name} is empty`);
});
