// The stock `ctr images pull --plain-http` from a real registry into berthd and into a private
// containerd 1.6, side by side: the same chain IDs (and those the fixtures computed from their own
// layer bytes), the same unpacked trees
// (every path, type, mode, owner, xattr, content and file mtime, read through `ctr images mount`),
// and the same snapshot listings.
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { formatTree, snapshotTree } from "../../src/core/diff/tree-snapshot.js";
import { pushImage, pushIndex } from "../fixtures/registry-push.js";
import {
  busyboxTestImage,
  imageRef,
  multiLayerTestImage,
  multiPlatformTestIndex,
  largeTestImage,
  MiB,
  type RegistryImage,
  type RegistryIndex,
} from "../fixtures/test-images.js";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { startContainerd, type ContainerdHandle } from "../harness/containerd.js";
import { startRegistry, type RegistryHandle } from "../harness/registry.js";
import { checkRootfs } from "../harness/rootfs-check.js";
import { makeTempDir, removeTempDir } from "../harness/temp-dir.js";
import { sideBySide, DAEMONS, type Daemon } from "../compat/side-by-side.js";

void describe("ctr images pull: berthd vs containerd", { timeout: 300_000 }, () => {
  let berthd: BerthdHandle;
  let containerd: ContainerdHandle;
  let registry: RegistryHandle;
  let work: string;
  let ns = 0;
  const newNamespace = (): string => `pull-${++ns}`;
  const { both, same } = sideBySide(() => ({ berthd, containerd }));

  const images: Record<string, RegistryImage> = {};
  let index: RegistryIndex;

  before(async () => {
    [berthd, containerd, registry, work] = await Promise.all([
      startBerthd(),
      startContainerd(),
      startRegistry(),
      makeTempDir("pull"),
    ]);
    images.oci = await busyboxTestImage("oci");
    images.docker = await busyboxTestImage("docker", { repo: "berth/busybox-docker" });
    images.layers = await multiLayerTestImage("gzip");
    images.zstd = await multiLayerTestImage("zstd");
    images.large = await largeTestImage({ dir: work, size: 16 * MiB });
    for (const img of Object.values(images)) await pushImage(registry.url, img.repo, img.tag, img);
    index = await multiPlatformTestIndex();
    await pushIndex(registry.url, index.repo, index.tag, index);
  });

  after(async () => {
    if (work) await removeTempDir(work);
    await Promise.allSettled([berthd?.stop(), containerd?.stop(), registry?.stop()]);
  });

  /** Pulls on both daemons; returns the chain IDs each printed (they must agree). */
  async function pullBoth(namespace: string, ref: string, extra: readonly string[] = []): Promise<string[]> {
    const r = await both(["images", "pull", "--plain-http", "--print-chainid", ...extra, ref], namespace);
    const chains = (d: Daemon): string[] => {
      assert.equal(r[d].code, 0, `${d}: ${r[d].stderr}`);
      return [...r[d].stdout.matchAll(/image chain ID: (sha256:[0-9a-f]{64})/g)].map((m) => m[1] as string);
    };
    assert.deepEqual(chains("berthd"), chains("containerd"));
    return chains("berthd");
  }

  /** `ctr images mount` on both, then the two trees listed entry by entry. */
  async function mountedTrees(
    namespace: string,
    ref: string,
    check?: (root: string) => Promise<void>,
    extra: readonly string[] = [],
  ): Promise<void> {
    const listings: Record<Daemon, string[]> = { berthd: [], containerd: [] };
    for (const d of DAEMONS) {
      const dir = join(work, `${namespace}-${d}`);
      await mkdir(dir);
      const r = await both(
        (daemon) => (daemon === d ? ["images", "mount", ...extra, ref, dir] : ["version"]),
        namespace,
      );
      assert.equal(r[d].code, 0, `${d} images mount: ${r[d].stderr}`);
      try {
        listings[d] = formatTree(snapshotTree(dir));
        if (check) await check(dir);
      } finally {
        const u = await both(
          (daemon) => (daemon === d ? ["images", "unmount", "--rm", dir] : ["version"]),
          namespace,
        );
        assert.equal(u[d].code, 0, `${d} images unmount: ${u[d].stderr}`);
      }
    }
    assert.ok(listings.berthd.length > 0);
    assert.deepEqual(listings.berthd, listings.containerd);
  }

  for (const name of ["oci", "docker", "layers", "zstd", "large"]) {
    void test(`pull of the ${name} image unpacks the same tree as containerd`, async () => {
      const img = images[name] as RegistryImage;
      const namespace = newNamespace();
      const ref = imageRef(registry.host, img);
      assert.deepEqual(await pullBoth(namespace, ref), [img.chainId]);
      await same(["snapshots", "ls"], { namespace, sortRows: true });
      await same(["snapshots", "tree"], namespace);
      await same(["snapshots", "usage"], { namespace, sortRows: true });
      await same(["images", "check"], namespace);
      const expected =
        "expected" in img ? (img as { expected?: Parameters<typeof checkRootfs>[1] }).expected : undefined;
      await mountedTrees(namespace, ref, async (root) => {
        if (expected !== undefined) assert.deepEqual(await checkRootfs(root, expected), []);
      });
    });
  }

  void test("a multi-platform index: --platform linux/arm64 and --all-platforms", async () => {
    const ref = imageRef(registry.host, index);
    const arm = index.byPlatform["linux/arm64"];
    const amd = index.byPlatform["linux/amd64"];
    assert.ok(arm && amd);
    const nsArm = newNamespace();
    assert.deepEqual(await pullBoth(nsArm, ref, ["--platform", "linux/arm64"]), [arm.chainId]);
    await same(["snapshots", "ls"], { namespace: nsArm, sortRows: true });
    await mountedTrees(nsArm, ref, undefined, ["--platform", "linux/arm64"]);

    const nsAll = newNamespace();
    const chains = await pullBoth(nsAll, ref, ["--all-platforms"]);
    assert.deepEqual([...chains].sort(), [amd.chainId, arm.chainId].sort());
    await same(["snapshots", "ls"], { namespace: nsAll, sortRows: true });
    await same(["images", "ls"], nsAll);
  });
});
