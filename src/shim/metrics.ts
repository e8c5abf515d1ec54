// Task stats in containerd's own types: `runc events --stats` (cgroup counters as JSON) turned
// into io.containerd.cgroups.v1.Metrics on a cgroup v1 (or hybrid) host and
// io.containerd.cgroups.v2.Metrics on a unified one, as containerd's runc shim reports them;
// `ctr tasks metrics` decodes either.
import { create, toBinary } from "@bufbuild/protobuf";
import { existsSync } from "node:fs";
import { MetricsSchema } from "../gen/containerd/cgroups/v1/metrics_pb.js";
import { MetricsSchema as MetricsV2Schema } from "../gen/containerd/cgroups/v2/metrics_pb.js";
import type { AnyValue } from "../core/any-value.js";
import type { RuncStats } from "./runc.js";

const u = (n: unknown): bigint =>
  typeof n === "number" && Number.isFinite(n) && n >= 0 ? BigInt(Math.trunc(n)) : 0n;

interface Entry {
  limit?: number;
  usage?: number;
  max?: number;
  failcnt?: number;
}
const entry = (e: Entry | undefined) => ({
  limit: u(e?.limit),
  usage: u(e?.usage),
  max: u(e?.max),
  failcnt: u(e?.failcnt),
});

/** A unified cgroup v2 host (cgroup2 mounted at /sys/fs/cgroup itself). */
export const unifiedCgroups = (): boolean => existsSync("/sys/fs/cgroup/cgroup.controllers");

/** Stats in the metrics type of the host's cgroup version. */
export function metricsFromRuncStats(s: RuncStats, v2 = unifiedCgroups()): AnyValue {
  return v2 ? metricsV2FromRuncStats(s) : metricsV1FromRuncStats(s);
}

export function metricsV1FromRuncStats(s: RuncStats): AnyValue {
  const raw = s.memory?.raw ?? {};
  const r = (k: string) => u(raw[k]);
  const blkio = (s.blkio ?? {}) as Record<
    string,
    { major?: number; minor?: number; op?: string; value?: number }[] | undefined
  >;
  const blk = (k: string) =>
    (blkio[k] ?? []).map((e) => ({
      op: e.op ?? "",
      device: "",
      major: u(e.major),
      minor: u(e.minor),
      value: u(e.value),
    }));
  const hugetlb = (s.hugetlb ?? {}) as Record<string, { usage?: number; max?: number; failcnt?: number }>;
  const m = create(MetricsSchema, {
    pids: s.pids ? { current: u(s.pids.current), limit: u(s.pids.limit) } : undefined,
    cpu: s.cpu
      ? {
          usage: {
            total: u(s.cpu.usage?.total),
            kernel: u(s.cpu.usage?.kernel),
            user: u(s.cpu.usage?.user),
            perCpu: (s.cpu.usage?.percpu ?? []).map(u),
          },
          throttling: {
            periods: u(s.cpu.throttling?.periods),
            throttledPeriods: u(s.cpu.throttling?.throttledPeriods),
            throttledTime: u(s.cpu.throttling?.throttledTime),
          },
        }
      : undefined,
    memory: s.memory
      ? {
          cache: u(s.memory.cache ?? raw.cache),
          rss: r("rss"),
          rssHuge: r("rss_huge"),
          mappedFile: r("mapped_file"),
          dirty: r("dirty"),
          writeback: r("writeback"),
          pgPgIn: r("pgpgin"),
          pgPgOut: r("pgpgout"),
          pgFault: r("pgfault"),
          pgMajFault: r("pgmajfault"),
          inactiveAnon: r("inactive_anon"),
          activeAnon: r("active_anon"),
          inactiveFile: r("inactive_file"),
          activeFile: r("active_file"),
          unevictable: r("unevictable"),
          hierarchicalMemoryLimit: r("hierarchical_memory_limit"),
          hierarchicalSwapLimit: r("hierarchical_memsw_limit"),
          totalCache: r("total_cache"),
          totalRss: r("total_rss"),
          totalRssHuge: r("total_rss_huge"),
          totalMappedFile: r("total_mapped_file"),
          totalDirty: r("total_dirty"),
          totalWriteback: r("total_writeback"),
          totalPgPgIn: r("total_pgpgin"),
          totalPgPgOut: r("total_pgpgout"),
          totalPgFault: r("total_pgfault"),
          totalPgMajFault: r("total_pgmajfault"),
          totalInactiveAnon: r("total_inactive_anon"),
          totalActiveAnon: r("total_active_anon"),
          totalInactiveFile: r("total_inactive_file"),
          totalActiveFile: r("total_active_file"),
          totalUnevictable: r("total_unevictable"),
          usage: entry(s.memory.usage),
          swap: entry(s.memory.swap),
          kernel: entry(s.memory.kernel),
        }
      : undefined,
    blkio: s.blkio
      ? {
          ioServiceBytesRecursive: blk("ioServiceBytesRecursive"),
          ioServicedRecursive: blk("ioServicedRecursive"),
          ioQueuedRecursive: blk("ioQueueRecursive"),
          ioServiceTimeRecursive: blk("ioServiceTimeRecursive"),
          ioWaitTimeRecursive: blk("ioWaitTimeRecursive"),
          ioMergedRecursive: blk("ioMergedRecursive"),
          ioTimeRecursive: blk("ioTimeRecursive"),
          sectorsRecursive: blk("sectorsRecursive"),
        }
      : undefined,
    hugetlb: Object.entries(hugetlb).map(([pagesize, h]) => ({
      pagesize,
      usage: u(h.usage),
      max: u(h.max),
      failcnt: u(h.failcnt),
    })),
  });
  return { typeUrl: MetricsSchema.typeName, value: toBinary(MetricsSchema, m) };
}

/** runc on cgroup v2 reports CPU in nanoseconds and memory.stat as `raw`; v2 Metrics wants µs and names. */
export function metricsV2FromRuncStats(s: RuncStats): AnyValue {
  const raw = s.memory?.raw ?? {};
  const r = (k: string) => u(raw[k]);
  const usec = (ns: unknown) => u(typeof ns === "number" ? ns / 1000 : 0);
  const m = create(MetricsV2Schema, {
    pids: s.pids ? { current: u(s.pids.current), limit: u(s.pids.limit) } : undefined,
    cpu: s.cpu
      ? {
          usageUsec: usec(s.cpu.usage?.total),
          userUsec: usec(s.cpu.usage?.user),
          systemUsec: usec(s.cpu.usage?.kernel),
          nrPeriods: u(s.cpu.throttling?.periods),
          nrThrottled: u(s.cpu.throttling?.throttledPeriods),
          throttledUsec: usec(s.cpu.throttling?.throttledTime),
        }
      : undefined,
    memory: s.memory
      ? {
          anon: r("anon"),
          file: r("file"),
          kernelStack: r("kernel_stack"),
          slab: r("slab"),
          sock: r("sock"),
          shmem: r("shmem"),
          fileMapped: r("file_mapped"),
          fileDirty: r("file_dirty"),
          fileWriteback: r("file_writeback"),
          anonThp: r("anon_thp"),
          inactiveAnon: r("inactive_anon"),
          activeAnon: r("active_anon"),
          inactiveFile: r("inactive_file"),
          activeFile: r("active_file"),
          unevictable: r("unevictable"),
          slabReclaimable: r("slab_reclaimable"),
          slabUnreclaimable: r("slab_unreclaimable"),
          pgfault: r("pgfault"),
          pgmajfault: r("pgmajfault"),
          usage: u(s.memory.usage?.usage),
          usageLimit: u(s.memory.usage?.limit),
          maxUsage: u(s.memory.usage?.max),
          swapUsage: u(s.memory.swap?.usage),
          swapLimit: u(s.memory.swap?.limit),
          swapMaxUsage: u(s.memory.swap?.max),
        }
      : undefined,
  });
  return { typeUrl: MetricsV2Schema.typeName, value: toBinary(MetricsV2Schema, m) };
}
