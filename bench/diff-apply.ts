// Diff.Apply through the gRPC API, as containerd's unpacker calls it: the gzip layer is written
// into the daemon's content store under a lease, then each round prepares an empty overlayfs
// snapshot under the same lease, times Diff.Apply onto its mounts and checks the diffID the daemon
// answers. The snapshots stay until close(), which deletes the lease: removing a large tree
// between rounds would slow the next round's file creations down (see image-pull.ts).
import { randomBytes } from "node:crypto";
import {
  Content,
  Diff,
  Leases,
  Snapshots,
  createClient,
  writeBlob,
  type BerthClient,
} from "../src/client/index.js";
import type { ApplyLayer } from "./apply-layer.js";
import { cpuDelta, ownCpuTimes, treeCpuTimes } from "./process-usage.js";
import { errorText, interleavedRounds, mapOutcomes, type Outcome } from "./rounds.js";
import { settleDisks } from "./settle.js";
import { median } from "./stats.js";
import { comparisonRow, type Row } from "./report.js";
import { describeProbes, probeFreshWrites } from "./page-cache-probe.js";

export const SNAPSHOTTER = "overlayfs";

export interface ApplyResult {
  seconds: number;
  /** Uncompressed (tar) 10^6 bytes per second. */
  megabytesPerSecond: number;
  /** Daemon CPU seconds (user+system, children included) during the call. */
  daemonCpuSeconds: number;
  /** The same, split: user space, and the kernel on the daemon's behalf (file writes, mounts). */
  daemonUserSeconds: number;
  daemonSystemSeconds: number;
  /**
   * CPU seconds of this side meanwhile: the bench process (it also reads the daemons' logs)
   * and, for a pull, the ctr it runs (download, hashing, its gRPC calls).
   */
  clientCpuSeconds: number;
  /**
   * The machine's own rate into fresh page cache right after the apply (page-cache-probe.ts), in
   * MB/s; absent when the round had no probe.
   */
  machineWriteMBps?: number;
}

/** Where and how much each round's page-cache probe writes. */
export interface ProbeOptions {
  dir: string;
  bytes: number;
}

export interface ApplyTarget {
  /** Times one Diff.Apply of the layer onto a fresh snapshot. */
  applyOnce(): Promise<ApplyResult>;
  /** Deletes the lease (the blob and every snapshot go with it, synchronously) and disconnects. */
  close(): Promise<void>;
}

const unique = (what: string): string => `bench-${what}-${randomBytes(6).toString("hex")}`;

/** Connects, leases, uploads the layer; returns the target to time applies on. */
export async function prepareApply(
  daemon: { address: string; pid: number },
  namespace: string,
  layer: ApplyLayer,
  probe?: ProbeOptions,
): Promise<ApplyTarget> {
  const base = createClient(daemon.address, { namespace });
  const leases = base.service(Leases);
  const lease = unique("apply");
  let client: BerthClient;
  try {
    await leases.create({ id: lease, labels: {} });
    client = base.with({ lease });
    await writeBlob(client.service(Content), layer.gzip, { ref: unique("layer"), expected: layer.digest });
  } catch (err) {
    await leases.delete({ id: lease, sync: true }).catch(() => undefined);
    base.close();
    throw err;
  }
  const snapshots = client.service(Snapshots);
  const diff = client.service(Diff);
  return {
    async applyOnce() {
      const key = unique("snapshot");
      const { mounts } = await snapshots.prepare({ snapshotter: SNAPSHOTTER, key, parent: "", labels: {} });
      await settleDisks();
      const cpuBefore = await treeCpuTimes(daemon.pid);
      const clientBefore = await ownCpuTimes();
      const start = performance.now();
      const res = await diff.apply({
        diff: {
          mediaType: layer.mediaType,
          digest: layer.digest,
          size: BigInt(layer.gzip.length),
          annotations: {},
        },
        mounts,
        payloads: {},
      });
      const seconds = (performance.now() - start) / 1000;
      const cpu = cpuDelta(cpuBefore, await treeCpuTimes(daemon.pid));
      const client = cpuDelta(clientBefore, await ownCpuTimes());
      const machine = probe === undefined ? undefined : probeFreshWrites(probe.dir, probe.bytes);
      if (res.applied?.digest !== layer.diffId) {
        throw new Error(
          `Diff.Apply answered ${res.applied?.digest ?? "no descriptor"}, not the diffID ${layer.diffId}`,
        );
      }
      if (res.applied.size !== BigInt(layer.tarSize)) {
        throw new Error(`Diff.Apply answered size ${res.applied.size}, not the tar's ${layer.tarSize}`);
      }
      return {
        seconds,
        megabytesPerSecond: layer.tarSize / 1e6 / seconds,
        daemonCpuSeconds: cpu.total,
        daemonUserSeconds: cpu.user,
        daemonSystemSeconds: cpu.system,
        clientCpuSeconds: client.total,
        ...(machine === undefined ? {} : { machineWriteMBps: machine.megabytesPerSecond }),
      };
    },
    async close() {
      try {
        await leases.delete({ id: lease, sync: true });
      } finally {
        base.close();
      }
    },
  };
}

export interface ApplySummary {
  rounds: ApplyResult[];
  medianSeconds: number;
  medianMegabytesPerSecond: number;
  medianDaemonCpuSeconds: number;
}

export interface ApplyRoundsOptions {
  /** The namespace the layer and the snapshots go to (the same in every daemon). */
  namespace: string;
  rounds: number;
  /** Untimed applies per daemon before the timed rounds (0 by default). */
  warmups?: number;
  /** Shown in the progress lines ("Diff.Apply" by default). */
  label?: string;
  log: (message: string) => void;
  /** A page-cache probe after each apply (see ApplyResult.machineWriteMBps). */
  probe?: ProbeOptions;
}

/** The layer uploaded to each daemon, then timed applies taking turns between the daemons. */
export async function applyRounds<N extends string>(
  targets: readonly { name: N; address: string; pid: number }[],
  layer: ApplyLayer,
  opts: ApplyRoundsOptions,
): Promise<Record<N, Outcome<ApplySummary>>> {
  const label = opts.label ?? "Diff.Apply";
  const out = {} as Record<N, Outcome<ApplySummary>>;
  const prepared = new Map<N, ApplyTarget>();
  try {
    for (const t of targets) {
      try {
        prepared.set(t.name, await prepareApply(t, opts.namespace, layer, opts.probe));
      } catch (err) {
        opts.log(`  ${t.name} ${label} setup: failed: ${errorText(err)}`);
        out[t.name] = { ok: false, error: errorText(err) };
      }
    }
    const results = await interleavedRounds(
      [...prepared.keys()],
      { warmups: opts.warmups ?? 0, rounds: opts.rounds },
      async (name, round) => {
        const target = prepared.get(name);
        if (target === undefined) throw new Error(`no target ${name}`);
        const r = await target.applyOnce();
        const which = round < 0 ? "warm-up" : `round ${round + 1}`;
        opts.log(
          `  ${name} ${label} ${which}: ${r.megabytesPerSecond.toFixed(r.megabytesPerSecond < 10 ? 2 : 0)} MB/s ` +
            `(${(r.seconds * 1000).toFixed(1)} ms, daemon CPU ${r.daemonCpuSeconds.toFixed(3)} s, ` +
            `${r.daemonUserSeconds.toFixed(3)} user; client CPU ${r.clientCpuSeconds.toFixed(3)} s` +
            `${r.machineWriteMBps === undefined ? "" : `; machine's page-cache writes ${r.machineWriteMBps.toFixed(0)} MB/s`})`,
        );
        return r;
      },
      (name, _round, error) => opts.log(`  ${name} ${label}: failed: ${error}`),
    );
    Object.assign(
      out,
      mapOutcomes(results, (rs) => ({
        rounds: rs,
        medianSeconds: median(rs.map((r) => r.seconds)),
        medianMegabytesPerSecond: median(rs.map((r) => r.megabytesPerSecond)),
        medianDaemonCpuSeconds: median(rs.map((r) => r.daemonCpuSeconds)),
      })),
    );
    return out;
  } finally {
    for (const [name, target] of prepared) {
      await target
        .close()
        .catch((err: unknown) => opts.log(`  ${name} ${label} cleanup: failed: ${errorText(err)}`));
    }
  }
}

/** The Diff.Apply rows of a report: MB/s (with its target) and the daemons' CPU per apply. */
export function applyRows(
  apply: { berthd?: Outcome<ApplySummary>; containerd?: Outcome<ApplySummary> },
  label: { mib: number; rounds: number; targetMBps: number },
): Row[] {
  return [
    {
      ...comparisonRow(
        `Diff.Apply ${label.mib} MiB gzip layer, median of ${label.rounds}`,
        "MB/s",
        "higher",
        apply,
        (s) => s.medianMegabytesPerSecond,
      ),
      target: { berthdAtLeast: label.targetMBps },
    },
    comparisonRow("  daemon CPU per apply", "s", "lower", apply, (s) => s.medianDaemonCpuSeconds),
  ];
}

/**
 * The machine's state during the apply rounds, as a line under the targets: the page-cache probes'
 * rates in each daemon's rounds, and the applies' median over the rounds in which the machine
 * wrote at least `fastMBps` (null when no round had a probe).
 */
export function applyConditions(
  apply: Partial<Record<string, Outcome<ApplySummary>>>,
  fastMBps: number,
): string | null {
  const rates: Record<string, number[]> = {};
  const fastParts: string[] = [];
  for (const [name, outcome] of Object.entries(apply)) {
    if (outcome === undefined || !outcome.ok) continue;
    const probed = outcome.value.rounds.filter((r) => r.machineWriteMBps !== undefined);
    if (probed.length === 0) continue;
    rates[name] = probed.map((r) => r.machineWriteMBps ?? 0);
    const fast = probed.filter((r) => (r.machineWriteMBps ?? 0) >= fastMBps);
    fastParts.push(
      fast.length === 0
        ? `${name} none of ${probed.length}`
        : `${name} ${median(fast.map((r) => r.megabytesPerSecond)).toFixed(0)} MB/s ` +
            `(${fast.length} of ${probed.length} rounds)`,
    );
  }
  const probes = describeProbes(rates);
  if (probes === null) return null;
  return (
    `machine during the Diff.Apply rounds: ${probes}; Diff.Apply median over the rounds where it wrote ` +
    `>= ${fastMBps} MB/s: ${fastParts.join(", ")}`
  );
}
