// Stock ctr `content` commands against berthd and a private containerd 1.6: ingest from stdin
// (with and without --expected-digest/--expected-size), active during an ingest, get, label,
// ls (-q, filters), rm, and the /content/delete event. Outputs must match exactly.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { startContainerd, type ContainerdHandle } from "../harness/containerd.js";
import { CTR_PATH, runCtr, spawnCtr, type CtrOptions, type CtrResult } from "../harness/ctr.js";
import { normalizeCtrOutput, normalizeTimestamps } from "../harness/normalize.js";

/** Exit code, stdout and stderr, normalised, as one string that reads well in a diff. */
function render(r: CtrResult): string {
  return `exit ${r.code}\n--- stdout\n${normalizeCtrOutput(r.stdout)}\n--- stderr\n${normalizeCtrOutput(r.stderr)}`;
}

function shorten(args: readonly string[]): string {
  return args.map((a) => (a.length > 60 ? `${a.slice(0, 60)}...` : a)).join(" ");
}

const sha256 = (data: string | Buffer): string => `sha256:${createHash("sha256").update(data).digest("hex")}`;

/** `ctr content ingest` whose stdin the test feeds piece by piece. */
interface SlowIngest {
  write(data: string): void;
  /** Closes stdin and resolves with ctr's result. */
  finish(): Promise<CtrResult>;
}

function startIngest(address: string, namespace: string, args: readonly string[]): SlowIngest {
  // Keep only the flags in charge of where ctr goes, as the harness does.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CONTAINERD_")));
  const child = spawn(
    CTR_PATH,
    ["--address", address, "--namespace", namespace, "content", "ingest", ...args],
    {
      env,
      stdio: ["pipe", "pipe", "pipe"],
    },
  );
  let out = "";
  let err = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr.on("data", (c: Buffer) => (err += c.toString()));
  child.stdin.on("error", () => undefined);
  const closed = new Promise<number>((resolve) => {
    child.on("close", (code) => resolve(code ?? -1));
    child.on("error", () => resolve(-1));
  });
  return {
    write: (data) => void child.stdin.write(data),
    async finish() {
      child.stdin.end();
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      const code = await closed;
      clearTimeout(timer);
      return { code, stdout: out, stderr: err };
    },
  };
}

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

  async function same(args: readonly string[], opts: CtrOptions = {}): Promise<CtrResult> {
    const [b, c] = await Promise.all([
      runCtr(berthd.address, args, opts),
      runCtr(containerd.address, args, opts),
    ]);
    assert.equal(render(b), render(c), `ctr ${shorten(args)}: berthd (actual) vs containerd (expected)`);
    return b;
  }

  /**
   * Runs a synchronous garbage collection on both daemons (a lease deleted with --sync), so that
   * none is pending from an earlier test: a blob nothing refers to is garbage, and a collection
   * that ran on one daemon and not yet on the other would make their listings differ.
   */
  async function flushGc(): Promise<void> {
    const id = `flush-${++counter}`;
    await same(["leases", "create", "--id", id], { namespace: "gcflush" });
    await same(["leases", "rm", "--sync", id], { namespace: "gcflush" });
  }

  /** Ingests data on both daemons and roots the blob (gc.root) so that it outlives later deletes. */
  async function ingestRooted(namespace: string, ref: string, data: string): Promise<string> {
    const r = await same(["content", "ingest", ref], { namespace, input: data });
    assert.equal(r.code, 0, r.stderr);
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
      berthd: startIngest(berthd.address, ns, ["slowref"]),
      containerd: startIngest(containerd.address, ns, ["slowref"]),
    };
    ingests.berthd.write("first part, ");
    ingests.containerd.write("first part, ");
    // ctr opens the ingest before it reads stdin; wait until both daemons show it.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const [b, c] = await Promise.all([
        runCtr(berthd.address, ["content", "active"], { namespace: ns }),
        runCtr(containerd.address, ["content", "active"], { namespace: ns }),
      ]);
      if (b.stdout.includes("slowref") && c.stdout.includes("slowref")) {
        assert.equal(render(b), render(c));
        // ctr fills a 1 MiB buffer before it writes, so nothing has arrived yet.
        assert.equal(normalizeCtrOutput(b.stdout), "REF SIZE AGE\nslowref 0B <AGE>\n");
        break;
      }
      assert.ok(Date.now() < deadline, `no active ingest:\nberthd: ${b.stdout}\ncontainerd: ${c.stdout}`);
      await new Promise((r) => setTimeout(r, 50));
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
