// Checks the /proc parsing behind the CPU figures (run: node --import tsx --test bench/process-usage.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { cpuDelta, cpuSeconds, parseStatTicks, treeCpuTimes } from "./process-usage.js";

void test("utime+stime and cutime+cstime, whatever the command name holds", () => {
  // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
  const stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 12 0";
  assert.deepEqual(parseStatTicks(stat), { user: 250, system: 50, childUser: 7, childSystem: 3 });
  assert.throws(() => parseStatTicks("4242 (x) S 1"), /malformed/);
});

void test("this process: tree CPU is at least its own", async () => {
  const own = await cpuSeconds(process.pid);
  const times = await treeCpuTimes(process.pid);
  const tree = times.user + times.system;
  // Sampled later, so never less (up to float rounding of the tick sums).
  assert.ok(own >= 0 && tree >= own - 1e-9, `own ${own}, tree ${tree}`);
  assert.deepEqual(cpuDelta({ user: 1, system: 2 }, { user: 1.5, system: 2.25 }), {
    user: 0.5,
    system: 0.25,
    total: 0.75,
  });
});
