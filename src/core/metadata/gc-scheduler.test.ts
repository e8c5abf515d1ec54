// Tests for the GC scheduler: startup run, coalescing, runNow ordering, close, errors; and end to
// end, a content delete that reaches the disk through markDirty and a real collection.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, it } from "node:test";
import { isCode } from "../../errdefs/errors.js";
import { createLocalContentStore } from "../content/local-store.js";
import { createNamespacedContentStore } from "./content-store.js";
import { openMetadataDB } from "./db.js";
import { collectGarbage, type GcStats } from "./gc.js";
import { createGcScheduler } from "./gc-scheduler.js";

function stats(n: number): GcStats {
  return {
    durationMs: n,
    contentRemoved: 0,
    ingestsRemoved: 0,
    snapshotsRemoved: 0,
    leasesRemoved: 0,
    blobsRemoved: 0,
    orphanIngestsAborted: 0,
    errors: [],
  };
}

/** A collection that counts its runs and, when gated, waits until released. */
function countingCollect() {
  const c = {
    runs: 0,
    startedAt: [] as number[],
    gate: undefined as Promise<void> | undefined,
    open: () => {},
    hold() {
      c.gate = new Promise<void>((resolve) => {
        c.open = () => {
          c.gate = undefined;
          resolve();
        };
      });
    },
    collect: async (): Promise<GcStats> => {
      const n = ++c.runs;
      c.startedAt.push(performance.now());
      if (c.gate !== undefined) await c.gate;
      return stats(n);
    },
  };
  return c;
}

async function until(cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await sleep(5);
  }
}

void describe("gc scheduler", () => {
  void it("runs once after the startup delay", async () => {
    const c = countingCollect();
    const logged: GcStats[] = [];
    const s = createGcScheduler({
      collect: c.collect,
      startupDelayMs: 30,
      log: (st) => void logged.push(st),
    });
    await sleep(10);
    assert.equal(c.runs, 0);
    await until(() => c.runs === 1);
    await until(() => logged.length === 1);
    assert.equal(s.lastStats?.durationMs, 1);
    await sleep(50);
    assert.equal(c.runs, 1);
    await s.close();
  });

  void it("coalesces markDirty calls into one collection", async () => {
    const c = countingCollect();
    const s = createGcScheduler({ collect: c.collect, startupDelayMs: 0 });
    await until(() => c.runs === 1);
    await sleep(5);
    for (let i = 0; i < 50; i++) s.markDirty();
    await until(() => c.runs === 2);
    await sleep(50);
    assert.equal(c.runs, 2);
    await s.close();
  });

  void it("a dirty-triggered run waits for the API to be quiet, and no longer than maxDeferMs", async () => {
    const c = countingCollect();
    let busy = true;
    let quietSince = 0;
    const s = createGcScheduler({
      collect: c.collect,
      startupDelayMs: 0,
      pauseThreshold: 1,
      quietFor: () => (busy ? 0 : performance.now() - quietSince),
      quietMs: 20,
      maxDeferMs: 5000,
    });
    await until(() => c.runs === 1); // the startup run is not deferred
    s.markDirty();
    await sleep(60);
    assert.equal(c.runs, 1, "no collection while a call is in flight");
    busy = false;
    quietSince = performance.now();
    await until(() => c.runs === 2);
    assert.ok(c.startedAt[1]! - quietSince >= 20, "after quietMs of quiet");
    await s.close();

    // Never quiet: the run still happens, after maxDeferMs.
    const d = countingCollect();
    const t = createGcScheduler({
      collect: d.collect,
      startupDelayMs: 0,
      pauseThreshold: 1,
      quietFor: () => 0,
      maxDeferMs: 50,
    });
    await until(() => d.runs === 1);
    const dirtyAt = performance.now();
    t.markDirty();
    await until(() => d.runs === 2);
    assert.ok(d.startedAt[1]! - dirtyAt >= 50);
    // runNow is never deferred.
    await t.runNow();
    assert.equal(d.runs, 3);
    await t.close();
  });

  void it("a markDirty during a run schedules one more run after it", async () => {
    const c = countingCollect();
    c.hold();
    const s = createGcScheduler({ collect: c.collect, startupDelayMs: 0 });
    await until(() => c.runs === 1);
    s.markDirty();
    s.markDirty();
    await sleep(20);
    assert.equal(c.runs, 1);
    c.open();
    await until(() => c.runs === 2);
    await sleep(50);
    assert.equal(c.runs, 2);
    await s.close();
  });

  void it("runNow waits for a collection that started after the call, shared by concurrent callers", async () => {
    const c = countingCollect();
    const s = createGcScheduler({ collect: c.collect, startupDelayMs: 10_000 });
    // Idle: runNow starts one at once (and the startup timer is no longer needed).
    assert.equal((await s.runNow()).durationMs, 1);

    c.hold();
    const first = s.runNow();
    await until(() => c.runs === 2);
    // Run 2 is in progress: these callers must get run 3, which starts after it.
    const a = s.runNow();
    const b = s.runNow();
    c.open();
    assert.equal((await first).durationMs, 2);
    const [ra, rb] = await Promise.all([a, b]);
    assert.equal(ra.durationMs, 3);
    assert.strictEqual(ra, rb);
    assert.equal(c.runs, 3);
    await s.close();
  });

  void it("spaces dirty-triggered runs so GC stays under the pause threshold", async () => {
    let runs = 0;
    const s = createGcScheduler({
      startupDelayMs: 0,
      pauseThreshold: 0.1,
      collect: async () => {
        runs++;
        await sleep(20); // 20 ms of GC at 10 % means 200 ms between runs
        return stats(runs);
      },
    });
    await until(() => runs === 1);
    await until(() => s.lastStats !== undefined);
    const t = performance.now();
    s.markDirty();
    await until(() => runs === 2, 3000);
    assert.ok(performance.now() - t >= 120, `second run after ${performance.now() - t} ms`);
    await s.close();
  });

  void it("close cancels pending timers and waits for the running collection", async () => {
    const c = countingCollect();
    const s = createGcScheduler({ collect: c.collect, startupDelayMs: 20 });
    await s.close();
    await sleep(40);
    assert.equal(c.runs, 0);
    s.markDirty();
    await sleep(20);
    assert.equal(c.runs, 0);
    await assert.rejects(s.runNow(), (err: unknown) => isCode(err, "unavailable"));

    const c2 = countingCollect();
    c2.hold();
    const s2 = createGcScheduler({ collect: c2.collect, startupDelayMs: 0 });
    await until(() => c2.runs === 1);
    let closed = false;
    const closing = s2.close().then(() => {
      closed = true;
    });
    await sleep(20);
    assert.equal(closed, false);
    c2.open();
    await closing;
    assert.equal(s2.lastStats?.durationMs, 1);
  });

  void it("reports failures: runNow rejects, background runs go to onError", async () => {
    const errors: unknown[] = [];
    let fail = true;
    let runs = 0;
    const s = createGcScheduler({
      startupDelayMs: 0,
      onError: (err) => void errors.push(err),
      collect: async () => {
        runs++;
        if (fail) throw new Error("disk on fire");
        return stats(runs);
      },
    });
    await until(() => errors.length === 1);
    await assert.rejects(s.runNow(), /disk on fire/);
    fail = false;
    assert.equal((await s.runNow()).durationMs, 3);
    await s.close();
  });

  void it("a content delete reaches the disk through markDirty and a real collection", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "berth-gc-sched-"));
    const db = openMetadataDB(path.join(dir, "meta.db"));
    try {
      const backend = await createLocalContentStore(path.join(dir, "content"));
      // The scheduler exists before the store, as in the daemon; onDelete reaches it late-bound.
      const holder: { markDirty?: () => void } = {};
      const cs = createNamespacedContentStore(db, backend, { onDelete: () => holder.markDirty?.() });
      const scheduler = createGcScheduler({
        startupDelayMs: 10_000,
        collect: () => collectGarbage(db, { contentBackend: backend, lock: cs.lock }),
      });
      holder.markDirty = () => scheduler.markDirty();

      const store = cs.forContext({ namespace: "default" });
      const data = Buffer.from("soon gone");
      const digest = `sha256:${createHash("sha256").update(data).digest("hex")}`;
      const w = await store.writer({ ref: "x", total: data.length, expected: digest });
      await w.write(data);
      await w.commit(data.length, digest, { "containerd.io/gc.root": "" });
      await scheduler.runNow();
      assert.ok(existsSync(backend.blobPath(digest)));

      await store.delete(digest);
      // The file goes during the collection; lastStats is set once it has finished.
      await until(() => scheduler.lastStats?.blobsRemoved === 1);
      assert.equal(existsSync(backend.blobPath(digest)), false);
      await scheduler.close();
    } finally {
      db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
