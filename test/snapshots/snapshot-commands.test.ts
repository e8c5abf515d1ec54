// The stock `ctr snapshots` commands against berthd and a private containerd 1.6: prepare, view,
// mounts (the printed mount commands must work), commit, info, label, tree, usage, rm, diff and
// the errors of each, on top of an unpacked busybox image; plus the /snapshot/* events.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, utimes, writeFile, rm, readFile } from "node:fs/promises";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { after, before, describe, test } from "node:test";
import { extract } from "tar-stream";
import { pushImage } from "../fixtures/registry-push.js";
import { busyboxTestImage, imageRef, type RegistryImage } from "../fixtures/test-images.js";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { startContainerd, type ContainerdHandle } from "../harness/containerd.js";
import { CTR_PATH } from "../harness/ctr.js";
import { startRegistry, type RegistryHandle } from "../harness/registry.js";
import { normalizeTimestamps, sortLabelLists } from "../harness/normalize.js";
import { makeTempDir, removeTempDir } from "../harness/temp-dir.js";
import { sideBySide, DAEMONS, type Both } from "../compat/side-by-side.js";

interface TarEntrySummary {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  linkname: string | null;
  content: string;
}

/** Parses a tar into a list of entries (name, type, mode, owner, size, link, content). */
async function tarEntries(bytes: Buffer): Promise<TarEntrySummary[]> {
  const out: TarEntrySummary[] = [];
  const ex = extract();
  const done = new Promise<void>((resolve, reject) => {
    ex.on("entry", (h, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        out.push({
          name: h.name,
          type: h.type ?? "file",
          mode: h.mode ?? 0,
          uid: h.uid ?? 0,
          gid: h.gid ?? 0,
          size: h.size ?? 0,
          linkname: h.linkname ?? null,
          content: Buffer.concat(chunks).toString("utf8"),
        });
        next();
      });
      stream.on("error", reject);
    });
    ex.on("finish", resolve);
    ex.on("error", reject);
  });
  ex.end(bytes);
  await done;
  return out;
}

void describe("ctr snapshots: berthd vs containerd", { timeout: 240_000 }, () => {
  let berthd: BerthdHandle;
  let containerd: ContainerdHandle;
  let registry: RegistryHandle;
  let work: string;
  let image: RegistryImage;
  const namespace = "snaps";
  const { both, address } = sideBySide(() => ({ berthd, containerd }));
  const mountOut = (text: string): string =>
    sortLabelLists(normalizeTimestamps(text)).replace(/\/tmp\/berth-test-[^/\s]+\/(?:root\/)?/g, "<ROOT>/");

  before(async () => {
    [berthd, containerd, registry, work] = await Promise.all([
      startBerthd(),
      startContainerd(),
      startRegistry(),
      makeTempDir("snapshots"),
    ]);
    image = await busyboxTestImage("oci");
    await pushImage(registry.url, image.repo, image.tag, image);
    const r = await both(["images", "pull", "--plain-http", imageRef(registry.host, image)], namespace);
    for (const d of DAEMONS) assert.equal(r[d].code, 0, `${d}: ${r[d].stderr}`);
    // The pull's lease deletion schedules a collection, paced after the last one; the snapshots
    // these tests make hold no lease and no gc.root label, so no collection may be pending when
    // they are made. A synchronous one (`leases delete --sync`) runs now and takes its place.
    for (const args of [
      ["leases", "create", "--id", "settle"],
      ["leases", "delete", "--sync", "settle"],
    ]) {
      const settled = await both(args, namespace);
      for (const d of DAEMONS) assert.equal(settled[d].code, 0, `${d}: ${settled[d].stderr}`);
    }
  });

  after(async () => {
    if (work) await removeTempDir(work);
    await Promise.allSettled([berthd?.stop(), containerd?.stop(), registry?.stop()]);
  });

  /** Runs `ctr snapshots <args>` on both, compares output with daemon roots normalised. */
  async function sameSnap(args: readonly string[], opts: { succeed?: boolean } = {}) {
    const r = await both(["snapshots", ...args], namespace);
    assert.equal(
      mountOut(r.berthd.stdout),
      mountOut(r.containerd.stdout),
      `ctr snapshots ${args.join(" ")} stdout`,
    );
    assert.equal(
      mountOut(r.berthd.stderr),
      mountOut(r.containerd.stderr),
      `ctr snapshots ${args.join(" ")} stderr`,
    );
    assert.equal(r.berthd.code, r.containerd.code);
    if (opts.succeed) assert.equal(r.berthd.code, 0, r.berthd.stderr);
    return r;
  }

  /** Runs the `mount ...` command ctr printed, as a shell would, into dir. */
  function runPrintedMount(printed: string, dir: string): void {
    const line = printed.trim().split("\n").pop() ?? "";
    const m = /^mount -t (\S+) (\S+) (\S+) -o (\S+)$/.exec(line);
    assert.ok(m, `not a mount command: ${line}`);
    execFileSync("mount", ["-t", m[1] as string, m[2] as string, dir, "-o", m[4] as string]);
  }

  void test("prepare, mounts, write, commit, view, info, label, tree, usage, rm and their errors", async () => {
    const chain = image.chainId;
    await sameSnap(["prepare", "work1", chain, "--target", "/mnt"], { succeed: true });
    const printed = await sameSnap(["mounts", "/mnt", "work1"], { succeed: true });

    // The printed mount commands work: write the same files (same times) through them.
    for (const d of DAEMONS) {
      const dir = join(work, `work1-${d}`);
      await mkdir(dir);
      runPrintedMount(printed[d].stdout, dir);
      try {
        await writeFile(join(dir, "hello.txt"), "hello\n");
        await mkdir(join(dir, "newdir"));
        await rm(join(dir, "bin", "ls"));
        for (const p of ["hello.txt", "newdir", "."]) await utimes(join(dir, p), 1700000000, 1700000000);
      } finally {
        execFileSync("umount", [dir]);
      }
    }

    await sameSnap(["commit", "layer2", "work1"], { succeed: true });
    await sameSnap(["info", "layer2"]);
    await sameSnap(["label", "layer2", "a=b", "c=d"], { succeed: true });
    await sameSnap(["info", "layer2"]);
    await sameSnap(["label", "layer2", "a="], { succeed: true });
    await sameSnap(["view", "view1", "layer2", "--target", "/v"], { succeed: true });
    await sameSnap(["tree"]);
    await sameSnap(["usage", "layer2"]);

    // Through a view, the committed changes are there and busybox's ls is gone.
    const viewPrinted = await sameSnap(["mounts", "/v", "view1"], { succeed: true });
    for (const d of DAEMONS) {
      const dir = join(work, `view1-${d}`);
      await mkdir(dir);
      runPrintedMount(viewPrinted[d].stdout, dir);
      try {
        assert.equal(await readFile(join(dir, "hello.txt"), "utf8"), "hello\n");
        await assert.rejects(readFile(join(dir, "bin", "ls")));
        await assert.rejects(writeFile(join(dir, "x"), "x"), /EROFS/);
      } finally {
        execFileSync("umount", [dir]);
      }
    }

    // Errors, as containerd words them.
    await sameSnap(["prepare", "work1b", "nonexistent"]);
    await sameSnap(["prepare", "view1", chain]);
    await sameSnap(["commit", "layer3", "view1"]);
    await sameSnap(["commit", "layer2", "work1"]);
    await sameSnap(["rm", "layer2"]);
    await sameSnap(["info", "missing"]);
    await sameSnap(["rm", "view1"], { succeed: true });
    await sameSnap(["rm", "layer2"], { succeed: true });
    await sameSnap(["ls"]);
  });

  void test("snapshots diff writes the changes of an active snapshot as a layer", async () => {
    const chain = image.chainId;
    await sameSnap(["prepare", "work2", chain], { succeed: true });
    const printed = await sameSnap(["mounts", "/m", "work2"], { succeed: true });
    for (const d of DAEMONS) {
      const dir = join(work, `work2-${d}`);
      await mkdir(dir);
      runPrintedMount(printed[d].stdout, dir);
      try {
        await mkdir(join(dir, "etc", "app"), { recursive: true });
        await writeFile(join(dir, "etc", "app", "conf"), "x=1\n", { mode: 0o600 });
        await rm(join(dir, "bin", "echo"));
        for (const p of ["etc/app/conf", "etc/app", "etc", "bin", "."])
          await utimes(join(dir, p), 1700000000, 1700000000);
      } finally {
        execFileSync("umount", [dir]);
      }
    }
    const diffs = {} as Both<Buffer>;
    for (const d of DAEMONS)
      diffs[d] = execFileSync(CTR_PATH, ["-a", address(d), "-n", namespace, "snapshots", "diff", "work2"], {
        maxBuffer: 64 << 20,
      });
    // ctr's default media type is tar+gzip: both blobs must be gzip streams.
    for (const d of DAEMONS)
      assert.deepEqual([...diffs[d].subarray(0, 2)], [0x1f, 0x8b], `${d} diff is not gzip`);
    const theirs = await tarEntries(gunzipSync(diffs.containerd));
    const ours = await tarEntries(gunzipSync(diffs.berthd));
    assert.ok(
      ours.some((e) => e.name === "bin/.wh.echo"),
      JSON.stringify(ours.map((e) => e.name)),
    );
    assert.deepEqual(ours, theirs);
    await sameSnap(["rm", "work2"], { succeed: true });
  });
});
