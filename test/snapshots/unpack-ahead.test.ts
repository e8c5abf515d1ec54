// Unpack-ahead through the stock `ctr images pull` from a real registry: berthd unpacks each layer
// when its blob arrives, and ctr's Diff.Apply calls take the staged trees (the metrics count them).
// The trees are the same as a berthd with unpack-ahead off unpacks, entry by entry, and match the
// fixture's expectations; a namespace that links the blobs from another one is staged too, and a
// layer a namespace already has is not staged again.
import assert from "node:assert/strict";
import { statfsSync } from "node:fs";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { formatTree, snapshotTree } from "../../src/core/diff/tree-snapshot.js";
import { pushImage } from "../fixtures/registry-push.js";
import { buildImage } from "../fixtures/image.js";
import { buildLayer } from "../fixtures/layer.js";
import { imageRef, multiLayerTestImage, MTIME_OLD, type MultiLayerImage } from "../fixtures/test-images.js";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { ctrOk } from "../harness/ctr.js";
import { startRegistry, type RegistryHandle } from "../harness/registry.js";
import { checkRootfs } from "../harness/rootfs-check.js";
import { makeTempDir, removeTempDir } from "../harness/temp-dir.js";
import { freePort } from "../harness/free-port.js";

interface Daemon {
  berthd: BerthdHandle;
  metricsPort: number;
}

async function startWith(dir: string, name: string, unpackAhead: boolean): Promise<Daemon> {
  const metricsPort = await freePort();
  const file = join(dir, `${name}.toml`);
  await writeFile(
    file,
    `version = 2\n[metrics]\naddress = "127.0.0.1:${metricsPort}"\n` +
      `[plugins."io.containerd.differ.v1.walking"]\nunpack_ahead = ${unpackAhead}\n`,
  );
  return { berthd: await startBerthd({ extraArgs: ["--config", file] }), metricsPort };
}

/** berthd_unpack_ahead_layers_total by outcome. */
async function outcomes(d: Daemon): Promise<Record<string, number>> {
  const body = await (await fetch(`http://127.0.0.1:${d.metricsPort}/v1/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of body.matchAll(/^berthd_unpack_ahead_layers_total\{outcome="(\w+)"\} (\d+)$/gm))
    out[m[1]!] = Number(m[2]);
  return out;
}

// Staging keeps 1 GiB of the file system free (unpack-ahead.ts): on a fuller disk nothing is staged.
const free = ((st) => st.bavail * st.bsize)(statfsSync(tmpdir()));
const skip =
  free < 2 * 2 ** 30 ? `${(free / 2 ** 20).toFixed(0)} MiB free: unpack-ahead stages nothing` : false;

void describe("unpack-ahead under ctr images pull", { timeout: 300_000, skip }, () => {
  let work: string;
  let registry: RegistryHandle;
  let ahead: Daemon;
  let plain: Daemon;
  let image: MultiLayerImage;
  let ref: string;
  let mounts = 0;

  before(async () => {
    work = await makeTempDir("unpack-ahead");
    registry = await startRegistry();
    image = await multiLayerTestImage("gzip", { repo: "berth/unpack-ahead" });
    await pushImage(registry.url, image.repo, image.tag, image);
    ref = imageRef(registry.host, image);
    // One at a time: if the second fails, the first is already assigned, and after() stops it.
    ahead = await startWith(work, "ahead", true);
    plain = await startWith(work, "plain", false);
  });

  after(async () => {
    await Promise.allSettled([ahead?.berthd.stop(), plain?.berthd.stop(), registry?.stop()]);
    if (work) await removeTempDir(work);
  });

  /** `ctr images mount` of ref in namespace, its tree listed, then unmounted. */
  async function mountedTree(d: Daemon, namespace: string): Promise<string[]> {
    const dir = join(work, `${namespace}-${d === ahead ? "ahead" : "plain"}-${++mounts}`);
    await mkdir(dir);
    await ctrOk(d.berthd.address, ["images", "mount", ref, dir], { namespace });
    try {
      assert.deepEqual(await checkRootfs(dir, image.expected), []);
      return formatTree(snapshotTree(dir));
    } finally {
      await ctrOk(d.berthd.address, ["images", "unmount", "--rm", dir], { namespace });
    }
  }

  const snapshotsDir = (d: Daemon): string =>
    join(d.berthd.root, "io.containerd.snapshotter.v1.overlayfs", "snapshots");
  const snapshotIds = async (d: Daemon): Promise<string[]> =>
    (await readdir(snapshotsDir(d))).filter((n) => /^[0-9]+$/.test(n));

  /**
   * Each snapshot's own directory (its overlay upper dir: whiteout devices, opaque markers,
   * implied directories) as a listing, sorted: the daemons number their snapshots each their own way.
   */
  async function layerDirs(d: Daemon, leaveOut: ReadonlySet<string> = new Set()): Promise<string[][]> {
    const dir = snapshotsDir(d);
    const ids = (await snapshotIds(d)).filter((id) => !leaveOut.has(id));
    // Whiteout devices are made when a layer is applied: their times are left out.
    const list = (id: string) =>
      formatTree(snapshotTree(join(dir, id, "fs")), { mtimeFor: ["file", "block", "fifo", "socket"] });
    return ids.map(list).sort((a, b) => a.join("\n").localeCompare(b.join("\n")));
  }

  void test("every layer of a pull is staged and claimed, and the tree is the one a plain apply makes", async () => {
    const layers = image.layerBlobs.length;
    await ctrOk(ahead.berthd.address, ["images", "pull", "--plain-http", ref], { namespace: "first" });
    await ctrOk(plain.berthd.address, ["images", "pull", "--plain-http", ref], { namespace: "first" });
    assert.deepEqual(await outcomes(ahead), { staged: layers, claimed: layers });
    assert.deepEqual(await outcomes(plain), {});
    const tree = await mountedTree(ahead, "first");
    assert.ok(tree.length > 10);
    assert.deepEqual(tree, await mountedTree(plain, "first"));
    // Layer by layer too, whiteouts and opaque markers included.
    const layersAhead = await layerDirs(ahead);
    assert.equal(layersAhead.length, layers);
    assert.ok(
      layersAhead.some((l) => l.some((e) => / char mode=0000 .*rdev=0:0/.test(e))),
      "a whiteout device",
    );
    assert.ok(
      layersAhead.some((l) => l.some((e) => /trusted\.overlay\.opaque/.test(e))),
      "an opaque dir",
    );
    assert.deepEqual(layersAhead, await layerDirs(plain));
  });

  void test("a namespace that links the blobs is staged too; a namespace that has the layers is not", async () => {
    const layers = image.layerBlobs.length;
    const before = await outcomes(ahead);
    await ctrOk(ahead.berthd.address, ["images", "pull", "--plain-http", ref], { namespace: "second" });
    const after = await outcomes(ahead);
    assert.equal(after.claimed, (before.claimed ?? 0) + layers);
    assert.deepEqual(await mountedTree(ahead, "second"), await mountedTree(plain, "first"));

    // Pulled again where it is unpacked: no Diff.Apply comes, so nothing is staged for it.
    await ctrOk(ahead.berthd.address, ["images", "pull", "--plain-http", ref], { namespace: "second" });
    assert.deepEqual(await outcomes(ahead), after);
  });

  void test("directories an upper layer only implies take the lower layer's owner, mode, xattrs and times, as a plain apply gives them", async () => {
    // The lower layer's directories have owners, modes, xattrs and old times of their own; the
    // upper layer names none of them, only files inside (opt/app) or an opaque marker (srv/only,
    // in which nothing is made: its times stay the lower layer's).
    const lower = await buildLayer([
      {
        path: "opt",
        type: "dir",
        mode: 0o750,
        uid: 1000,
        gid: 1001,
        mtime: MTIME_OLD,
        pax: { "SCHILY.xattr.user.origin": "lower" },
      },
      { path: "opt/app", type: "dir", mode: 0o711, uid: 7, gid: 8, mtime: MTIME_OLD },
      { path: "srv", type: "dir", mode: 0o755, mtime: MTIME_OLD },
      { path: "srv/only", type: "dir", mode: 0o700, uid: 9, gid: 9, mtime: MTIME_OLD },
      { path: "srv/only/gone", type: "file", content: "hidden by the upper layer\n" },
    ]);
    const upper = await buildLayer([
      { path: "opt/app/new.txt", type: "file", content: "new\n" },
      { path: "srv/only/.wh..wh..opq", type: "file", content: "" },
    ]);
    const img = buildImage({ layers: [lower, upper] });
    await pushImage(registry.url, "berth/implied", "v1", img);
    const implied = imageRef(registry.host, { repo: "berth/implied", tag: "v1" });
    const before = { ahead: new Set(await snapshotIds(ahead)), plain: new Set(await snapshotIds(plain)) };
    const claimedBefore = (await outcomes(ahead)).claimed ?? 0;
    for (const d of [ahead, plain])
      await ctrOk(d.berthd.address, ["images", "pull", "--plain-http", implied], { namespace: "implied" });
    assert.equal((await outcomes(ahead)).claimed, claimedBefore + 2);
    const dirs = await layerDirs(ahead, before.ahead);
    assert.deepEqual(dirs, await layerDirs(plain, before.plain));
    // The upper layer's own dir: the implied directories as the lower layer has them.
    const upperDir = dirs.find((l) => l.some((e) => e.startsWith("opt/app/new.txt ")));
    assert.ok(upperDir);
    assert.ok(
      upperDir.some((e) => /^opt dir mode=0750 uid=1000 gid=1001 .*user\.origin/.test(e)),
      upperDir.join("\n"),
    );
    const times = await snapshotTreeTimes(ahead, before.ahead, "srv/only");
    assert.deepEqual(times, await snapshotTreeTimes(plain, before.plain, "srv/only"));
    assert.ok(times.includes(String(BigInt(MTIME_OLD.getTime()) * 1_000_000n)), times.join(" "));
  });

  /** The mtimes (ns) of path in each new snapshot's own dir that has it. */
  async function snapshotTreeTimes(
    d: Daemon,
    leaveOut: ReadonlySet<string>,
    path: string,
  ): Promise<string[]> {
    const out: string[] = [];
    for (const id of await snapshotIds(d)) {
      if (leaveOut.has(id)) continue;
      const e = snapshotTree(join(snapshotsDir(d), id, "fs")).find((x) => x.path === path);
      if (e !== undefined) out.push(e.mtime);
    }
    return out.sort();
  }
});
