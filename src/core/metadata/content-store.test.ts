// Tests for the namespaced content store: the shared conformance suite, namespace isolation,
// labels, leases, shared and isolated ingests, and what stays on disk, over a real DB and backend.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { isCode, type ErrorCode } from "../../errdefs/errors.js";
import type { RequestContext } from "../context.js";
import type { Store } from "../content/content.js";
import { createLocalContentStore, type LocalContentStore } from "../content/local-store.js";
import { runContentStoreConformance } from "../content/store-conformance.js";
import {
  backendIngestRef,
  createNamespacedContentStore,
  ingestExpiryMs,
  type NamespacedContentStore,
  type NamespacedContentStoreOptions,
} from "./content-store.js";
import { openMetadataDB, type MetadataDB } from "./db.js";

function digestOf(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), "berth-meta-content-"));
}

async function readAll(store: Store, digest: string): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const chunk of store.read(digest, 0, 0)) parts.push(chunk);
  return Buffer.concat(parts);
}

async function rejectsWith(p: Promise<unknown>, code: ErrorCode, text?: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isCode(err, code), `expected ${code}, got ${String(err)}`);
    if (text !== undefined) assert.ok((err as Error).message.includes(text), (err as Error).message);
    return true;
  });
}

async function ingest(
  store: Store,
  ref: string,
  data: Uint8Array,
  labels?: Record<string, string>,
): Promise<string> {
  const w = await store.writer({ ref, total: data.length, expected: digestOf(data) });
  try {
    await w.write(data);
    return await w.commit(data.length, digestOf(data), labels);
  } finally {
    await w.close();
  }
}

interface Env {
  dir: string;
  db: MetadataDB;
  backend: LocalContentStore;
  cs: NamespacedContentStore;
  deletes: number;
  store(ctx: RequestContext | string): Store;
}

async function withEnv(
  fn: (env: Env) => Promise<void>,
  opts: Omit<NamespacedContentStoreOptions, "onDelete"> = {},
): Promise<void> {
  const dir = await tempDir();
  const db = openMetadataDB(path.join(dir, "meta.db"));
  try {
    const backend = await createLocalContentStore(path.join(dir, "content"));
    const env: Env = {
      dir,
      db,
      backend,
      deletes: 0,
      cs: undefined as unknown as NamespacedContentStore,
      store: (ctx) => env.cs.forContext(typeof ctx === "string" ? { namespace: ctx } : ctx),
    };
    env.cs = createNamespacedContentStore(db, backend, { ...opts, onDelete: () => void env.deletes++ });
    await fn(env);
  } finally {
    db.close();
    await rm(dir, { recursive: true, force: true });
  }
}

function createLease(db: MetadataDB, namespace: string, id: string): void {
  db.prepare("INSERT INTO leases (namespace, id, labels, created_at) VALUES (?, ?, '{}', ?)").run(
    namespace,
    id,
    Date.now(),
  );
}

function leaseResources(db: MetadataDB, namespace: string, lease: string): string[] {
  return (
    db
      .prepare("SELECT type, id FROM lease_resources WHERE namespace = ? AND lease_id = ? ORDER BY type, id")
      .all(namespace, lease) as Array<{ type: string; id: string }>
  ).map((r) => `${r.type} ${r.id}`);
}

runContentStoreConformance("namespaced metadata store", async () => {
  const dir = await tempDir();
  const dbs = [openMetadataDB(path.join(dir, "meta.db"))];
  const backend = await createLocalContentStore(path.join(dir, "content"));
  const ctx = { namespace: "conformance" };
  return {
    store: createNamespacedContentStore(dbs[0]!, backend).forContext(ctx),
    // A restart: a new DB connection and a new backend instance over the same files.
    reopen: async () => {
      const db = openMetadataDB(path.join(dir, "meta.db"));
      dbs.push(db);
      return createNamespacedContentStore(
        db,
        await createLocalContentStore(path.join(dir, "content")),
      ).forContext(ctx);
    },
    cleanup: async () => {
      for (const db of dbs) db.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

void describe("namespaced content store", () => {
  void it("keeps namespaces apart: info, read, walk, delete, status", () =>
    withEnv(async (env) => {
      const a = env.store("a");
      const b = env.store("b");
      const data = Buffer.from("only in a");
      const d = await ingest(a, "blob", data);
      assert.deepEqual(await readAll(a, d), data);
      await rejectsWith(b.info(d), "not-found", `content digest ${d}`);
      await rejectsWith(readAll(b, d), "not-found");
      await rejectsWith(b.delete(d), "not-found");
      await rejectsWith(b.update({ digest: d, labels: {} }, []), "not-found");
      const seen: string[] = [];
      await b.walk((i) => void seen.push(i.digest));
      assert.deepEqual(seen, []);

      const w = await a.writer({ ref: "pending" });
      await w.write(Buffer.from("partial"));
      assert.deepEqual(
        (await a.listStatuses()).map((s) => s.ref),
        ["pending"],
      );
      assert.deepEqual(await b.listStatuses(), []);
      await rejectsWith(b.status("pending"), "not-found", "reference pending");
      await rejectsWith(b.abort("pending"), "not-found");
      // The same ref in another namespace is another ingest, not a lock conflict.
      const wb = await b.writer({ ref: "pending" });
      assert.equal((await wb.status()).offset, 0);
      await wb.close();
      await w.close();
      assert.equal((await a.status("pending")).offset, "partial".length);

      // Both namespaces exist now.
      const names = (
        env.db.prepare("SELECT name FROM namespaces ORDER BY name").all() as Array<{ name: string }>
      ).map((r) => r.name);
      assert.deepEqual(names, ["a", "b"]);
    }));

  void it("namespaces backend ingest refs so they resume across restarts", () =>
    withEnv(async (env) => {
      const w = await env.store("ns1").writer({ ref: "layer-x" });
      await w.write(Buffer.from("abc"));
      await w.close();
      const row = env.db
        .prepare("SELECT backend_ref FROM ingests WHERE namespace = 'ns1' AND ref = 'layer-x'")
        .get() as {
        backend_ref: string;
      };
      assert.equal(row.backend_ref, backendIngestRef("ns1", "layer-x"));
      assert.equal((await env.backend.status(row.backend_ref)).offset, 3);
      assert.notEqual(backendIngestRef("a-b", "c"), backendIngestRef("a", "b-c"));
    }));

  void it("stores labels at commit and updates them by field path", () =>
    withEnv(async (env) => {
      const s = env.store("labels");
      const d = await ingest(s, "l", Buffer.from("labelled"), { a: "1", b: "2" });
      assert.deepEqual((await s.info(d)).labels, { a: "1", b: "2" });

      let info = await s.update({ digest: d, labels: { a: "10", c: "3" } }, ["labels.a", "labels.c"]);
      assert.deepEqual(info.labels, { a: "10", b: "2", c: "3" });
      info = await s.update({ digest: d, labels: {} }, ["labels.b"]);
      assert.deepEqual(info.labels, { a: "10", c: "3" });
      info = await s.update({ digest: d, labels: { z: "26" } }, ["labels"]);
      assert.deepEqual(info.labels, { z: "26" });
      info = await s.update({ digest: d, labels: { y: "25" } }, []);
      assert.deepEqual(info.labels, { y: "25" });
      assert.deepEqual((await s.info(d)).labels, { y: "25" });
      assert.ok(info.updatedAt.getTime() >= info.createdAt.getTime());

      await rejectsWith(
        s.update({ digest: d, labels: {} }, ["size"]),
        "invalid-argument",
        `cannot update "size" field on content info "${d}"`,
      );
      await rejectsWith(
        s.update({ digest: d, labels: { big: "x".repeat(5000) } }, ["labels.big"]),
        "invalid-argument",
        "label key and value greater than maximum size",
      );
      assert.deepEqual((await s.info(d)).labels, { y: "25" });
    }));

  void it("validates commit labels before committing anything", () =>
    withEnv(async (env) => {
      const s = env.store("labels");
      const data = Buffer.from("bad labels");
      const w = await s.writer({ ref: "bad" });
      await w.write(data);
      await rejectsWith(w.commit(data.length, digestOf(data), { big: "x".repeat(5000) }), "invalid-argument");
      assert.equal(existsSync(env.backend.blobPath(digestOf(data))), false);
      assert.equal((await s.status("bad")).offset, data.length);
      assert.equal(await w.commit(data.length, digestOf(data), { ok: "yes" }), digestOf(data));
      assert.deepEqual((await s.info(digestOf(data))).labels, { ok: "yes" });
    }));

  void it("filters walk on digest and labels, and listStatuses on ref", () =>
    withEnv(async (env) => {
      const s = env.store("filters");
      const d1 = await ingest(s, "1", Buffer.from("one"), { kind: "layer" });
      const d2 = await ingest(s, "2", Buffer.from("two"), { kind: "config" });
      const walked = async (filters: string[]) => {
        const out: string[] = [];
        await s.walk((i) => void out.push(i.digest), filters);
        return out.sort();
      };
      assert.deepEqual(await walked([]), [d1, d2].sort());
      assert.deepEqual(await walked(["labels.kind==layer"]), [d1]);
      assert.deepEqual(await walked([`digest==${JSON.stringify(d2)}`]), [d2]);
      assert.deepEqual(await walked(["labels.kind==layer", "labels.kind==config"]), [d1, d2].sort());
      assert.deepEqual(await walked(["labels.missing"]), []);
      await rejectsWith(walked(["labels.kind=="]), "invalid-argument");

      const w1 = await s.writer({ ref: "layer-1" });
      const w2 = await s.writer({ ref: "config-1" });
      const refs = async (filters: string[]) => (await s.listStatuses(filters)).map((st) => st.ref).sort();
      assert.deepEqual(await refs([]), ["config-1", "layer-1"]);
      assert.deepEqual(await refs(["ref==layer-1"]), ["layer-1"]);
      assert.deepEqual(await refs(["ref~=^config"]), ["config-1"]);
      await rejectsWith(s.listStatuses(["ref=="]), "invalid-argument");
      await w1.close();
      await w2.close();
    }));

  void it("ref must not be empty", () =>
    withEnv(async (env) => {
      await rejectsWith(env.store("x").writer({ ref: "" }), "invalid-argument", "ref must not be empty");
    }));

  void it("records unleased ingests with a 24 h expiry and leased ones as lease resources", () => {
    const t0 = 1_700_000_000_000;
    return withEnv(
      async (env) => {
        const free = await env.store("ns").writer({ ref: "free" });
        await free.close();
        createLease(env.db, "ns", "l1");
        const ctx = { namespace: "ns", lease: "l1" };
        const leased = await env.store(ctx).writer({ ref: "leased" });
        const rows = env.db
          .prepare("SELECT ref, expires_at FROM ingests WHERE namespace = 'ns' ORDER BY ref")
          .all();
        assert.deepEqual(rows, [
          { ref: "free", expires_at: t0 + ingestExpiryMs },
          { ref: "leased", expires_at: null },
        ]);
        assert.deepEqual(leaseResources(env.db, "ns", "l1"), ["ingests leased"]);

        const data = Buffer.from("leased blob");
        await leased.write(data);
        const d = await leased.commit(data.length, digestOf(data));
        assert.deepEqual(leaseResources(env.db, "ns", "l1"), [`content ${d}`, "ingests leased"]);
        assert.equal(
          env.db.prepare("SELECT 1 FROM ingests WHERE namespace = 'ns' AND ref = 'leased'").get(),
          undefined,
        );
      },
      { now: () => t0 },
    );
  });

  void it("refuses a lease that does not exist, before any bytes move", () =>
    withEnv(async (env) => {
      const ghost = env.store({ namespace: "ns", lease: "ghost" });
      await rejectsWith(ghost.writer({ ref: "r" }), "not-found", "lease does not exist");
      assert.equal(env.db.prepare("SELECT 1 FROM ingests").get(), undefined);

      createLease(env.db, "ns", "short");
      const w = await env.store({ namespace: "ns", lease: "short" }).writer({ ref: "r" });
      const data = Buffer.from("lease vanishes");
      await w.write(data);
      env.db.prepare("DELETE FROM leases WHERE id = 'short'").run();
      await rejectsWith(w.commit(data.length, digestOf(data)), "not-found", "lease does not exist");
      await w.close();
      assert.equal(existsSync(env.backend.blobPath(digestOf(data))), false);
    }));

  void it("an existing blob is already-exists at writer() and joins the request's lease", () =>
    withEnv(async (env) => {
      const data = Buffer.from("present");
      const d = await ingest(env.store("ns"), "first", data);
      createLease(env.db, "ns", "pull");
      const leased = env.store({ namespace: "ns", lease: "pull" });
      await rejectsWith(leased.writer({ ref: "again", expected: d }), "already-exists", `content ${d}`);
      assert.deepEqual(leaseResources(env.db, "ns", "pull"), [`content ${d}`]);
      // No ingest was opened for the refused ref.
      await rejectsWith(leased.status("again"), "not-found");
    }));

  void it("shares a blob another namespace has: offset == total, commit needs no bytes", () =>
    withEnv(async (env) => {
      const data = Buffer.from("shared across namespaces");
      const d = await ingest(env.store("a"), "src", data, { from: "a" });
      const b = env.store("b");
      const w = await b.writer({ ref: "dst", total: data.length, expected: d });
      const st = await w.status();
      assert.equal(st.offset, data.length);
      assert.equal(st.total, data.length);
      assert.equal(st.expected, d);
      assert.equal(w.digest(), d);
      assert.equal((await b.status("dst")).offset, data.length);
      assert.deepEqual(
        (await b.listStatuses()).map((s) => [s.ref, s.offset]),
        [["dst", data.length]],
      );
      // Nothing was opened in the backend for it.
      assert.deepEqual(await env.backend.listStatuses(), []);

      assert.equal(await w.commit(data.length, d, { from: "b" }), d);
      await w.close();
      assert.deepEqual((await b.info(d)).labels, { from: "b" });
      assert.deepEqual((await env.store("a").info(d)).labels, { from: "a" });
      assert.deepEqual(await readAll(b, d), data);
      await rejectsWith(b.status("dst"), "not-found");

      // A size that does not match is not shared: the bytes must come.
      const c = env.store("c");
      const w2 = await c.writer({ ref: "odd", total: data.length + 1, expected: d });
      assert.equal((await w2.status()).offset, 0);
      await w2.close();
      await c.abort("odd");
    }));

  void it("a shared ingest that is written to anyway takes the bytes from the start", () =>
    withEnv(async (env) => {
      const data = Buffer.from("written twice");
      const d = await ingest(env.store("a"), "src", data);
      const b = env.store("b");
      const w = await b.writer({ ref: "dst", total: data.length, expected: d });
      assert.equal(await w.write(data), data.length);
      assert.equal(w.digest(), d);
      assert.equal(await w.commit(data.length, d), d);
      assert.deepEqual(await readAll(b, d), data);
      // Shared-ingest commit size checks.
      const w2 = await env.store("c").writer({ ref: "x", total: data.length, expected: d });
      await rejectsWith(w2.commit(data.length + 5, d), "failed-precondition", "unexpected commit size");
      await w2.close();
      await env.store("c").abort("x");
    }));

  void it("with the isolated policy every namespace writes the bytes", () =>
    withEnv(
      async (env) => {
        const data = Buffer.from("isolated");
        const d = await ingest(env.store("a"), "src", data);
        const b = env.store("b");
        const w = await b.writer({ ref: "dst", total: data.length, expected: d });
        assert.equal((await w.status()).offset, 0);
        await w.write(data);
        assert.equal(await w.commit(data.length, d), d);
        assert.deepEqual(await readAll(b, d), data);
        // Committing the same bytes again in b is already-exists.
        const w2 = await b.writer({ ref: "dst2" });
        await w2.write(data);
        await rejectsWith(w2.commit(data.length, ""), "already-exists", `content ${d}`);
      },
      { sharingPolicy: "isolated" },
    ));

  void it("delete drops the namespace's row, tells GC, and leaves the bytes for GC", () =>
    withEnv(async (env) => {
      const data = Buffer.from("to delete");
      const d = await ingest(env.store("a"), "x", data);
      createLease(env.db, "a", "l");
      env.db
        .prepare(
          "INSERT INTO lease_resources (namespace, lease_id, type, id) VALUES ('a', 'l', 'content', ?)",
        )
        .run(d);
      await env.store({ namespace: "a", lease: "l" }).delete(d);
      assert.equal(env.deletes, 1);
      assert.deepEqual(leaseResources(env.db, "a", "l"), []);
      await rejectsWith(env.store("a").info(d), "not-found");
      assert.equal(existsSync(env.backend.blobPath(d)), true);
    }));

  void it("abort removes the backend ingest too", () =>
    withEnv(async (env) => {
      const w = await env.store("a").writer({ ref: "gone" });
      await w.write(Buffer.from("bytes"));
      await w.close();
      assert.equal((await env.backend.listStatuses()).length, 1);
      await env.store("a").abort("gone");
      assert.deepEqual(await env.backend.listStatuses(), []);
    }));
});
