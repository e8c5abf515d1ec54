// The page-cache probe and the lines that read the Diff.Apply and concurrent rounds against it
// (run: node --import tsx --test bench/page-cache-probe.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeProbes, probeFreshWrites } from "./page-cache-probe.js";
import { applyConditions, type ApplyResult, type ApplySummary } from "./diff-apply.js";
import {
  concurrentConditions,
  failedResult,
  containerBenchConfig,
  type ConcurrentRound,
} from "./containers.js";
import type { Outcome } from "./rounds.js";

void test("the probe writes exactly the bytes asked for into a new file it leaves in the dir", async () => {
  const dir = await mkdtemp(join(tmpdir(), "probe-"));
  try {
    const bytes = 3 * (1 << 20) + 12345;
    const first = probeFreshWrites(dir, bytes);
    const second = probeFreshWrites(dir, 1000);
    assert.ok(first.megabytesPerSecond > 0 && Number.isFinite(first.megabytesPerSecond));
    assert.ok(second.megabytesPerSecond > 0 && Number.isFinite(second.megabytesPerSecond));
    const files = (await readdir(dir)).sort();
    assert.equal(files.length, 2);
    const sizes = await Promise.all(files.map(async (f) => (await stat(join(dir, f))).size));
    assert.deepEqual(
      sizes.sort((a, b) => a - b),
      [1000, bytes],
    );
  } finally {
    await rm(dir, { recursive: true });
  }
});

function round(mbps: number, machine?: number): ApplyResult {
  return {
    seconds: 1,
    megabytesPerSecond: mbps,
    daemonCpuSeconds: 1,
    daemonUserSeconds: 1,
    daemonSystemSeconds: 0,
    clientCpuSeconds: 0,
    ...(machine === undefined ? {} : { machineWriteMBps: machine }),
  };
}

function summary(rounds: ApplyResult[]): Outcome<ApplySummary> {
  return {
    ok: true,
    value: {
      rounds,
      medianSeconds: 1,
      medianMegabytesPerSecond: 0,
      medianDaemonCpuSeconds: 1,
    },
  };
}

void test("the conditions line splits the rounds by the machine's rate", () => {
  const line = applyConditions(
    {
      berthd: summary([round(300, 5000), round(310, 4000), round(100, 150), round(290, 2000)]),
      containerd: summary([round(140, 5000), round(60, 120), round(50, 130)]),
    },
    1000,
  );
  assert.equal(
    line,
    "machine during the Diff.Apply rounds: fresh page-cache writes at a median 3000 (min 150) in berthd's, " +
      "130 (min 120) in containerd's rounds (MB/s; page-cache-probe.ts); Diff.Apply median over the rounds " +
      "where it wrote >= 1000 MB/s: berthd 300 MB/s (3 of 4 rounds), containerd 140 MB/s (1 of 3 rounds)",
  );
});

void test("no probes, no line; a daemon whose rounds were all slow says so", () => {
  assert.equal(applyConditions({ berthd: summary([round(300)]) }, 1000), null);
  assert.equal(applyConditions({ berthd: { ok: false, error: "down" } }, 1000), null);
  const line = applyConditions({ berthd: summary([round(100, 200)]) }, 1000);
  assert.match(line ?? "", /berthd none of 1$/);
});

void test("describeProbes: median and minimum per daemon, daemons without probes left out", () => {
  assert.equal(
    describeProbes({ berthd: [5000, 100, 3000], containerd: [], other: [10, 20] }),
    "fresh page-cache writes at a median 3000 (min 100) in berthd's, 15 (min 10) in other's rounds " +
      "(MB/s; page-cache-probe.ts)",
  );
  assert.equal(describeProbes({ berthd: [] }), null);
});

void test("the concurrent rounds' line reads the probes of each daemon's rounds", () => {
  const round = (machine?: number): ConcurrentRound => ({
    runningMs: 500,
    allExitedMs: 501,
    launchMs: 3,
    cpuSeconds: 0.5,
    ...(machine === undefined ? {} : { machineWriteMBps: machine }),
  });
  const summary = (rounds: ConcurrentRound[]) => ({
    ok: true as const,
    value: { rounds, medianRunningMs: 500, medianAllExitedMs: 501, medianCpuSeconds: 0.5 },
  });
  const result = failedResult(containerBenchConfig({}), "not run");
  assert.equal(concurrentConditions(result), null);
  result.concurrent = {
    berthd: summary([round(200), round(4000), round(300)]),
    containerd: summary([round()]),
  };
  assert.equal(
    concurrentConditions(result),
    "machine during the concurrent run -d rounds: fresh page-cache writes at a median 300 (min 200) in " +
      "berthd's rounds (MB/s; page-cache-probe.ts)",
  );
});
