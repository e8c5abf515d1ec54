import { test } from "node:test";
import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  bundleRemovals,
  createBundle,
  deleteBundle,
  listBundles,
  removeRetiredBundles,
  type BundleDirs,
} from "./bundle.js";

function withDirs(fn: (dirs: BundleDirs) => Promise<void>): () => Promise<void> {
  return async () => {
    const base = mkdtempSync(join(tmpdir(), "berth-bundle-"));
    const dirs = { state: join(base, "state"), root: join(base, "root") };
    try {
      await fn(dirs);
    } finally {
      await bundleRemovals();
      rmSync(base, { recursive: true, force: true });
    }
  };
}

const spec = new TextEncoder().encode('{"ociVersion":"1.0.2"}');

void test(
  "deleteBundle frees the id at once; the old bundle and work dir go after, never the new ones",
  withDirs(async (dirs) => {
    const b = await createBundle(dirs, "ns", "c1", spec);
    writeFileSync(join(b.path, "init.pid"), "42");
    writeFileSync(join(dirs.root, "ns", "c1", "scratch"), "old");
    await deleteBundle(b);
    assert.equal(existsSync(b.path), false, "the bundle's path is free");
    assert.deepEqual(await listBundles(dirs), [], "a retired bundle is not a task");
    // The same id again, right away: its own bundle and work dir, untouched by the old removal.
    const again = await createBundle(dirs, "ns", "c1", spec);
    await bundleRemovals();
    assert.equal(readFileSync(join(again.path, "config.json"), "utf8"), '{"ociVersion":"1.0.2"}');
    assert.deepEqual(readdirSync(join(dirs.root, "ns", "c1")), [], "a fresh work dir");
    assert.deepEqual(readdirSync(join(dirs.state, "ns")), ["c1"], "nothing of the old bundle is left");
    assert.deepEqual(readdirSync(join(dirs.root, "ns")), ["c1"], "nothing of the old work dir is left");
  }),
);

void test(
  "a rootfs that is not empty (still mounted, or written into) is never removed through: its bundle stays",
  withDirs(async (dirs) => {
    const b = await createBundle(dirs, "ns", "c1", spec);
    writeFileSync(join(b.path, "rootfs", "file"), "container data");
    await deleteBundle(b);
    await bundleRemovals();
    const retired = readdirSync(join(dirs.state, "ns"));
    assert.equal(retired.length, 1);
    assert.match(retired[0] as string, /^\.retired-c1-/);
    const kept = join(dirs.state, "ns", retired[0] as string, "rootfs", "file");
    assert.equal(readFileSync(kept, "utf8"), "container data");
    await removeRetiredBundles(dirs);
    assert.equal(readFileSync(kept, "utf8"), "container data", "nor at a restart");
    assert.deepEqual(await listBundles(dirs), []);
  }),
);

void test(
  "createBundle makes the namespace's dirs again should they have gone",
  withDirs(async (dirs) => {
    await deleteBundle(await createBundle(dirs, "ns", "c1", spec));
    await bundleRemovals();
    rmSync(dirs.state, { recursive: true });
    rmSync(dirs.root, { recursive: true });
    const b = await createBundle(dirs, "ns", "c2", spec);
    assert.ok(existsSync(join(b.path, "config.json")));
    assert.ok(existsSync(join(dirs.root, "ns", "c2")));
  }),
);

void test(
  "removeRetiredBundles takes what a crash left mid-removal, and nothing else",
  withDirs(async (dirs) => {
    const live = await createBundle(dirs, "ns", "live", spec);
    for (const base of [dirs.state, dirs.root]) {
      mkdirSync(join(base, "ns", ".retired-old-0a1b2c3d", "sub"), { recursive: true });
      writeFileSync(join(base, "ns", ".retired-old-0a1b2c3d", "sub", "f"), "x");
    }
    assert.deepEqual(
      (await listBundles(dirs)).map((x) => x.id),
      ["live"],
    );
    await removeRetiredBundles(dirs);
    assert.deepEqual(readdirSync(join(dirs.state, "ns")), ["live"]);
    assert.deepEqual(readdirSync(join(dirs.root, "ns")), ["live"]);
    assert.ok(existsSync(join(live.path, "config.json")));
  }),
);
