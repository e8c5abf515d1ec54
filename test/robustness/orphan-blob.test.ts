// Orphan blobs: a file under blobs/sha256/<hex> that no content row refers to, which is what a
// kill -9 between a commit's rename and its metadata insert leaves behind. The next garbage
// collection must remove it, and keep every blob that has a row and a reference.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile, readdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Content, Images, createClient, writeBlob } from "../../src/client/index.js";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { ctrOk } from "../harness/ctr.js";
import { makeTempDir, removeTempDir } from "../harness/temp-dir.js";

const NS = "orphans";

const sha256 = (b: Uint8Array | string): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const hexOf = (digest: string): string => digest.slice("sha256:".length);

void describe("GC removes orphan blobs (a blob file without a content row)", () => {
  let work: string;
  let root: string;
  let state: string;
  let daemon: BerthdHandle | undefined;
  const blobDir = (): string => join(root, "io.containerd.content.v1.content", "blobs", "sha256");
  const blobPath = (digest: string): string => join(blobDir(), hexOf(digest));

  /** Blobs with a row and a reference: one rooted by a gc.root label, one held by a lease. */
  const rooted = "a blob rooted by containerd.io/gc.root\n";
  const leased = "a blob held by a lease\n";

  async function start(): Promise<BerthdHandle> {
    daemon = await startBerthd({ root, state });
    return daemon;
  }

  const ctr = (args: string[]): Promise<string> => {
    assert.ok(daemon);
    return ctrOk(daemon.address, args, { namespace: NS });
  };

  /** Puts a blob file in place as a commit does (written aside, then renamed), with no row. */
  async function dropOrphan(data: string): Promise<string> {
    const digest = sha256(data);
    const aside = join(work, `orphan-${hexOf(digest)}`);
    await writeFile(aside, data, { mode: 0o600 });
    await rename(aside, blobPath(digest));
    return digest;
  }

  /** The blobs with rows are listed, read back whole, and the only blob files on disk. */
  async function assertKept(): Promise<void> {
    const kept = [sha256(rooted), sha256(leased)].sort();
    const listed = (await ctr(["content", "ls", "-q"])).split("\n").filter(Boolean).sort();
    assert.deepEqual(listed, kept);
    const files = (await readdir(blobDir())).map((hex) => `sha256:${hex}`).sort();
    assert.deepEqual(files, kept, "blob files on disk (an orphan survived a GC?)");
    for (const data of [rooted, leased]) {
      assert.equal(await readFile(blobPath(sha256(data)), "utf8"), data);
      assert.equal(await ctr(["content", "get", sha256(data)]), data);
    }
  }

  before(async () => {
    work = await makeTempDir("orphan-blob");
    root = join(work, "root");
    state = join(work, "state");
    const { address } = await start();
    await ctr(["leases", "create", "--id", "hold"]);
    // Labelled in the commit itself: a blob nothing refers to is garbage at once.
    const client = createClient(address, { namespace: NS });
    try {
      await writeBlob(client.service(Content), Buffer.from(rooted), {
        ref: "rooted",
        expected: sha256(rooted),
        labels: { "containerd.io/gc.root": "test" },
      });
      await writeBlob(client.service(Content), Buffer.from(leased), {
        ref: "leased",
        expected: sha256(leased),
        lease: "hold",
      });
    } finally {
      client.close();
    }
    await assertKept();
  });

  after(async () => {
    await daemon?.stop();
    await removeTempDir(work);
  });

  void test("a blob left by kill -9 between rename and insert goes at the next GC (leases rm --sync)", async () => {
    await daemon?.kill9();
    daemon = undefined;
    const orphan = await dropOrphan("committed, then the daemon died before its row\n");
    await start();
    // Not the namespace's content: there is no row for it.
    assert.equal((await ctr(["content", "ls", "-q"])).includes(orphan), false);
    // A synchronous collection (the one after startup may have run already; either must take it).
    await ctr(["leases", "create", "--id", "trigger"]);
    await ctr(["leases", "rm", "--sync", "trigger"]);
    await assertKept();
  });

  void test("an orphan that appears while berthd runs goes at the next GC (images rm --sync)", async () => {
    assert.ok(daemon);
    const client = createClient(daemon.address, { namespace: NS });
    try {
      await client.service(Images).create({
        image: {
          name: "example.com/orphans/trigger:1",
          target: {
            mediaType: "application/vnd.oci.image.manifest.v1+json",
            digest: sha256(rooted),
            size: BigInt(rooted.length),
          },
        },
      });
    } finally {
      client.close();
    }
    await dropOrphan("another blob nothing records\n");
    assert.equal(
      await ctr(["images", "rm", "--sync", "example.com/orphans/trigger:1"]),
      "example.com/orphans/trigger:1\n",
    );
    await assertKept();
  });
});
