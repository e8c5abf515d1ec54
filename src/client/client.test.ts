// berth/client against a live berthd and a live containerd 1.6: the same calls, the same answers.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { startBerthd, type BerthdHandle } from "../../test/harness/berthd.js";
import { startContainerd, type ContainerdHandle } from "../../test/harness/containerd.js";
import { BerthError } from "../errdefs/errors.js";
import {
  Content,
  Images,
  Leases,
  Namespaces,
  Version,
  content,
  createClient,
  grpcStatusOf,
  grpcTarget,
  writeBlob,
  type BerthClient,
} from "./index.js";

const sha256 = (b: Uint8Array): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;

async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp): Promise<BerthError> {
  const err = await p.then(
    () => assert.fail(`expected a ${code} error`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof BerthError, `not a BerthError: ${String(err)}`);
  assert.equal(err.code, code, err.message);
  if (message) assert.match(err.message, message);
  return err;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

void test("grpcTarget accepts containerd's address forms", () => {
  assert.equal(grpcTarget("/run/berth/berthd.sock"), "unix:///run/berth/berthd.sock");
  assert.equal(grpcTarget("unix:///run/x.sock"), "unix:///run/x.sock");
  assert.equal(grpcTarget("unix://rel/x.sock"), "unix:rel/x.sock");
  assert.equal(grpcTarget("./x.sock"), "unix:./x.sock");
  assert.equal(grpcTarget("127.0.0.1:1234"), "127.0.0.1:1234");
});

const daemons: { name: string; start: () => Promise<{ address: string; stop: () => Promise<unknown> }> }[] = [
  { name: "berthd", start: () => startBerthd() },
  { name: "containerd", start: () => startContainerd() },
];

for (const daemon of daemons) {
  void describe(`berth/client against ${daemon.name}`, () => {
    let handle: BerthdHandle | ContainerdHandle | { address: string; stop: () => Promise<unknown> };
    let client: BerthClient;

    before(async () => {
      handle = await daemon.start();
      client = createClient(handle.address);
    });

    after(async () => {
      client?.close();
      await handle?.stop();
    });

    void test("Version answers without a namespace", async () => {
      const v = await client.service(Version).version({});
      assert.equal(v.$typeName, "containerd.services.version.v1.VersionResponse");
      assert.match(v.version, /^1\.6\.\d+/);
      assert.notEqual(v.revision, "");
    });

    void test("Images.List is namespaced by the client's namespace and by call options", async () => {
      const a = client.with({ namespace: "client-list-a" });
      const blob = Buffer.from("{}");
      const target = {
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: sha256(blob),
        size: 2n,
      };
      const created = await a
        .service(Images)
        .create({ image: { name: "example.com/a:1", target, labels: { k: "v" } } });
      assert.equal(created.image?.name, "example.com/a:1");

      const listed = await a.service(Images).list({});
      assert.deepEqual(
        listed.images.map((i) => [i.name, i.target?.digest, i.target?.size, i.labels]),
        [["example.com/a:1", sha256(blob), 2n, { k: "v" }]],
      );
      // The same client, another namespace per call; and a derived client for a third one.
      assert.deepEqual((await a.service(Images).list({}, { namespace: "client-list-b" })).images, []);
      assert.deepEqual(
        (await client.with({ namespace: "client-list-c" }).service(Images).list({})).images,
        [],
      );
      // A filter is passed through as given.
      const none = await a.service(Images).list({ filters: ['name=="example.com/other"'] });
      assert.deepEqual(none.images, []);

      const ns = await client.service(Namespaces).list({});
      assert.ok(ns.namespaces.some((n) => n.name === "client-list-a"));
      assert.ok(!ns.namespaces.some((n) => n.name === "client-list-b"));
    });

    void test("Content.Write round trip: STAT, WRITE, COMMIT, then Info and Read", async () => {
      // Unleased, unreferenced content is garbage: a real client writes under a lease, as here.
      const ns = client.with({ namespace: "client-content" });
      const lease = await ns.service(Leases).create({ id: "client-content-lease" });
      assert.equal(lease.lease?.id, "client-content-lease");
      const c = ns.with({ lease: "client-content-lease" }).service(Content);
      const data = randomBytes(3 * 1024 * 1024 + 17);
      const digest = sha256(data);
      const w = c.write();
      await w.send({
        action: content.WriteAction.STAT,
        ref: "round-trip",
        total: BigInt(data.length),
        expected: digest,
      });
      const stat = await w.recv();
      assert.equal(stat?.action, content.WriteAction.STAT);
      assert.equal(stat?.offset, 0n);
      assert.equal(stat?.total, BigInt(data.length));

      let offset = 0;
      const chunk = 1 << 20;
      while (offset < data.length) {
        const end = Math.min(offset + chunk, data.length);
        const last = end === data.length;
        await w.send({
          action: last ? content.WriteAction.COMMIT : content.WriteAction.WRITE,
          offset: BigInt(offset),
          data: data.subarray(offset, end),
          ...(last ? { total: BigInt(data.length), expected: digest, labels: { "x/y": "z" } } : {}),
        });
        const res = await w.recv();
        assert.equal(res?.offset, BigInt(end));
        if (last) assert.equal(res?.digest, digest);
        offset = end;
      }
      w.end();
      // containerd answers the half-close with one more copy of the last response, then OK.
      const tail = await collect(w.responses);
      assert.deepEqual(
        tail.map((r) => [r.action, r.offset, r.digest]),
        [[content.WriteAction.COMMIT, BigInt(data.length), digest]],
      );

      const info = await c.info({ digest });
      assert.equal(info.info?.size, BigInt(data.length));
      assert.deepEqual(info.info?.labels, { "x/y": "z" });
      const chunks = await collect(c.read({ digest }));
      assert.ok(chunks.length >= 1);
      assert.equal(chunks[0]?.offset, 0n);
      assert.ok(Buffer.concat(chunks.map((r) => r.data)).equals(data));
      const part = await collect(c.read({ digest, offset: 5n, size: 10n }));
      assert.ok(Buffer.concat(part.map((r) => r.data)).equals(data.subarray(5, 15)));

      // Writing the same digest again: AlreadyExists at the STAT, which writeBlob takes as done.
      const again = await writeBlob(c, data, { ref: "round-trip-2", expected: digest });
      assert.deepEqual(again, { digest, resumedFrom: 0, alreadyExists: true });
      const small = Buffer.from("small blob");
      const fresh = await writeBlob(c, small, { ref: "small", expected: sha256(small), labels: { a: "b" } });
      assert.deepEqual(fresh, { digest: sha256(small), resumedFrom: 0, alreadyExists: false });
      assert.deepEqual((await c.info({ digest: sha256(small) })).info?.labels, { a: "b" });
    });

    void test("errors carry the mapped code and the daemon's message", async () => {
      const images = client.with({ namespace: "client-errors" }).service(Images);
      const err = await rejectsWith(
        images.get({ name: "missing:latest" }),
        "not-found",
        /^image "missing:latest": not found$/,
      );
      assert.equal(grpcStatusOf(err), 5);
      // A namespaced call without a namespace header.
      await rejectsWith(client.service(Images).list({}), "failed-precondition", /namespace is required/);
      // Errors of a server stream surface from the iteration.
      const c = client.with({ namespace: "client-errors" }).service(Content);
      await rejectsWith(collect(c.read({ digest: sha256(Buffer.from("nope")) })), "not-found");
      // And of a bidi stream, from recv.
      const w = c.write();
      await w.send({ action: content.WriteAction.STAT, ref: "" });
      await rejectsWith(w.recv(), "invalid-argument", /first message must have a reference/);
      await rejectsWith(w.send({ action: content.WriteAction.STAT, ref: "again" }), "invalid-argument");
    });

    void test("an aborted signal cancels a call; a past deadline fails it", async () => {
      const images = client.with({ namespace: "client-cancel" }).service(Images);
      await rejectsWith(images.list({}, { signal: AbortSignal.abort() }), "canceled");
      await rejectsWith(images.list({}, { deadline: Date.now() - 1 }), "deadline-exceeded");
      const w = client.with({ namespace: "client-cancel" }).service(Content).write();
      const pending = w.recv();
      w.cancel();
      await rejectsWith(pending, "canceled");
    });

    void test("leaving a server stream early cancels it and the client stays usable", async () => {
      const c = client.with({ namespace: "client-content" }).service(Content);
      for await (const r of c.list({})) {
        assert.ok(r.info.length > 0);
        break;
      }
      assert.ok((await c.listStatuses({})).statuses.length >= 0);
    });
  });
}
