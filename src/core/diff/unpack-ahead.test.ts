// Unpack-ahead with real worker threads, real layers and a real file system: a layer staged when
// its blob is committed after its manifest, then claimed by an apply onto an empty snapshot dir,
// gives the tree the apply gives (implied directories included); everything else (a target that
// is not an empty snapshot dir, another diffID, a parent that shapes new files, a layer the
// namespace already had, a bad blob) leaves the apply to do its usual work.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { AT, O, close, fsetxattr, openat } from "../../sys/fs-at.js";
import { runApplyJob, type ApplyJob } from "./apply-job.js";
import { craftTar, type CraftEntry } from "./tar-craft.js";
import { formatTree, snapshotTree } from "./tree-snapshot.js";
import { createUnpackAhead, type UnpackAhead, type UnpackAheadOutcome } from "./unpack-ahead.js";
import { createWorkerPool, type WorkerPool } from "./worker-pool.js";

// The diff worker from source: its thread registers tsx first (the test's --import does not reach
// worker threads).
const WORKER = new URL(
  "data:text/javascript," +
    encodeURIComponent(
      `import { register } from ${JSON.stringify(import.meta.resolve("tsx/esm/api"))};\n` +
        `register();\n` +
        `await import(${JSON.stringify(new URL("./diff-worker.ts", import.meta.url).href)});\n`,
    ),
);
const GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";
const sha256 = (b: Buffer): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;

interface Blob {
  digest: string;
  size: number;
}

interface Fixture {
  dir: string;
  blobs: string;
  snapshots: string;
  pool: WorkerPool;
  ahead: UnpackAhead;
  outcomes: UnpackAheadOutcome[];
  /** What each namespace holds, as the content store would answer. */
  held: Set<string>;
  put(bytes: Buffer): Blob;
  commit(ns: string, blob: Blob): void;
  /** An empty snapshot dir `<snapshots>/<id>/fs`, as Prepare leaves it (owned as given). */
  snapshot(id: number, owner?: { uid: number; gid: number; mode: number }): string;
}

async function withFixture(
  t: { after: (fn: () => Promise<void> | void) => void },
  fn: (f: Fixture) => Promise<void>,
  opts: { snapshotsThroughSymlink?: boolean } = {},
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "berth-unpack-ahead-"));
  const blobs = join(dir, "blobs");
  const snapshots = join(dir, "snapshots");
  mkdirSync(blobs);
  mkdirSync(snapshots, { mode: 0o700 });
  // A daemon root reached through a symlink names its snapshots dir through it too.
  const named = opts.snapshotsThroughSymlink === true ? join(dir, "link") : snapshots;
  if (named !== snapshots) symlinkSync(snapshots, named);
  const pool = createWorkerPool({ script: WORKER, size: 2 });
  const outcomes: UnpackAheadOutcome[] = [];
  const held = new Set<string>();
  const ahead = createUnpackAhead({
    dir: join(dir, "staging"),
    snapshotDirs: [named],
    pool,
    blobPath: (d) => join(blobs, d.slice("sha256:".length)),
    has: (ns, d) => held.has(`${ns} ${d}`),
    maxLayerBytes: 1 << 30,
    maxLayerEntries: 100_000,
    onOutcome: (o) => outcomes.push(o),
    onError: (err, what) => {
      if (process.env.UA_DEBUG) console.error(what, err);
    },
  });
  t.after(async () => {
    await ahead.close();
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const f: Fixture = {
    dir,
    blobs,
    snapshots,
    pool,
    ahead,
    outcomes,
    held,
    put(bytes) {
      const digest = sha256(bytes);
      writeFileSync(join(blobs, digest.slice("sha256:".length)), bytes);
      return { digest, size: bytes.length };
    },
    commit(ns, blob) {
      held.add(`${ns} ${blob.digest}`);
      ahead.committed(ns, blob.digest, blob.size);
    },
    snapshot(id, owner = { uid: 0, gid: 0, mode: 0o755 }) {
      const fs = join(snapshots, String(id), "fs");
      mkdirSync(fs, { recursive: true });
      chownSync(fs, owner.uid, owner.gid);
      chmodSync(fs, owner.mode);
      return fs;
    },
  };
  await fn(f);
}

function manifest(layers: Blob[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {
        mediaType: "application/vnd.oci.image.config.v1+json",
        digest: sha256(Buffer.from("{}")),
        size: 2,
      },
      layers: layers.map((l) => ({ mediaType: GZIP, digest: l.digest, size: l.size })),
    }),
  );
}

const layer = (entries: CraftEntry[]): Buffer => gzipSync(craftTar(entries));

/** Waits until the staging queue has nothing running (the outcomes list says what became of it). */
async function settled(f: Fixture, count: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (f.outcomes.filter((o) => o === "staged" || o === "failed").length < count) {
    if (Date.now() > deadline) throw new Error(`staging did not finish: ${f.outcomes.join(",")}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function job(
  f: Fixture,
  blob: Blob,
  root: string,
  mode: ApplyJob["whiteouts"],
  parents: string[] = [],
): ApplyJob {
  return {
    blobPath: join(f.blobs, blob.digest.slice("sha256:".length)),
    digest: blob.digest,
    size: blob.size,
    compression: "gzip",
    root,
    whiteouts: mode,
    parents,
    maxBytes: 1 << 30,
    maxEntries: 100_000,
  };
}

/** A parent layer on disk whose directories have owners, modes and xattrs of their own. */
function parentLayer(dir: string): string {
  const p = join(dir, "parent");
  mkdirSync(join(p, "usr", "local", "share"), { recursive: true });
  chownSync(join(p, "usr", "local"), 1000, 1001);
  chmodSync(join(p, "usr", "local"), 0o750);
  chmodSync(join(p, "usr", "local", "share"), 0o711);
  // Implied in the child by an opaque marker alone: nothing is made in it, so its times stay the
  // parent's.
  mkdirSync(join(p, "opt", "only"), { recursive: true });
  utimesSync(join(p, "opt", "only"), 1_500_000_000, 1_500_000_000);
  // Named by the child layer itself after an entry implied it: the parent's must not win.
  mkdirSync(join(p, "etc"));
  chownSync(join(p, "etc"), 99, 98);
  chmodSync(join(p, "etc"), 0o751);
  const fd = openat(AT.FDCWD, join(p, "usr", "local"), O.RDONLY | O.DIRECTORY);
  try {
    fsetxattr(fd, "user.origin", Buffer.from("parent"));
  } finally {
    close(fd);
  }
  return p;
}

const childEntries: CraftEntry[] = [
  // usr/, usr/local/ and usr/local/share/ are implied: only their files are in the layer.
  { name: "usr/local/share/doc.txt", content: "doc", mode: 0o644, uid: 3, gid: 4 },
  { name: "usr/local/bin/tool", content: "#!/bin/sh\n", mode: 0o755 },
  // Named by an entry after an earlier entry implied it: keeps the entry's attributes.
  { name: "etc/conf.d/x", content: "x" },
  { name: "etc/", type: "dir", mode: 0o700, uid: 7, gid: 8 },
  { name: "etc/.wh.old", type: "file", content: "" },
  { name: "opt/app/", type: "dir", mode: 0o755 },
  { name: "opt/app/.wh..wh..opq", content: "" },
  { name: "opt/only/.wh..wh..opq", content: "" },
];

// Whiteout devices are made when the layer is applied, so their times differ by when that was.
const tree = (root: string): string[] =>
  formatTree(snapshotTree(root, { includeRoot: true }), { mtimeFor: ["file", "block", "fifo", "socket"] });

const mtimeOf = (root: string, path: string): string | undefined =>
  snapshotTree(root).find((e) => e.path === path)?.mtime;

void test("a layer committed after its manifest is staged, and the apply onto an empty snapshot takes it: same tree, same answer", async (t) => {
  await withFixture(t, async (f) => {
    const parent = parentLayer(f.dir);
    const bottom = f.put(
      layer([
        { name: "usr/", type: "dir", mode: 0o755 },
        { name: "bin/sh", content: "sh" },
        { name: "bin/.wh.gone", content: "" },
        { name: "usr/lib/.wh..wh..opq", content: "" },
        { name: "usr/lib/x", content: "x" },
      ]),
    );
    const child = f.put(layer(childEntries));
    f.commit("ns", f.put(manifest([bottom, child])));
    f.commit("ns", bottom);
    f.commit("ns", child);
    await settled(f, 2);
    assert.equal(f.ahead.staged, 2);

    // The same layer applied the usual way, with the same parent, onto a snapshot owned by someone
    // (a user-namespaced parent): the root directory keeps what it was.
    const owner = { uid: 4321, gid: 8765, mode: 0o751 };
    const usual = f.snapshot(1, owner);
    const expected = await runApplyJob(job(f, child, usual, "overlay", [parent]));

    const target = f.snapshot(2, owner);
    const claimed = await f.ahead.claim(job(f, child, target, "overlay", [parent]));
    assert.deepEqual(claimed, {
      diffId: expected.diffId,
      tarSize: expected.tarSize,
      entries: expected.entries,
      bytes: expected.bytes,
    });
    assert.deepEqual(tree(target), tree(usual));
    assert.ok(tree(target).includes(". dir mode=0751 uid=4321 gid=8765"), tree(target)[0]);
    // An implied directory nothing was made in has the parent's modification time, as applied.
    assert.equal(mtimeOf(target, "opt/only"), "1500000000000000000");
    assert.equal(mtimeOf(target, "opt/only"), mtimeOf(usual, "opt/only"));
    // The implied directories took the parent's owner, mode and xattrs.
    assert.ok(
      tree(target).some((l) => /^usr\/local dir mode=0750 uid=1000 gid=1001 .*user\.origin/.test(l)),
      tree(target).join("\n"),
    );

    // The bottom layer, in the bind mount's whiteout mode.
    const bottomUsual = f.snapshot(3);
    await runApplyJob(job(f, bottom, bottomUsual, "delete"));
    const bottomTarget = f.snapshot(4);
    assert.ok(await f.ahead.claim(job(f, bottom, bottomTarget, "delete")));
    assert.deepEqual(tree(bottomTarget), tree(bottomUsual));
    assert.ok(tree(bottomTarget).some((l) => l.startsWith("usr/lib/x file")));
    assert.deepEqual(f.outcomes.sort(), ["claimed", "claimed", "staged", "staged"]);
    assert.equal(f.ahead.staged, 0);
    // Claimed once: the next apply of the same layer does its own work.
    assert.equal(await f.ahead.claim(job(f, child, f.snapshot(5), "overlay", [parent])), undefined);
  });
});

void test("targets other than an empty, xattr-free `<snapshots>/<id>/fs` are not claimed; the staged tree waits for one that is", async (t) => {
  await withFixture(t, async (f) => {
    const l = f.put(layer([{ name: "a/b", content: "b" }]));
    f.commit("ns", f.put(manifest([l])));
    f.commit("ns", l);
    await settled(f, 1);

    const outside = join(f.dir, "elsewhere");
    mkdirSync(outside);
    assert.equal(await f.ahead.claim(job(f, l, outside, "delete")), undefined);
    const notFs = join(f.snapshots, "7", "work");
    mkdirSync(notFs, { recursive: true });
    assert.equal(await f.ahead.claim(job(f, l, notFs, "delete")), undefined);
    const full = f.snapshot(8);
    writeFileSync(join(full, "keep"), "mine");
    assert.equal(await f.ahead.claim(job(f, l, full, "delete")), undefined);
    assert.deepEqual(readdirSync(full), ["keep"]);
    const marked = f.snapshot(9);
    const fd = openat(AT.FDCWD, marked, O.RDONLY | O.DIRECTORY);
    try {
      fsetxattr(fd, "user.mark", Buffer.from("1"));
    } finally {
      close(fd);
    }
    assert.equal(await f.ahead.claim(job(f, l, marked, "delete")), undefined);
    // Another whiteout mode, or a diffID the content store says it must have, is another layer.
    assert.equal(await f.ahead.claim(job(f, l, f.snapshot(10), "overlay")), undefined);
    const lying = { ...job(f, l, f.snapshot(11), "delete"), expectedDiffId: sha256(Buffer.from("other")) };
    assert.equal(await f.ahead.claim(lying), undefined);
    assert.deepEqual(readdirSync(join(f.snapshots, "11", "fs")), []);

    const good = f.snapshot(12);
    assert.ok(await f.ahead.claim(job(f, l, good, "delete")));
    assert.deepEqual(readdirSync(good), ["a"]);
  });
});

void test("a daemon root behind a symlink: the snapshot dirs are matched by their real paths", async (t) => {
  await withFixture(
    t,
    async (f) => {
      const l = f.put(layer([{ name: "a/b", content: "b" }]));
      f.commit("ns", f.put(manifest([l])));
      f.commit("ns", l);
      await settled(f, 1);
      const target = f.snapshot(1);
      assert.ok(await f.ahead.claim(job(f, l, join(f.dir, "link", "1", "fs"), "delete")));
      assert.deepEqual(readdirSync(target), ["a"]);
    },
    { snapshotsThroughSymlink: true },
  );
});

/**
 * Stages entries as an upper layer, then checks that an Apply over parent does not take it: the
 * target stays empty and the staged tree is dropped.
 */
async function refusedOver(f: Fixture, parent: string, entries: CraftEntry[]): Promise<void> {
  const l = f.put(layer(entries));
  const bottom = f.put(layer([{ name: "x", content: "x" }]));
  f.commit("ns", f.put(manifest([bottom, l])));
  f.commit("ns", l);
  await settled(f, 1);
  const target = f.snapshot(1);
  assert.equal(await f.ahead.claim(job(f, l, target, "overlay", [parent])), undefined);
  assert.deepEqual(readdirSync(target), []);
  assert.deepEqual(f.outcomes, ["staged", "dropped"]);
  assert.equal(f.ahead.staged, 0);
}

void test("a parent directory that would shape what is created in an implied one (set-group-ID) makes the apply do its own work", async (t) => {
  await withFixture(t, async (f) => {
    const parent = join(f.dir, "parent");
    mkdirSync(join(parent, "srv"), { recursive: true });
    chmodSync(join(parent, "srv"), 0o2775);
    await refusedOver(f, parent, [{ name: "srv/data", content: "d" }]);
  });
});

void test("a directory named after an entry implied it, whose parent has xattrs: the apply does its own work", async (t) => {
  await withFixture(t, async (f) => {
    const parent = join(f.dir, "parent");
    mkdirSync(join(parent, "srv"), { recursive: true });
    const fd = openat(AT.FDCWD, join(parent, "srv"), O.RDONLY | O.DIRECTORY);
    try {
      fsetxattr(fd, "user.kept", Buffer.from("1"));
    } finally {
      close(fd);
    }
    // The usual apply gives srv the parent's xattr, then the entry's owner and mode: both stay.
    await refusedOver(f, parent, [
      { name: "srv/x", content: "x" },
      { name: "srv/", type: "dir", mode: 0o700 },
    ]);
  });
});

void test("parents that cannot be read: the apply does its own work, and says what is wrong with them", async (t) => {
  await withFixture(t, async (f) => {
    const l = f.put(layer([{ name: "srv/x", content: "x" }]));
    const bottom = f.put(layer([{ name: "b", content: "b" }]));
    f.commit("ns", f.put(manifest([bottom, l])));
    f.commit("ns", l);
    await settled(f, 1);
    const missing = join(f.dir, "no-such-parent");
    const target = f.snapshot(1);
    assert.equal(await f.ahead.claim(job(f, l, target, "overlay", [missing])), undefined);
    assert.deepEqual(readdirSync(target), []);
    await assert.rejects(runApplyJob(job(f, l, target, "overlay", [missing])), /no-such-parent|ENOENT/);
    // Still staged, for an apply with parents it can read.
    assert.equal(f.ahead.staged, 1);
    assert.ok(await f.ahead.claim(job(f, l, f.snapshot(2), "overlay", [f.snapshot(3)])));
  });
});

void test("an apply of a layer still waiting its turn starts it at once and takes it", async (t) => {
  await withFixture(t, async (f) => {
    // The bottom layer is big enough to still be staging when the next one is asked for.
    const big = f.put(
      layer(
        Array.from({ length: 3000 }, (_, i) => ({ name: `d${i % 30}/f${i}`, content: `${i}`.repeat(50) })),
      ),
    );
    const small = f.put(layer([{ name: "s/t", content: "t" }]));
    f.commit("ns", f.put(manifest([big, small])));
    f.commit("ns", big);
    f.commit("ns", small);
    const usual = f.snapshot(1);
    await runApplyJob(job(f, small, usual, "overlay"));
    const target = f.snapshot(2);
    const claimed = await f.ahead.claim(job(f, small, target, "overlay"));
    assert.ok(claimed);
    assert.deepEqual(tree(target), tree(usual));
    await settled(f, 2);
    assert.ok(await f.ahead.claim(job(f, big, f.snapshot(3), "delete")));
    assert.deepEqual(f.outcomes.sort(), ["claimed", "claimed", "staged", "staged"]);
  });
});

void test("only layers that come after their manifest into the namespace are staged; bad blobs fail quietly and leave nothing", async (t) => {
  await withFixture(t, async (f) => {
    const known = f.put(layer([{ name: "k", content: "k" }]));
    f.commit("ns", known);
    const fresh = f.put(layer([{ name: "f", content: "f" }]));
    const tampered = f.put(layer([{ name: "t", content: "tampered" }]));
    // The file no longer holds what its digest names.
    writeFileSync(join(f.blobs, tampered.digest.slice("sha256:".length)), Buffer.alloc(tampered.size));
    f.commit("ns", f.put(manifest([known, fresh, tampered])));
    // Another namespace committing the layer does not stage it for this manifest.
    f.commit("other", fresh);
    assert.equal(f.ahead.staged, 0);
    f.commit("ns", fresh);
    f.commit("ns", tampered);
    await settled(f, 2);
    assert.deepEqual(f.outcomes.sort(), ["failed", "staged"]);
    assert.equal(f.ahead.staged, 1);
    // A blob that is not a manifest (nor JSON at all) stages nothing.
    f.commit("ns", f.put(Buffer.from('{"schemaVersion": 2, "layers": "no"}')));
    f.commit("ns", f.put(Buffer.from([0x1f, 0x8b, 0, 1, 2])));
    assert.equal(f.ahead.staged, 1);
    // The failed layer left no tree behind: only the staged one is in the staging dir.
    const runs = readdirSync(join(f.dir, "staging"));
    assert.equal(runs.length, 1);
    assert.equal(readdirSync(join(f.dir, "staging", runs[0]!)).length, 1);
  });
});
