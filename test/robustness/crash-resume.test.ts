// kill -9 of berthd: a cut upload leaves no blob and resumes from what reached the disk; kills
// during a storm of small commits never leave a blob whose bytes differ from its name, nor a
// content record without its blob; the SQLite metadata stays intact.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes, randomInt } from "node:crypto";
import { createReadStream } from "node:fs";
import { access, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { CTR_PATH, ctrOk } from "../harness/ctr.js";
import { makeTempDir, removeTempDir } from "../harness/temp-dir.js";
import { BerthError, isCode } from "../../src/errdefs/errors.js";
import {
  Content,
  Leases,
  content,
  createClient,
  writeBlob,
  type BerthClient,
} from "../../src/client/index.js";

const execFileAsync = promisify(execFile);
const NS = "crash";
const MiB = 1 << 20;

const sha256 = (b: Uint8Array): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const hexOf = (digest: string): string => digest.slice("sha256:".length);

async function fileSha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** sha256 of what `ctr content get` writes to stdout (runCtr decodes stdout as text, so not it). */
function ctrContentGetSha256(address: string, namespace: string, digest: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      CTR_PATH,
      ["--address", address, "--namespace", namespace, "content", "get", digest],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    const hash = createHash("sha256");
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => hash.update(c));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve(`sha256:${hash.digest("hex")}`);
      else reject(new Error(`ctr content get ${digest} exited ${code}: ${stderr}`));
    });
  });
}

/** go-units HumanSize, as `ctr content active` prints offsets ("33.55MB"). */
function humanSize(bytes: number): string {
  const units = ["B", "kB", "MB", "GB", "TB", "PB"];
  let size = bytes;
  let i = 0;
  while (size >= 1000 && i < units.length - 1) {
    size /= 1000;
    i++;
  }
  return `${parseFloat(size.toPrecision(4))}${units[i]}`;
}

async function integrityCheck(root: string): Promise<string> {
  const db = join(root, "io.containerd.metadata.v1.sqlite", "meta.db");
  const { stdout } = await execFileAsync("sqlite3", [db, "PRAGMA integrity_check"]);
  return stdout.trim();
}

async function rejection(p: Promise<unknown>): Promise<BerthError> {
  const err = await p.then(
    () => assert.fail("expected the call to fail"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof BerthError, `not a BerthError: ${String(err)}`);
  return err;
}

void describe("berthd killed with SIGKILL", () => {
  let work: string;
  let root: string;
  let state: string;
  let daemon: BerthdHandle | undefined;
  let client: BerthClient | undefined;
  const blobDir = (): string => join(root, "io.containerd.content.v1.content", "blobs", "sha256");
  /** Blobs already found to match their names (blobs are immutable, so checked once). */
  const verified = new Set<string>();

  /** (Re)starts berthd on the kept root and state; a running one is stopped first. */
  async function start(): Promise<BerthClient> {
    client?.close();
    if (daemon) await daemon.stop();
    daemon = await startBerthd({ root, state });
    client = createClient(daemon.address, { namespace: NS });
    return client;
  }

  async function kill9(): Promise<void> {
    await daemon?.kill9();
    daemon = undefined;
  }

  /** Every file in the blob dir is named by a sha256 and holds exactly those bytes. */
  async function assertBlobsMatchNames(): Promise<number> {
    const names = await readdir(blobDir());
    for (const name of names) {
      if (verified.has(name)) continue;
      assert.match(name, /^[0-9a-f]{64}$/, `stray file in the blob dir: ${name}`);
      assert.equal(await fileSha256(join(blobDir(), name)), name, `blob ${name} holds other bytes`);
      verified.add(name);
    }
    return names.length;
  }

  before(async () => {
    work = await makeTempDir("crash");
    root = join(work, "root");
    state = join(work, "state");
  });

  after(async () => {
    client?.close();
    await daemon?.stop();
    await removeTempDir(work);
  });

  const big = randomBytes(64 * MiB);
  const bigDigest = sha256(big);
  const ref = "crash-blob";
  let acknowledged = 0;
  /** A blob a storm committed under a lease (the 64 MiB one is unreferenced: the GC may take it). */
  let leasedSample: string | undefined;

  void test("a cut 64 MiB upload leaves no blob and no content record", async () => {
    const c = (await start()).service(Content);
    const w = c.write();
    await w.send({ action: content.WriteAction.STAT, ref, total: BigInt(big.length), expected: bigDigest });
    const st = await w.recv();
    assert.equal(st?.offset, 0n);
    for (let off = 0; off < big.length / 2; off += MiB) {
      await w.send({
        action: content.WriteAction.WRITE,
        offset: BigInt(off),
        data: big.subarray(off, off + MiB),
      });
      const res = await w.recv();
      acknowledged = Number(res?.offset);
      assert.equal(acknowledged, off + MiB);
    }
    // One more chunk goes out unacknowledged: the kill lands while the daemon may be writing it.
    const inFlight = w.send({
      action: content.WriteAction.WRITE,
      offset: BigInt(acknowledged),
      data: big.subarray(acknowledged, acknowledged + MiB),
    });
    inFlight.catch(() => undefined);
    const pending = w.recv();
    pending.catch(() => undefined);
    await kill9();
    const err = await rejection(pending.then((r) => (r === undefined ? r : w.recv())));
    assert.equal(err.code, "unavailable", err.message);

    assert.equal(await exists(join(blobDir(), hexOf(bigDigest))), false, "a blob appeared for a cut upload");
    assert.equal(await integrityCheck(root), "ok");
    await assertBlobsMatchNames();

    const after = (await start()).service(Content);
    const info = await rejection(after.info({ digest: bigDigest }));
    assert.equal(info.code, "not-found", info.message);
    assert.deepEqual((await after.list({ filters: [] })[Symbol.asyncIterator]().next()).done, true);
  });

  void test("after the restart the ingest is active at its offset and resumes to the right blob", async () => {
    assert.ok(daemon && client);
    const c = client.service(Content);
    const status = (await c.status({ ref })).status;
    const offset = Number(status?.offset);
    // Everything acknowledged survived the kill; the in-flight chunk may have landed in part.
    assert.ok(offset >= acknowledged && offset <= acknowledged + MiB, `offset ${offset}`);
    assert.equal(status?.total, BigInt(big.length));
    assert.equal(status?.expected, bigDigest);

    // ctr's tabwriter pads with tabs, so columns are split on runs of them.
    const active = await ctrOk(daemon.address, ["content", "active"], { namespace: NS });
    const rows = active
      .split("\n")
      .filter(Boolean)
      .map((row) => row.split(/\t+/).filter(Boolean));
    assert.deepEqual(rows[0], ["REF", "SIZE", "AGE"]);
    assert.equal(rows.length, 2, active);
    assert.deepEqual(rows[1]?.slice(0, 2), [ref, humanSize(offset)]);

    const w = c.write();
    await w.send({ action: content.WriteAction.STAT, ref, total: BigInt(big.length), expected: bigDigest });
    const st = await w.recv();
    assert.equal(Number(st?.offset), offset, "STAT must report the bytes kept on disk");
    assert.equal(st?.total, BigInt(big.length));
    // The digest of the stored prefix: the daemon re-hashed what survived.
    assert.equal(st?.digest, sha256(big.subarray(0, offset)));
    let off = offset;
    while (off < big.length) {
      const end = Math.min(off + MiB, big.length);
      const last = end === big.length;
      await w.send({
        action: last ? content.WriteAction.COMMIT : content.WriteAction.WRITE,
        offset: BigInt(off),
        data: big.subarray(off, end),
        ...(last ? { total: BigInt(big.length), expected: bigDigest } : {}),
      });
      const res = await w.recv();
      assert.equal(Number(res?.offset), end);
      if (last) assert.equal(res?.digest, bigDigest);
      off = end;
    }
    w.end();
    for await (const _ of w.responses) {
      // the daemon's copy of the last response
    }

    const info = (await c.info({ digest: bigDigest })).info;
    assert.equal(info?.digest, bigDigest);
    assert.equal(info?.size, BigInt(big.length));
    assert.equal(await ctrContentGetSha256(daemon.address, NS, bigDigest), bigDigest);
    assert.equal(await fileSha256(join(blobDir(), hexOf(bigDigest))), hexOf(bigDigest));
    assert.equal((await c.listStatuses({})).statuses.length, 0);
    const none = await ctrOk(daemon.address, ["content", "active"], { namespace: NS });
    assert.equal(none.split("\n").filter(Boolean).length, 1, none);
  });

  void test("20 kills during small write+commit storms never leave a blob that differs from its name", async (t) => {
    const lease = "crash-storm";
    await (await start()).service(Leases).create({ id: lease });
    /** Digests whose commit the daemon acknowledged before it was killed. */
    const acked: string[] = [];
    for (let round = 0; round < 20; round++) {
      const c = (round === 0 ? client : await start())!.with({ lease }).service(Content);
      let roundCommits = 0;
      let stop = false;
      const writers = Array.from({ length: 4 }, async (_, wi) => {
        for (let i = 0; !stop; i++) {
          const data = randomBytes(randomInt(1, 256 * 1024));
          try {
            const digest = sha256(data);
            await writeBlob(c, data, {
              ref: `storm-${round}-${wi}-${i}`,
              expected: digest,
              chunkSize: 64 * 1024,
            });
            acked.push(digest);
            roundCommits++;
          } catch (err) {
            // The kill: every call in flight fails, typically Unavailable; anything else is a bug.
            if (!(err instanceof BerthError) || !["unavailable", "canceled"].includes(err.code)) throw err;
            return;
          }
        }
      });
      const settled = Promise.allSettled(writers);
      // Kill at a random moment once commits are flowing.
      while (roundCommits === 0) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, randomInt(0, 150)));
      await kill9();
      stop = true;
      for (const r of await settled) {
        if (r.status === "rejected") throw r.reason;
      }
      await assertBlobsMatchNames();
    }
    assert.ok(acked.length >= 20, `only ${acked.length} commits happened`);

    // After a last restart every content record has its blob, with those bytes and that size.
    const c = (await start()).service(Content);
    const records = new Set<string>();
    for await (const batch of c.list({})) {
      for (const info of batch.info) {
        const path = join(blobDir(), hexOf(info.digest));
        assert.equal((await stat(path)).size, Number(info.size), `record ${info.digest} without its blob`);
        records.add(info.digest);
      }
    }
    // An acknowledged commit is durable (the lease keeps it from the GC).
    for (const digest of acked) assert.ok(records.has(digest), `acknowledged ${digest} is gone`);
    leasedSample = acked[0];
    t.diagnostic(
      `${acked.length} acknowledged commits, ${records.size} records, ${verified.size} blobs checked`,
    );
    await assertBlobsMatchNames();
  });

  void test("the metadata DB passes integrity_check once berthd has stopped", async () => {
    assert.ok(daemon);
    assert.equal(await daemon.stop(), 0);
    daemon = undefined;
    assert.equal(await integrityCheck(root), "ok");
    // And the daemon comes back on it.
    const c = (await start()).service(Content);
    assert.ok(leasedSample);
    assert.equal((await c.info({ digest: leasedSample })).info?.digest, leasedSample);
    assert.equal(await ctrContentGetSha256(daemon!.address, NS, leasedSample), leasedSample);
    await assert.rejects(c.info({ digest: sha256(Buffer.from("never written")) }), (e) =>
      isCode(e, "not-found"),
    );
  });
});
