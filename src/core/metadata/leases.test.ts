import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { type MetadataDB, openMetadataDB } from "./db.js";
import { createLeaseManager, gcExpireLabel, isLeaseExpired, parseRFC3339, randomLeaseId } from "./leases.js";
import { createNamespaceStore } from "./namespaces.js";

const dA = `sha256:${"a".repeat(64)}`;
const dB = `sha256:${"b".repeat(64)}`;
const ctx = { namespace: "default" };

void describe("lease manager", () => {
  let dir: string;
  let db: MetadataDB;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "berth-leases-"));
    db = openMetadataDB(join(dir, "meta.db"));
  });
  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  void it("creates, lists and deletes leases", () => {
    const created = new Date(Date.UTC(2024, 5, 1));
    const leases = createLeaseManager(db, { now: () => created });
    assert.deepEqual(leases.create(ctx, { id: "zz", labels: { a: "1", empty: "" } }), {
      id: "zz",
      labels: { a: "1" },
      createdAt: created,
    });
    // ctr uses paths as lease ids; anything non-empty goes.
    leases.create(ctx, { id: "/mnt/x" });
    assert.deepEqual(leases.list(ctx), [
      { id: "/mnt/x", labels: {}, createdAt: created },
      { id: "zz", labels: { a: "1" }, createdAt: created },
    ]);
    assert.throws(() => leases.create(ctx, { id: "zz" }), {
      code: "already-exists",
      message: 'lease "zz": already exists',
    });
    assert.throws(() => leases.create(ctx, { id: "" }), {
      code: "invalid-argument",
      message: "lease id must be provided: invalid argument",
    });
    leases.delete(ctx, "zz");
    assert.deepEqual(
      leases.list(ctx).map((l) => l.id),
      ["/mnt/x"],
    );
    assert.throws(() => leases.delete(ctx, "zz"), { code: "not-found", message: 'lease "zz": not found' });
    assert.throws(() => leases.delete({ namespace: "elsewhere" }, "zz"), { code: "not-found" });
    assert.throws(() => leases.list({ namespace: "" }), { code: "failed-precondition" });
  });

  void it("does not size-check lease labels, as containerd 1.6 does not", () => {
    const leases = createLeaseManager(db);
    const big = "x".repeat(5000);
    assert.equal(leases.create(ctx, { id: "l", labels: { k: big } }).labels.k, big);
  });

  void it("creates the namespace on the first lease and keeps namespaces apart", () => {
    const leases = createLeaseManager(db);
    leases.create({ namespace: "a" }, { id: "same", labels: { ns: "a" } });
    leases.create({ namespace: "b" }, { id: "same", labels: { ns: "b" } });
    assert.deepEqual(createNamespaceStore(db).list(), ["a", "b"]);
    leases.addResource({ namespace: "a" }, "same", { type: "content", id: dA });
    assert.deepEqual(leases.listResources({ namespace: "b" }, "same"), []);
    leases.delete({ namespace: "a" }, "same");
    assert.deepEqual(leases.list({ namespace: "b" })[0]?.labels, { ns: "b" });
  });

  void it("filters on id and labels", () => {
    const leases = createLeaseManager(db);
    leases.create(ctx, { id: "a", labels: { [gcExpireLabel]: "2030-01-01T00:00:00Z" } });
    leases.create(ctx, { id: "b", labels: { "containerd.io/gc.flat": "1" } });
    leases.create(ctx, { id: "c" });
    const ids = (filters: string[]) => leases.list(ctx, filters).map((l) => l.id);
    assert.deepEqual(ids(["id==b"]), ["b"]);
    assert.deepEqual(ids(['labels."containerd.io/gc.flat"']), ["b"]);
    assert.deepEqual(ids(["id==a", "id==c"]), ["a", "c"]);
    assert.deepEqual(ids(["id~=^[ab]$"]), ["a", "b"]);
    assert.throws(() => leases.list(ctx, ["id=="]), { code: "invalid-argument" });
  });

  void it("adds, lists and removes resources in containerd's order", () => {
    const leases = createLeaseManager(db);
    leases.create(ctx, { id: "L" });
    leases.addResource(ctx, "L", { type: "snapshots/overlayfs", id: "k2" });
    leases.addResource(ctx, "L", { type: "snapshots/native", id: "k1" });
    leases.addResource(ctx, "L", { type: "ingests", id: "ref2" });
    leases.addResource(ctx, "L", { type: "content", id: dB });
    leases.addResource(ctx, "L", { type: "content", id: dA });
    leases.addResource(ctx, "L", { type: "content", id: dA }); // idempotent
    assert.deepEqual(leases.listResources(ctx, "L"), [
      { id: dA, type: "content" },
      { id: dB, type: "content" },
      { id: "ref2", type: "ingests" },
      { id: "k1", type: "snapshots/native" },
      { id: "k2", type: "snapshots/overlayfs" },
    ]);
    leases.deleteResource(ctx, "L", { type: "snapshots/native", id: "k1" });
    leases.deleteResource(ctx, "L", { type: "ingests", id: "never-there" });
    assert.deepEqual(
      leases.listResources(ctx, "L").map((r) => r.id),
      [dA, dB, "ref2", "k2"],
    );

    leases.delete(ctx, "L");
    const rows = db
      .prepare("SELECT COUNT(*) AS n FROM lease_resources WHERE namespace = 'default'")
      .get() as {
      n: number;
    };
    assert.equal(rows.n, 0);
    assert.throws(() => leases.listResources(ctx, "L"), {
      code: "not-found",
      message: 'lease "L": not found',
    });
  });

  void it("rejects bad resources as containerd's parseLeaseResource does", () => {
    const leases = createLeaseManager(db);
    leases.create(ctx, { id: "L" });
    assert.throws(() => leases.addResource(ctx, "L", { type: "foo", id: "x" }), {
      code: "not-implemented",
      message: "resource type foo not supported yet: not implemented",
    });
    assert.throws(() => leases.addResource(ctx, "L", { type: "content", id: "x" }), {
      code: "invalid-argument",
      message: /^invalid content resource id x/,
    });
    assert.throws(() => leases.addResource(ctx, "L", { type: "content/a", id: dA }), {
      code: "invalid-argument",
      message: "invalid resource type content/a: invalid argument",
    });
    for (const type of ["snapshots", "snapshots/a/b", "snapshots/"])
      assert.throws(() => leases.addResource(ctx, "L", { type, id: "x" }), {
        code: "invalid-argument",
        message: `invalid snapshot resource type ${type}: invalid argument`,
      });
    assert.throws(() => leases.addResource(ctx, "L", { type: "ingests", id: "" }), {
      code: "invalid-argument",
    });
    assert.throws(() => leases.deleteResource(ctx, "L", { type: "bar", id: "k1" }), {
      code: "not-implemented",
    });
    // The lease is looked up first, so a missing lease wins over a bad resource.
    assert.throws(() => leases.addResource(ctx, "nol", { type: "foo", id: "x" }), {
      code: "not-found",
      message: 'lease "nol": not found',
    });
    assert.throws(() => leases.deleteResource(ctx, "nol", { type: "content", id: dA }), {
      code: "not-found",
    });
    assert.deepEqual(leases.listResources(ctx, "L"), []);
  });

  void it("tells the GC about writes and deletions", () => {
    const events: boolean[] = [];
    const leases = createLeaseManager(db, { onMutation: (e) => events.push(e.deletion) });
    leases.create(ctx, { id: "L" });
    leases.addResource(ctx, "L", { type: "ingests", id: "r" });
    leases.deleteResource(ctx, "L", { type: "ingests", id: "r" });
    leases.delete(ctx, "L");
    assert.deepEqual(events, [false, false, true, true]);
  });
});

void describe("lease expiry", () => {
  const now = new Date(Date.UTC(2024, 0, 1, 12, 0, 0));
  const lease = (value?: string): { labels: Record<string, string> } => ({
    labels: value === undefined ? {} : { [gcExpireLabel]: value },
  });

  void it("reads containerd.io/gc.expire as Go's RFC 3339", () => {
    assert.equal(isLeaseExpired(lease(), now), false);
    assert.equal(isLeaseExpired(lease("2024-01-01T11:59:59Z"), now), true);
    assert.equal(
      isLeaseExpired(lease("2024-01-01T12:00:00Z"), now),
      false,
      "expires strictly after the instant",
    );
    assert.equal(isLeaseExpired(lease("2024-01-01T12:00:01Z"), now), false);
    assert.equal(isLeaseExpired(lease("2024-01-01T13:30:00+02:00"), now), true);
    assert.equal(isLeaseExpired(lease("2024-01-01T06:30:00-06:00"), now), false);
    assert.equal(isLeaseExpired(lease("2024-01-01T11:59:59.999999999Z"), now), true);
    // Unparsable values are ignored: the lease stays a root.
    for (const bad of [
      "yesterday",
      "2024-01-01 11:00:00Z",
      "2024-01-01T11:00:00",
      "2023-02-30T00:00:00Z",
      "",
    ])
      assert.equal(isLeaseExpired(lease(bad), now), false, bad);
  });

  void it("parses the edges of RFC 3339", () => {
    assert.equal(parseRFC3339("0001-01-01T00:00:00Z")?.getUTCFullYear(), 1);
    assert.equal(parseRFC3339("2024-02-29T23:59:59Z")?.toISOString(), "2024-02-29T23:59:59.000Z");
    assert.equal(parseRFC3339("2024-01-01T00:00:00.5+00:30")?.toISOString(), "2023-12-31T23:30:00.500Z");
    assert.equal(parseRFC3339("2023-02-29T00:00:00Z"), undefined);
    assert.equal(parseRFC3339("2024-01-01T24:00:00Z"), undefined);
    assert.equal(parseRFC3339("2024-01-01T00:00:00z"), undefined);
  });

  void it("makes random ids in containerd's shape", () => {
    const id = randomLeaseId(new Date(Date.UTC(2024, 0, 1, 0, 0, 0, 123)));
    assert.match(id, /^123\d{6}-[A-Za-z0-9_-]{4}$/);
    assert.notEqual(randomLeaseId(), randomLeaseId());
  });
});
