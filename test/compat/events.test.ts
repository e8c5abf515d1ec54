// Stock `ctr events` against berthd and a private containerd 1.6 while the other ctr commands
// run: the same topics, namespaces and JSON payloads in the same order (timestamps aside), the
// same filtered subscriptions, and the same error for a bad filter.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { ArchiveResult } from "../fixtures/oci-image.js";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { startContainerd, type ContainerdHandle } from "../harness/containerd.js";
import { spawnCtr, type CtrProcess } from "../harness/ctr.js";
import { normalizeRandomIds, normalizeTempPaths, normalizeTimestamps } from "../harness/normalize.js";
import { removeTempDir } from "../harness/temp-dir.js";
import { makeTinyWork, sideBySide } from "./side-by-side.js";

/** `ctr events` prints "<time> <namespace> <topic> <payload>"; keeps the last three. */
function eventLines(out: string): string[] {
  return normalizeTempPaths(normalizeRandomIds(normalizeTimestamps(out)))
    .split("\n")
    .filter(Boolean)
    .map((line) => line.replace(/^<TIME> /, ""));
}

interface Subscription {
  berthd: CtrProcess;
  containerd: CtrProcess;
  /** The marker of the probe event both daemons delivered first; lines before it are dropped. */
  start: string;
}

void describe("ctr events: berthd vs containerd", () => {
  let berthd: BerthdHandle;
  let containerd: ContainerdHandle;
  let work: string;
  let rootfs: string;
  let image: ArchiveResult;
  let probes = 0;

  const { same, flushGc } = sideBySide(() => ({ berthd, containerd }));

  /** A probe that publishes /namespaces/create in `namespace`; returns the text the event shows. */
  const createProbe =
    (namespace = "evprobe") =>
    async (): Promise<string> => {
      const name = `evprobe-${++probes}`;
      assert.equal((await same(["namespaces", "create", name], { namespace })).code, 0);
      return `"name":"${name}"`;
    };

  /**
   * Starts `ctr events ...filters` on both daemons. ctr subscribes in the background, so this
   * runs probe (which must publish an event the filters let through) until both have shown it.
   */
  async function subscribe(filters: readonly string[], probe: () => Promise<string>): Promise<Subscription> {
    const sub = {
      berthd: spawnCtr(berthd.address, ["events", ...filters]),
      containerd: spawnCtr(containerd.address, ["events", ...filters]),
    };
    for (let i = 0; i < 20; i++) {
      const marker = await probe();
      const seen = await Promise.all(
        [sub.berthd, sub.containerd].map((p) =>
          p.waitFor(marker, 500).then(
            () => true,
            () => false,
          ),
        ),
      );
      if (seen.every(Boolean)) return { ...sub, start: marker };
    }
    await Promise.all([sub.berthd.stop(), sub.containerd.stop()]);
    throw new Error(`ctr events ${filters.join(" ")} never delivered a probe`);
  }

  /**
   * Publishes a last probe, waits until both have shown it, stops both ctr processes and asserts
   * that they printed the same lines between the two probes; returns berthd's lines.
   */
  async function finish(sub: Subscription, probe: () => Promise<string>): Promise<string[]> {
    try {
      const end = await probe();
      await Promise.all([sub.berthd.waitFor(end), sub.containerd.waitFor(end)]);
      const between = (out: string): string[] => {
        const lines = eventLines(out);
        const from = lines.findIndex((l) => l.includes(sub.start));
        const to = lines.findIndex((l) => l.includes(end));
        return lines.slice(from + 1, to);
      };
      const ours = between(sub.berthd.stdout());
      assert.deepEqual(ours, between(sub.containerd.stdout()), "berthd (actual) vs containerd (expected)");
      return ours;
    } finally {
      await Promise.all([sub.berthd.stop(), sub.containerd.stop()]);
    }
  }

  void before(async () => {
    ({ work, rootfs, image } = await makeTinyWork("compat-events"));
    [berthd, containerd] = await Promise.all([startBerthd(), startContainerd()]);
  });

  void after(async () => {
    await Promise.all([berthd?.stop(), containerd?.stop()]);
    await removeTempDir(work);
  });

  void test("every command publishes the same events as in containerd", async () => {
    const ns = "ev-main";
    await flushGc();
    const sub = await subscribe([], createProbe());
    // Namespaces: create and update go out in the caller's namespace, delete in the deleted one.
    await same(["namespaces", "create", "ev-x", "a=1", "b="], { namespace: ns });
    await same(["namespaces", "create", "ev-x"], { namespace: ns }); // fails: no event
    await same(["namespaces", "label", "ev-x", "a=2"], { namespace: ns });
    await same(["namespaces", "label", "ev-x", "a="], { namespace: ns });
    // Leases and content writes publish nothing; content removal does.
    await same(["leases", "create", "--id", "l1", "k=v"], { namespace: ns });
    await same(["content", "ingest", "blob"], { namespace: ns, input: "event blob\n" });
    const digest = (await same(["content", "ls", "-q"], { namespace: ns })).stdout.trim();
    await same(["content", "label", digest, "k=v"], { namespace: ns });
    await same(["content", "active"], { namespace: ns });
    await same(["content", "rm", digest], { namespace: ns });
    // Images and containers.
    await same(["images", "import", "--no-unpack", image.path], { namespace: ns });
    await same(["images", "tag", "example.com/tiny:1", "example.com/tiny:2"], { namespace: ns });
    await same(["images", "label", "example.com/tiny:2", "a=b"], { namespace: ns });
    await same(["images", "rm", "example.com/tiny:1"], { namespace: ns });
    await same(["containers", "create", "--rootfs", rootfs, "c1", "/bin/true"], { namespace: ns });
    await same(["containers", "label", "c1", "x=y"], { namespace: ns });
    await same(["containers", "rm", "c1"], { namespace: ns });
    await same(["images", "rm", "--sync", "example.com/tiny:2"], { namespace: ns });
    await same(["leases", "rm", "l1"], { namespace: ns });
    await same(["namespaces", "rm", "ev-x"], { namespace: ns });
    const lines = await finish(sub, createProbe());
    assert.deepEqual(lines, [
      'ev-main /namespaces/create {"name":"ev-x","labels":{"a":"1","b":""}}',
      'ev-main /namespaces/update {"name":"ev-x","labels":{"a":"2"}}',
      'ev-main /namespaces/update {"name":"ev-x","labels":{"a":""}}',
      `ev-main /content/delete {"digest":"${digest}"}`,
      'ev-main /images/create {"name":"example.com/tiny:1"}',
      'ev-main /images/create {"name":"example.com/tiny:2"}',
      'ev-main /images/update {"name":"example.com/tiny:2","labels":{"a":"b"}}',
      'ev-main /images/delete {"name":"example.com/tiny:1"}',
      'ev-main /containers/create {"id":"c1","runtime":{"name":"io.containerd.runc.v2","options":{"type_url":"containerd.runc.v1.Options"}}}',
      'ev-main /containers/update {"id":"c1","labels":{"x":"y"}}',
      'ev-main /containers/delete {"id":"c1"}',
      'ev-main /images/delete {"name":"example.com/tiny:2"}',
      'ev-x /namespaces/delete {"name":"ev-x"}',
    ]);
  });

  void test('a topic filter: topic=="/namespaces/create"', async () => {
    const sub = await subscribe(['topic=="/namespaces/create"'], createProbe());
    await same(["namespaces", "create", "ev-t1", "k=v"], { namespace: "ev-topic" });
    await same(["namespaces", "label", "ev-t1", "k=w"], { namespace: "ev-topic" });
    await same(["leases", "create", "--id", "l"], { namespace: "ev-topic-implicit" });
    await same(["namespaces", "rm", "ev-t1"], { namespace: "ev-topic" });
    await same(["namespaces", "create", "ev-t2"]);
    const lines = await finish(sub, createProbe());
    // An implicitly created namespace publishes nothing.
    assert.deepEqual(lines, [
      'ev-topic /namespaces/create {"name":"ev-t1","labels":{"k":"v"}}',
      'default /namespaces/create {"name":"ev-t2"}',
    ]);
  });

  void test("a namespace filter: namespace==ev-f", async () => {
    const sub = await subscribe(["namespace==ev-f"], createProbe("ev-f"));
    await same(["namespaces", "create", "ev-f1"], { namespace: "ev-f" });
    await same(["namespaces", "create", "ev-g1"], { namespace: "ev-g" });
    await same(["namespaces", "label", "ev-g1", "a=b"], { namespace: "ev-f" });
    await same(["namespaces", "rm", "ev-f1", "ev-g1"], { namespace: "ev-f" });
    await same(["containers", "create", "--rootfs", rootfs, "cf", "/bin/true"], { namespace: "ev-f" });
    await same(["containers", "create", "--rootfs", rootfs, "cg", "/bin/true"], { namespace: "ev-g" });
    await same(["containers", "rm", "cf"], { namespace: "ev-f" });
    await same(["containers", "rm", "cg"], { namespace: "ev-g" });
    const lines = await finish(sub, createProbe("ev-f"));
    assert.deepEqual(lines, [
      'ev-f /namespaces/create {"name":"ev-f1"}',
      'ev-f /namespaces/update {"name":"ev-g1","labels":{"a":"b"}}',
      'ev-f /containers/create {"id":"cf","runtime":{"name":"io.containerd.runc.v2","options":{"type_url":"containerd.runc.v1.Options"}}}',
      'ev-f /containers/delete {"id":"cf"}',
    ]);
  });

  void test("a payload filter (event.name) and ORed filters", async () => {
    await same(["namespaces", "create", "ev-y"]);
    let n = 0;
    const labelProbe = async (): Promise<string> => {
      const value = `p${++n}`;
      await same(["namespaces", "label", "ev-y", `probe=${value}`]);
      return `"probe":"${value}"`;
    };
    const sub = await subscribe(["event.name==ev-y"], labelProbe);
    await same(["namespaces", "create", "ev-y2"]);
    await same(["namespaces", "label", "ev-y2", "probe=x"]);
    await same(["namespaces", "label", "ev-y", "other=1"], { namespace: "ev-z" });
    await same(["containers", "create", "--rootfs", rootfs, "ev-y", "/bin/true"], { namespace: "ev-y" });
    await same(["containers", "rm", "ev-y"], { namespace: "ev-y" });
    const lines = await finish(sub, labelProbe);
    assert.deepEqual(lines, ['ev-z /namespaces/update {"name":"ev-y","labels":{"other":"1"}}']);

    const ored = await subscribe(['topic=="/containers/delete"', "namespace==ev-o"], createProbe("ev-o"));
    await same(["containers", "create", "--rootfs", rootfs, "o1", "/bin/true"], { namespace: "ev-o" });
    await same(["containers", "create", "--rootfs", rootfs, "o2", "/bin/true"], { namespace: "ev-p" });
    await same(["containers", "rm", "o1"], { namespace: "ev-o" });
    await same(["containers", "rm", "o2"], { namespace: "ev-p" });
    assert.deepEqual(await finish(ored, createProbe("ev-o")), [
      'ev-o /containers/create {"id":"o1","runtime":{"name":"io.containerd.runc.v2","options":{"type_url":"containerd.runc.v1.Options"}}}',
      'ev-o /containers/delete {"id":"o1"}',
      'ev-p /containers/delete {"id":"o2"}',
    ]);
  });

  void test("a bad filter fails before any event, as containerd's does", async () => {
    // A filter containerd accepted would leave ctr waiting for events: bound each run.
    const opts = { timeoutMs: 10_000 };
    const r = await same(["events", "topic=="], opts);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      "ctr: rpc error: code = Unknown desc = subscription error: failed parsing subscription filters: " +
        "filters: parse error: [topic==]: expected value or quoted: invalid argument\n",
    );
    for (const filter of ["namespace!=", "==x", 'topic=="/open', "a,,b", "topic==/x"]) {
      assert.equal((await same(["events", filter], opts)).code, 1);
    }
    // A good filter next to a bad one does not save it.
    assert.equal((await same(["events", 'topic=="/x"', "namespace=="], opts)).code, 1);
  });
});
