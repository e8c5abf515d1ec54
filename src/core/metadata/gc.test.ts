// Tests for metadata GC over real state: a SQLite DB and a local content store on disk, asserting
// exactly which rows and blob files survive a collection.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import type { RequestContext } from "../context.js";
import type { Store } from "../content/content.js";
import { createLocalContentStore, type LocalContentStore } from "../content/local-store.js";
import { createNamespacedContentStore, type NamespacedContentStore } from "./content-store.js";
import { openMetadataDB, type MetadataDB } from "./db.js";
import { collectGarbage, CollectionLock, labelReferences, parseRfc3339, type GcStats } from "./gc.js";

const hour = 3600_000;

function digestOf(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

interface Env {
  db: MetadataDB;
  backend: LocalContentStore;
  cs: NamespacedContentStore;
  clock: number;
  /** Calls the snapshot remove callback received, as "<snapshotter> <backend key>". */
  snapshotRemovals: string[];
  store(ctx: RequestContext | string): Store;
  put(ns: string, text: string, labels?: Record<string, string>): Promise<string>;
  gc(): Promise<GcStats>;
  onDisk(digest: string): boolean;
  rows(ns: string): string[];
}

async function withEnv(fn: (env: Env) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "berth-gc-"));
  const db = openMetadataDB(path.join(dir, "meta.db"));
  try {
    const backend = await createLocalContentStore(path.join(dir, "content"));
    // Snapshotters do not exist yet: this map only records the remove callback GC makes. Which
    // snapshot rows survive is asserted on the real DB.
    const snapshotRemovals: string[] = [];
    const snapshotters = new Map(
      ["overlayfs"].map((name) => [
        name,
        { remove: async (backendKey: string) => void snapshotRemovals.push(`${name} ${backendKey}`) },
      ]),
    );
    const env: Env = {
      db,
      backend,
      clock: Date.parse("2024-06-01T12:00:00Z"),
      snapshotRemovals,
      cs: undefined as unknown as NamespacedContentStore,
      store: (ctx) => env.cs.forContext(typeof ctx === "string" ? { namespace: ctx } : ctx),
      async put(ns, text, labels) {
        const data = Buffer.from(text);
        const w = await env
          .store(ns)
          .writer({ ref: `put-${text}`, total: data.length, expected: digestOf(data) });
        try {
          await w.write(data);
          return await w.commit(data.length, digestOf(data), labels);
        } finally {
          await w.close();
        }
      },
      gc: () =>
        collectGarbage(db, {
          contentBackend: backend,
          snapshotters,
          now: () => env.clock,
          lock: env.cs.lock,
        }),
      onDisk: (digest) => existsSync(backend.blobPath(digest)),
      rows: (ns) =>
        (
          db.prepare("SELECT digest FROM content WHERE namespace = ? ORDER BY digest").all(ns) as Array<{
            digest: string;
          }>
        ).map((r) => r.digest),
    };
    env.cs = createNamespacedContentStore(db, backend, { now: () => env.clock });
    await fn(env);
  } finally {
    db.close();
    await rm(dir, { recursive: true, force: true });
  }
}

function addImage(
  db: MetadataDB,
  ns: string,
  name: string,
  target: string,
  labels: Record<string, string> = {},
): void {
  db.prepare(
    `INSERT INTO images (namespace, name, target_media_type, target_digest, target_size, labels, created_at, updated_at)
     VALUES (?, ?, 'application/vnd.oci.image.index.v1+json', ?, 0, ?, 0, 0)`,
  ).run(ns, name, target, JSON.stringify(labels));
}

function deleteImage(db: MetadataDB, ns: string, name: string): void {
  db.prepare("DELETE FROM images WHERE namespace = ? AND name = ?").run(ns, name);
}

function addContainer(
  db: MetadataDB,
  ns: string,
  id: string,
  snapshotter: string,
  key: string,
  labels: Record<string, string> = {},
): void {
  db.prepare(
    `INSERT INTO containers (namespace, id, labels, runtime_name, snapshotter, snapshot_key, created_at, updated_at)
     VALUES (?, ?, ?, 'io.containerd.runc.v2', ?, ?, 0, 0)`,
  ).run(ns, id, JSON.stringify(labels), snapshotter, key);
}

function addLease(
  db: MetadataDB,
  ns: string,
  id: string,
  labels: Record<string, string>,
  resources: Array<[string, string]>,
): void {
  db.prepare("INSERT INTO leases (namespace, id, labels, created_at) VALUES (?, ?, ?, 0)").run(
    ns,
    id,
    JSON.stringify(labels),
  );
  for (const [type, rid] of resources) {
    db.prepare("INSERT INTO lease_resources (namespace, lease_id, type, id) VALUES (?, ?, ?, ?)").run(
      ns,
      id,
      type,
      rid,
    );
  }
}

function addSnapshot(
  db: MetadataDB,
  ns: string,
  snapshotter: string,
  key: string,
  parent = "",
  labels: Record<string, string> = {},
): void {
  db.prepare(
    `INSERT INTO snapshots (namespace, snapshotter, key, backend_key, parent, kind, labels, created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, 3, ?, 0, 0)`,
  ).run(ns, snapshotter, key, `${ns}/bk/${key}`, parent, JSON.stringify(labels));
}

function snapshotKeys(db: MetadataDB, ns: string): string[] {
  return (
    db
      .prepare("SELECT snapshotter, key FROM snapshots WHERE namespace = ? ORDER BY snapshotter, key")
      .all(ns) as Array<{
      snapshotter: string;
      key: string;
    }>
  ).map((r) => `${r.snapshotter}/${r.key}`);
}

const sorted = (xs: string[]) => [...xs].sort();

void describe("metadata garbage collection", () => {
  void it("keeps an image's index, manifest, config and layers through gc.ref labels, and drops all after the image goes", () =>
    withEnv(async (env) => {
      const l0 = await env.put("ns", "layer 0");
      const l1 = await env.put("ns", "layer 1");
      const config = await env.put("ns", "config");
      const extra = await env.put("ns", "extra, referenced with a / separator");
      const notRef = await env.put("ns", "named by gc.ref.contentx, which is no reference");
      const manifest = await env.put("ns", "manifest", {
        "containerd.io/gc.ref.content.config": config,
        "containerd.io/gc.ref.content.l.0": l0,
        "containerd.io/gc.ref.content.l.1": l1,
        "containerd.io/gc.ref.content/extra": extra,
        "containerd.io/gc.ref.contentx": notRef,
      });
      const index = await env.put("ns", "index", { "containerd.io/gc.ref.content.m.0": manifest });
      const stray = await env.put("ns", "stray");
      addImage(env.db, "ns", "docker.io/library/x:latest", index);

      let stats = await env.gc();
      const kept = [index, manifest, config, l0, l1, extra];
      assert.deepEqual(env.rows("ns"), sorted(kept));
      for (const d of kept) assert.ok(env.onDisk(d), d);
      assert.equal(env.onDisk(stray), false);
      assert.equal(env.onDisk(notRef), false);
      assert.equal(stats.contentRemoved, 2);
      assert.equal(stats.blobsRemoved, 2);
      assert.deepEqual(stats.errors, []);

      deleteImage(env.db, "ns", "docker.io/library/x:latest");
      stats = await env.gc();
      assert.deepEqual(env.rows("ns"), []);
      for (const d of kept) assert.equal(env.onDisk(d), false, d);
      assert.equal(stats.contentRemoved, kept.length);
      assert.equal(stats.blobsRemoved, kept.length);
    }));

  void it("image labels are edges too", () =>
    withEnv(async (env) => {
      const target = await env.put("ns", "target");
      const side = await env.put("ns", "side");
      addImage(env.db, "ns", "img", target, { "containerd.io/gc.ref.content.sig": side });
      await env.gc();
      assert.deepEqual(env.rows("ns"), sorted([target, side]));
    }));

  void it("keeps what unexpired leases hold and drops expired leases with their content", () =>
    withEnv(async (env) => {
      const live = await env.put("ns", "held by a live lease");
      const forever = await env.put("ns", "held by a lease without expiry");
      const dead = await env.put("ns", "held by an expired lease");
      const bogus = await env.put("ns", "held by a lease with an unreadable expiry");
      const iso = (ms: number) => new Date(ms).toISOString();
      addLease(env.db, "ns", "live", { "containerd.io/gc.expire": iso(env.clock + hour) }, [
        ["content", live],
      ]);
      addLease(env.db, "ns", "forever", {}, [["content", forever]]);
      addLease(env.db, "ns", "dead", { "containerd.io/gc.expire": iso(env.clock - 1000) }, [
        ["content", dead],
      ]);
      addLease(env.db, "ns", "bogus", { "containerd.io/gc.expire": "tomorrow" }, [["content", bogus]]);

      const stats = await env.gc();
      assert.deepEqual(env.rows("ns"), sorted([live, forever, bogus]));
      assert.ok(env.onDisk(live) && env.onDisk(forever) && env.onDisk(bogus));
      assert.equal(env.onDisk(dead), false);
      assert.equal(stats.leasesRemoved, 1);
      assert.deepEqual(
        (env.db.prepare("SELECT id FROM leases ORDER BY id").all() as Array<{ id: string }>).map((r) => r.id),
        ["bogus", "forever", "live"],
      );
      assert.equal(env.db.prepare("SELECT 1 FROM lease_resources WHERE lease_id = 'dead'").get(), undefined);

      // The live lease expires later.
      env.clock += 2 * hour;
      await env.gc();
      assert.deepEqual(env.rows("ns"), sorted([forever, bogus]));
      assert.equal(env.onDisk(live), false);
    }));

  void it("a blob shared by two images survives deleting one of them", () =>
    withEnv(async (env) => {
      const shared = await env.put("ns", "shared base layer");
      const own1 = await env.put("ns", "layer of image 1");
      const own2 = await env.put("ns", "layer of image 2");
      const m1 = await env.put("ns", "manifest 1", {
        "containerd.io/gc.ref.content.l.0": shared,
        "containerd.io/gc.ref.content.l.1": own1,
      });
      const m2 = await env.put("ns", "manifest 2", {
        "containerd.io/gc.ref.content.l.0": shared,
        "containerd.io/gc.ref.content.l.1": own2,
      });
      addImage(env.db, "ns", "one", m1);
      addImage(env.db, "ns", "two", m2);
      await env.gc();
      assert.equal(env.rows("ns").length, 5);

      deleteImage(env.db, "ns", "one");
      await env.gc();
      assert.deepEqual(env.rows("ns"), sorted([m2, shared, own2]));
      assert.ok(env.onDisk(shared) && env.onDisk(m2) && env.onDisk(own2));
      assert.equal(env.onDisk(m1), false);
      assert.equal(env.onDisk(own1), false);
    }));

  void it("keeps gc.root content and what it references", () =>
    withEnv(async (env) => {
      const child = await env.put("ns", "child of a root");
      const root = await env.put("ns", "pinned", {
        "containerd.io/gc.root": "",
        "containerd.io/gc.ref.content": child,
      });
      const loose = await env.put("ns", "loose");
      await env.gc();
      assert.deepEqual(env.rows("ns"), sorted([root, child]));
      assert.equal(env.onDisk(loose), false);
    }));

  void it("a gc.flat lease keeps its direct blob but not what the blob references", () =>
    withEnv(async (env) => {
      const config = await env.put("ns", "config of flat manifest");
      const manifest = await env.put("ns", "flat manifest", {
        "containerd.io/gc.ref.content.config": config,
      });
      addLease(env.db, "ns", "flat", { "containerd.io/gc.flat": "" }, [["content", manifest]]);

      // The same shape, but something else also reaches the manifest: then its edges count.
      const config2 = await env.put("ns", "config 2");
      const manifest2 = await env.put("ns", "manifest 2", { "containerd.io/gc.ref.content.config": config2 });
      addLease(env.db, "ns", "flat2", { "containerd.io/gc.flat": "1" }, [["content", manifest2]]);
      addImage(env.db, "ns", "img", manifest2);

      await env.gc();
      assert.deepEqual(env.rows("ns"), sorted([manifest, manifest2, config2]));
      assert.ok(env.onDisk(manifest));
      assert.equal(env.onDisk(config), false);
    }));

  void it("a blob deleted in one namespace stays on disk while another references it", () =>
    withEnv(async (env) => {
      const d = await env.put("a", "in both namespaces");
      assert.equal(await env.put("b", "in both namespaces"), d);
      addImage(env.db, "a", "img", d);
      addImage(env.db, "b", "img", d);
      await env.store("b").delete(d);
      let stats = await env.gc();
      assert.deepEqual(env.rows("a"), [d]);
      assert.deepEqual(env.rows("b"), []);
      assert.ok(env.onDisk(d));
      assert.equal(stats.blobsRemoved, 0);

      deleteImage(env.db, "a", "img");
      stats = await env.gc();
      assert.equal(env.onDisk(d), false);
      assert.equal(stats.blobsRemoved, 1);
    }));

  void it("removes expired ingests with their backend data and keeps fresh and leased ones", () =>
    withEnv(async (env) => {
      const t0 = env.clock;
      const write = async (ctx: RequestContext | string, ref: string) => {
        const w = await env.store(ctx).writer({ ref });
        await w.write(Buffer.from(`partial ${ref}`));
        await w.close();
      };
      await write("ns", "old");
      env.clock = t0 + 12 * hour;
      await write("ns", "young");
      addLease(env.db, "ns", "pull", {}, []);
      await write({ namespace: "ns", lease: "pull" }, "leased");
      assert.equal((await env.backend.listStatuses()).length, 3);

      env.clock = t0 + 25 * hour;
      const stats = await env.gc();
      assert.equal(stats.ingestsRemoved, 1);
      const refs = async () => (await env.store("ns").listStatuses()).map((s) => s.ref).sort();
      assert.deepEqual(await refs(), ["leased", "young"]);
      assert.deepEqual((await env.backend.listStatuses()).map((s) => s.ref).sort(), [
        "ns/leased",
        "ns/young",
      ]);

      // An ingest opened under a lease lives as long as a lease holds it.
      env.db.prepare("DELETE FROM leases WHERE id = 'pull'").run();
      env.db.prepare("DELETE FROM lease_resources WHERE lease_id = 'pull'").run();
      await env.gc();
      assert.deepEqual(await refs(), ["young"]);
      assert.deepEqual(
        (await env.backend.listStatuses()).map((s) => s.ref),
        ["ns/young"],
      );
    }));

  void it("a shared ingest keeps the blob it expects after the owning namespace drops it", () =>
    withEnv(async (env) => {
      const data = Buffer.from("shared while the source goes away");
      const d = await env.put("a", data.toString());
      const w = await env.store("b").writer({ ref: "link", total: data.length, expected: d });
      assert.equal((await w.status()).offset, data.length);
      await env.store("a").delete(d);
      await env.gc();
      assert.ok(env.onDisk(d));
      assert.equal(await w.commit(data.length, d), d);
      const parts: Uint8Array[] = [];
      for await (const c of env.store("b").read(d, 0, 0)) parts.push(c);
      assert.deepEqual(Buffer.concat(parts), data);
    }));

  void it("aborts backend ingests no ingest row refers to", () =>
    withEnv(async (env) => {
      const w = await env.backend.writer({ ref: "left-by-a-crash" });
      await w.write(Buffer.from("orphan"));
      await w.close();
      const kept = await env.store("ns").writer({ ref: "mine" });
      await kept.close();
      const stats = await collectGarbage(env.db, {
        contentBackend: env.backend,
        lock: env.cs.lock,
        now: () => env.clock,
      });
      assert.equal(stats.orphanIngestsAborted, 1);
      assert.deepEqual(
        (await env.backend.listStatuses()).map((s) => s.ref),
        ["ns/mine"],
      );
    }));

  void it("keeps snapshots referenced by a config label with their parents, removes orphans children first", () =>
    withEnv(async (env) => {
      addSnapshot(env.db, "ns", "overlayfs", "base");
      addSnapshot(env.db, "ns", "overlayfs", "mid", "base");
      addSnapshot(env.db, "ns", "overlayfs", "top", "mid");
      addSnapshot(env.db, "ns", "overlayfs", "rw", "top");
      addSnapshot(env.db, "ns", "overlayfs", "side");
      addSnapshot(env.db, "ns", "overlayfs", "pinned", "", { "containerd.io/gc.root": "" });
      addSnapshot(env.db, "ns", "overlayfs", "leased");
      addSnapshot(env.db, "ns", "overlayfs", "orphan", "base");
      addSnapshot(env.db, "ns", "overlayfs", "orphan-child", "orphan");
      addSnapshot(env.db, "ns", "overlayfs", "orphan-grandchild", "orphan-child");
      addSnapshot(env.db, "ns", "native", "unregistered-orphan");
      // A snapshot label pointing at content keeps that content.
      const note = await env.put("ns", "referenced by a snapshot");
      addSnapshot(env.db, "ns", "overlayfs", "labelled", "", { "containerd.io/gc.ref.content.note": note });
      addLease(env.db, "ns", "l", {}, [
        ["snapshots/overlayfs", "leased"],
        ["snapshots/overlayfs", "labelled"],
      ]);

      const config = await env.put("ns", "image config", {
        "containerd.io/gc.ref.snapshot.overlayfs": "top",
      });
      const manifest = await env.put("ns", "manifest", { "containerd.io/gc.ref.content.config": config });
      addImage(env.db, "ns", "img", manifest);
      addContainer(env.db, "ns", "c1", "overlayfs", "rw", {
        "containerd.io/gc.ref.snapshot.overlayfs/extra": "side",
      });

      const stats = await env.gc();
      assert.deepEqual(
        snapshotKeys(env.db, "ns"),
        sorted(
          ["base", "mid", "top", "rw", "side", "pinned", "leased", "labelled"].map((k) => `overlayfs/${k}`),
        ),
      );
      assert.equal(stats.snapshotsRemoved, 4);
      assert.deepEqual(env.snapshotRemovals, [
        "overlayfs ns/bk/orphan-grandchild",
        "overlayfs ns/bk/orphan-child",
        "overlayfs ns/bk/orphan",
      ]);
      assert.deepEqual(env.rows("ns"), sorted([config, manifest, note]));

      // Without the image, the chain under the container survives; without the container too, it goes.
      deleteImage(env.db, "ns", "img");
      await env.gc();
      assert.ok(snapshotKeys(env.db, "ns").includes("overlayfs/base"));
      env.db.prepare("DELETE FROM containers").run();
      await env.gc();
      assert.deepEqual(
        snapshotKeys(env.db, "ns"),
        sorted(["pinned", "leased", "labelled"].map((k) => `overlayfs/${k}`)),
      );
      const later = env.snapshotRemovals.slice(3);
      assert.deepEqual(
        sorted(later),
        sorted(["rw", "top", "mid", "base", "side"].map((k) => `overlayfs ns/bk/${k}`)),
      );
      const at = (k: string) => later.indexOf(`overlayfs ns/bk/${k}`);
      assert.ok(at("rw") < at("top") && at("top") < at("mid") && at("mid") < at("base"), later.join(", "));
    }));

  void it("keeps namespaces apart: a label in one namespace does not keep another's row", () =>
    withEnv(async (env) => {
      const d = await env.put("b", "only b has it");
      const m = await env.put("a", "manifest in a", { "containerd.io/gc.ref.content": d });
      addImage(env.db, "a", "img", m);
      await env.gc();
      assert.deepEqual(env.rows("b"), []);
      assert.deepEqual(env.rows("a"), [m]);
      assert.equal(env.onDisk(d), false);
    }));
});

void describe("gc helpers", () => {
  void it("reads reference labels like containerd", () => {
    const seen: string[] = [];
    labelReferences(
      "ns",
      {
        "containerd.io/gc.ref.content": "c0",
        "containerd.io/gc.ref.content.x": "c1",
        "containerd.io/gc.ref.content/y": "c2",
        "containerd.io/gc.ref.contentz": "no",
        "containerd.io/gc.ref.snapshot.overlayfs": "s1",
        "containerd.io/gc.ref.snapshot.overlayfs/named": "s2",
        "containerd.io/gc.ref.snapshot.": "no",
        "containerd.io/gc.root": "no",
      },
      (n) => void seen.push(JSON.stringify(n)),
    );
    assert.deepEqual(seen, [
      JSON.stringify({ kind: "content", ns: "ns", digest: "c0" }),
      JSON.stringify({ kind: "content", ns: "ns", digest: "c1" }),
      JSON.stringify({ kind: "content", ns: "ns", digest: "c2" }),
      JSON.stringify({ kind: "snapshot", ns: "ns", snapshotter: "overlayfs", key: "s1" }),
      JSON.stringify({ kind: "snapshot", ns: "ns", snapshotter: "overlayfs", key: "s2" }),
    ]);
  });

  void it("parses RFC 3339 expiries", () => {
    assert.equal(parseRfc3339("2024-06-01T12:00:00Z"), Date.parse("2024-06-01T12:00:00Z"));
    assert.equal(parseRfc3339("2024-06-01T14:00:00.123456789+02:00"), Date.parse("2024-06-01T12:00:00.123Z"));
    assert.equal(parseRfc3339("2024-06-01"), undefined);
    assert.equal(parseRfc3339("tomorrow"), undefined);
  });

  void it("the collection lock lets readers share and queues the exclusive holder fairly", async () => {
    const lock = new CollectionLock();
    const events: string[] = [];
    let releaseReader!: () => void;
    const reader = lock.shared(
      () =>
        new Promise<void>((resolve) => {
          events.push("reader in");
          releaseReader = resolve;
        }),
    );
    const writer = lock.exclusive(async () => void events.push("gc"));
    // A reader arriving after a waiting GC waits behind it.
    const late = lock.shared(async () => void events.push("late reader"));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(events, ["reader in"]);
    releaseReader();
    await Promise.all([reader, writer, late]);
    assert.deepEqual(events, ["reader in", "gc", "late reader"]);
  });
});
