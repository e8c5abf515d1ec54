// Unpack-ahead through the stock `ctr images pull` from a real registry: berthd unpacks each layer
// when its blob arrives, and ctr's Diff.Apply calls take the staged trees (the metrics count them).
// The trees are the same as a berthd with unpack-ahead off unpacks, entry by entry, and match the
// fixture's expectations; a namespace that links the blobs from another one is staged too, and a
// layer a namespace already has is not staged again.
import assert from "node:assert/strict";
import { statfsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { formatTree, snapshotTree } from "../../src/core/diff/tree-snapshot.js";
import { pushImage } from "../fixtures/registry-push.js";
import { imageRef, multiLayerTestImage, type MultiLayerImage } from "../fixtures/test-images.js";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { ctrOk } from "../harness/ctr.js";
import { startRegistry, type RegistryHandle } from "../harness/registry.js";
import { checkRootfs } from "../harness/rootfs-check.js";
import { makeTempDir, removeTempDir } from "../harness/temp-dir.js";

interface Daemon {
  berthd: BerthdHandle;
  metricsPort: number;
}

async function startWith(dir: string, name: string, unpackAhead: boolean): Promise<Daemon> {
  const metricsPort = 20000 + Math.floor(Math.random() * 30000);
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
    [ahead, plain] = await Promise.all([startWith(work, "ahead", true), startWith(work, "plain", false)]);
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

  void test("every layer of a pull is staged and claimed, and the tree is the one a plain apply makes", async () => {
    const layers = image.layerBlobs.length;
    await ctrOk(ahead.berthd.address, ["images", "pull", "--plain-http", ref], { namespace: "first" });
    await ctrOk(plain.berthd.address, ["images", "pull", "--plain-http", ref], { namespace: "first" });
    assert.deepEqual(await outcomes(ahead), { staged: layers, claimed: layers });
    assert.deepEqual(await outcomes(plain), {});
    const tree = await mountedTree(ahead, "first");
    assert.ok(tree.length > 10);
    assert.deepEqual(tree, await mountedTree(plain, "first"));
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
});
