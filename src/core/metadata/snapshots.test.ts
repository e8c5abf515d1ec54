import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openMetadataDB } from "./db.js";
import { CollectionLock, collectGarbage } from "./gc.js";
import { createNamespacedSnapshots, seqBlock } from "./snapshots.js";
import { createOverlaySnapshotter } from "../snapshots/overlayfs.js";
import { runSnapshotterConformance } from "../snapshots/snapshotter-conformance.js";
import type { Snapshotter } from "../snapshots/snapshotter.js";
import { isCode } from "../../errdefs/errors.js";
import { createLeaseManager } from "./leases.js";

/** The namespaced layer over a real overlayfs backend, as the Snapshots service sees it. */
runSnapshotterConformance("metadata over overlayfs", async (root) => {
  const db = openMetadataDB(join(root, "meta.db"));
  const backend = await createOverlaySnapshotter({ root: join(root, "overlayfs") });
  const layer = createNamespacedSnapshots(db, new Map([["overlayfs", backend]]), {
    lock: new CollectionLock(),
  });
  const sn = layer.forContext({ namespace: "conformance" }, "overlayfs");
  const wrapped: Snapshotter = {
    ...sn,
    async close() {
      await layer.idle();
      await backend.close();
      db.close();
    },
  };
  return { snapshotter: wrapped };
});

async function withLayer(
  fn: (h: {
    forNs: (ns: string, lease?: string) => Snapshotter;
    backend: Snapshotter;
    db: ReturnType<typeof openMetadataDB>;
    gc: () => ReturnType<typeof collectGarbage>;
  }) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "berth-md-snapshots-"));
  const db = openMetadataDB(join(dir, "meta.db"));
  const backend = await createOverlaySnapshotter({ root: join(dir, "overlayfs") });
  const lock = new CollectionLock();
  const layer = createNamespacedSnapshots(db, new Map([["overlayfs", backend]]), { lock });
  const gc = () =>
    collectGarbage(db, {
      contentBackend: {
        delete: async () => undefined,
        walk: async () => undefined,
        abort: async () => undefined,
      },
      lock,
      snapshotters: new Map([
        ["overlayfs", { remove: (k: string) => backend.remove(k), walk: backend.walk.bind(backend) }],
      ]),
    });
  try {
    await fn({
      forNs: (ns, lease) =>
        layer.forContext(lease === undefined ? { namespace: ns } : { namespace: ns, lease }, "overlayfs"),
      backend,
      db,
      gc,
    });
  } finally {
    await backend.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const backendKeys = async (sn: Snapshotter): Promise<string[]> => {
  const keys: string[] = [];
  await sn.walk((i) => void keys.push(i.name));
  return keys.sort();
};

void test("namespaces have separate key spaces over one backend", async () => {
  await withLayer(async ({ forNs, backend }) => {
    await forNs("a").prepare("k", "");
    await forNs("b").prepare("k", "");
    await assert.rejects(forNs("a").prepare("k", ""), (e) => isCode(e, "already-exists"));
    await assert.rejects(forNs("c").stat("k"), (e) => isCode(e, "not-found"));
    const keys = await backendKeys(backend);
    assert.equal(keys.length, 2);
    assert.ok(
      keys.every((k) => /^(a|b)\/\d+\/k$/.test(k)),
      keys.join(","),
    );
    await forNs("a").commit("c", "k");
    // A parent from another namespace is not visible.
    await assert.rejects(forNs("b").prepare("child", "c"), (e) => isCode(e, "not-found"));
    await forNs("a").prepare("child", "c");
    await assert.rejects(forNs("a").remove("c"), (e) => isCode(e, "failed-precondition"));
  });
});

void test("GC removes snapshots nothing references, keeps leased and gc.root ones, and sweeps backend orphans", async () => {
  await withLayer(async ({ forNs, backend, db, gc }) => {
    const leases = createLeaseManager(db);
    leases.create({ namespace: "ns" }, { id: "l1" });
    await forNs("ns").prepare("garbage", "");
    await forNs("ns", "l1").prepare("leased", "");
    await forNs("ns").prepare("rooted", "", { labels: { "containerd.io/gc.root": "x" } });
    await backend.prepare("ns/999/orphan", ""); // what a crash between backend and record leaves
    const stats = await gc();
    assert.deepEqual(stats.errors, []);
    const names: string[] = [];
    await forNs("ns").walk((i) => void names.push(i.name));
    assert.deepEqual(names.sort(), ["leased", "rooted"]);
    const keys = await backendKeys(backend);
    assert.equal(keys.length, 2, keys.join(","));
    assert.ok(!keys.some((k) => k.endsWith("/garbage") || k.endsWith("/orphan")));
  });
});

void test("commit keeps the parent and moves the lease to the new name", async () => {
  await withLayer(async ({ forNs, db }) => {
    const leases = createLeaseManager(db);
    leases.create({ namespace: "ns" }, { id: "l1" });
    const sn = forNs("ns", "l1");
    await sn.prepare("base-active", "");
    await sn.commit("base", "base-active");
    await sn.prepare("top-active", "base");
    await sn.commit("top", "top-active", { labels: { a: "b" } });
    const info = await sn.stat("top");
    assert.equal(info.parent, "base");
    assert.equal(info.kind, "committed");
    assert.deepEqual(info.labels, { a: "b" });
    const resources = leases
      .listResources({ namespace: "ns" }, "l1")
      .map((r) => r.id)
      .sort();
    assert.deepEqual(resources, ["base", "top"]);
  });
});

void test("backend sequence numbers are reserved in blocks and never reused after a reopen", async () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-md-seq-"));
  const seqOf = (k: string): number => Number(k.split("/")[1]);
  const storedSeq = (db: ReturnType<typeof openMetadataDB>): number =>
    Number(
      (db.prepare("SELECT value FROM meta WHERE key = 'snapshot_seq'").get() as { value: string }).value,
    );
  try {
    const used: number[] = [];
    for (let run = 0; run < 2; run++) {
      const db = openMetadataDB(join(dir, "meta.db"));
      const backend = await createOverlaySnapshotter({ root: join(dir, "overlayfs") });
      try {
        const layer = createNamespacedSnapshots(db, new Map([["overlayfs", backend]]), {
          lock: new CollectionLock(),
        });
        const sn = layer.forContext({ namespace: "ns" }, "overlayfs");
        const before = new Set(await backendKeys(backend));
        await sn.prepare(`a${run}`, "");
        await sn.commit(`c${run}`, `a${run}`);
        await sn.prepare(`b${run}`, `c${run}`);
        const added = (await backendKeys(backend)).filter((k) => !before.has(k)).map(seqOf);
        // prepare, commit (a new backend key), prepare: three numbers, one reservation.
        assert.equal(added.length, 2, "the committed key replaces the active one");
        assert.equal(storedSeq(db), Math.max(...added) - (Math.max(...added) % seqBlock) + seqBlock);
        for (const n of added) assert.ok(!used.includes(n), `sequence ${n} used twice`);
        used.push(...added);
      } finally {
        await backend.close();
        db.close();
      }
    }
    // The second run started after the first run's whole block.
    assert.ok(Math.min(...used.slice(2)) > seqBlock, used.join(","));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test("Remove answers once the record is gone; the backend removals follow in order, and idle waits for them", async () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-md-snapshots-"));
  const db = openMetadataDB(join(dir, "meta.db"));
  const backend = await createOverlaySnapshotter({ root: join(dir, "overlayfs") });
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  // Opens by itself after a while: a Remove that waited for its backend would not hang the test.
  const fallback = setTimeout(() => open(), 2000);
  const removed: string[] = [];
  const gated: Snapshotter = {
    ...backend,
    async remove(key) {
      await gate;
      await backend.remove(key);
      removed.push(key);
    },
  };
  const layer = createNamespacedSnapshots(db, new Map([["overlayfs", gated]]), {
    lock: new CollectionLock(),
  });
  const sn = layer.forContext({ namespace: "ns" }, "overlayfs");
  try {
    await sn.prepare("base", "");
    await sn.commit("parent", "base");
    await sn.prepare("child", "parent");
    const keys = await backendKeys(backend);
    assert.equal(keys.length, 2);
    // Both answered while the backend has removed nothing yet.
    await sn.remove("child");
    await sn.remove("parent");
    assert.deepEqual(removed, []);
    await assert.rejects(sn.stat("child"), (e) => isCode(e, "not-found"));
    await assert.rejects(sn.stat("parent"), (e) => isCode(e, "not-found"));
    // The key is free again at once.
    await sn.prepare("child", "");
    let idle = false;
    const settled = layer.idle().then(() => (idle = true));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(idle, false, "idle waits for the removals");
    open();
    await settled;
    // The child's bytes went before its parent's (the backend refuses a parent with a child).
    assert.deepEqual(
      removed,
      [...keys].sort((a, b) => (a.endsWith("/child") ? -1 : b.endsWith("/child") ? 1 : 0)),
    );
    const left = await backendKeys(backend);
    assert.equal(left.length, 1);
    assert.ok(!keys.includes(left[0] as string), "only the new snapshot is left");
  } finally {
    clearTimeout(fallback);
    open();
    await layer.idle();
    await backend.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
