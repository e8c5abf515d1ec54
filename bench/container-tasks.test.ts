// Checks how the container benchmarks read ctr and /proc, and wait for quiet
// (run: node --import tsx --test bench/container-tasks.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  mapLimit,
  notInStatus,
  parentPidFromStat,
  parseTasksLs,
  splitShims,
  waitQuiet,
} from "./container-tasks.js";

const LS = `TASK      PID      STATUS
c1-0      31022    RUNNING
c1-1      31050    CREATED
m-10      0        STOPPED
`;

void test("ctr tasks ls rows, and which wanted ids are not in a status", () => {
  const rows = parseTasksLs(LS);
  assert.deepEqual(rows, [
    { id: "c1-0", pid: 31022, status: "RUNNING" },
    { id: "c1-1", pid: 31050, status: "CREATED" },
    { id: "m-10", pid: 0, status: "STOPPED" },
  ]);
  assert.deepEqual(notInStatus(rows, ["c1-0", "c1-1", "absent"], "RUNNING"), ["c1-1", "absent"]);
  assert.deepEqual(notInStatus(rows, ["c1-0"], "RUNNING"), []);
  assert.deepEqual(parseTasksLs("TASK    PID    STATUS    \n"), []);
});

void test("the parent pid of a stat line, whatever the command name holds", () => {
  assert.equal(parentPidFromStat("4242 (sleep) S 4100 4242 4242 0 -1 4194560"), 4100);
  assert.equal(parentPidFromStat("77 (a) b (c) R 12 77 77 0"), 12);
  assert.throws(() => parentPidFromStat("77 (x)"), /malformed/);
});

void test("shims are split into those serving a container and idle ones; orphans are flagged", () => {
  const parentOfInit = new Map([
    [1001, 500],
    [1002, 500],
    [1003, 600],
  ]);
  assert.deepEqual(splitShims([500, 600, 700], parentOfInit), {
    serving: [500, 600],
    idle: [700],
    orphans: [],
  });
  assert.deepEqual(splitShims([500], parentOfInit), { serving: [500], idle: [], orphans: [1003] });
});

void test("mapLimit keeps order and never runs more than the limit at once", async () => {
  let running = 0;
  let peak = 0;
  const out = await mapLimit([5, 1, 4, 2, 3], 2, async (v, i) => {
    running++;
    peak = Math.max(peak, running);
    await new Promise((r) => setTimeout(r, v));
    running--;
    return v * 10 + i;
  });
  assert.deepEqual(out, [50, 11, 42, 23, 34]);
  assert.equal(peak, 2);
  assert.deepEqual(await mapLimit([], 3, async () => 1), []);
  await assert.rejects(
    mapLimit([1, 2], 2, async (v) => {
      if (v === 2) throw new Error("boom");
      return v;
    }),
    /boom/,
  );
});

/** A fake clock and CPU counter: each sleep advances time, and the counter follows a script. */
function fake(cpuPerInterval: number[]) {
  let t = 0;
  let cpu = 0;
  let i = 0;
  return {
    read: async () => cpu,
    sleep: async (ms: number) => {
      t += ms;
      cpu += cpuPerInterval[i++] ?? 0;
    },
    now: () => t,
  };
}

void test("waitQuiet: two quiet intervals in a row end the wait; busy ones restart the count", async () => {
  // 100 ms intervals: 50 ms CPU is busy, 1 ms (1%) is quiet under the 2% default.
  const f = fake([0.05, 0.001, 0.05, 0.001, 0.001, 0.05]);
  const r = await waitQuiet(f.read, { sleep: f.sleep, now: f.now });
  assert.deepEqual(r, { waitedMs: 500, quiet: true });
});

void test("waitQuiet gives up after maxMs", async () => {
  const f = fake(Array.from({ length: 100 }, () => 0.08));
  const r = await waitQuiet(f.read, { sleep: f.sleep, now: f.now, maxMs: 1000 });
  assert.deepEqual(r, { waitedMs: 1000, quiet: false });
});
