import { test } from "node:test";
import assert from "node:assert/strict";
import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isCode, type ErrorCode } from "../../errdefs/errors.js";
import { MNT } from "../../sys/mount.js";
import { mountAll, mountPointsUnder, unmountAll } from "../mount/mount.js";
import { createOverlaySnapshotter, overlaySupported, upperdirLabel } from "./overlayfs.js";
import { runSnapshotterConformance } from "./snapshotter-conformance.js";
import type { Snapshotter } from "./snapshotter.js";

runSnapshotterConformance("overlayfs", async (root) => ({
  snapshotter: await createOverlaySnapshotter({ root }),
}));
runSnapshotterConformance("overlayfs-async-remove", async (root) => ({
  snapshotter: await createOverlaySnapshotter({ root, asyncRemove: true }),
}));

const indexOff = existsSync("/sys/module/overlay/parameters/index") ? ["index=off"] : [];

/** A fresh root for one test; the snapshotter is closed and everything unmounted and removed. */
async function withRoot(
  fn: (
    root: string,
    open: (o?: { asyncRemove?: boolean; upperdirLabel?: boolean }) => Promise<Snapshotter>,
  ) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "berth-overlayfs-test-"));
  const root = join(dir, "root");
  const opened: Snapshotter[] = [];
  try {
    await fn(root, async (o = {}) => {
      const sn = await createOverlaySnapshotter({ root, ...o });
      opened.push(sn);
      return sn;
    });
  } finally {
    for (const p of mountPointsUnder(dir)) unmountAll(p, MNT.DETACH);
    for (const sn of opened) await sn.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function rejectsWith(p: Promise<unknown>, code: ErrorCode, message: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isCode(err, code), `expected ${code}, got ${String(err)}`);
    assert.equal((err as Error).message, message);
    return true;
  });
}

void test("overlay is supported here (a real two-lower mount)", async () => {
  await withRoot(async (root) => {
    assert.equal(await overlaySupported(root), true);
    assert.deepEqual(readdirSync(root), []);
  });
});

void test("mounts are exactly containerd's for every shape", async () => {
  await withRoot(async (root, open) => {
    const sn = await open();
    const fs = (id: number) => join(root, "snapshots", String(id), "fs");
    const work = (id: number) => join(root, "snapshots", String(id), "work");
    assert.deepEqual(await sn.prepare("a", ""), [{ type: "bind", source: fs(1), options: ["rw", "rbind"] }]);
    assert.deepEqual(await sn.view("v0", ""), [{ type: "bind", source: fs(2), options: ["ro", "rbind"] }]);
    await sn.commit("c1", "a");
    assert.deepEqual(await sn.prepare("b", "c1"), [
      {
        type: "overlay",
        source: "overlay",
        options: [...indexOff, `workdir=${work(3)}`, `upperdir=${fs(3)}`, `lowerdir=${fs(1)}`],
      },
    ]);
    assert.deepEqual(await sn.view("v1", "c1"), [{ type: "bind", source: fs(1), options: ["ro", "rbind"] }]);
    await sn.commit("c2", "b");
    await sn.prepare("c", "c2");
    await sn.commit("c3", "c");
    assert.deepEqual(await sn.view("v3", "c3"), [
      { type: "overlay", source: "overlay", options: [...indexOff, `lowerdir=${fs(5)}:${fs(3)}:${fs(1)}`] },
    ]);
    assert.deepEqual(await sn.prepare("d", "c3"), [
      {
        type: "overlay",
        source: "overlay",
        options: [
          ...indexOff,
          `workdir=${work(7)}`,
          `upperdir=${fs(7)}`,
          `lowerdir=${fs(5)}:${fs(3)}:${fs(1)}`,
        ],
      },
    ]);
    assert.deepEqual(await sn.mounts("d"), await sn.mounts("d"));
  });
});

void test("directories have containerd's layout and modes", async () => {
  await withRoot(async (root, open) => {
    const sn = await open();
    const mode = (p: string) => statSync(join(root, p)).mode & 0o7777;
    assert.equal(mode(""), 0o700);
    assert.equal(mode("snapshots"), 0o700);
    assert.ok(existsSync(join(root, "metadata.db")));
    await sn.prepare("a", "");
    await sn.view("v", "");
    assert.deepEqual(readdirSync(join(root, "snapshots")).sort(), ["1", "2"]);
    assert.deepEqual(
      [mode("snapshots/1"), mode("snapshots/1/fs"), mode("snapshots/1/work")],
      [0o700, 0o755, 0o711],
    );
    assert.deepEqual(readdirSync(join(root, "snapshots/2")), ["fs"]);
  });
});

void test("a child's upper dir belongs to the owner of its parent's root", async () => {
  await withRoot(async (root, open) => {
    const sn = await open();
    await sn.prepare("a", "");
    chownSync(join(root, "snapshots/1/fs"), 100000, 100000);
    await sn.commit("c", "a");
    await sn.prepare("b", "c");
    const st = statSync(join(root, "snapshots/2/fs"));
    assert.deepEqual([st.uid, st.gid], [100000, 100000]);
  });
});

void test("errors carry containerd's kinds and texts", async () => {
  await withRoot(async (_root, open) => {
    const sn = await open();
    await sn.prepare("a", "");
    await sn.view("v", "");
    await sn.prepare("p", "");
    await sn.commit("c", "p");
    await rejectsWith(sn.stat("x"), "not-found", "snapshot does not exist: not found");
    await rejectsWith(sn.usage("x"), "not-found", "snapshot does not exist: not found");
    await rejectsWith(
      sn.update({ name: "x", labels: {} }),
      "not-found",
      "snapshot does not exist: not found",
    );
    await rejectsWith(
      sn.update({ name: "c", labels: {} }, ["parent"]),
      "invalid-argument",
      'cannot update "parent" field on snapshot "c": invalid argument',
    );
    await rejectsWith(
      sn.prepare("a", ""),
      "already-exists",
      "failed to create snapshot: snapshot a: already exists",
    );
    await rejectsWith(
      sn.prepare("n", "x"),
      "not-found",
      'failed to create snapshot: missing parent "x" bucket: not found',
    );
    await rejectsWith(
      sn.view("n", "a"),
      "invalid-argument",
      'failed to create snapshot: parent "a" is not committed snapshot: invalid argument',
    );
    await rejectsWith(
      sn.mounts("x"),
      "not-found",
      "failed to get active mount: snapshot does not exist: not found",
    );
    await rejectsWith(
      sn.mounts("c"),
      "failed-precondition",
      "failed to get active mount: requested snapshot c not active or view: failed precondition",
    );
    await rejectsWith(sn.commit("n", "x"), "not-found", "snapshot does not exist: not found");
    await rejectsWith(
      sn.commit("c", "a"),
      "already-exists",
      "failed to commit snapshot: committed snapshot c: already exists",
    );
    await rejectsWith(
      sn.commit("n", "v"),
      "failed-precondition",
      'failed to commit snapshot: snapshot "v" is not active: failed precondition',
    );
    await sn.prepare("child", "c");
    await rejectsWith(
      sn.remove("c"),
      "failed-precondition",
      "failed to remove snapshot c: cannot remove snapshot with child: failed precondition",
    );
    await rejectsWith(sn.remove("x"), "not-found", "failed to remove snapshot x: snapshot x: not found");
  });
});

void test("the upperdir label names each snapshot's fs dir in stat, update and walk", async () => {
  await withRoot(async (root, open) => {
    const sn = await open({ upperdirLabel: true });
    await sn.prepare("a", "", { labels: { mine: "1" } });
    const want = { mine: "1", [upperdirLabel]: join(root, "snapshots/1/fs") };
    assert.deepEqual((await sn.stat("a")).labels, want);
    assert.deepEqual((await sn.update({ name: "a", labels: { mine: "1" } })).labels, want);
    const walked: Record<string, string>[] = [];
    await sn.walk((i) => {
      walked.push(i.labels);
    });
    assert.deepEqual(walked, [want]);
    // The label is reported, never stored.
    const plain = await open();
    assert.deepEqual((await plain.stat("a")).labels, { mine: "1" });
  });
});

void test("synchronous remove deletes at once; asynchronous remove leaves it to cleanup", async () => {
  await withRoot(async (root, open) => {
    const snapshots = join(root, "snapshots");
    const sync = await open();
    await sync.prepare("a", "");
    await sync.remove("a");
    assert.deepEqual(readdirSync(snapshots), []);
    await sync.close();

    const lazy = await open({ asyncRemove: true });
    await lazy.prepare("b", "");
    await lazy.remove("b");
    assert.deepEqual(readdirSync(snapshots), ["2"]);
    // The key is free at once and gets a new id.
    await lazy.prepare("b", "");
    assert.deepEqual(readdirSync(snapshots).sort(), ["2", "3"]);
    await lazy.cleanup?.();
    assert.deepEqual(readdirSync(snapshots), ["3"]);
  });
});

void test("cleanup removes what a crash left behind and nothing else", async () => {
  await withRoot(async (root, open) => {
    const sn = await open();
    await sn.prepare("a", "");
    await sn.commit("c", "a");
    await sn.prepare("b", "c");
    const snapshots = join(root, "snapshots");
    for (const d of ["new-123456", "rm-9", "42"]) mkdirSync(join(snapshots, d, "fs"), { recursive: true });
    writeFileSync(join(snapshots, "42", "fs", "junk"), "junk");
    await sn.cleanup?.();
    assert.deepEqual(readdirSync(snapshots).sort(), ["1", "2"]);
  });
});

void test("debris of a crash under a not yet committed id never leaks into the new snapshot", async () => {
  await withRoot(async (root, open) => {
    // As if a prepare renamed its directory to id 1 and crashed before the metastore committed.
    mkdirSync(join(root, "snapshots", "1", "fs"), { recursive: true });
    writeFileSync(join(root, "snapshots", "1", "fs", "stale"), "stale");
    const sn = await open();
    const mounts = await sn.prepare("a", "");
    assert.equal(mounts[0]?.source, join(root, "snapshots", "1", "fs"));
    assert.deepEqual(readdirSync(join(root, "snapshots", "1", "fs")), []);
    const target = join(root, "..", "mnt");
    mkdirSync(target);
    mountAll(mounts, target);
    assert.deepEqual(readdirSync(target), []);
    unmountAll(target);
  });
});
