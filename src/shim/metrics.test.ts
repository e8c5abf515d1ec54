import { test } from "node:test";
import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { MetricsSchema as V1 } from "../gen/containerd/cgroups/v1/metrics_pb.js";
import { MetricsSchema as V2 } from "../gen/containerd/cgroups/v2/metrics_pb.js";
import { metricsFromRuncStats } from "./metrics.js";
import type { RuncStats } from "./runc.js";

const stats: RuncStats = {
  cpu: {
    usage: { total: 5_000_000, user: 3_000_000, kernel: 2_000_000, percpu: [4_000_000, 1_000_000] },
    throttling: { periods: 7 },
  },
  memory: {
    cache: 4096,
    usage: { usage: 1 << 20, limit: 16 << 20, max: 2 << 20, failcnt: 1 },
    raw: { rss: 8192, anon: 12288, total_rss: 8192 },
  },
  pids: { current: 3, limit: 100 },
};

void test("cgroup v1: io.containerd.cgroups.v1.Metrics with runc's counters", () => {
  const any = metricsFromRuncStats(stats, false);
  assert.equal(any.typeUrl, "io.containerd.cgroups.v1.Metrics");
  const m = fromBinary(V1, any.value);
  assert.equal(m.cpu?.usage?.total, 5_000_000n);
  assert.deepEqual(m.cpu?.usage?.perCpu, [4_000_000n, 1_000_000n]);
  assert.equal(m.cpu?.throttling?.periods, 7n);
  assert.equal(m.memory?.usage?.usage, 1n << 20n);
  assert.equal(m.memory?.usage?.limit, 16n << 20n);
  assert.equal(m.memory?.rss, 8192n);
  assert.equal(m.memory?.cache, 4096n);
  assert.equal(m.pids?.current, 3n);
});

void test("cgroup v2: io.containerd.cgroups.v2.Metrics, CPU in microseconds", () => {
  const any = metricsFromRuncStats(stats, true);
  assert.equal(any.typeUrl, "io.containerd.cgroups.v2.Metrics");
  const m = fromBinary(V2, any.value);
  assert.equal(m.cpu?.usageUsec, 5000n);
  assert.equal(m.cpu?.userUsec, 3000n);
  assert.equal(m.cpu?.systemUsec, 2000n);
  assert.equal(m.memory?.usage, 1n << 20n);
  assert.equal(m.memory?.usageLimit, 16n << 20n);
  assert.equal(m.memory?.anon, 12288n);
  assert.equal(m.pids?.limit, 100n);
});

void test("missing or negative counters become zero, never a throw", () => {
  const m = fromBinary(V1, metricsFromRuncStats({ memory: { usage: { usage: -1 } } }, false).value);
  assert.equal(m.memory?.usage?.usage, 0n);
  assert.equal(m.cpu, undefined);
});
