// The worker pool with real worker threads: jobs run and answer, the pool grows to its size and
// no further, idle workers are retired (their threads exit) and come back on demand, a cancelled
// job's worker is replaced.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createWorkerPool, type WorkerPool } from "./worker-pool.js";

// Answers {threadId} after args.ms milliseconds; "fail" answers an error as the diff worker does.
const WORKER = new URL(
  "data:text/javascript," +
    encodeURIComponent(`
import { parentPort, threadId } from "node:worker_threads";
parentPort.on("message", (req) => {
  setTimeout(() => {
    if (req.op === "fail") parentPort.postMessage({ id: req.id, ok: false, error: { code: "invalid-argument", message: "bad job" } });
    else parentPort.postMessage({ id: req.id, ok: true, result: { threadId } });
  }, req.args.ms);
});`),
);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function withPool(
  opts: { size: number; idleMs?: number; onAllRetired?: () => void },
  fn: (pool: WorkerPool) => Promise<void>,
): Promise<void> {
  const pool = createWorkerPool({ script: WORKER, ...opts });
  try {
    await fn(pool);
  } finally {
    await pool.close();
  }
}

void test("jobs run in at most size workers, and answer errors with their codes", async () => {
  await withPool({ size: 2 }, async (pool) => {
    const answers = await Promise.all(
      [1, 2, 3, 4].map(() => pool.run<{ threadId: number }>("echo", { ms: 20 })),
    );
    assert.equal(new Set(answers.map((a) => a.threadId)).size, 2);
    assert.equal(pool.workers, 2);
    await assert.rejects(pool.run("fail", { ms: 0 }), { code: "invalid-argument", message: "bad job" });
  });
});

void test("an idle worker is retired after idleMs, and a new one serves the next job", async () => {
  let allRetired = 0;
  await withPool({ size: 2, idleMs: 50, onAllRetired: () => allRetired++ }, async (pool) => {
    const first = await pool.run<{ threadId: number }>("echo", { ms: 0 });
    assert.equal(pool.workers, 1);
    // Still busy for longer than idleMs: a busy worker is never retired.
    const long = pool.run<{ threadId: number }>("echo", { ms: 150 });
    await sleep(100);
    assert.equal(pool.workers, 1);
    assert.equal((await long).threadId, first.threadId);
    await sleep(200);
    assert.equal(pool.workers, 0);
    assert.equal(allRetired, 1, "told once that the last worker is gone");
    const next = await pool.run<{ threadId: number }>("echo", { ms: 0 });
    assert.notEqual(next.threadId, first.threadId);
    assert.equal(pool.workers, 1);
  });
});

void test("a worker reused before idleMs is kept", async () => {
  await withPool({ size: 1, idleMs: 150 }, async (pool) => {
    const ids: number[] = [];
    for (let i = 0; i < 4; i++) {
      ids.push((await pool.run<{ threadId: number }>("echo", { ms: 0 })).threadId);
      await sleep(60);
    }
    assert.equal(new Set(ids).size, 1);
  });
});

void test("a cancelled job terminates its worker; the pool serves the next job", async () => {
  await withPool({ size: 1 }, async (pool) => {
    const ac = new AbortController();
    const job = pool.run("echo", { ms: 10_000 }, ac.signal);
    await sleep(20);
    ac.abort();
    await assert.rejects(job, { code: "canceled" });
    assert.equal(pool.workers, 0);
    const next = await pool.run<{ threadId: number }>("echo", { ms: 0 });
    assert.equal(typeof next.threadId, "number");
  });
});
