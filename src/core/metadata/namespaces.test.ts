import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { createContainerStore } from "./containers.js";
import { type MetadataDB, openMetadataDB } from "./db.js";
import { createImageStore } from "./images.js";
import { createLeaseManager } from "./leases.js";
import { createNamespaceStore } from "./namespaces.js";

const digest = `sha256:${"a".repeat(64)}`;
const target = { mediaType: "application/vnd.oci.image.manifest.v1+json", digest, size: 10 };
const spec = {
  typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec",
  value: new Uint8Array([123, 125]),
};

void describe("namespace store", () => {
  let dir: string;
  let db: MetadataDB;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "berth-ns-"));
    db = openMetadataDB(join(dir, "meta.db"));
  });
  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  void it("creates, gets, lists, updates and deletes", () => {
    const store = createNamespaceStore(db);
    assert.deepEqual(store.create("zeta", { a: "1", dropped: "" }), { name: "zeta", labels: { a: "1" } });
    store.create("alpha");
    assert.deepEqual(store.list(), ["alpha", "zeta"]);
    assert.deepEqual(store.get("zeta"), { name: "zeta", labels: { a: "1" } });

    assert.deepEqual(store.update("zeta", { b: "2" }, ["labels.b"]).labels, { a: "1", b: "2" });
    // A key named in the mask but absent (or empty) in the request is deleted.
    assert.deepEqual(store.update("zeta", {}, ["labels.a"]).labels, { b: "2" });
    // No mask replaces every label.
    assert.deepEqual(store.update("zeta", { "containerd.io/defaults/snapshotter": "native" }, []).labels, {
      "containerd.io/defaults/snapshotter": "native",
    });
    assert.deepEqual(store.get("zeta").labels, { "containerd.io/defaults/snapshotter": "native" });

    store.delete("zeta");
    assert.deepEqual(store.list(), ["alpha"]);
    assert.equal(store.exists("zeta"), false);
  });

  void it("answers an unknown namespace with no labels and does not create it, as containerd 1.6 does", () => {
    const store = createNamespaceStore(db);
    assert.deepEqual(store.get("never"), { name: "never", labels: {} });
    assert.deepEqual(store.list(), []);
  });

  void it("rejects bad names and labels with containerd's messages", () => {
    const store = createNamespaceStore(db);
    const re = "^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$";
    assert.throws(() => store.create("a/b"), {
      code: "invalid-argument",
      message: `identifier "a/b" must match ${re}: invalid argument`,
    });
    assert.throws(() => store.create("-x"), {
      code: "invalid-argument",
      message: `identifier "-x" must match ${re}: invalid argument`,
    });
    const long = "x".repeat(77);
    assert.throws(() => store.create(long), {
      code: "invalid-argument",
      message: `identifier "${long}" greater than maximum length (76 characters): invalid argument`,
    });
    store.create("x".repeat(76));
    const big = { k: "v".repeat(5000) };
    const labelMessage =
      "namespace.Labels: label key and value greater than maximum size (4096 bytes), key: k: invalid argument";
    assert.throws(() => store.create("n1", big), { code: "invalid-argument", message: labelMessage });
    store.create("n1");
    assert.throws(() => store.update("n1", big, ["labels.k"]), {
      code: "invalid-argument",
      message: labelMessage,
    });
    assert.throws(() => store.update("n1", big, []), { code: "invalid-argument", message: labelMessage });
    assert.throws(() => store.create("n1"), {
      code: "already-exists",
      message: 'namespace "n1": already exists',
    });
    assert.deepEqual(store.list(), ["n1", "x".repeat(76)]);
  });

  void it("accepts only labels.<key> paths, as containerd's service does", () => {
    const store = createNamespaceStore(db);
    store.create("n", { a: "1" });
    assert.throws(() => store.update("n", { a: "2" }, ["labels"]), {
      code: "invalid-argument",
      message: 'cannot update "labels" field',
    });
    assert.throws(() => store.update("n", {}, ["labels.b", "name"]), {
      code: "invalid-argument",
      message: 'cannot update "name" field',
    });
    // The failed update left nothing behind.
    assert.deepEqual(store.get("n").labels, { a: "1" });
  });

  void it("creates a namespace on an update that names a new one", () => {
    const store = createNamespaceStore(db);
    assert.deepEqual(store.update("fresh", { a: "b" }, ["labels.a"]), { name: "fresh", labels: { a: "b" } });
    assert.deepEqual(store.list(), ["fresh"]);
    assert.throws(() => store.update("a/b", {}, []), { code: "invalid-argument" });
  });

  void it("creates namespaces implicitly on their first namespaced write", () => {
    const store = createNamespaceStore(db);
    createImageStore(db).create({ namespace: "img-ns" }, { name: "i", target });
    createLeaseManager(db).create({ namespace: "lease-ns" }, { id: "l" });
    createContainerStore(db).create(
      { namespace: "ctr-ns" },
      { id: "c", runtime: { name: "io.containerd.runc.v2" }, spec },
    );
    assert.deepEqual(store.list(), ["ctr-ns", "img-ns", "lease-ns"]);
    assert.throws(() => store.create("img-ns"), { code: "already-exists" });
    // A write that fails validation creates nothing.
    assert.throws(() => createImageStore(db).create({ namespace: "nothing" }, { name: "", target }));
    assert.deepEqual(store.list(), ["ctr-ns", "img-ns", "lease-ns"]);
  });

  void it("refuses to delete a namespace that still holds objects, naming them in containerd's order", () => {
    const store = createNamespaceStore(db);
    const ctx = { namespace: "busy" };
    const images = createImageStore(db);
    const containers = createContainerStore(db);
    images.create(ctx, { name: "i", target });
    containers.create(ctx, { id: "c", runtime: { name: "io.containerd.runc.v2" }, spec });
    db.prepare(
      "INSERT INTO content (namespace, digest, size, labels, created_at, updated_at) VALUES ('busy', ?, 3, '{}', 0, 0)",
    ).run(digest);
    const snapshot = db.prepare(
      "INSERT INTO snapshots (namespace, snapshotter, key, backend_key, kind, created_at, updated_at) VALUES ('busy', ?, ?, ?, 1, 0, 0)",
    );
    snapshot.run("overlayfs", "k1", "1");
    snapshot.run("native", "k2", "2");
    snapshot.run("overlayfs", "k3", "3");

    const refused = (what: string) => ({
      code: "failed-precondition",
      message: `namespace "busy" must be empty, but it still has ${what}: failed precondition`,
    });
    assert.throws(
      () => store.delete("busy"),
      refused("images, blobs, containers, snapshot-native, snapshot-overlayfs"),
    );
    images.delete(ctx, "i");
    assert.throws(
      () => store.delete("busy"),
      refused("blobs, containers, snapshot-native, snapshot-overlayfs"),
    );
    db.prepare("DELETE FROM content WHERE namespace = 'busy'").run();
    assert.throws(() => store.delete("busy"), refused("containers, snapshot-native, snapshot-overlayfs"));
    containers.delete(ctx, "c");
    assert.throws(() => store.delete("busy"), refused("snapshot-native, snapshot-overlayfs"));
    db.prepare("DELETE FROM snapshots WHERE namespace = 'busy' AND snapshotter = 'native'").run();
    assert.throws(() => store.delete("busy"), refused("snapshot-overlayfs"));
    db.prepare("DELETE FROM snapshots WHERE namespace = 'busy'").run();
    store.delete("busy");
    assert.deepEqual(store.list(), []);
  });

  void it("refuses each kind on its own: an image, a blob, a container", () => {
    const store = createNamespaceStore(db);
    createImageStore(db).create({ namespace: "a" }, { name: "i", target });
    db.prepare(
      "INSERT INTO content (namespace, digest, size, labels, created_at, updated_at) VALUES ('b', ?, 3, '{}', 0, 0)",
    ).run(digest);
    store.create("b");
    createContainerStore(db).create({ namespace: "c" }, { id: "c", runtime: { name: "r" }, spec });
    assert.throws(() => store.delete("a"), { code: "failed-precondition", message: /still has images:/ });
    assert.throws(() => store.delete("b"), { code: "failed-precondition", message: /still has blobs:/ });
    assert.throws(() => store.delete("c"), { code: "failed-precondition", message: /still has containers:/ });
  });

  void it("deletes a namespace holding only leases and ingests, and their records with it, as containerd does", () => {
    const store = createNamespaceStore(db);
    const leases = createLeaseManager(db);
    const ctx = { namespace: "leased" };
    leases.create(ctx, { id: "l1" });
    leases.addResource(ctx, "l1", { type: "content", id: digest });
    db.prepare("INSERT INTO ingests (namespace, ref, backend_ref) VALUES ('leased', 'r', 'b')").run();
    leases.create({ namespace: "other" }, { id: "l1" });

    store.delete("leased");
    assert.deepEqual(store.list(), ["other"]);
    const count = (table: string, ns: string) =>
      (db.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE namespace = ?`).get(ns) as { n: number }).n;
    assert.equal(count("leases", "leased"), 0);
    assert.equal(count("lease_resources", "leased"), 0);
    assert.equal(count("ingests", "leased"), 0);
    assert.equal(count("leases", "other"), 1);
    // Recreating the namespace starts from nothing.
    assert.deepEqual(leases.list(ctx), []);
  });

  void it("reports NotFound for deleting an unknown namespace and tells the GC about deletions", () => {
    const events: boolean[] = [];
    const store = createNamespaceStore(db, { onMutation: (e) => events.push(e.deletion) });
    assert.throws(() => store.delete("nothere"), {
      code: "not-found",
      message: 'namespace "nothere": not found',
    });
    store.create("n");
    store.update("n", { a: "b" }, []);
    store.delete("n");
    assert.throws(() => store.delete("n"), { code: "not-found" });
    assert.deepEqual(events, [false, false, true]);
  });
});
