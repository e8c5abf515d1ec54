// Bad input, side by side: every case runs against berthd and a real containerd 1.6, must fail
// with the same gRPC code on both (the code containerd uses) and must change nothing.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { startContainerd, type ContainerdHandle } from "../harness/containerd.js";
import { BerthError } from "../../src/errdefs/errors.js";
import {
  Containers,
  Content,
  Events,
  Images,
  Introspection,
  Leases,
  Namespaces,
  Snapshots,
  content,
  createClient,
  grpcStatusOf,
  writeBlob,
  type BerthClient,
} from "../../src/client/index.js";

const sha256 = (b: Uint8Array): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;

const specAny = {
  typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec",
  value: Buffer.from('{"ociVersion":"1.0.2"}'),
};
const manifestType = "application/vnd.oci.image.manifest.v1+json";
/** One label whose key plus value is 4097 bytes: one over containerd's limit. */
const oversized = { big: "v".repeat(4097 - "big".length) };
/** A filter containerd's parser rejects (an operator with nothing before it). */
const badFilter = "==x";
/** The lease every case keeps its fixtures under: unleased content is garbage to containerd's GC. */
const keepLease = "keep";

interface Ctx {
  /** The daemon's client, without namespace. */
  root: BerthClient;
  /** The case's own namespace, with the fixture lease. */
  ns: BerthClient;
  name: string;
  /**
   * Marks the state the bad message must leave untouched, for cases whose valid first steps
   * (a STAT opening an ingest, a WRITE) change it legitimately; by default it is taken before run.
   */
  checkpoint: () => Promise<void>;
}

interface Case {
  name: string;
  /** The gRPC code containerd answers with (checked against containerd, then berthd). */
  code: GrpcStatus;
  /** Builds the fixtures the bad call needs; runs before the "before" snapshot. */
  setup?: (ctx: Ctx) => Promise<void>;
  /** The bad call; must fail. */
  run: (ctx: Ctx) => Promise<unknown>;
  /** Marks a case berthd cannot pass yet (the reason is printed). */
  todo?: string;
  /** Why the messages may differ; otherwise berthd's must equal containerd's (ctr prints them). */
  messageDiffers?: string;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function putBlob(ns: BerthClient, data: Uint8Array): Promise<string> {
  const r = await writeBlob(ns.service(Content), data, {
    ref: `fixture-${sha256(data)}`,
    expected: sha256(data),
  });
  return r.digest;
}

async function createImage(ns: BerthClient, name: string): Promise<void> {
  await ns.service(Images).create({
    image: { name, target: { mediaType: manifestType, digest: sha256(Buffer.from(name)), size: 10n } },
  });
}

async function createContainer(ns: BerthClient, id: string): Promise<void> {
  await ns.service(Containers).create({
    container: { id, runtime: { name: "io.containerd.runc.v2" }, spec: specAny, labels: { a: "b" } },
  });
}

/** Opens a Write stream on ref and waits for the STAT answer. */
async function openWrite(ns: BerthClient, ref: string, total = 0n, expected = "") {
  const w = ns.service(Content).write();
  await w.send({ action: content.WriteAction.STAT, ref, total, expected });
  const st = await w.recv();
  assert.ok(st, "no STAT response");
  return w;
}

const data = Buffer.from("bad input fixture blob\n");

/** A row of a family of cases: what differs in the name, the bad call, and any other fields. */
type Row = readonly [what: string, run: Case["run"], extra?: Partial<Omit<Case, "name" | "run">>];

/** Cases alike but for what they call: one name pattern and one expected code for all rows. */
function family(nameOf: (what: string) => string, code: GrpcStatus, rows: readonly Row[]): Case[] {
  return rows.map(([what, run, extra]) => ({ name: nameOf(what), code, run, ...extra }));
}

/** Stores the fixture blob (`data`) in the case's namespace. */
const withBlob: Case["setup"] = async ({ ns }) => {
  await putBlob(ns, data);
};

/** Writes `data` on a fresh ingest, then commits it declaring total and expected. */
function commitWith(ref: string, total: number, expected: string): Case["run"] {
  return async ({ ns, checkpoint }) => {
    const w = await openWrite(ns, ref);
    await w.send({ action: content.WriteAction.WRITE, offset: 0n, data });
    assert.equal((await w.recv())?.offset, BigInt(data.length));
    await checkpoint();
    await w.send({
      action: content.WriteAction.COMMIT,
      offset: BigInt(data.length),
      total: BigInt(total),
      expected,
    });
    return w.recv();
  };
}

const cases: Case[] = [
  // Content.Write
  ...family((what) => `Content.Write COMMIT with the wrong ${what}`, GrpcStatus.FAILED_PRECONDITION, [
    ["digest", commitWith("wrong-digest", data.length, sha256(Buffer.from("other")))],
    ["size", commitWith("wrong-size", data.length + 1, sha256(data))],
  ]),
  {
    name: "Content.Write WRITE at the wrong offset",
    code: GrpcStatus.OUT_OF_RANGE,
    run: async ({ ns, checkpoint }) => {
      const w = await openWrite(ns, "wrong-offset");
      await checkpoint();
      await w.send({ action: content.WriteAction.WRITE, offset: 5n, data });
      return w.recv();
    },
  },
  {
    name: "Content.Write whose first message has no ref",
    code: GrpcStatus.INVALID_ARGUMENT,
    run: async ({ ns }) => {
      const w = ns.service(Content).write();
      await w.send({ action: content.WriteAction.STAT, total: 3n });
      return w.recv();
    },
  },
  {
    name: "Content.Write: a second writer on a ref in use",
    code: GrpcStatus.UNAVAILABLE,
    messageDiffers:
      "the lock's age and start time differ, and containerd's backend ref carries a bucket sequence " +
      "(test/compat/content.test.ts checks the shape); clients only retry on the code",
    run: async ({ ns, checkpoint }) => {
      const first = await openWrite(ns, "contended");
      await checkpoint();
      try {
        return await openWrite(ns, "contended");
      } finally {
        first.end();
        await collect(first.responses);
      }
    },
  },
  {
    name: "Content.Read past the end",
    code: GrpcStatus.OUT_OF_RANGE,
    setup: withBlob,
    run: ({ ns }) =>
      collect(ns.service(Content).read({ digest: sha256(data), offset: BigInt(data.length + 1) })),
  },
  ...family((rpc) => `${rpc} with a malformed digest`, GrpcStatus.INVALID_ARGUMENT, [
    ["Content.Info", ({ ns }) => ns.service(Content).info({ digest: "sha256:not-hex" })],
    [
      "Content.Update",
      ({ ns }) =>
        ns.service(Content).update({
          info: { digest: "sha256:not-hex", labels: { a: "b" } },
          updateMask: { paths: ["labels.a"] },
        }),
    ],
    ["Content.Delete", ({ ns }) => ns.service(Content).delete({ digest: "md5:abc" })],
    ["Content.Read", ({ ns }) => collect(ns.service(Content).read({ digest: "sha256:not-hex" }))],
  ]),
  // identifiers
  {
    name: "a namespace header that is not an identifier (bad/ns)",
    code: GrpcStatus.INVALID_ARGUMENT,
    run: ({ root }) => root.service(Images).list({}, { namespace: "bad/ns" }),
  },
  {
    name: "a namespaced call without a namespace header",
    code: GrpcStatus.FAILED_PRECONDITION,
    run: ({ root }) => root.service(Images).list({}),
  },
  ...family((what) => `a container id ${what}`, GrpcStatus.INVALID_ARGUMENT, [
    ["of 77 characters", ({ ns }) => createContainer(ns, "c".repeat(77))],
    ["starting with a dash (-x)", ({ ns }) => createContainer(ns, "-x")],
  ]),
  {
    name: "Namespaces.Create a..b",
    code: GrpcStatus.INVALID_ARGUMENT,
    run: ({ root }) => root.service(Namespaces).create({ namespace: { name: "a..b" } }),
  },
  // oversized labels
  ...family((rpc) => `an oversized label on ${rpc}`, GrpcStatus.INVALID_ARGUMENT, [
    [
      "Namespaces.Create",
      ({ root, name }) =>
        root.service(Namespaces).create({ namespace: { name: `${name}-x`, labels: oversized } }),
    ],
    [
      "Images.Create",
      ({ ns }) =>
        ns.service(Images).create({
          image: {
            name: "example.com/big:1",
            labels: oversized,
            target: { mediaType: manifestType, digest: sha256(data), size: 10n },
          },
        }),
    ],
    [
      "Containers.Create",
      ({ ns }) =>
        ns.service(Containers).create({
          container: {
            id: "big",
            runtime: { name: "io.containerd.runc.v2" },
            spec: specAny,
            labels: oversized,
          },
        }),
    ],
    [
      "Content.Update",
      ({ ns }) =>
        ns.service(Content).update({
          info: { digest: sha256(data), labels: oversized },
          updateMask: { paths: ["labels.big"] },
        }),
      { setup: withBlob },
    ],
  ]),
  // malformed filters
  ...family((rpc) => `a malformed filter on ${rpc}`, GrpcStatus.INVALID_ARGUMENT, [
    ["Images.List", ({ ns }) => ns.service(Images).list({ filters: [badFilter] })],
    ["Containers.List", ({ ns }) => ns.service(Containers).list({ filters: [badFilter] })],
    [
      "Containers.ListStream",
      ({ ns }) => collect(ns.service(Containers).listStream({ filters: [badFilter] })),
    ],
    ["Content.List", ({ ns }) => collect(ns.service(Content).list({ filters: [badFilter] }))],
    ["Content.ListStatuses", ({ ns }) => ns.service(Content).listStatuses({ filters: [badFilter] })],
    ["Leases.List", ({ ns }) => ns.service(Leases).list({ filters: [badFilter] })],
    ["Introspection.Plugins", ({ root }) => root.service(Introspection).plugins({ filters: [badFilter] })],
    // containerd returns the snapshotter's Walk error unconverted: gRPC Unknown.
    [
      "Snapshots.List",
      ({ ns }) => collect(ns.service(Snapshots).list({ snapshotter: "overlayfs", filters: [badFilter] })),
      { code: GrpcStatus.UNKNOWN },
    ],
    [
      "Events.Subscribe",
      // A good subscription would never end; a bad one fails before the first event.
      ({ root }) =>
        collect(
          root.service(Events).subscribe({ filters: [badFilter] }, { signal: AbortSignal.timeout(5000) }),
        ),
      { code: GrpcStatus.UNKNOWN },
    ],
  ]),
  {
    name: "Snapshots.List without a namespace header",
    code: GrpcStatus.UNKNOWN,
    run: ({ root }) => collect(root.service(Snapshots).list({ snapshotter: "overlayfs" })),
  },
  {
    name: "Snapshots.List of an unknown snapshotter",
    code: GrpcStatus.INVALID_ARGUMENT,
    run: ({ ns }) => collect(ns.service(Snapshots).list({ snapshotter: "nope" })),
  },
  // unknown field paths
  ...family((rpc) => `an unknown field path on ${rpc}`, GrpcStatus.INVALID_ARGUMENT, [
    [
      "Images.Update",
      ({ ns }) =>
        ns.service(Images).update({
          image: {
            name: "example.com/u:1",
            target: { mediaType: manifestType, digest: sha256(data), size: 10n },
          },
          updateMask: { paths: ["nope"] },
        }),
      { setup: async ({ ns }) => createImage(ns, "example.com/u:1") },
    ],
    [
      "Containers.Update",
      ({ ns }) =>
        ns.service(Containers).update({
          container: { id: "u", runtime: { name: "io.containerd.runc.v2" }, spec: specAny, image: "x" },
          updateMask: { paths: ["nope"] },
        }),
      { setup: async ({ ns }) => createContainer(ns, "u") },
    ],
    [
      "Content.Update",
      ({ ns }) =>
        ns.service(Content).update({
          info: { digest: sha256(data), labels: { a: "b" } },
          updateMask: { paths: ["size"] },
        }),
      { setup: withBlob },
    ],
    [
      "Namespaces.Update",
      ({ root, name }) =>
        root.service(Namespaces).update({
          namespace: { name, labels: { a: "b" } },
          updateMask: { paths: ["nope"] },
        }),
      { setup: async ({ ns }) => createImage(ns, "example.com/keep:1") },
    ],
  ]),
  // container immutables, namespace in use, image targets, lease resources
  {
    name: "Containers.Update changing the runtime",
    code: GrpcStatus.INVALID_ARGUMENT,
    setup: async ({ ns }) => createContainer(ns, "immutable"),
    run: ({ ns }) =>
      ns.service(Containers).update({
        container: {
          id: "immutable",
          runtime: { name: "io.containerd.other.v1" },
          spec: specAny,
          labels: { a: "b" },
        },
      }),
  },
  {
    name: "Namespaces.Delete of a namespace in use",
    code: GrpcStatus.FAILED_PRECONDITION,
    setup: async ({ ns }) => createImage(ns, "example.com/in-use:1"),
    run: ({ root, name }) => root.service(Namespaces).delete({ name }),
  },
  {
    name: "Images.Create with an invalid target digest",
    code: GrpcStatus.INVALID_ARGUMENT,
    run: ({ ns }) =>
      ns.service(Images).create({
        image: {
          name: "example.com/bad:1",
          target: { mediaType: manifestType, digest: "sha256:nothex", size: 10n },
        },
      }),
  },
  {
    name: "Images.Create with an empty media type",
    code: GrpcStatus.INVALID_ARGUMENT,
    run: ({ ns }) =>
      ns.service(Images).create({
        image: { name: "example.com/bad:2", target: { mediaType: "", digest: sha256(data), size: 10n } },
      }),
  },
  {
    name: "Leases.AddResource with an unknown resource type",
    code: GrpcStatus.UNIMPLEMENTED,
    run: ({ ns }) =>
      ns.service(Leases).addResource({ id: keepLease, resource: { id: sha256(data), type: "bogus" } }),
  },
];

/** Everything a case's namespace (and the namespace list) holds, timestamps included. */
async function snapshot({ root, ns }: Ctx): Promise<unknown> {
  const ts = (t: { seconds: bigint; nanos: number } | undefined) => (t ? `${t.seconds}.${t.nanos}` : "");
  const namespaces = await root.service(Namespaces).list({});
  const images = await ns.service(Images).list({});
  const containers = await ns.service(Containers).list({});
  const blobs = (await collect(ns.service(Content).list({}))).flatMap((r) => r.info);
  const ingests = await ns.service(Content).listStatuses({});
  const leases = await ns.service(Leases).list({});
  const resources = await Promise.all(
    leases.leases.map(async (l) => (await ns.service(Leases).listResources({ id: l.id })).resources),
  );
  return {
    namespaces: namespaces.namespaces.map((n) => [n.name, n.labels]),
    images: images.images.map((i) => [i.name, i.labels, i.target?.digest, ts(i.updatedAt)]),
    containers: containers.containers.map((c) => [c.id, c.labels, c.image, c.runtime?.name, ts(c.updatedAt)]),
    blobs: blobs.map((b) => [b.digest, b.size, b.labels, ts(b.updatedAt)]),
    ingests: ingests.statuses.map((s) => [s.ref, s.offset, s.total]),
    leases: leases.leases.map((l) => [l.id, l.labels]),
    resources: resources.map((rs) => rs.map((r) => [r.type, r.id])),
  };
}

interface Outcome {
  code: GrpcStatus | undefined;
  message: string;
}

void describe("bad input: same gRPC code as containerd, and no change", () => {
  const daemons: { name: string; handle?: BerthdHandle | ContainerdHandle; client?: BerthClient }[] = [
    { name: "containerd" },
    { name: "berthd" },
  ];

  before(async () => {
    const [cd, bd] = await Promise.all([startContainerd(), startBerthd()]);
    daemons[0]!.handle = cd;
    daemons[1]!.handle = bd;
    for (const d of daemons) d.client = createClient(d.handle!.address);
  });

  after(async () => {
    for (const d of daemons) {
      d.client?.close();
      await d.handle?.stop();
    }
  });

  cases.forEach((c, i) => {
    void test(c.name, c.todo ? { todo: c.todo } : {}, async (t) => {
      const outcomes: Record<string, Outcome> = {};
      for (const d of daemons) {
        const name = `bad-${i}`;
        const root = d.client!;
        // The fixture lease exists first, so that the case's content survives containerd's GC.
        await root.service(Leases).create({ id: keepLease }, { namespace: name });
        let before: unknown;
        const ctx: Ctx = {
          root,
          ns: root.with({ namespace: name, lease: keepLease }),
          name,
          checkpoint: async () => {
            before = await snapshot(ctx);
          },
        };
        await c.setup?.(ctx);
        await ctx.checkpoint();
        const err = await c.run(ctx).then(
          (res) =>
            assert.fail(
              `${d.name}: ${c.name} succeeded: ${JSON.stringify(res, (_, v: unknown) => (typeof v === "bigint" ? String(v) : v))}`,
            ),
          (e: unknown) => e,
        );
        assert.ok(err instanceof BerthError, `${d.name}: not a BerthError: ${String(err)}`);
        outcomes[d.name] = { code: grpcStatusOf(err), message: err.message };
        assert.deepEqual(await snapshot(ctx), before, `${d.name}: ${c.name} changed the state`);
      }
      const cd = outcomes.containerd!;
      const bd = outcomes.berthd!;
      t.diagnostic(`containerd: ${GrpcStatus[cd.code ?? -1]} ${JSON.stringify(cd.message)}`);
      t.diagnostic(`berthd:     ${GrpcStatus[bd.code ?? -1]} ${JSON.stringify(bd.message)}`);
      assert.equal(cd.code, c.code, `containerd answers ${GrpcStatus[cd.code ?? -1]}: ${cd.message}`);
      assert.equal(bd.code, cd.code, `berthd answers ${GrpcStatus[bd.code ?? -1]}: ${bd.message}`);
      if (c.messageDiffers === undefined) assert.equal(bd.message, cd.message);
    });
  });
});
