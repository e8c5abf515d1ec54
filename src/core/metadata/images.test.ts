import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { type MetadataDB, openMetadataDB } from "./db.js";
import { digestProblem } from "../content/digest.js";
import { type ImageInput, createImageStore } from "./images.js";
import { createNamespaceStore } from "./namespaces.js";

const dA = `sha256:${"a".repeat(64)}`;
const dB = `sha256:${"b".repeat(64)}`;
const manifest = "application/vnd.oci.image.manifest.v1+json";
const index = "application/vnd.oci.image.index.v1+json";
const ctx = { namespace: "default" };

function image(name: string, extra: Partial<ImageInput> = {}): ImageInput {
  return { name, target: { mediaType: manifest, digest: dA, size: 10 }, ...extra };
}

/** A clock that advances one second per call, so created and updated times differ. */
function ticking(start = Date.UTC(2024, 0, 1)) {
  let t = start;
  return () => new Date((t += 1000));
}

void describe("image store", () => {
  let dir: string;
  let db: MetadataDB;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "berth-images-"));
    db = openMetadataDB(join(dir, "meta.db"));
  });
  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  void it("creates, gets, lists, updates and deletes", () => {
    const store = createImageStore(db, { now: ticking() });
    const created = store.create(
      ctx,
      image("docker.io/library/busybox:latest", {
        labels: { a: "1", empty: "" },
        target: { mediaType: manifest, digest: dA, size: 528, annotations: { x: "y", gone: "" } },
      }),
    );
    assert.deepEqual(created, {
      name: "docker.io/library/busybox:latest",
      labels: { a: "1" },
      target: { mediaType: manifest, digest: dA, size: 528, annotations: { x: "y" } },
      createdAt: new Date(Date.UTC(2024, 0, 1, 0, 0, 1)),
      updatedAt: new Date(Date.UTC(2024, 0, 1, 0, 0, 1)),
    });
    assert.deepEqual(store.get(ctx, "docker.io/library/busybox:latest"), created);
    store.create(ctx, image("alpine"));
    assert.deepEqual(
      store.list(ctx).map((i) => i.name),
      ["alpine", "docker.io/library/busybox:latest"],
    );

    const updated = store.update(ctx, {
      name: "alpine",
      labels: { b: "2" },
      target: { mediaType: index, digest: dB, size: 99 },
    });
    assert.deepEqual(updated.labels, { b: "2" });
    assert.deepEqual(updated.target, { mediaType: index, digest: dB, size: 99, annotations: {} });
    assert.equal(updated.createdAt.getTime(), Date.UTC(2024, 0, 1, 0, 0, 2));
    assert.equal(updated.updatedAt.getTime(), Date.UTC(2024, 0, 1, 0, 0, 3));
    assert.deepEqual(store.get(ctx, "alpine"), updated);

    store.delete(ctx, "alpine");
    assert.throws(() => store.get(ctx, "alpine"), {
      code: "not-found",
      message: 'image "alpine": not found',
    });
    assert.throws(() => store.delete(ctx, "alpine"), {
      code: "not-found",
      message: 'image "alpine": not found',
    });
    assert.deepEqual(
      store.list(ctx).map((i) => i.name),
      ["docker.io/library/busybox:latest"],
    );
  });

  void it("keeps namespaces apart", () => {
    const store = createImageStore(db);
    store.create({ namespace: "a" }, image("same", { labels: { ns: "a" } }));
    store.create(
      { namespace: "b" },
      image("same", { labels: { ns: "b" }, target: { mediaType: index, digest: dB, size: 5 } }),
    );
    assert.equal(store.get({ namespace: "a" }, "same").target.digest, dA);
    assert.equal(store.get({ namespace: "b" }, "same").target.digest, dB);
    store.delete({ namespace: "a" }, "same");
    assert.deepEqual(store.list({ namespace: "a" }), []);
    assert.deepEqual(store.get({ namespace: "b" }, "same").labels, { ns: "b" });
    assert.throws(() => store.get({ namespace: "c" }, "same"), { code: "not-found" });
    assert.deepEqual(createNamespaceStore(db).list(), ["a", "b"]);
  });

  void it("validates as containerd's validateImage, with its messages", () => {
    const store = createImageStore(db);
    const invalid = (message: string) => ({
      code: "invalid-argument",
      message: `${message}: invalid argument`,
    });
    const withDigest = (digest: string) => image("i", { target: { mediaType: manifest, digest, size: 1 } });
    assert.throws(() => store.create(ctx, image("")), invalid("image name must not be empty"));
    assert.throws(
      () => store.create(ctx, withDigest("")),
      invalid('Target.Digest "" invalid: invalid checksum digest format'),
    );
    assert.throws(
      () => store.create(ctx, withDigest("sha256:abc")),
      invalid('Target.Digest "sha256:abc" invalid: invalid checksum digest length'),
    );
    const upper = `sha256:${"A".repeat(64)}`;
    assert.throws(
      () => store.create(ctx, withDigest(upper)),
      invalid(`Target.Digest "${upper}" invalid: invalid checksum digest format`),
    );
    const md5 = `md5:${"a".repeat(32)}`;
    assert.throws(
      () => store.create(ctx, withDigest(md5)),
      invalid(`Target.Digest "${md5}" invalid: unsupported digest algorithm`),
    );
    assert.throws(
      () => store.create(ctx, withDigest("nocolon")),
      invalid('Target.Digest "nocolon" invalid: invalid checksum digest format'),
    );
    assert.throws(
      () => store.create(ctx, image("i", { target: { mediaType: manifest, digest: dA, size: 0 } })),
      invalid("Target.Size must be greater than zero"),
    );
    assert.throws(
      () => store.create(ctx, image("i", { target: { mediaType: manifest, digest: dA, size: -1 } })),
      invalid("Target.Size must be greater than zero"),
    );
    assert.throws(
      () => store.create(ctx, image("i", { target: { mediaType: "", digest: dA, size: 1 } })),
      invalid("Target.MediaType must be set"),
    );
    assert.throws(
      () => store.create(ctx, image("i", { labels: { k: "v".repeat(5000) } })),
      invalid("image.Labels: label key and value greater than maximum size (4096 bytes), key: k"),
    );
    // go-digest knows sha512 as well, so containerd takes it.
    store.create(ctx, withDigest(`sha512:${"a".repeat(128)}`));
    assert.throws(() => store.create(ctx, image("i")), {
      code: "already-exists",
      message: 'image "i": already exists',
    });
    assert.throws(() => store.list({ namespace: "" }), { code: "failed-precondition" });
  });

  void it("answers digest questions as go-digest does", () => {
    assert.equal(digestProblem(dA), undefined);
    assert.equal(digestProblem(`sha384:${"0".repeat(96)}`), undefined);
    assert.equal(digestProblem(`constructor:${"0".repeat(64)}`), "unsupported digest algorithm");
    assert.equal(digestProblem(`sha256:${"g".repeat(64)}`), "invalid checksum digest format");
    assert.equal(digestProblem("sha256:"), "invalid checksum digest format");
    assert.equal(digestProblem(":abc"), "invalid checksum digest format");
    assert.equal(digestProblem("SHA256:abc"), "invalid checksum digest format");
  });

  void it("applies field paths as containerd does", () => {
    const store = createImageStore(db);
    store.create(
      ctx,
      image("i", {
        labels: { keep: "1", drop: "2" },
        target: { mediaType: manifest, digest: dA, size: 10, annotations: { an: "v" } },
      }),
    );
    const emptyTarget = { mediaType: "", digest: "", size: 0 };

    let got = store.update(
      ctx,
      { name: "i", labels: { add: "3" }, target: { ...emptyTarget, annotations: { n: "x" } } },
      ["labels.add", "labels.drop", "annotations.n"],
    );
    assert.deepEqual(got.labels, { add: "3", keep: "1" });
    assert.deepEqual(got.target, {
      mediaType: manifest,
      digest: dA,
      size: 10,
      annotations: { an: "v", n: "x" },
    });

    got = store.update(ctx, { name: "i", labels: { only: "1" }, target: emptyTarget }, ["labels"]);
    assert.deepEqual(got.labels, { only: "1" });
    got = store.update(ctx, { name: "i", target: { ...emptyTarget, annotations: { fresh: "1" } } }, [
      "annotations",
    ]);
    assert.deepEqual(got.target.annotations, { fresh: "1" });

    got = store.update(ctx, { name: "i", target: { mediaType: index, digest: dB, size: 7 } }, ["target"]);
    assert.deepEqual(got.target, { mediaType: index, digest: dB, size: 7, annotations: {} });
    assert.deepEqual(got.labels, { only: "1" });

    assert.throws(() => store.update(ctx, { name: "i", target: emptyTarget }, ["labels.x", "foo"]), {
      code: "invalid-argument",
      message: 'cannot update "foo" field on image "i": invalid argument',
    });
    // A target without size fails validation after the mask is applied.
    assert.throws(
      () => store.update(ctx, { name: "i", target: { ...emptyTarget, digest: dA } }, ["target"]),
      {
        code: "invalid-argument",
        message: "Target.Size must be greater than zero: invalid argument",
      },
    );
    assert.throws(
      () =>
        store.update(ctx, { name: "i", labels: { k: "v".repeat(5000) }, target: emptyTarget }, ["labels.k"]),
      { code: "invalid-argument", message: /^image\.Labels: label key and value greater than maximum size/ },
    );
    assert.throws(() => store.update(ctx, image("missing")), {
      code: "not-found",
      message: 'image "missing": not found',
    });
    assert.throws(() => store.update(ctx, image("")), {
      code: "invalid-argument",
      message: "image name is required for update: invalid argument",
    });
    // Nothing above changed the stored record.
    assert.deepEqual(store.get(ctx, "i").target, { mediaType: index, digest: dB, size: 7, annotations: {} });
  });

  void it("treats a __proto__ label as an ordinary key", () => {
    const store = createImageStore(db);
    const labels = JSON.parse('{"__proto__": "p"}') as Record<string, string>;
    store.create(ctx, image("i"));
    const got = store.update(ctx, { name: "i", labels, target: { mediaType: "", digest: "", size: 0 } }, [
      "labels.__proto__",
    ]);
    assert.equal(Object.getPrototypeOf(got.labels), Object.prototype);
    assert.deepEqual(Object.entries(store.get(ctx, "i").labels), [["__proto__", "p"]]);
  });

  void it("filters lists with containerd's grammar", () => {
    const store = createImageStore(db);
    store.create(ctx, image("a", { labels: { env: "prod" } }));
    store.create(
      ctx,
      image("b", { labels: { env: "dev" }, target: { mediaType: index, digest: dB, size: 3 } }),
    );
    store.create(
      ctx,
      image("c", {
        target: { mediaType: manifest, digest: dA, size: 3, annotations: { "org.opencontainers.x": "1" } },
      }),
    );
    const names = (filters: string[]) => store.list(ctx, filters).map((i) => i.name);
    assert.deepEqual(names(["name==b"]), ["b"]);
    assert.deepEqual(names(["labels.env==prod"]), ["a"]);
    assert.deepEqual(names(["labels.env"]), ["a", "b"]);
    assert.deepEqual(names(["labels.env!=prod"]), ["b", "c"]);
    assert.deepEqual(names([`target.digest==${dB}`]), ["b"]);
    assert.deepEqual(names([`target.digest=="${dB}"`]), ["b"]);
    assert.deepEqual(names([`target.mediatype=="${manifest}"`]), ["a", "c"]);
    assert.deepEqual(names(['annotations."org.opencontainers.x"==1']), ["c"]);
    assert.deepEqual(names(["name==a", "name==c"]), ["a", "c"]);
    assert.deepEqual(names(["name~=^[ab]$,labels.env==dev"]), ["b"]);
    assert.throws(() => store.list(ctx, ["name==a,"]), { code: "invalid-argument" });
  });

  void it("tells the GC about writes and deletions", () => {
    const events: boolean[] = [];
    const store = createImageStore(db, { onMutation: (e) => events.push(e.deletion) });
    store.create(ctx, image("i"));
    store.update(ctx, image("i"));
    assert.throws(() => store.create(ctx, image("i")));
    store.delete(ctx, "i");
    assert.deepEqual(events, [false, false, true]);
  });
});
