// Times the stock `ctr images pull --plain-http` (fetch, then unpack into overlayfs through
// Diff.Apply) from a real registry, and the daemon's CPU meanwhile.
//
// Every round must really download and unpack: it pulls into a fresh namespace (snapshots are
// per namespace), none of the image's blobs may be on the daemon's disk before it (content is
// shared between namespaces), and it must leave one new snapshot directory per layer.
//
// Snapshots are kept until the bench ends (labelled as GC roots, then the image is removed with
// `images rm --sync` so that its blobs go): deleting a large tree between rounds would make the
// next round's file creations pay for it. On ext4 without a journal (as on the bench VM), every
// new inode is checked against the inodes deleted in the last 60 s (ext4's recently_deleted()),
// which made creating files several times slower right after a large delete, for either daemon.
import { ctrOk, runCtr } from "../test/harness/ctr.js";
import { imageRef, type RegistryImage } from "../test/fixtures/test-images.js";
import { presentBlobs, snapshotCount, waitBlobsGone } from "./daemon-disk.js";
import { cpuDelta, ownCpuTimes, treeCpuTimes } from "./process-usage.js";
import { interleavedRounds, mapOutcomes, type Outcome } from "./rounds.js";
import { settleDisks } from "./settle.js";
import { median } from "./stats.js";

export interface PullTarget {
  address: string;
  pid: number;
  /** The daemon's root dir (content and snapshotter dirs below it, as containerd lays them out). */
  root: string;
}

export interface PullImage {
  /** `<host>/<repo>:<tag>`. */
  ref: string;
  /** What `--print-chainid` must print: the top snapshot's name. */
  chainId: string;
  /** Manifest, config and layer digests: none may be on disk before a round. */
  blobDigests: string[];
  layers: number;
  /** Sum of the layers' uncompressed (tar) sizes. */
  uncompressedBytes: number;
}

export interface PullResult {
  seconds: number;
  /** Daemon CPU seconds (user+system, children included) during the pull. */
  daemonCpuSeconds: number;
  /** The same, split: user space, and the kernel on the daemon's behalf (file writes, mounts). */
  daemonUserSeconds: number;
  daemonSystemSeconds: number;
  /**
   * CPU seconds of this side meanwhile: the bench process (it also reads the daemons' logs)
   * and, for a pull, the ctr it runs (download, hashing, its gRPC calls).
   */
  clientCpuSeconds: number;
  /** Uncompressed layer 10^6 bytes per second of pull. */
  megabytesPerSecond: number;
}

/** The label that keeps a snapshot (and its parents) from GC. */
export const GC_ROOT_LABEL = "containerd.io/gc.root";

/**
 * One timed pull into `namespace`, which must be new. Checked by the chain ID ctr prints and by
 * the snapshots it left; then the image and its blobs are removed, its snapshots kept.
 */
export async function pullOnce(
  target: PullTarget,
  image: PullImage,
  namespace: string,
  timeoutMs: number,
): Promise<PullResult> {
  const cached = await presentBlobs(target.root, image.blobDigests);
  if (cached.length > 0) throw new Error(`not a cold pull: already on disk: ${cached.join(", ")}`);
  const snapshotsBefore = await snapshotCount(target.root);
  await settleDisks();

  const args = ["images", "pull", "--plain-http", "--print-chainid", image.ref];
  const cpuBefore = await treeCpuTimes(target.pid);
  const clientBefore = await ownCpuTimes();
  const start = performance.now();
  const result = await runCtr(target.address, args, { namespace, timeoutMs });
  const seconds = (performance.now() - start) / 1000;
  const cpu = cpuDelta(cpuBefore, await treeCpuTimes(target.pid));
  const client = cpuDelta(clientBefore, await ownCpuTimes());

  try {
    if (result.code !== 0) throw new Error(`ctr images pull exited ${result.code}: ${result.stderr.trim()}`);
    const printed = [...result.stdout.matchAll(/image chain ID: (sha256:[0-9a-f]{64})/g)].map((m) => m[1]);
    if (printed.length !== 1 || printed[0] !== image.chainId) {
      throw new Error(`ctr printed chain IDs [${printed.join(", ")}], expected ${image.chainId}`);
    }
    const added = (await snapshotCount(target.root)) - snapshotsBefore;
    if (added !== image.layers) {
      throw new Error(
        `the pull added ${added} snapshot directories, expected one per layer (${image.layers})`,
      );
    }
    await ctrOk(target.address, ["snapshots", "label", image.chainId, `${GC_ROOT_LABEL}=bench`], {
      namespace,
    });
  } finally {
    // Whatever the pull left of the image and its blobs goes, so that the next round starts cold.
    await ctrOk(target.address, ["images", "rm", "--sync", image.ref], { namespace }).catch(() => undefined);
  }
  await waitBlobsGone(target.root, image.blobDigests, 30_000, "images rm --sync");
  return {
    seconds,
    daemonCpuSeconds: cpu.total,
    daemonUserSeconds: cpu.user,
    daemonSystemSeconds: cpu.system,
    clientCpuSeconds: client.total,
    megabytesPerSecond: image.uncompressedBytes / 1e6 / seconds,
  };
}

export interface PullSummary {
  rounds: PullResult[];
  medianSeconds: number;
  medianDaemonCpuSeconds: number;
  medianMegabytesPerSecond: number;
}

export function summarizePulls(rounds: PullResult[]): PullSummary {
  return {
    rounds,
    medianSeconds: median(rounds.map((r) => r.seconds)),
    medianDaemonCpuSeconds: median(rounds.map((r) => r.daemonCpuSeconds)),
    medianMegabytesPerSecond: median(rounds.map((r) => r.megabytesPerSecond)),
  };
}

/** What a pull round checks the image by: its reference, chain ID, blobs and unpacked size. */
export function pullImage(host: string, image: RegistryImage, uncompressedBytes: number): PullImage {
  return {
    ref: imageRef(host, image),
    chainId: image.chainId,
    blobDigests: [image.manifestDigest, image.configDigest, ...image.layerDescriptors.map((d) => d.digest)],
    layers: image.layerDescriptors.length,
    uncompressedBytes,
  };
}

let pullNamespaces = 0;

/** Cold pulls, a fresh namespace each, taking turns between the daemons. */
export async function pullRounds<N extends string>(
  targets: readonly (PullTarget & { name: N })[],
  image: PullImage,
  label: string,
  opts: { rounds: number; warmups: number; timeoutMs: number; log: (msg: string) => void },
): Promise<Record<N, Outcome<PullSummary>>> {
  const byName = new Map(targets.map((t) => [t.name, t]));
  const results = await interleavedRounds(
    targets.map((t) => t.name),
    opts,
    async (name, round) => {
      const t = byName.get(name);
      if (t === undefined) throw new Error(`no target ${name}`);
      const r = await pullOnce(t, image, `bench-pull-${++pullNamespaces}`, opts.timeoutMs);
      const which = round < 0 ? "warm-up" : `round ${round + 1}`;
      opts.log(
        `  ${name} ${label} pull ${which}: ${r.seconds.toFixed(2)} s, ` +
          `daemon CPU ${r.daemonCpuSeconds.toFixed(2)} s (${r.daemonUserSeconds.toFixed(2)} user), ` +
          `client CPU ${r.clientCpuSeconds.toFixed(2)} s, ` +
          `${r.megabytesPerSecond.toFixed(0)} MB/s`,
      );
      return r;
    },
    (name, _round, error) => opts.log(`  ${name} ${label} pull: failed: ${error}`),
  );
  return mapOutcomes(results, summarizePulls);
}

export interface RpcTime {
  method: string;
  calls: number;
  totalMs: number;
  meanMs: number;
}

/** Sums berthd's debug "rpc" log lines ({path, ms}) by method, most time first. */
export function rpcTimes(log: string): RpcTime[] {
  const by = new Map<string, { calls: number; totalMs: number }>();
  for (const line of log.split("\n")) {
    if (!line.includes('"msg":"rpc"')) continue;
    let entry: { path?: unknown; ms?: unknown };
    try {
      entry = JSON.parse(line) as { path?: unknown; ms?: unknown };
    } catch {
      continue;
    }
    if (typeof entry.path !== "string" || typeof entry.ms !== "number") continue;
    const method = entry.path.replace(/^\/containerd\.services\./, "");
    const t = by.get(method) ?? { calls: 0, totalMs: 0 };
    t.calls++;
    t.totalMs += entry.ms;
    by.set(method, t);
  }
  return [...by]
    .map(([method, t]) => ({ method, ...t, meanMs: t.totalMs / t.calls }))
    .sort((a, b) => b.totalMs - a.totalMs);
}
