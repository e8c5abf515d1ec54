// Tests for lease resources: type validation, the lease existence check, and what is recorded.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { isCode, type ErrorCode } from "../../errdefs/errors.js";
import { openMetadataDB, type MetadataDB } from "./db.js";
import { addLeaseResource, removeLeaseResource, validateLeaseResource } from "./lease-resources.js";

const digest = `sha256:${"ab".repeat(32)}`;

async function withDB(fn: (db: MetadataDB) => void): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "berth-lease-res-"));
  const db = openMetadataDB(path.join(dir, "meta.db"));
  try {
    db.prepare("INSERT INTO leases (namespace, id, labels, created_at) VALUES ('ns', 'l1', '{}', 0)").run();
    fn(db);
  } finally {
    db.close();
    await rm(dir, { recursive: true, force: true });
  }
}

function throwsWith(fn: () => unknown, code: ErrorCode, text?: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isCode(err, code), `expected ${code}, got ${String(err)}`);
    if (text !== undefined) assert.ok((err as Error).message.includes(text), (err as Error).message);
    return true;
  });
}

function resources(db: MetadataDB): string[] {
  return (
    db.prepare("SELECT namespace, lease_id, type, id FROM lease_resources ORDER BY type, id").all() as Array<
      Record<string, string>
    >
  ).map((r) => `${r.namespace} ${r.lease_id} ${r.type} ${r.id}`);
}

void describe("lease resources", () => {
  void it("validates resource types as containerd does", () => {
    assert.equal(validateLeaseResource("content", digest), "content");
    assert.equal(validateLeaseResource("ingests", "any ref"), "ingests");
    assert.equal(validateLeaseResource("snapshots/overlayfs", "key"), "snapshots/overlayfs");
    throwsWith(
      () => validateLeaseResource("content", "not-a-digest"),
      "invalid-argument",
      "invalid content resource id",
    );
    throwsWith(() => validateLeaseResource("content/x", digest), "invalid-argument", "invalid resource type");
    throwsWith(
      () => validateLeaseResource("snapshots", "k"),
      "invalid-argument",
      "invalid snapshot resource type",
    );
    throwsWith(() => validateLeaseResource("snapshots/a/b", "k"), "invalid-argument");
    throwsWith(
      () => validateLeaseResource("images", "x"),
      "not-implemented",
      "resource type images not supported yet",
    );
  });

  void it("records a resource only under a lease, once", () =>
    withDB((db) => {
      assert.equal(addLeaseResource(db, { namespace: "ns" }, "content", digest), false);
      assert.deepEqual(resources(db), []);
      const ctx = { namespace: "ns", lease: "l1" };
      assert.equal(addLeaseResource(db, ctx, "content", digest), true);
      assert.equal(addLeaseResource(db, ctx, "content", digest), true);
      assert.equal(addLeaseResource(db, ctx, "ingests", "ref-1"), true);
      assert.equal(addLeaseResource(db, ctx, "snapshots/overlayfs", "k1"), true);
      assert.deepEqual(resources(db), [
        `ns l1 content ${digest}`,
        "ns l1 ingests ref-1",
        "ns l1 snapshots/overlayfs k1",
      ]);
      removeLeaseResource(db, ctx, "ingests", "ref-1");
      removeLeaseResource(db, { namespace: "ns" }, "content", digest);
      assert.deepEqual(resources(db), [`ns l1 content ${digest}`, "ns l1 snapshots/overlayfs k1"]);
    }));

  void it("is not-found when the lease does not exist in the namespace", () =>
    withDB((db) => {
      throwsWith(
        () => addLeaseResource(db, { namespace: "ns", lease: "nope" }, "content", digest),
        "not-found",
        "lease does not exist",
      );
      throwsWith(
        () => addLeaseResource(db, { namespace: "other", lease: "l1" }, "content", digest),
        "not-found",
      );
      assert.deepEqual(resources(db), []);
    }));
});
