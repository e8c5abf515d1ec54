// Stock ctr `content` commands against berthd and a private containerd 1.6: ingest from stdin
// (with and without --expected-digest/--expected-size), active during an ingest, get, label,
// ls (-q, filters), rm, and the /content/delete event. Outputs must match exactly.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { Content, content, grpcStatusOf } from "../../src/client/index.js";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { startContainerd, type ContainerdHandle } from "../harness/containerd.js";
import { runCtr, spawnCtr } from "../harness/ctr.js";
import { normalizeCtrOutput, normalizeTimestamps } from "../harness/normalize.js";
import { render, sideBySide } from "./side-by-side.js";

const sha256 = (data: string | Buffer): string => `sha256:${createHash("sha256").update(data).digest("hex")}`;

/** Go's time.Duration.String(): "1h2m3.5s", "2m0s", "548.913222ms", "1.5µs", "0s". */
const GO_DURATION = String.raw`(?:(?:\d+h)?(?:\d+m)?\d+(?:\.\d+)?s|\d+(?:\.\d+)?(?:ms|µs|ns))`;
/** Go's time.Time.String(), with the monotonic clock reading a time.Now() value carries. */
const GO_TIME = String.raw`\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? [+-]\d{4} [A-Z]{3,5} m=[+-]\d+\.\d{9}`;

/**
 * containerd's local store refusing a second writer (content/local tryLock): the backend ref
 * (containerd's is "<ns>/<bucket sequence>/<ref>", berthd's "<ns>/<ref>"), how long and since
 * when it has been locked.
 */
const lockedMessage = (namespace: string, ref: string): RegExp =>
  new RegExp(
    `^ref ${namespace}/(?:\\d+/)?${ref} locked for ${GO_DURATION} \\(since ${GO_TIME}\\): unavailable$`,
  );

/** 3 MiB of text: more than one of ctr's 1 MiB copy buffers and many Read responses. */
function bigText(): string {
  const lines: string[] = [];
  for (let i = 0, size = 0; size < 3 * 1024 * 1024; i++) {
    const line = `line ${i} ${"abcdefghijklmnopqrstuvwxyz".repeat(4)}\n`;
    lines.push(line);
    size += line.length;
  }
  return lines.join("");
}

void describe("ctr content: berthd vs containerd", () => {
  let berthd: BerthdHandle;
  let containerd: ContainerdHandle;
  let counter = 0;
  const newNamespace = (): string => `content-${++counter}`;

  const { both, same, flushGc, api } = sideBySide(() => ({ berthd, containerd }));

  /** Ingests data on both daemons and roots the blob (gc.root) so that it outlives later deletes. */
  async function ingestRooted(namespace: string, ref: string, data: string): Promise<string> {
    await same(["content", "ingest", ref], { namespace, input: data, succeed: true });
    const digest = sha256(data);
    await same(["content", "label", digest, "containerd.io/gc.root=test"], { namespace });
    return digest;
  }

  void before(async () => {
    [berthd, containerd] = await Promise.all([startBerthd(), startContainerd()]);
  });

  void after(async () => {
    await Promise.all([berthd?.stop(), containerd?.stop()]);
  });

  void test("ingest from stdin, then ls, ls -q and get return the same blob", async () => {
    const ns = newNamespace();
    await flushGc();
    const small = "hello\n";
    const big = bigText();
    assert.equal((await same(["content", "ingest", "small"], { namespace: ns, input: small })).code, 0);
    assert.equal((await same(["content", "ingest", "big"], { namespace: ns, input: big })).code, 0);
    const ls = await same(["content", "ls"], { namespace: ns });
    const rows = normalizeCtrOutput(ls.stdout).split("\n").filter(Boolean);
    assert.equal(rows[0], "DIGEST SIZE AGE LABELS");
    assert.deepEqual(
      rows.slice(1).sort(),
      [`${sha256(small)} 6B <AGE> -`, `${sha256(big)} 3.146MB <AGE> -`].sort(),
    );
    const q = await same(["content", "ls", "-q"], { namespace: ns });
    assert.deepEqual(q.stdout.split("\n").filter(Boolean).sort(), [sha256(small), sha256(big)].sort());
    assert.equal((await same(["content", "get", sha256(small)], { namespace: ns })).stdout, small);
    const got = await runCtr(berthd.address, ["content", "get", sha256(big)], { namespace: ns });
    assert.equal(got.code, 0, got.stderr);
    assert.equal(sha256(got.stdout), sha256(big));
    // Another namespace does not see the blob.
    await same(["content", "get", sha256(small)], { namespace: `${ns}-other` });
    await same(["content", "ls"], { namespace: `${ns}-other` });
  });

  void test("ingest with the right --expected-digest and --expected-size", async () => {
    const ns = newNamespace();
    await flushGc();
    const data = "expected bytes\n";
    for (const [ref, flags] of [
      ["both", ["--expected-digest", sha256(data), "--expected-size", String(data.length)]],
      ["digest-only", ["--expected-digest", sha256(data)]],
      ["size-only", ["--expected-size", String(data.length)]],
    ] as const) {
      const r = await same(["content", "ingest", ...flags, ref], { namespace: ns, input: data });
      assert.equal(r.code, 0, r.stderr);
    }
    assert.equal((await same(["content", "ls", "-q"], { namespace: ns })).stdout, `${sha256(data)}\n`);
    assert.equal((await same(["content", "active"], { namespace: ns })).stdout.split("\n")[1], "");
  });

  void test("ingest with a wrong --expected-digest fails as containerd's does", async () => {
    const ns = newNamespace();
    const data = "digest mismatch\n";
    const wrong = sha256("something else");
    const r = await same(["content", "ingest", "--expected-digest", wrong, "dref"], {
      namespace: ns,
      input: data,
    });
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      `ctr: failed commit on ref "dref": commit failed: unexpected commit digest ${sha256(data)}, ` +
        `expected ${wrong}: failed precondition\n`,
    );
    await same(["content", "ingest", "--expected-digest", "bogus", "bref"], { namespace: ns, input: data });
    await same(["content", "ingest", "--expected-digest", "sha256:abc", "bref"], {
      namespace: ns,
      input: data,
    });
    // The failed ingest stays active (resumable), as in containerd.
    await same(["content", "active"], { namespace: ns });
  });

  void test("ingest with a larger --expected-size than stdin has fails in ctr alike", async () => {
    const ns = newNamespace();
    const data = "size mismatch\n"; // 14 bytes
    const long = await same(["content", "ingest", "--expected-size", "15", "lref"], {
      namespace: ns,
      input: data,
    });
    assert.equal(long.code, 1);
    assert.equal(long.stderr, "ctr: failed to read expected number of bytes: unexpected EOF\n");
    await same(["content", "active"], { namespace: ns });
  });

  void test("ingest with a smaller --expected-size than stdin has: the commit fails as containerd's does", async () => {
    const ns = newNamespace();
    const data = "size mismatch\n"; // 14 bytes
    // containerd's metadata writer checks the size before the backend does, with its own text.
    const short = await same(["content", "ingest", "--expected-size", "13", "sref"], {
      namespace: ns,
      input: data,
    });
    assert.equal(short.code, 1);
    assert.equal(
      short.stderr,
      'ctr: failed commit on ref "sref": commit failed: "sref" failed size validation: 14 != 13: failed precondition\n',
    );
  });

  void test("content active lists an ingest in progress, which then finishes", async () => {
    const ns = newNamespace();
    await flushGc();
    const ingests = {
      berthd: spawnCtr(berthd.address, ["content", "ingest", "slowref"], {
        namespace: ns,
        keepStdinOpen: true,
      }),
      containerd: spawnCtr(containerd.address, ["content", "ingest", "slowref"], {
        namespace: ns,
        keepStdinOpen: true,
      }),
    };
    ingests.berthd.write("first part, ");
    ingests.containerd.write("first part, ");
    // ctr opens the ingest before it reads stdin; wait until both daemons show it.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await both(["content", "active"], ns);
      if (r.berthd.stdout.includes("slowref") && r.containerd.stdout.includes("slowref")) {
        assert.equal(render(r.berthd), render(r.containerd));
        // ctr fills a 1 MiB buffer before it writes, so nothing has arrived yet.
        assert.equal(normalizeCtrOutput(r.berthd.stdout), "REF SIZE AGE\nslowref 0B <AGE>\n");
        break;
      }
      assert.ok(
        Date.now() < deadline,
        `no active ingest:\nberthd: ${r.berthd.stdout}\ncontainerd: ${r.containerd.stdout}`,
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // While ctr holds the ref, a second writer is refused, as containerd refuses it.
    const second = await api(ns, async (client) => {
      const w = client.service(Content).write();
      try {
        await w.send({ action: content.WriteAction.STAT, ref: "slowref" });
        return await w.recv().then(
          () => assert.fail("a second writer on a locked ref was let in"),
          (err: unknown) => err,
        );
      } finally {
        w.cancel();
      }
    });
    for (const [daemon, err] of Object.entries(second)) {
      assert.equal(grpcStatusOf(err), GrpcStatus.UNAVAILABLE, `${daemon}: ${String(err)}`);
      assert.match((err as Error).message, lockedMessage(ns, "slowref"), daemon);
    }
    await same(["content", "active", "slowref"], { namespace: ns });
    ingests.berthd.write("second part\n");
    ingests.containerd.write("second part\n");
    const [b, c] = await Promise.all([ingests.berthd.finish(), ingests.containerd.finish()]);
    assert.equal(render(b), render(c));
    assert.equal(b.code, 0, b.stderr);
    assert.equal(
      normalizeCtrOutput((await same(["content", "active"], { namespace: ns })).stdout),
      "REF SIZE AGE\n",
    );
    const digest = sha256("first part, second part\n");
    assert.equal((await same(["content", "ls", "-q"], { namespace: ns })).stdout, `${digest}\n`);
    assert.equal(
      (await same(["content", "get", digest], { namespace: ns })).stdout,
      "first part, second part\n",
    );
  });

  void test("label sets and clears labels, which content ls shows and filters on", async () => {
    const ns = newNamespace();
    await flushGc();
    const digest = await ingestRooted(ns, "lab", "labelled blob\n");
    const other = await ingestRooted(ns, "lab2", "another blob\n");
    let r = await same(["content", "label", digest, "k=v", "x=y"], { namespace: ns });
    assert.equal(normalizeCtrOutput(r.stdout), "containerd.io/gc.root=test,k=v,x=y\n");
    r = await same(["content", "ls"], { namespace: ns });
    assert.match(
      normalizeCtrOutput(r.stdout),
      new RegExp(`${digest} 14B <AGE> containerd.io/gc.root=test,k=v,x=y\n`),
    );
    r = await same(["content", "label", digest, "k="], { namespace: ns });
    assert.equal(normalizeCtrOutput(r.stdout), "containerd.io/gc.root=test,x=y\n");
    await same(["content", "label", digest, "k=again"], { namespace: ns });
    await same(["content", "ls"], { namespace: ns });
    for (const filter of [
      "labels.k==again",
      "labels.x==y",
      "labels.k!=again",
      `digest==${other}`,
      'labels."containerd.io/gc.root"==test',
      "labels.k",
    ]) {
      await same(["content", "ls", filter], { namespace: ns });
      await same(["content", "ls", "-q", filter], { namespace: ns });
    }
    const bad = await same(["content", "ls", "labels.k=="], { namespace: ns });
    assert.equal(bad.code, 1);
    await same(["content", "ls", "size>1"], { namespace: ns });
    // Labelling a missing blob, or with a bad digest.
    await same(["content", "label", sha256("missing"), "a=b"], { namespace: ns });
    await same(["content", "label", "sha256:zz", "a=b"], { namespace: ns });
  });

  void test("label with an empty or oversized key fails as containerd's does", async () => {
    const ns = newNamespace();
    await flushGc();
    const digest = await ingestRooted(ns, "badlabels", "badly labelled blob\n");
    // containerd's metadata store prefixes its validation ("info.Labels: ") and write errors.
    let r = await same(["content", "label", digest, `k=${"v".repeat(5000)}`], { namespace: ns });
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      "ctr: info.Labels: label key and value greater than maximum size (4096 bytes), key: k: invalid argument\n",
    );
    r = await same(["content", "label", digest, "=v"], { namespace: ns });
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      `ctr: writing labels for info ${digest}: failed to set label ""="v": key required: unknown\n`,
    );
    await same(["content", "ls"], { namespace: ns });
  });

  void test("rm removes the blob from ls and get, and publishes /content/delete", async () => {
    const ns = newNamespace();
    await flushGc();
    const keep = await ingestRooted(ns, "keep", "kept blob\n");
    const gone = await ingestRooted(ns, "gone", "removed blob\n");
    const filters = ["events", 'topic~="^/content/"', `namespace==${ns}`];
    const events = {
      berthd: spawnCtr(berthd.address, filters),
      containerd: spawnCtr(containerd.address, filters),
    };
    let probe = "";
    try {
      // ctr subscribes in the background: remove probe blobs until both daemons have shown one.
      for (let i = 0; ; i++) {
        probe = await ingestRooted(ns, `probe-${i}`, `probe ${i}\n`);
        await same(["content", "rm", probe], { namespace: ns });
        const seen = await Promise.all(
          [events.berthd, events.containerd].map((e) =>
            e.waitFor(probe, 1000).then(
              () => true,
              () => false,
            ),
          ),
        );
        if (seen.every(Boolean)) break;
        assert.ok(i < 10, "ctr events never saw a /content/delete");
      }
      const r = await same(["content", "rm", gone], { namespace: ns });
      assert.equal(r.stdout, `${gone}\n`);
      await Promise.all([events.berthd.waitFor(gone), events.containerd.waitFor(gone)]);
    } finally {
      await Promise.all([events.berthd.stop(), events.containerd.stop()]);
    }
    // From the last probe on, without timestamps.
    const tail = (out: string): string => {
      const rows = normalizeTimestamps(out)
        .replace(/^<TIME> /gm, "")
        .split("\n");
      return rows.slice(rows.findIndex((row) => row.includes(probe))).join("\n");
    };
    assert.equal(tail(events.berthd.stdout()), tail(events.containerd.stdout()));
    assert.equal(
      tail(events.berthd.stdout()),
      `${ns} /content/delete {"digest":"${probe}"}\n${ns} /content/delete {"digest":"${gone}"}\n`,
    );
    assert.equal((await same(["content", "ls", "-q"], { namespace: ns })).stdout, `${keep}\n`);
    await same(["content", "get", gone], { namespace: ns });
    // Removing it again, or a blob that never was, succeeds quietly in ctr; a bad digest fails.
    await same(["content", "rm", gone], { namespace: ns });
    await same(["content", "rm", sha256("never"), keep], { namespace: ns });
    await same(["content", "rm", "sha256:zz"], { namespace: ns });
    await same(["content", "ls"], { namespace: ns });
  });

  void test("get of a missing blob or a bad digest fails alike", async () => {
    const ns = newNamespace();
    const r = await same(["content", "get", sha256("nothing here")], { namespace: ns });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `ctr: content digest ${sha256("nothing here")}: not found\n`);
    await same(["content", "get", "sha256:1234"], { namespace: ns });
    await same(["content", "get", "md5:1234"], { namespace: ns });
  });
});
