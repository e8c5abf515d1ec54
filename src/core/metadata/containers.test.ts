import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import type { AnyValue } from "../any-value.js";
import { type ContainerInput, createContainerStore } from "./containers.js";
import { type MetadataDB, openMetadataDB } from "./db.js";

const specUrl = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
// Every byte value, so that any text decoding on the way would show.
const allBytes = new Uint8Array(256).map((_, i) => i);
const spec: AnyValue = { typeUrl: specUrl, value: allBytes };
const options: AnyValue = {
  typeUrl: "containerd.runc.v1.Options",
  value: new Uint8Array([0x0a, 0x01, 0x00, 0xff]),
};
const runtime = { name: "io.containerd.runc.v2", options };
const ctx = { namespace: "default" };

function container(id: string, extra: Partial<ContainerInput> = {}): ContainerInput {
  return { id, runtime, spec, ...extra };
}

void describe("container store", () => {
  let dir: string;
  let db: MetadataDB;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "berth-containers-"));
    db = openMetadataDB(join(dir, "meta.db"));
  });
  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  void it("creates, gets, lists, updates and deletes", () => {
    let t = Date.UTC(2024, 0, 1);
    const store = createContainerStore(db, { now: () => new Date((t += 1000)) });
    const created = store.create(
      ctx,
      container("web", {
        labels: { a: "1", empty: "" },
        image: "docker.io/library/nginx:latest",
        snapshotter: "overlayfs",
        snapshotKey: "web",
        extensions: { ext: { typeUrl: "x.y.Z", value: new Uint8Array([1, 2, 3]) } },
      }),
    );
    assert.deepEqual(created, {
      id: "web",
      labels: { a: "1" },
      image: "docker.io/library/nginx:latest",
      runtime,
      spec,
      snapshotter: "overlayfs",
      snapshotKey: "web",
      extensions: { ext: { typeUrl: "x.y.Z", value: new Uint8Array([1, 2, 3]) } },
      sandbox: "",
      createdAt: new Date(Date.UTC(2024, 0, 1, 0, 0, 1)),
      updatedAt: new Date(Date.UTC(2024, 0, 1, 0, 0, 1)),
    });
    assert.deepEqual(store.get(ctx, "web"), created);
    store.create(ctx, container("api", { runtime: { name: "io.containerd.runc.v2" } }));
    assert.deepEqual(
      store.list(ctx).map((c) => c.id),
      ["api", "web"],
    );
    const api = store.get(ctx, "api");
    assert.equal(api.runtime.options, undefined);
    assert.deepEqual(api.extensions, {});

    const updated = store.update(ctx, { ...created, labels: { b: "2" }, image: "other", snapshotKey: "k2" });
    assert.deepEqual(updated.labels, { b: "2" });
    assert.equal(updated.image, "other");
    assert.equal(updated.snapshotKey, "k2");
    assert.equal(updated.createdAt.getTime(), Date.UTC(2024, 0, 1, 0, 0, 1));
    assert.equal(updated.updatedAt.getTime(), Date.UTC(2024, 0, 1, 0, 0, 3));
    assert.deepEqual(store.get(ctx, "web"), updated);

    store.delete(ctx, "web");
    assert.throws(() => store.get(ctx, "web"), {
      code: "not-found",
      message: 'container "web" in namespace "default": not found',
    });
    assert.throws(() => store.delete(ctx, "web"), { code: "not-found", message: "container web: not found" });
    assert.deepEqual(
      store.list(ctx).map((c) => c.id),
      ["api"],
    );
  });

  void it("keeps spec, runtime options and extensions byte for byte, across a reopen", () => {
    const store = createContainerStore(db);
    const empty: AnyValue = { typeUrl: "", value: new Uint8Array() };
    store.create(ctx, container("c", { extensions: { all: spec, empty, odd: options } }));
    db.close();
    db = openMetadataDB(join(dir, "meta.db"));
    const reopened = createContainerStore(db);
    const got = reopened.get(ctx, "c");
    assert.ok(got.spec !== undefined);
    assert.equal(got.spec.typeUrl, specUrl);
    assert.ok(Buffer.from(got.spec.value).equals(Buffer.from(allBytes)));
    assert.deepEqual(got.runtime, runtime);
    assert.deepEqual(got.extensions, { all: spec, empty, odd: options });
    // An empty spec value is still a spec (present, zero bytes), not a missing one.
    reopened.create(ctx, container("z", { spec: { typeUrl: specUrl, value: new Uint8Array() } }));
    assert.deepEqual(reopened.get(ctx, "z").spec, { typeUrl: specUrl, value: new Uint8Array() });
  });

  void it("does not share bytes with the caller", () => {
    const store = createContainerStore(db);
    const value = new Uint8Array([1, 2, 3]);
    const created = store.create(ctx, container("c", { spec: { typeUrl: specUrl, value } }));
    value[0] = 9;
    assert.deepEqual(created.spec?.value, new Uint8Array([1, 2, 3]));
    assert.deepEqual(store.get(ctx, "c").spec?.value, new Uint8Array([1, 2, 3]));
  });

  void it("keeps namespaces apart", () => {
    const store = createContainerStore(db);
    store.create({ namespace: "a" }, container("same", { image: "a" }));
    store.create({ namespace: "b" }, container("same", { image: "b" }));
    assert.equal(store.get({ namespace: "a" }, "same").image, "a");
    assert.equal(store.get({ namespace: "b" }, "same").image, "b");
    store.delete({ namespace: "a" }, "same");
    assert.deepEqual(store.list({ namespace: "a" }), []);
    assert.equal(store.list({ namespace: "b" }).length, 1);
  });

  void it("validates as containerd's validateContainer, with its messages", () => {
    const store = createContainerStore(db);
    const failed = (message: string) => ({
      code: "invalid-argument",
      message: `create container failed validation: ${message}: invalid argument`,
    });
    const re = "^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$";
    assert.throws(
      () => store.create(ctx, container("a/b")),
      failed(`container.ID: identifier "a/b" must match ${re}`),
    );
    assert.throws(
      () => store.create(ctx, container("-x")),
      failed(`container.ID: identifier "-x" must match ${re}`),
    );
    const long = "c".repeat(77);
    assert.throws(
      () => store.create(ctx, container(long)),
      failed(`container.ID: identifier "${long}" greater than maximum length (76 characters)`),
    );
    assert.throws(
      () => store.create(ctx, container("")),
      failed("container.ID: identifier must not be empty"),
    );
    assert.throws(
      () => store.create(ctx, container("c", { extensions: { "": spec } })),
      failed("container.Extension keys must not be zero-length"),
    );
    assert.throws(
      () => store.create(ctx, container("c", { labels: { a: "b", k: "v".repeat(5000) } })),
      failed("containers.Labels: label key and value greater than maximum size (4096 bytes), key: k"),
    );
    assert.throws(
      () => store.create(ctx, container("c", { runtime: { name: "" } })),
      failed("container.Runtime.Name must be set"),
    );
    assert.throws(() => store.create(ctx, { id: "c", runtime }), failed("container.Spec must be set"));
    assert.throws(
      () => store.create(ctx, container("c", { snapshotKey: "k" })),
      failed("container.Snapshotter must be set if container.SnapshotKey is set"),
    );
    store.create(ctx, container("c".repeat(76)));
    store.create(ctx, container("c"));
    assert.throws(() => store.create(ctx, container("c")), {
      code: "already-exists",
      message: 'container "c": already exists',
    });
    assert.deepEqual(
      store.list(ctx).map((c) => c.id),
      ["c", "c".repeat(76)],
    );
  });

  void it("applies field paths and guards the immutable fields as containerd does", () => {
    const store = createContainerStore(db);
    const base = container("c", {
      labels: { keep: "1", drop: "2" },
      image: "img",
      snapshotter: "overlayfs",
      snapshotKey: "sk",
      extensions: { x: options, y: spec },
    });
    store.create(ctx, base);
    const invalid = (message: string) => ({
      code: "invalid-argument",
      message: `${message}: invalid argument`,
    });

    assert.throws(
      () => store.update(ctx, { ...base, runtime: { name: "other" } }),
      invalid("container.Runtime.Name field is immutable"),
    );
    assert.throws(
      () => store.update(ctx, { ...base, snapshotter: "native" }),
      invalid("container.Snapshotter field is immutable"),
    );
    assert.throws(
      () => store.update(ctx, { id: "c", runtime: { name: "zzz" } }, ["runtime"]),
      invalid('cannot update "runtime" field on "c"'),
    );
    assert.throws(
      () => store.update(ctx, { id: "c", runtime: { name: "zzz" }, snapshotter: "qq" }, ["snapshotter"]),
      invalid('cannot update "snapshotter" field on "c"'),
    );

    const bare = { id: "c", runtime: { name: "" } };
    let got = store.update(ctx, { ...bare, labels: { add: "3" } }, [
      "labels.add",
      "labels.drop",
      "extensions.y",
      "extensions.q",
    ]);
    assert.deepEqual(got.labels, { add: "3", keep: "1" });
    // containerd stores an extension named in the mask but missing from the request as an empty Any.
    const empty = { typeUrl: "", value: new Uint8Array() };
    assert.deepEqual(got.extensions, { q: empty, x: options, y: empty });
    assert.equal(got.runtime.name, "io.containerd.runc.v2");

    got = store.update(ctx, { ...bare, extensions: {} }, ["extensions"]);
    assert.deepEqual(got.extensions, {});
    got = store.update(ctx, { ...bare, image: "img2", snapshotKey: "" }, ["image", "snapshotkey"]);
    assert.equal(got.image, "img2");
    assert.equal(got.snapshotKey, "");
    const newSpec = { typeUrl: specUrl, value: new Uint8Array([7]) };
    got = store.update(ctx, { ...bare, spec: newSpec, labels: { only: "1" } }, ["spec", "labels"]);
    assert.deepEqual(got.spec, newSpec);
    assert.deepEqual(got.labels, { only: "1" });
    // Runtime options and the sandbox are not among the fields a full replace touches.
    got = store.update(ctx, {
      id: "c",
      runtime: { name: "io.containerd.runc.v2" },
      snapshotter: "overlayfs",
      spec,
      sandbox: "pod",
    });
    assert.deepEqual(got.runtime, runtime);
    assert.equal(got.sandbox, "");
    assert.deepEqual(got.labels, {});

    assert.throws(
      () => store.update(ctx, bare, ["spec"]),
      invalid("update failed validation: container.Spec must be set"),
    );
    assert.throws(
      () => store.update(ctx, { ...bare, labels: { k: "v".repeat(5000) } }, ["labels.k"]),
      invalid(
        "update failed validation: containers.Labels: label key and value greater than maximum size (4096 bytes), key: k",
      ),
    );
    // A snapshot key needs a snapshotter; the stored one counts.
    assert.equal(store.update(ctx, { ...bare, snapshotKey: "again" }, ["snapshotkey"]).snapshotKey, "again");
    assert.throws(() => store.update(ctx, container("missing")), {
      code: "not-found",
      message: 'container "missing": not found',
    });
    assert.throws(() => store.update(ctx, container("")), invalid("must specify a container id"));
    // None of the failures above touched the record.
    assert.deepEqual(store.get(ctx, "c").spec, spec);
  });

  void it("filters lists on id, image, runtime.name and labels", () => {
    const store = createContainerStore(db);
    store.create(ctx, container("a", { labels: { role: "web" }, image: "nginx" }));
    store.create(
      ctx,
      container("b", {
        labels: { role: "db" },
        image: "postgres",
        runtime: { name: "io.containerd.kata.v2" },
      }),
    );
    store.create(ctx, container("c"));
    const ids = (filters: string[]) => store.list(ctx, filters).map((c) => c.id);
    assert.deepEqual(ids(["labels.role==web"]), ["a"]);
    assert.deepEqual(ids(["labels.role"]), ["a", "b"]);
    assert.deepEqual(ids(["id==c"]), ["c"]);
    assert.deepEqual(ids(["image==postgres"]), ["b"]);
    assert.deepEqual(ids(["runtime.name==io.containerd.kata.v2"]), ["b"]);
    assert.deepEqual(ids(["image"]), ["a", "b"]);
    assert.deepEqual(ids(["id==a", "labels.role==db"]), ["a", "b"]);
    assert.throws(() => store.list(ctx, ["id=="]), { code: "invalid-argument" });
  });
});
