// Garbage collection as the stock ctr drives it, berthd vs a private containerd 1.6: `images rm
// --sync` removes exactly the blobs nothing references any more, leases and gc.root labels keep
// blobs alive until they go, and blobs shared between namespaces stay until the last user goes.
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Content, Leases, content } from "../../src/client/index.js";
import { busyboxImage } from "../fixtures/busybox.js";
import { sha256Digest } from "../fixtures/descriptor.js";
import { buildLayer } from "../fixtures/layer.js";
import { writeOciArchive, type ArchiveResult } from "../fixtures/oci-image.js";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { startContainerd, type ContainerdHandle } from "../harness/containerd.js";
import { ctrOk } from "../harness/ctr.js";
import { normalizeCtrOutput } from "../harness/normalize.js";
import { makeTempDir, removeTempDir } from "../harness/temp-dir.js";
import { DAEMONS, sideBySide, type Daemon } from "./side-by-side.js";

const CONTENT_DIR = join("io.containerd.content.v1.content", "blobs", "sha256");
const LOOSE_BLOB = "a blob nothing refers to\n";
const LEASED_BLOB = "a blob written under a lease\n";

const sorted = (digests: Iterable<string>): string[] => [...digests].sort();

void describe("garbage collection: berthd vs containerd", { timeout: 120_000 }, () => {
  let berthd: BerthdHandle;
  let containerd: ContainerdHandle;
  let work: string;
  /** busybox, tagged twice in one archive (two index entries, one manifest). */
  let imageA: ArchiveResult;
  /** busybox plus one more layer and its own config: shares only the busybox layer with A. */
  let imageB: ArchiveResult;

  const root = (d: Daemon): string => (d === "berthd" ? berthd.root : containerd.root);

  /** Every command must succeed, on both daemons alike. */
  const { address, same, api } = sideBySide(() => ({ berthd, containerd }), { succeed: true });

  /**
   * Writes and commits a blob in one Content.Write message under a lease (the containerd-lease
   * header), as a client library does; ctr has no command that takes a lease.
   */
  async function writeBlobUnderLease(namespace: string, lease: string, ref: string, data: Buffer) {
    await api(namespace, async (client) => {
      const w = client.with({ lease }).service(Content).write();
      await w.send({
        action: content.WriteAction.COMMIT,
        ref,
        total: BigInt(data.length),
        expected: sha256Digest(data),
        data,
      });
      w.end();
      for await (const _ of w.responses);
    });
  }

  /** The digests `ctr content ls -q` lists, per daemon. */
  async function contentSet(d: Daemon, namespace: string): Promise<string[]> {
    const out = await ctrOk(address(d), ["content", "ls", "-q"], { namespace });
    return sorted(out.split("\n").filter(Boolean));
  }

  /** The blob files in the daemon's content store, as digests (all namespaces together). */
  async function blobFiles(d: Daemon): Promise<string[]> {
    const names = await readdir(join(root(d), CONTENT_DIR)).catch(() => [] as string[]);
    return sorted(names.map((n) => `sha256:${n}`));
  }

  /** Asserts both daemons list exactly `expected` in the namespace (and, if given, on disk). */
  async function assertContent(namespace: string, expected: string[], onDisk?: string[]): Promise<void> {
    for (const d of DAEMONS) {
      assert.deepEqual(await contentSet(d, namespace), sorted(expected), `${d}: content ls in ${namespace}`);
      if (onDisk) assert.deepEqual(await blobFiles(d), sorted(onDisk), `${d}: blob files on disk`);
    }
  }

  void before(async () => {
    work = await makeTempDir("compat-gc");
    const extra = await buildLayer([
      { path: "etc", type: "dir" },
      { path: "etc/motd", type: "file", content: "image b\n" },
    ]);
    imageA = await writeOciArchive(join(work, "a.tar"), {
      image: await busyboxImage(),
      name: ["example.com/gc/a:1", "example.com/gc/a:2"],
    });
    imageB = await writeOciArchive(join(work, "b.tar"), {
      image: await busyboxImage({ extraLayers: [extra], config: { Cmd: ["/bin/cat", "/etc/motd"] } }),
      name: "example.com/gc/b:1",
    });
    assert.equal(imageA.layerDigests[0], imageB.layerDigests[0], "fixtures must share the busybox layer");
    // One after the other, so that after() can stop whichever started if the other fails.
    berthd = await startBerthd();
    containerd = await startContainerd();
  });

  void after(async () => {
    await Promise.all([berthd?.stop(), containerd?.stop()]);
    await removeTempDir(work);
  });

  void describe("images rm --sync, then a lease and a gc.root label", () => {
    // One scenario in one namespace; each step builds on the one before.
    const ns = "gc-images";
    const loose = sha256Digest(Buffer.from(LOOSE_BLOB));
    const leased = sha256Digest(Buffer.from(LEASED_BLOB));
    const blobsA = (): string[] => [imageA.manifestDigest, imageA.configDigest, ...imageA.layerDigests];
    const blobsB = (): string[] => [imageB.manifestDigest, imageB.configDigest, ...imageB.layerDigests];

    void test("import two images sharing a layer, and ingest a loose blob", async () => {
      await same(["images", "import", "--no-unpack", imageA.path], ns);
      await same(["images", "import", "--no-unpack", imageB.path], ns);
      await same(["content", "ingest", "loose"], { namespace: ns, input: LOOSE_BLOB });
      const ls = await same(["images", "ls", "-q"], ns);
      assert.equal(ls.stdout, "example.com/gc/a:1\nexample.com/gc/a:2\nexample.com/gc/b:1\n");
      // The index blobs (held only by the import's lease) and the loose blob (held by nothing) go
      // at the next GC, which containerd may schedule on its own at any time after the import.
      const collectable = new Set([imageA.indexDigest, imageB.indexDigest, loose]);
      const expected = sorted(new Set([...blobsA(), ...blobsB()]));
      for (const d of DAEMONS) {
        const listed = (await contentSet(d, ns)).filter((x) => !collectable.has(x));
        assert.deepEqual(listed, expected, `${d}: content after import`);
      }
    });

    void test("images rm --sync of B removes exactly what only B (or nothing) referenced", async () => {
      const rm = await same(["images", "rm", "--sync", "example.com/gc/b:1"], ns);
      assert.equal(rm.stdout, "example.com/gc/b:1\n");
      // Gone: B's manifest, config and extra layer, the loose blob, both index blobs.
      await assertContent(ns, blobsA(), blobsA());
    });

    void test("removing one of two names of A keeps all of A", async () => {
      await same(["images", "rm", "--sync", "example.com/gc/a:1"], ns);
      await assertContent(ns, blobsA(), blobsA());
    });

    void test("a lease and a gc.root label keep blobs once the last image is gone", async () => {
      const lease = await same(["leases", "create", "--id", "keep"], ns);
      assert.equal(lease.stdout, "keep\n");
      await api(ns, (client) =>
        client.service(Leases).addResource({
          id: "keep",
          resource: { id: imageA.configDigest, type: "content" },
        }),
      );
      await writeBlobUnderLease(ns, "keep", "leased-ref", Buffer.from(LEASED_BLOB));
      const layer = imageA.layerDigests[0] ?? "";
      const labelled = await same(["content", "label", layer, "containerd.io/gc.root=1"], ns);
      assert.equal(labelled.stdout, "containerd.io/gc.root=1\n");

      await same(["images", "rm", "--sync", "example.com/gc/a:2"], ns);
      const kept = [imageA.configDigest, layer, leased];
      await assertContent(ns, kept, kept);
      const ls = await same(["images", "ls", "-q"], ns);
      assert.equal(ls.stdout, "");
    });

    void test("clearing the label and leases rm --sync collect the rest", async () => {
      const layer = imageA.layerDigests[0] ?? "";
      await same(["content", "label", layer, "containerd.io/gc.root="], ns);
      // Still held by the lease until a GC runs after the lease goes.
      const held = [imageA.configDigest, layer, leased];
      await assertContent(ns, held, held);
      await same(["leases", "rm", "--sync", "keep"], ns);
      await assertContent(ns, [], []);
      const ls = await same(["content", "ls"], ns);
      assert.equal(normalizeCtrOutput(ls.stdout), "DIGEST SIZE AGE LABELS\n");
    });
  });

  void describe("a blob shared by two namespaces", () => {
    const ns1 = "gc-shared-1";
    const ns2 = "gc-shared-2";
    const blobsB = (): string[] => [imageB.manifestDigest, imageB.configDigest, ...imageB.layerDigests];

    void test("stays on disk until the last namespace lets go of it", async () => {
      await same(["images", "import", "--no-unpack", imageB.path], ns1);
      await same(["images", "import", "--no-unpack", imageB.path], ns2);
      await same(["images", "rm", "--sync", "example.com/gc/b:1"], ns1);
      for (const d of DAEMONS) {
        assert.deepEqual(await contentSet(d, ns1), [], `${d}: ${ns1} empty`);
        assert.deepEqual(await blobFiles(d), sorted(blobsB()), `${d}: files still on disk for ${ns2}`);
      }
      // ns2 still sees them (its index blob went with the same GC).
      await assertContent(ns2, blobsB(), blobsB());
      await same(["images", "rm", "--sync", "example.com/gc/b:1"], ns2);
      await assertContent(ns2, [], []);
    });
  });
});
