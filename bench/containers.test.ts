// Checks the container section's knobs, CPU cgroup parsing and table rows without running
// containers (run: node --import tsx --test bench/containers.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseCpuUsage } from "./cpu-group.js";
import {
  containerBenchConfig,
  containerRows,
  failedResult,
  type ContainerBenchResult,
  type IdleMemory,
  type MemoryResult,
  type MemorySnapshot,
  type RunRmSummary,
} from "./containers.js";
import { checkTargets } from "./report.js";
import type { ProcessMemory } from "./smaps.js";
import { summarize } from "./stats.js";

void test("sizes come from the environment, with the issue's sizes by default", () => {
  const d = containerBenchConfig({});
  assert.equal(d.runRmRuns, 30);
  assert.equal(d.concurrent, 20);
  assert.equal(d.memoryContainers, 50);
  assert.equal(d.memorySettleSeconds, 45);
  assert.equal(containerBenchConfig({ BENCH_MEMORY_SETTLE_SECONDS: "0" }).memorySettleSeconds, 0);
  const q = containerBenchConfig({
    BENCH_RUN_RM_RUNS: "5",
    BENCH_RUN_RM_WARMUPS: "0",
    BENCH_CONCURRENT_CONTAINERS: "4",
    BENCH_CONCURRENT_ROUNDS: "1",
    BENCH_CONCURRENT_WARMUPS: "0",
    BENCH_MEMORY_CONTAINERS: "3",
  });
  assert.deepEqual(
    [q.runRmRuns, q.runRmWarmups, q.concurrent, q.concurrentRounds, q.concurrentWarmups, q.memoryContainers],
    [5, 0, 4, 1, 0, 3],
  );
  assert.throws(() => containerBenchConfig({ BENCH_MEMORY_CONTAINERS: "0" }), /BENCH_MEMORY_CONTAINERS/);
});

void test("cgroup CPU usage: v1 nanoseconds, v2 usage_usec", () => {
  assert.equal(parseCpuUsage("2500000000\n", 1), 2.5);
  assert.equal(parseCpuUsage("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n", 2), 1.5);
  assert.throws(() => parseCpuUsage("", 1), /cpuacct/);
  assert.throws(() => parseCpuUsage("user_usec 3\n", 2), /usage_usec/);
});

const proc = (pid: number, rssMiB: number, pssMiB: number): ProcessMemory => ({
  pid,
  command: "x",
  rss: rssMiB * 1024,
  pss: pssMiB * 1024,
});

function result(): ContainerBenchResult {
  const rm = (ms: number[], cpu: number | null, warmups: number[] = []): RunRmSummary => ({
    wallMs: summarize(ms),
    warmupWallMs: warmups.length > 0 ? summarize(warmups) : null,
    medianCpuSeconds: cpu,
    medianQuietAfterMs: 200,
    samples: [],
  });
  const snap = (daemon: ProcessMemory, shims: ProcessMemory[]): MemorySnapshot => ({
    containers: 50,
    daemon,
    servingShims: shims,
    idleShims: [],
    shims: { rss: shims.reduce((n, s) => n + s.rss, 0), pss: shims.reduce((n, s) => n + s.pss, 0) },
    total: {
      rss: [daemon, ...shims].reduce((n, s) => n + s.rss, 0),
      pss: [daemon, ...shims].reduce((n, s) => n + s.pss, 0),
    },
    distinctKiB: 100 * 1024,
    atSeconds: 45,
  });
  const settledAfter = (early: MemorySnapshot, settled: MemorySnapshot): MemoryResult => ({
    startSeconds: 3,
    early,
    settled,
    series: [],
  });
  const idle = (daemon: ProcessMemory, spares: ProcessMemory[]): IdleMemory => ({
    daemon,
    spares,
    total: {
      rss: [daemon, ...spares].reduce((n, s) => n + s.rss, 0),
      pss: [daemon, ...spares].reduce((n, s) => n + s.pss, 0),
    },
    distinctKiB: 90 * 1024,
  });
  return {
    config: containerBenchConfig({}),
    namespace: "ns",
    daemons: { berthd: { pid: 1, cpuGroup: null }, containerd: { pid: 2, cpuGroup: null } },
    idle: {
      berthd: { ok: true, value: idle(proc(1, 70, 40), [proc(3, 60, 25)]) },
      containerd: { ok: true, value: idle(proc(2, 40, 38), []) },
    },
    runRm: {
      berthd: { ok: true, value: rm([70, 80, 90], null, [95, 85, 90]) },
      containerd: { ok: true, value: rm([100, 100, 120], 0.07, [110, 100, 105]) },
      "berthd-runc": { ok: false, error: "boom" },
    },
    concurrent: {
      berthd: {
        ok: true,
        value: { rounds: [], medianRunningMs: 500, medianAllExitedMs: 490, medianCpuSeconds: 0.5 },
      },
      containerd: {
        ok: true,
        value: { rounds: [], medianRunningMs: 600, medianAllExitedMs: 590, medianCpuSeconds: 0.3 },
      },
    },
    memory: {
      berthd: {
        ok: true,
        value: settledAfter(
          snap(proc(1, 120, 90), [proc(3, 70, 40)]),
          snap(proc(1, 80, 50), [proc(3, 70, 40)]),
        ),
      },
      containerd: {
        ok: true,
        value: ((s) => settledAfter(s, s))(
          snap(
            proc(2, 45, 40),
            Array.from({ length: 50 }, (_, i) => proc(100 + i, 12, 3)),
          ),
        ),
      },
    },
    berthdLog: { lines: 0, warnings: [] },
  };
}

void test("rows: values in ms and MiB, the goals on the main rows, n/a with a reason", () => {
  const rows = containerRows(result());
  const byMetric = new Map(rows.map((r) => [r.metric, r]));
  const median = byMetric.get("ctr run --rm true median, n=30");
  assert.deepEqual([median?.berthd, median?.containerd], [80, 100]);
  const pss = byMetric.get("PSS of daemon + shims, 50 sleep containers, at 45 s");
  assert.deepEqual([pss?.berthd, pss?.containerd], [90, 190]);
  const early = byMetric.get("  the same right after the start (quiet + 2 s)");
  assert.deepEqual([early?.berthd, early?.containerd], [130, 190]);
  const cpu = byMetric.get("  daemon+shim CPU per run --rm");
  assert.equal(cpu?.berthd, null);
  assert.equal(cpu?.berthdError, "no cgroup for CPU accounting");
  assert.equal(cpu?.containerd, 70);
  const cold = rows.find((r) => r.metric.includes("warm-ups before"));
  assert.deepEqual([cold?.berthd, cold?.containerd], [90, 105]);
  assert.equal(cold?.target, undefined);
  const goRm = rows.find((r) => r.metric.includes("Go shim") && r.metric.endsWith("median"));
  assert.equal(goRm?.berthdError, "boom");
  const idle = byMetric.get("  idle daemon + spare shim PSS");
  assert.deepEqual([idle?.berthd, idle?.containerd], [65, 38]);
  const distinct = byMetric.get("  distinct resident pages of daemon + shims, 50 containers");
  assert.deepEqual([distinct?.berthd, distinct?.containerd], [100, 100]);

  const goals = checkTargets(rows);
  assert.deepEqual(
    goals.map((g) => [g.metric, g.met]),
    [
      ["ctr run --rm true median, n=30", true], // 0.80
      ["ctr run --rm true p90, n=30", true], // 90/120 = 0.75
      ["20 concurrent run -d until all RUNNING, median of 5", false], // 0.83
      ["PSS of daemon + shims, 50 sleep containers, at 45 s", true], // 0.47
    ],
  );
});

void test("a section that could not run: every row n/a with the reason", () => {
  const rows = containerRows(failedResult(containerBenchConfig({}), "containerd did not start"));
  assert.ok(rows.length > 10);
  for (const r of rows) {
    assert.deepEqual([r.berthd, r.containerd], [null, null], r.metric);
    assert.equal(r.containerdError, "containerd did not start");
  }
});

void test("with no settle time the memory row says so and is not repeated", () => {
  const r = result();
  r.config = containerBenchConfig({ BENCH_MEMORY_SETTLE_SECONDS: "0" });
  const metrics = containerRows(r).map((row) => row.metric);
  assert.ok(metrics.includes("PSS of daemon + shims, 50 sleep containers, right after the start"));
  assert.ok(!metrics.some((m) => m.includes("quiet + 2 s")));
});
