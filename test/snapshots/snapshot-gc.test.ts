// Garbage collection of snapshots, side by side with a private containerd 1.6: `ctr images rm
// --sync` takes an unpacked image's snapshots with it (the listing and, on disk, the overlayfs
// snapshot directories), while a snapshot still held by a container or by a lease survives, with
// its parent chain, until that goes.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Leases, Snapshots } from "../../src/client/index.js";
import { pushImage } from "../fixtures/registry-push.js";
import { imageRef, multiLayerTestImage, type RegistryImage } from "../fixtures/test-images.js";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { startContainerd, type ContainerdHandle } from "../harness/containerd.js";
import { startRegistry, type RegistryHandle } from "../harness/registry.js";
import { sideBySide, DAEMONS, type Both, type Daemon } from "../compat/side-by-side.js";

void describe("snapshot garbage collection: berthd vs containerd", { timeout: 120_000 }, () => {
  let berthd: BerthdHandle;
  let containerd: ContainerdHandle;
  let registry: RegistryHandle;
  let image: RegistryImage;
  let ref: string;
  const { both, same, api, flushGc } = sideBySide(() => ({ berthd, containerd }), { sortRows: true });

  before(async () => {
    [berthd, containerd, registry] = await Promise.all([startBerthd(), startContainerd(), startRegistry()]);
    image = await multiLayerTestImage("gzip");
    await pushImage(registry.url, image.repo, image.tag, image);
    ref = imageRef(registry.host, image);
  });

  after(async () => {
    await Promise.allSettled([berthd?.stop(), containerd?.stop(), registry?.stop()]);
  });

  /** The overlayfs snapshotter's directories (one per snapshot) on each daemon's disk. */
  const snapshotDirs = (d: Daemon): Set<string> =>
    new Set(
      readdirSync(
        join(
          d === "berthd" ? berthd.root : containerd.root,
          "io.containerd.snapshotter.v1.overlayfs",
          "snapshots",
        ),
      ),
    );
  const dirsBoth = (): Both<Set<string>> => ({
    berthd: snapshotDirs("berthd"),
    containerd: snapshotDirs("containerd"),
  });
  const added = (now: Set<string>, before: Set<string>): string[] =>
    [...now].filter((n) => !before.has(n)).sort();

  /** The rows of `ctr snapshots ls` (the same on both daemons), without the header. */
  async function snapshotRows(namespace: string): Promise<string[]> {
    const out = await same(["snapshots", "ls"], { namespace, succeed: true });
    return out.stdout
      .trim()
      .split("\n")
      .slice(1)
      .filter((l) => l.trim() !== "")
      .map((l) => l.trim().split(/\s+/).join(" "))
      .sort();
  }

  /** Polls until the directories in names are gone from each daemon's disk (removal may lag). */
  async function dirsGone(names: Both<string[]>, what: string): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const left = DAEMONS.flatMap((d) => {
        const now = snapshotDirs(d);
        return names[d].filter((n) => now.has(n)).map((n) => `${d}:${n}`);
      });
      if (left.length === 0) return;
      if (Date.now() > deadline) assert.fail(`${what}: snapshot directories left: ${left.join(", ")}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Pulls the image on both; returns the directories the pull added on each daemon. */
  async function pull(namespace: string): Promise<Both<string[]>> {
    const base = dirsBoth();
    const r = await both(["images", "pull", "--plain-http", ref], namespace);
    for (const d of DAEMONS) assert.equal(r[d].code, 0, `${d}: ${r[d].stderr}`);
    const rows = await snapshotRows(namespace);
    // One committed snapshot per layer, named by its chain ID, each the parent of the next.
    const expected = image.chainIds.map((id, i) =>
      i === 0 ? `${id} Committed` : `${id} ${image.chainIds[i - 1]} Committed`,
    );
    assert.deepEqual(rows, expected.sort());
    const now = dirsBoth();
    const dirs = {
      berthd: added(now.berthd, base.berthd),
      containerd: added(now.containerd, base.containerd),
    };
    for (const d of DAEMONS)
      assert.equal(dirs[d].length, image.chainIds.length, `${d}: one directory per snapshot`);
    return dirs;
  }

  void test("ctr images rm --sync removes the image's snapshots and their directories", async () => {
    const namespace = "gc-image";
    const dirs = await pull(namespace);
    await same(["images", "rm", "--sync", ref], { namespace, succeed: true });
    assert.deepEqual(await snapshotRows(namespace), []);
    await dirsGone(dirs, "after images rm --sync");
  });

  void test("a snapshot held by a container survives the image until the container goes", async () => {
    const namespace = "gc-container";
    const dirs = await pull(namespace);
    const base = dirsBoth();
    await same(["containers", "create", ref, "holder"], { namespace, succeed: true });
    const held = {
      berthd: added(snapshotDirs("berthd"), base.berthd),
      containerd: added(snapshotDirs("containerd"), base.containerd),
    };
    for (const d of DAEMONS) assert.equal(held[d].length, 1, `${d}: the container's snapshot directory`);

    await same(["images", "rm", "--sync", ref], { namespace, succeed: true });
    const top = image.chainId;
    const chain = await snapshotRows(namespace);
    // The container's active snapshot and its whole parent chain are still there.
    assert.equal(chain.length, image.chainIds.length + 1);
    assert.ok(chain.includes(`holder ${top} Active`), chain.join("\n"));
    for (const d of DAEMONS)
      for (const n of [...dirs[d], ...held[d]]) assert.ok(snapshotDirs(d).has(n), `${d}: ${n} was removed`);

    // Without its snapshot the container holds nothing: the active snapshot kept by
    // --keep-snapshot is garbage now, and the chain under it with it.
    await same(["containers", "rm", "--keep-snapshot", "holder"], { namespace, succeed: true });
    await flushGc();
    assert.deepEqual(await snapshotRows(namespace), []);
    await dirsGone(
      { berthd: [...dirs.berthd, ...held.berthd], containerd: [...dirs.containerd, ...held.containerd] },
      "after the container went",
    );
  });

  void test("a snapshot held by a lease survives the image until the lease goes", async () => {
    const namespace = "gc-lease";
    const dirs = await pull(namespace);
    const base = dirsBoth();
    await same(["leases", "create", "--id", "holder"], { namespace, succeed: true });
    await api(namespace, async (client) => {
      await client
        .with({ lease: "holder" })
        .service(Snapshots)
        .prepare({ snapshotter: "overlayfs", key: "leased", parent: image.chainId });
    });
    const held = {
      berthd: added(snapshotDirs("berthd"), base.berthd),
      containerd: added(snapshotDirs("containerd"), base.containerd),
    };
    for (const d of DAEMONS) assert.equal(held[d].length, 1, `${d}: the leased snapshot's directory`);

    await same(["images", "rm", "--sync", ref], { namespace, succeed: true });
    const rows = await snapshotRows(namespace);
    assert.equal(rows.length, image.chainIds.length + 1);
    assert.ok(rows.includes(`leased ${image.chainId} Active`), rows.join("\n"));
    for (const d of DAEMONS)
      for (const n of [...dirs[d], ...held[d]]) assert.ok(snapshotDirs(d).has(n), `${d}: ${n} was removed`);
    // The lease lists the snapshot as its resource on both.
    await same(["leases", "ls"], { namespace, succeed: true });

    await api(namespace, (client) => client.service(Leases).delete({ id: "holder", sync: true }));
    assert.deepEqual(await snapshotRows(namespace), []);
    await dirsGone(
      { berthd: [...dirs.berthd, ...held.berthd], containerd: [...dirs.containerd, ...held.containerd] },
      "after the lease went",
    );
  });
});
