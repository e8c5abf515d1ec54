// Stock ctr `namespaces` commands against berthd and a private containerd 1.6: create with
// labels, ls (-q), label and clearing a label, rm (missing, non-empty, several), invalid names,
// and the implicit creation of a namespace by its first write. Outputs must match exactly.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { ArchiveResult } from "../fixtures/oci-image.js";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { startContainerd, type ContainerdHandle } from "../harness/containerd.js";
import { normalizeCtrOutput } from "../harness/normalize.js";
import { removeTempDir } from "../harness/temp-dir.js";
import { makeTinyWork, sideBySide } from "./side-by-side.js";

void describe("ctr namespaces: berthd vs containerd", () => {
  let berthd: BerthdHandle;
  let containerd: ContainerdHandle;
  let work: string;
  let rootfs: string;
  let image: ArchiveResult;
  let counter = 0;
  /** A fresh prefix per test: namespaces are global, so every name a test makes starts with it. */
  const newPrefix = (): string => `ns${++counter}`;

  const { both, same, flushGc } = sideBySide(() => ({ berthd, containerd }));

  /** Like same(), for an `ls`: only the header and the rows naming this test's namespaces. */
  async function sameRows(args: readonly string[], prefix: string): Promise<string> {
    const keep = (out: string): string =>
      normalizeCtrOutput(out)
        .split("\n")
        .filter((line, i) => (i === 0 && !args.includes("-q")) || line.startsWith(prefix))
        .join("\n");
    const { berthd: b, containerd: c } = await both(args);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(c.code, 0, c.stderr);
    assert.equal(
      keep(b.stdout),
      keep(c.stdout),
      `ctr ${args.join(" ")}: berthd (actual) vs containerd (expected)`,
    );
    return keep(b.stdout);
  }

  void before(async () => {
    ({ work, rootfs, image } = await makeTinyWork("compat-namespaces"));
    [berthd, containerd] = await Promise.all([startBerthd(), startContainerd()]);
  });

  void after(async () => {
    await Promise.all([berthd?.stop(), containerd?.stop()]);
    await removeTempDir(work);
  });

  void test("create with labels, ls, ls -q", async () => {
    const p = newPrefix();
    assert.equal((await same(["namespaces", "create", `${p}-a`, "a=1", "b=2"])).code, 0);
    assert.equal((await same(["namespaces", "create", `${p}-b`])).code, 0);
    assert.equal((await same(["ns", "create", `${p}-c`, "empty=", "x.y/z=v"])).code, 0);
    assert.equal(
      await sameRows(["namespaces", "ls"], p),
      // A label created with an empty value is not stored (as containerd's SetLabel(k, "") deletes).
      `NAME LABELS\n${p}-a a=1,b=2\n${p}-b\n${p}-c x.y/z=v`,
    );
    assert.equal(await sameRows(["namespaces", "ls", "-q"], p), `${p}-a\n${p}-b\n${p}-c`);
  });

  void test("label sets, overwrites and (with k=) clears labels", async () => {
    const p = newPrefix();
    const ns = `${p}-lab`;
    await same(["namespaces", "create", ns, "a=1", "b=2"]);
    assert.equal((await same(["namespaces", "label", ns, "c=3", "a=9"])).code, 0);
    assert.equal(await sameRows(["namespaces", "ls"], p), `NAME LABELS\n${ns} a=9,b=2,c=3`);
    assert.equal((await same(["namespaces", "label", ns, "a="])).code, 0);
    assert.equal(await sameRows(["namespaces", "ls"], p), `NAME LABELS\n${ns} b=2,c=3`);
    await same(["namespaces", "label", ns, "b=", "c="]);
    assert.equal(await sameRows(["namespaces", "ls"], p), `NAME LABELS\n${ns}`);
    // Labelling with no labels changes nothing; labelling a missing namespace fails alike.
    await same(["namespaces", "label", ns]);
    await same(["namespaces", "label", `${p}-missing`, "a=b"]);
    await same(["namespaces", "label"]);
  });

  void test("create of an existing namespace fails with already exists", async () => {
    const p = newPrefix();
    await same(["namespaces", "create", `${p}-dup`]);
    const r = await same(["namespaces", "create", `${p}-dup`, "a=b"]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `ctr: namespace "${p}-dup": already exists\n`);
  });

  void test("invalid names and labels are refused as containerd refuses them", async () => {
    const p = newPrefix();
    const r = await same(["namespaces", "create", "bad/name"]);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      'ctr: identifier "bad/name" must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$: invalid argument\n',
    );
    for (const name of ["-lead", "trail-", "a..b", "UPPER_ok", "x".repeat(76), "y".repeat(77), "sp ace"]) {
      await same(["namespaces", "create", name]);
    }
    await same(["namespaces", "create", `${p}-biglabel`, `k=${"v".repeat(5000)}`]);
    await same(["namespaces", "create"]);
    await sameRows(["namespaces", "ls", "-q"], p);
    // Clean up the valid ones so that later listings stay short.
    await same(["namespaces", "rm", "UPPER_ok", "x".repeat(76)]);
  });

  void test("an empty label key fails as containerd's database write does", async () => {
    const p = newPrefix();
    // containerd's label validation lets an empty key through and the bolt write fails with code
    // Unknown and bolt's bare text; nothing is created.
    let r = await same(["namespaces", "create", `${p}-emptykey`, "=v"]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "ctr: key required: unknown\n");
    await same(["namespaces", "create", `${p}-labelled`]);
    r = await same(["namespaces", "label", `${p}-labelled`, "=v"]);
    assert.equal(r.stderr, "ctr: key required: unknown\n");
    await sameRows(["namespaces", "ls"], p);
  });

  void test("rm: several at once, and a missing one", async () => {
    const p = newPrefix();
    await same(["namespaces", "create", `${p}-1`]);
    await same(["namespaces", "create", `${p}-2`]);
    const r = await same(["namespaces", "rm", `${p}-1`, `${p}-2`, `${p}-missing`]);
    assert.equal(r.code, 0);
    assert.equal(await sameRows(["namespaces", "ls", "-q"], p), "");
    await same(["namespaces", "rm"]);
  });

  void test("rm of a namespace holding a blob fails with FailedPrecondition until the blob goes", async () => {
    const p = newPrefix();
    const ns = `${p}-blob`;
    // A blob nothing refers to is garbage: run any pending collection first, then root the blob.
    await flushGc();
    await same(["content", "ingest", "ref1"], { namespace: ns, input: "some bytes\n" });
    const digest = (await same(["content", "ls", "-q"], { namespace: ns })).stdout.trim();
    await same(["content", "label", digest, "containerd.io/gc.root=test"], { namespace: ns });
    const r = await same(["namespaces", "rm", ns]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(
        `ctr: unable to delete ${ns}: namespace "${ns}" must be empty, but it still has blobs: failed precondition\n$`,
      ),
    );
    await same(["content", "rm", digest], { namespace: ns });
    assert.equal((await same(["namespaces", "rm", ns])).code, 0);
    assert.equal(await sameRows(["namespaces", "ls", "-q"], p), "");
  });

  void test("rm of a namespace holding an image (and its blobs) or a container fails alike", async () => {
    const p = newPrefix();
    const ns = `${p}-img`;
    assert.equal((await same(["images", "import", "--no-unpack", image.path], { namespace: ns })).code, 0);
    let r = await same(["namespaces", "rm", ns]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /must be empty, but it still has images, blobs: failed precondition\n$/);

    const cns = `${p}-ctr`;
    await same(["containers", "create", "--rootfs", rootfs, "c1", "/bin/true"], { namespace: cns });
    r = await same(["namespaces", "rm", cns]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /must be empty, but it still has containers: failed precondition\n$/);
    await same(["containers", "rm", "c1"], { namespace: cns });
    assert.equal((await same(["namespaces", "rm", cns])).code, 0);
  });

  void test("a namespace holding only a lease is removed (containerd does not count leases)", async () => {
    const p = newPrefix();
    const ns = `${p}-lease`;
    await same(["leases", "create", "--id", "l1"], { namespace: ns });
    const r = await same(["namespaces", "rm", ns]);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `${ns}\n`);
  });

  void test("the first write into a namespace creates it", async () => {
    const p = newPrefix();
    const ns = `${p}-implicit`;
    assert.equal(await sameRows(["namespaces", "ls", "-q"], p), "");
    assert.equal((await same(["leases", "create", "--id", "first"], { namespace: ns })).code, 0);
    assert.equal(await sameRows(["namespaces", "ls"], p), `NAME LABELS\n${ns}`);
    // Reads do not create namespaces.
    await same(["leases", "ls"], { namespace: `${p}-readonly` });
    await same(["content", "ls"], { namespace: `${p}-readonly` });
    assert.equal(await sameRows(["namespaces", "ls", "-q"], p), ns);
  });
});
