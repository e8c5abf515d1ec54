// Tests for the filesystem content backend: the shared conformance suite plus its on-disk layout,
// permissions, path safety, restart and SIGKILL behaviour, and a 64 MiB throughput round trip.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { isCode } from "../../errdefs/errors.js";
import { createLocalContentStore, type LocalContentStore } from "./local-store.js";
import { runContentStoreConformance } from "./store-conformance.js";

const MiB = 1 << 20;

async function tempRoot(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), "berth-content-"));
}

function digestOf(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

function sha256Hex(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

async function withStore(fn: (store: LocalContentStore, root: string) => Promise<void>): Promise<void> {
  const root = await tempRoot();
  try {
    await fn(await createLocalContentStore(root), root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

runContentStoreConformance("local", async () => {
  const root = await tempRoot();
  return {
    store: await createLocalContentStore(root),
    reopen: () => createLocalContentStore(root),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

void describe("local content store", () => {
  void it("creates its layout with mode 0700", () =>
    withStore(async (store, root) => {
      assert.equal(store.root, root);
      for (const dir of [
        root,
        path.join(root, "blobs"),
        path.join(root, "blobs", "sha256"),
        path.join(root, "ingest"),
      ]) {
        const st = await stat(dir);
        assert.ok(st.isDirectory(), dir);
        assert.equal(st.mode & 0o777, 0o700, dir);
      }
    }));

  void it("keeps an ingest as ref/data/startedat/updatedat/total/expected under the hashed ref", () =>
    withStore(async (store, root) => {
      const data = Buffer.from("hello, ingest");
      const ref = "layer-sha256:abc";
      const w = await store.writer({ ref, total: 100, expected: digestOf(data) });
      await w.write(data);
      const dir = path.join(root, "ingest", sha256Hex(ref));
      assert.deepEqual((await readdir(dir)).sort(), [
        "data",
        "expected",
        "ref",
        "startedat",
        "total",
        "updatedat",
      ]);
      assert.equal(await readFile(path.join(dir, "ref"), "utf8"), ref);
      assert.deepEqual(await readFile(path.join(dir, "data")), data);
      assert.equal(await readFile(path.join(dir, "total"), "utf8"), "100");
      assert.equal(await readFile(path.join(dir, "expected"), "utf8"), digestOf(data));
      await w.close();
    }));

  void it("commits into blobs/sha256/<hex> with mode 0444 and removes the ingest dir", () =>
    withStore(async (store, root) => {
      const data = Buffer.from("committed bytes");
      const w = await store.writer({ ref: "mode" });
      await w.write(data);
      const d = await w.commit(data.length, digestOf(data));
      const p = path.join(root, "blobs", "sha256", d.slice("sha256:".length));
      assert.equal(store.blobPath(d), p);
      const st = await stat(p);
      assert.equal(st.mode & 0o777, 0o444);
      assert.deepEqual(await readFile(p), data);
      assert.deepEqual(await readdir(path.join(root, "ingest")), []);
      const info = await store.info(d);
      assert.deepEqual(info.labels, {});
      assert.equal(info.size, data.length);
      const walked: string[] = [];
      await store.walk((i) => {
        assert.deepEqual(i.labels, {});
        walked.push(i.digest);
      });
      assert.deepEqual(walked, [d]);
    }));

  void it("refuses digests that could escape the blob dir", () =>
    withStore(async (store) => {
      for (const d of ["sha256:../../etc", "sha256:../../../etc/passwd", "sha256:/etc/passwd", "../sha256"]) {
        assert.throws(
          () => store.blobPath(d),
          (err: unknown) => isCode(err, "invalid-argument"),
        );
        await assert.rejects(store.info(d), (err: unknown) => {
          assert.ok(isCode(err, "invalid-argument"));
          assert.match((err as Error).message, /invalid digest/);
          return true;
        });
      }
    }));

  void it("never turns a ref into a path", () =>
    withStore(async (store, root) => {
      const refs = ["../../../../tmp/escape", "/etc/passwd", "a/b/c", "..", "ref\nwith\nnewlines"];
      for (const ref of refs) {
        const w = await store.writer({ ref });
        await w.write(Buffer.from(ref));
        await w.close();
      }
      const names = await readdir(path.join(root, "ingest"));
      assert.deepEqual(names.sort(), refs.map(sha256Hex).sort());
      assert.deepEqual(await readdir(root).then((n) => n.sort()), ["blobs", "ingest"]);
      const listed = (await store.listStatuses()).map((s) => s.ref).sort();
      assert.deepEqual(listed, [...refs].sort());
      await assert.rejects(store.writer({ ref: "" }), (err: unknown) => isCode(err, "invalid-argument"));
    }));

  void it("keeps status across a restart (startedat, updatedat, total, expected)", () =>
    withStore(async (store, root) => {
      const data = Buffer.alloc(5000, 7);
      const w = await store.writer({ ref: "restart", total: data.length, expected: digestOf(data) });
      await w.write(data.subarray(0, 1000));
      const live = await w.status();
      await w.close();
      const reopened = await createLocalContentStore(root);
      const st = await reopened.status("restart");
      assert.equal(st.ref, "restart");
      assert.equal(st.offset, 1000);
      assert.equal(st.total, data.length);
      assert.equal(st.expected, digestOf(data));
      assert.equal(st.startedAt.getTime(), live.startedAt.getTime());
      assert.ok(st.updatedAt.getTime() >= live.updatedAt.getTime());
      const w2 = await reopened.writer({ ref: "restart" });
      const s2 = await w2.status();
      assert.equal(s2.total, data.length);
      assert.equal(s2.expected, digestOf(data));
      assert.equal(s2.startedAt.getTime(), live.startedAt.getTime());
      await w2.write(data.subarray(1000));
      assert.equal(await w2.commit(0, ""), digestOf(data));
    }));

  void it("restarts an ingest resumed with a different total, as containerd does", () =>
    withStore(async (store) => {
      const w = await store.writer({ ref: "retotal", total: 10 });
      await w.write(Buffer.alloc(5, 1));
      await w.close();
      const w2 = await store.writer({ ref: "retotal", total: 20 });
      const st = await w2.status();
      assert.equal(st.offset, 0);
      assert.equal(st.total, 20);
      await w2.close();
      assert.equal((await store.status("retotal")).offset, 0);
    }));

  void it("abort of a live writer ends it and frees the ref", () =>
    withStore(async (store) => {
      const w = await store.writer({ ref: "live-abort" });
      await w.write(Buffer.alloc(100, 1));
      await store.abort("live-abort");
      await assert.rejects(w.write(Buffer.alloc(1)), (err: unknown) => isCode(err, "failed-precondition"));
      await assert.rejects(store.status("live-abort"), (err: unknown) => isCode(err, "not-found"));
      const again = await store.writer({ ref: "live-abort" });
      assert.equal((await again.status()).offset, 0);
      await again.close();
    }));

  void it("an ingest left half-created by a crash is restarted", () =>
    withStore(async (store, root) => {
      const w = await store.writer({ ref: "half" });
      await w.write(Buffer.alloc(10, 1));
      await w.close();
      // A crash before the ref file was written leaves a directory without it.
      await rm(path.join(root, "ingest", sha256Hex("half"), "ref"));
      const reopened = await createLocalContentStore(root);
      assert.deepEqual(await reopened.listStatuses(), []);
      await assert.rejects(reopened.status("half"), (err: unknown) => isCode(err, "not-found"));
      const w2 = await reopened.writer({ ref: "half" });
      assert.equal((await w2.status()).offset, 0);
      await w2.write(Buffer.from("ok"));
      assert.equal(await w2.commit(2, digestOf(Buffer.from("ok"))), digestOf(Buffer.from("ok")));
    }));

  void it("concurrent writer() calls on one ref: exactly one wins", () =>
    withStore(async (store) => {
      const results = await Promise.allSettled([1, 2, 3, 4].map(() => store.writer({ ref: "race" })));
      const won = results.filter((r) => r.status === "fulfilled");
      assert.equal(won.length, 1);
      for (const r of results) {
        if (r.status === "rejected") assert.ok(isCode(r.reason, "unavailable"), String(r.reason));
      }
      await won[0]?.value.close();
    }));

  void it("un-awaited writes followed by commit commit everything in order", () =>
    withStore(async (store) => {
      const parts = [Buffer.alloc(1000, 1), Buffer.alloc(2000, 2), Buffer.alloc(3000, 3)];
      const all = Buffer.concat(parts);
      const w = await store.writer({ ref: "pipelined" });
      const writes = parts.map((p) => w.write(p));
      const commit = w.commit(all.length, digestOf(all));
      assert.deepEqual(await Promise.all(writes), [1000, 3000, 6000]);
      assert.equal(await commit, digestOf(all));
    }));

  void it("SIGKILL at any point never exposes a partial or wrong blob", async () => {
    const root = await tempRoot();
    try {
      const storeModule = path.join(path.dirname(fileURLToPath(import.meta.url)), "local-store.ts");
      // The child commits random 512 KiB blobs in a loop and is killed at a random moment.
      const child = `
        import { randomBytes } from "node:crypto";
        import { createLocalContentStore } from ${JSON.stringify(storeModule)};
        const size = 512 * 1024;
        const store = await createLocalContentStore(${JSON.stringify(root)});
        for (let n = 0; ; n++) {
          // Few refs, so most writers resume what a killed predecessor left behind.
          const w = await store.writer({ ref: "kill-" + (n % 3) });
          for (let off = (await w.status()).offset; off < size; ) off = await w.write(randomBytes(Math.min(65536, size - off)));
          await w.commit(size, "");
          process.stdout.write("c");
        }
      `;
      for (let round = 0; round < 6; round++) {
        const proc = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", child], {
          stdio: ["ignore", "pipe", "pipe"],
        });
        let out = "";
        let errText = "";
        proc.stdout.on("data", (b: Buffer) => (out += b.toString()));
        proc.stderr.on("data", (b: Buffer) => (errText += b.toString()));
        // Wait until it is committing, then kill it somewhere in the middle of its work.
        await new Promise<void>((resolve, reject) => {
          const started = Date.now();
          const poll = setInterval(() => {
            if (out.length > 0 || Date.now() - started > 20_000) {
              clearInterval(poll);
              if (out.length === 0) reject(new Error(`child never committed: ${errText}`));
              else setTimeout(resolve, Math.floor(Math.random() * 40));
            }
          }, 5);
          proc.on("exit", (code) => {
            if (out.length === 0) reject(new Error(`child exited ${code}: ${errText}`));
          });
        });
        const exited = new Promise((resolve) => proc.on("exit", resolve));
        proc.kill("SIGKILL");
        await exited;

        // Every blob that is visible is complete and matches its name.
        const blobDir = path.join(root, "blobs", "sha256");
        for (const name of await readdir(blobDir)) {
          const data = await readFile(path.join(blobDir, name));
          assert.equal(data.length, 512 * 1024, `blob ${name} has ${data.length} bytes`);
          assert.equal(createHash("sha256").update(data).digest("hex"), name);
        }
        // Every ingest left behind can be resumed by a fresh instance.
        const store = await createLocalContentStore(root);
        for (const st of await store.listStatuses()) {
          const w = await store.writer({ ref: st.ref });
          assert.equal((await w.status()).offset, st.offset);
          await w.close();
        }
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  void it("round-trips 64 MiB", async (t) => {
    await withStore(async (store) => {
      const chunk = Buffer.allocUnsafe(MiB);
      const hash = createHash("sha256");
      const total = 64 * MiB;
      // Different bytes per chunk so a misplaced chunk changes the digest.
      const chunks: Buffer[] = [];
      for (let i = 0; i < 64; i++) {
        const c = Buffer.from(chunk);
        c.fill(i);
        c.writeUInt32BE((i * 2654435761) >>> 0, 0);
        chunks.push(c);
        hash.update(c);
      }
      const expected = `sha256:${hash.digest("hex")}`;

      const t0 = performance.now();
      const w = await store.writer({ ref: "big", total, expected });
      for (const c of chunks) await w.write(c);
      assert.equal(await w.commit(total, expected), expected);
      const t1 = performance.now();

      const readHash = createHash("sha256");
      let n = 0;
      for await (const part of store.read(expected, 0, 0)) {
        assert.ok(part.length <= MiB);
        readHash.update(part);
        n += part.length;
      }
      const t2 = performance.now();
      assert.equal(n, total);
      assert.equal(`sha256:${readHash.digest("hex")}`, expected);

      const mbps = (ms: number) => (total / MiB / (ms / 1000)).toFixed(0);
      t.diagnostic(`64 MiB write+commit: ${(t1 - t0).toFixed(0)} ms (${mbps(t1 - t0)} MiB/s)`);
      t.diagnostic(`64 MiB read+hash: ${(t2 - t1).toFixed(0)} ms (${mbps(t2 - t1)} MiB/s)`);
    });
  });
});
