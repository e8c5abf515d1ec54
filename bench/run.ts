// `npm run bench`: berthd against a real containerd 1.6 started in the same run, on the same
// machine, driven by the same stock ctr and the same Node gRPC client; prints a table and JSON.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ctrOk } from "../test/harness/ctr.js";
import { startRegistry } from "../test/harness/registry.js";
import { pushImage } from "../test/fixtures/registry-push.js";
import { MiB, largeTestImage, multiLayerTestImage } from "../test/fixtures/test-images.js";
import { makeTempDir, removeTempDir } from "../test/harness/temp-dir.js";
import { Version } from "../src/gen/containerd/services/version/v1/version_pb.js";
import { Images } from "../src/gen/containerd/services/images/v1/images_pb.js";
import { startDaemonPair } from "./daemon-pair.js";
import { buildApplyLayer } from "./apply-layer.js";
import { summarizeLogFile } from "./berthd-wrapper.js";
import { writeBlobFile } from "./blob-file.js";
import { runSection } from "./section-runner.js";
import { concurrentConditions, containerBench, containerBenchConfig, containerRows } from "./containers.js";
import { ingestOnce, type IngestResult } from "./content-ingest.js";
import { timeCtr } from "./ctr-latency.js";
import { applyConditions, applyRounds, applyRows } from "./diff-apply.js";
import { envInt } from "./env-config.js";
import { pullImage, pullRounds } from "./image-pull.js";
import { unaryCaller } from "./grpc-unary.js";
import { machineInfo } from "./machine-info.js";
import { commandName, memoryMiB } from "./process-usage.js";
import {
  checkTargets,
  comparisonRow,
  renderMachine,
  renderTable,
  renderTargets,
  ratio,
  verdict,
  type Row,
} from "./report.js";
import { errorText, type Outcome } from "./rounds.js";
import { median, summarize, type Summary } from "./stats.js";
import { measureThroughput, type ThroughputResult } from "./unary-throughput.js";

const CONFIG = {
  ctrWarmups: 3,
  ctrRuns: 30,
  concurrency: 16,
  durationMs: 3000,
  // berthd is a JIT runtime: its per-call cost keeps falling for the first few seconds of load.
  warmupMs: 2000,
  ingestMiB: envInt(process.env, "BENCH_INGEST_MIB", 1024),
  ingestRounds: 3,
  namespace: "bench",
  /** Timed pulls of the multi-layer image per daemon, after pullWarmups untimed ones. */
  pullRounds: envInt(process.env, "BENCH_PULL_ROUNDS", 10),
  pullWarmups: 1,
  /** Content size of the large image (the tar adds about 1%; gzip -1 makes it about 30%). */
  largeImageMiB: envInt(process.env, "BENCH_LARGE_IMAGE_MIB", 1024),
  largePullRounds: envInt(process.env, "BENCH_LARGE_PULL_ROUNDS", 3),
  /** File content of the Diff.Apply layer (gzip -6, a realistic mix of file kinds). */
  applyMiB: envInt(process.env, "BENCH_APPLY_MIB", 256),
  applyRounds: envInt(process.env, "BENCH_APPLY_ROUNDS", 5),
  applyWarmups: envInt(process.env, "BENCH_APPLY_WARMUPS", 1, 0),
  /** The goal for Diff.Apply of gzip layers, uncompressed MB/s. */
  applyTargetMBps: 250,
  /** After each apply, this much written into a new file: the machine's own page-cache rate. */
  applyProbeMiB: envInt(process.env, "BENCH_PROBE_MIB", 64, 0),
  /** The probe rate from which a round counts as taken on an unthrottled machine. */
  applyProbeFastMBps: 1000,
};
/** The container section (containers.ts): its own fresh berthd and containerd, sizes from BENCH_* too. */
const CONTAINER_CONFIG = containerBenchConfig(process.env);
const OUT = process.env.BENCH_OUT ?? "/tmp/berth-bench.json";
/** When set, berthd writes a V8 CPU profile there on exit (this slows it down; for diagnosis only). */
const BERTHD_CPU_PROF = process.env.BENCH_BERTHD_CPU_PROF;

type DaemonName = "berthd" | "containerd";
const DAEMONS: readonly DaemonName[] = ["berthd", "containerd"];

interface Target {
  name: DaemonName;
  address: string;
  pid: number;
  /** The daemon's root dir (content store and snapshotters below it). */
  root: string;
}

async function attempt<T>(what: string, fn: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (err) {
    process.stderr.write(`  ${what}: failed: ${errorText(err)}\n`);
    return { ok: false, error: errorText(err) };
  }
}

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

/** "Server:\n  Version:  X" from `ctr version`. */
async function serverVersion(address: string): Promise<string> {
  const out = await ctrOk(address, ["version"]);
  return /Server:\s*\n\s*Version:\s*(\S+)/.exec(out)?.[1] ?? "unknown";
}

/** Warm-ups, then runs interleaved across the daemons so that drift on the VM hits both alike. */
async function ctrVersionLatency(targets: readonly Target[]): Promise<Record<DaemonName, Outcome<Summary>>> {
  const samples = new Map<DaemonName, number[]>();
  const failed = new Map<DaemonName, string>();
  for (const t of targets) {
    samples.set(t.name, []);
    for (let i = 0; i < CONFIG.ctrWarmups; i++) {
      const r = await attempt(`${t.name} ctr version`, () => timeCtr(t.address, ["version"]));
      if (!r.ok) failed.set(t.name, r.error);
    }
  }
  for (let i = 0; i < CONFIG.ctrRuns; i++) {
    for (const t of targets) {
      if (failed.has(t.name)) continue;
      const r = await attempt(`${t.name} ctr version`, () => timeCtr(t.address, ["version"]));
      if (r.ok) samples.get(t.name)?.push(r.value);
      else failed.set(t.name, r.error);
    }
  }
  const out = {} as Record<DaemonName, Outcome<Summary>>;
  for (const t of targets) {
    const error = failed.get(t.name);
    out[t.name] =
      error !== undefined ? { ok: false, error } : { ok: true, value: summarize(samples.get(t.name) ?? []) };
  }
  return out;
}

async function throughput(
  target: Target,
  what: string,
  caller: ReturnType<typeof unaryCaller>,
): Promise<Outcome<ThroughputResult>> {
  try {
    const r = await attempt(`${target.name} ${what}`, () =>
      measureThroughput(caller, {
        concurrency: CONFIG.concurrency,
        durationMs: CONFIG.durationMs,
        warmupMs: CONFIG.warmupMs,
        daemonPid: target.pid,
      }),
    );
    if (r.ok) log(`  ${target.name} ${what}: ${r.value.requestsPerSecond.toFixed(0)} req/s`);
    return r;
  } finally {
    caller.close();
  }
}

interface IngestSummary {
  rounds: IngestResult[];
  medianMegabytesPerSecond: number;
  medianDaemonCpuSeconds: number;
}

async function ingestRounds(
  targets: readonly Target[],
  blob: Awaited<ReturnType<typeof writeBlobFile>>,
): Promise<Record<DaemonName, Outcome<IngestSummary>>> {
  const rounds = new Map<DaemonName, IngestResult[]>(targets.map((t) => [t.name, []]));
  const failed = new Map<DaemonName, string>();
  for (let i = 0; i < CONFIG.ingestRounds; i++) {
    for (const t of targets) {
      if (failed.has(t.name)) continue; // one failure says it all; do not wait for more
      const r = await attempt(`${t.name} content ingest`, () =>
        ingestOnce(t.address, t.pid, CONFIG.namespace, blob),
      );
      if (r.ok) {
        rounds.get(t.name)?.push(r.value);
        log(`  ${t.name} ingest round ${i + 1}: ${r.value.megabytesPerSecond.toFixed(0)} MB/s`);
      } else failed.set(t.name, r.error);
    }
  }
  const out = {} as Record<DaemonName, Outcome<IngestSummary>>;
  for (const t of targets) {
    const error = failed.get(t.name);
    const rs = rounds.get(t.name) ?? [];
    out[t.name] =
      error !== undefined
        ? { ok: false, error }
        : {
            ok: true,
            value: {
              rounds: rs,
              medianMegabytesPerSecond: median(rs.map((r) => r.megabytesPerSecond)),
              medianDaemonCpuSeconds: median(rs.map((r) => r.daemonCpuSeconds)),
            },
          };
  }
  return out;
}

/** "1 GiB" or "64 MiB". */
function sizeLabel(mib: number): string {
  return mib >= 1024 && mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`;
}

runSection(async (cleanups) => {
  const started = Date.now();
  const machine = machineInfo();
  log(renderMachine(machine));

  const dir = await makeTempDir("bench");
  cleanups.add("remove blob dir", () => removeTempDir(dir));
  log(`writing a ${CONFIG.ingestMiB} MiB blob...`);
  const blob = await writeBlobFile(join(dir, "blob.bin"), CONFIG.ingestMiB);

  // Built and pushed before the daemons start, so that none of it competes with them for CPU.
  log(`building the multi-layer image, the ${sizeLabel(CONFIG.largeImageMiB)} image and the apply layer...`);
  const multi = await multiLayerTestImage("gzip", { repo: "bench/layers" });
  const largeDir = join(dir, "large");
  await mkdir(largeDir);
  const large = await largeTestImage({
    dir: largeDir,
    size: CONFIG.largeImageMiB * MiB,
    repo: "bench/large",
  });
  log(
    `  large image: ${large.tarSize} tar bytes -> ${large.layerDescriptors[0]?.size} gzip bytes, ` +
      `${large.smallFileCount} small files, in ${(large.generationMs / 1000).toFixed(1)} s`,
  );
  const applyLayer = await buildApplyLayer(CONFIG.applyMiB * MiB);
  log(
    `  apply layer: ${applyLayer.tarSize} tar bytes -> ${applyLayer.gzip.length} gzip bytes, ` +
      `${applyLayer.plan.files} files, in ${(applyLayer.generationMs / 1000).toFixed(1)} s`,
  );
  const registry = await startRegistry();
  cleanups.add("stop registry", () => registry.stop());
  const pushStarted = performance.now();
  for (const image of [multi, large]) await pushImage(registry.url, image.repo, image.tag, image);
  const pushSeconds = (performance.now() - pushStarted) / 1000;
  log(`  pushed both images to ${registry.host} in ${pushSeconds.toFixed(1)} s`);
  const multiTarBytes = (multi.built?.layers ?? []).reduce((n, l) => n + l.tar.length, 0);
  const pullImages = {
    multi: pullImage(registry.host, multi, multiTarBytes),
    large: pullImage(registry.host, large, large.tarSize),
  };

  log("starting berthd and containerd...");
  // berthd's harness default is debug logging, which would cost it a log line per call.
  // berthd's output goes to a file, as under a service manager (see berthd-wrapper.ts).
  const berthdLog = join(dir, "berthd.log");
  const { berthd, containerd } = await startDaemonPair(dir, cleanups, {
    logFile: berthdLog,
    cpuProfileDir: BERTHD_CPU_PROF,
  });
  const targets: Target[] = [
    { name: "berthd", address: berthd.address, pid: berthd.pid, root: berthd.root },
    { name: "containerd", address: containerd.address, pid: containerd.pid, root: containerd.root },
  ];
  const daemons = Object.fromEntries(
    await Promise.all(
      targets.map(async (t) => [
        t.name,
        { pid: t.pid, command: await commandName(t.pid), version: await serverVersion(t.address) },
      ]),
    ),
  ) as Record<DaemonName, { pid: number; command: string; version: string }>;

  log(`ctr version x${CONFIG.ctrRuns} (after ${CONFIG.ctrWarmups} warm-ups)...`);
  const ctrVersion = await ctrVersionLatency(targets);

  log(`unary gRPC throughput, concurrency ${CONFIG.concurrency}, ${CONFIG.durationMs} ms each...`);
  const version = {} as Record<DaemonName, Outcome<ThroughputResult>>;
  const imagesList = {} as Record<DaemonName, Outcome<ThroughputResult>>;
  // Daemon after daemon per method, so that a burst of load elsewhere hits one method, not one daemon.
  for (const t of targets) {
    version[t.name] = await throughput(t, "Version.Version", unaryCaller(t.address, Version.method.version));
  }
  for (const t of targets) {
    imagesList[t.name] = await throughput(
      t,
      "Images.List",
      unaryCaller(t.address, Images.method.list, { namespace: CONFIG.namespace }),
    );
  }

  log(`content ingest of ${CONFIG.ingestMiB} MiB x${CONFIG.ingestRounds}...`);
  const ingest = await ingestRounds(targets, blob);

  log(
    `ctr images pull of the multi-layer image (${multi.layerDescriptors.length} layers): ` +
      `${CONFIG.pullWarmups} warm-up + ${CONFIG.pullRounds} rounds per daemon...`,
  );
  const pullMulti = await pullRounds(targets, pullImages.multi, "multi-layer", {
    rounds: CONFIG.pullRounds,
    warmups: CONFIG.pullWarmups,
    timeoutMs: 120_000,
    log,
  });
  log(`ctr images pull of the ${sizeLabel(CONFIG.largeImageMiB)} image x${CONFIG.largePullRounds}...`);
  const pullLarge = await pullRounds(targets, pullImages.large, "large", {
    rounds: CONFIG.largePullRounds,
    warmups: 0,
    // Generous: even 5 MB/s gets it through; a hang must still end the bench.
    timeoutMs: Math.max(120_000, (large.tarSize / 5e6) * 1000),
    log,
  });

  log(
    `Diff.Apply of the ${CONFIG.applyMiB} MiB gzip layer: ${CONFIG.applyWarmups} warm-up(s), then ` +
      `${CONFIG.applyRounds} rounds taking turns...`,
  );
  const apply = await applyRounds(targets, applyLayer, {
    namespace: `${CONFIG.namespace}-apply`,
    rounds: CONFIG.applyRounds,
    warmups: CONFIG.applyWarmups,
    log,
    ...(CONFIG.applyProbeMiB > 0 ? { probe: { dir, bytes: CONFIG.applyProbeMiB * MiB } } : {}),
  });

  const memory = {} as Record<DaemonName, Outcome<{ rss: number; peak: number }>>;
  for (const t of targets) memory[t.name] = await attempt(`${t.name} memory`, () => memoryMiB(t.pid));

  const containers = await containerBench({
    config: CONTAINER_CONFIG,
    cleanups,
    log,
    ...(BERTHD_CPU_PROF ? { berthdCpuProfileDir: BERTHD_CPU_PROF } : {}),
  });

  const ingestLabel = `content ingest ${CONFIG.ingestMiB} MiB, median of ${CONFIG.ingestRounds}`;
  const rows: Row[] = [
    comparisonRow(`ctr version median, n=${CONFIG.ctrRuns}`, "ms", "lower", ctrVersion, (s) => s.median),
    comparisonRow(`ctr version p90, n=${CONFIG.ctrRuns}`, "ms", "lower", ctrVersion, (s) => s.p90),
    comparisonRow(
      `Version.Version, c=${CONFIG.concurrency}`,
      "req/s",
      "higher",
      version,
      (r) => r.requestsPerSecond,
    ),
    comparisonRow(
      "  daemon CPU per Version call",
      "µs",
      "lower",
      version,
      (r) => r.daemonCpuMicrosPerRequest,
    ),
    comparisonRow(
      `Images.List (ns), c=${CONFIG.concurrency}`,
      "req/s",
      "higher",
      imagesList,
      (r) => r.requestsPerSecond,
    ),
    comparisonRow(
      "  daemon CPU per Images.List call",
      "µs",
      "lower",
      imagesList,
      (r) => r.daemonCpuMicrosPerRequest,
    ),
    comparisonRow(ingestLabel, "MB/s", "higher", ingest, (s) => s.medianMegabytesPerSecond),
    comparisonRow("  daemon CPU per ingest", "s", "lower", ingest, (s) => s.medianDaemonCpuSeconds),
    {
      ...comparisonRow(
        `pull multi-layer image (${multi.layerDescriptors.length} layers), median of ${CONFIG.pullRounds}`,
        "s",
        "lower",
        pullMulti,
        (s) => s.medianSeconds,
      ),
      target: { ratioAtMost: 1 },
    },
    comparisonRow(
      "  daemon CPU per multi-layer pull",
      "s",
      "lower",
      pullMulti,
      (s) => s.medianDaemonCpuSeconds,
    ),
    {
      ...comparisonRow(
        `pull ${sizeLabel(CONFIG.largeImageMiB)} image, median of ${CONFIG.largePullRounds}`,
        "s",
        "lower",
        pullLarge,
        (s) => s.medianSeconds,
      ),
      target: { ratioAtMost: 1 },
    },
    comparisonRow(
      `  daemon CPU per ${sizeLabel(CONFIG.largeImageMiB)} pull`,
      "s",
      "lower",
      pullLarge,
      (s) => s.medianDaemonCpuSeconds,
    ),
    comparisonRow(
      `  ${sizeLabel(CONFIG.largeImageMiB)} pull, uncompressed`,
      "MB/s",
      "higher",
      pullLarge,
      (s) => s.medianMegabytesPerSecond,
    ),
    ...applyRows(apply, {
      mib: CONFIG.applyMiB,
      rounds: CONFIG.applyRounds,
      targetMBps: CONFIG.applyTargetMBps,
    }),
    comparisonRow("daemon RSS at the end", "MiB", "lower", memory, (m) => m.rss),
    comparisonRow("daemon peak RSS", "MiB", "lower", memory, (m) => m.peak),
    ...containerRows(containers),
  ];

  const goals = checkTargets(rows);
  const conditions = [
    applyConditions(apply, CONFIG.applyProbeFastMBps),
    concurrentConditions(containers),
  ].filter((line): line is string => line !== null);
  const berthdLogSummary = await summarizeLogFile(berthdLog);
  const report = {
    when: new Date().toISOString(),
    runtimeSeconds: 0,
    machine,
    config: { ...CONFIG, containers: CONTAINER_CONFIG },
    daemons,
    setup: {
      largeImage: {
        tarBytes: large.tarSize,
        gzipBytes: large.layerDescriptors[0]?.size,
        smallFiles: large.smallFileCount,
        generationMs: large.generationMs,
      },
      multiLayerImage: {
        layers: multi.layerDescriptors.length,
        tarBytes: multiTarBytes,
        gzipBytes: multi.layerDescriptors.reduce((n, d) => n + d.size, 0),
      },
      pushSeconds,
      applyLayer: {
        tarBytes: applyLayer.tarSize,
        gzipBytes: applyLayer.gzip.length,
        files: applyLayer.plan.files,
        smallFiles: applyLayer.plan.smallFiles,
        bytesByKind: applyLayer.plan.bytesByKind,
        generationMs: applyLayer.generationMs,
      },
    },
    rows: rows.map((r) => ({ ...r, ratio: ratio(r), verdict: verdict(r) })),
    targets: goals,
    conditions,
    berthdLog: berthdLogSummary,
    raw: { ctrVersion, version, imagesList, ingest, pullMulti, pullLarge, apply, memory, containers },
  };
  report.runtimeSeconds = Math.round((Date.now() - started) / 100) / 10;
  const json = JSON.stringify(report, null, 2);
  await writeFile(OUT, json + "\n");

  process.stdout.write(`${json}\n\n`);
  process.stdout.write(`${renderMachine(machine)}\n`);
  process.stdout.write(
    DAEMONS.map((d) => `${d}: ${daemons[d].version} (pid ${daemons[d].pid}, ${daemons[d].command})`).join(
      "; ",
    ) + "\n\n",
  );
  process.stdout.write(`${renderTable(rows)}\n\n`);
  if (goals.length > 0) process.stdout.write(`${renderTargets(goals)}\n\n`);
  if (conditions.length > 0) process.stdout.write(`${conditions.join("\n")}\n\n`);
  const topWarning = berthdLogSummary.warnings[0];
  process.stdout.write(
    `berthd wrote ${berthdLogSummary.lines} log lines` +
      (topWarning ? `; most frequent Node warning (x${topWarning.count}): ${topWarning.message}` : "") +
      "\n",
  );
  process.stdout.write(`ratio = berthd/containerd; results written to ${OUT} (${report.runtimeSeconds} s)\n`);

  const missing = rows.filter((r) => r.berthd === null || r.containerd === null);
  if (missing.length > 0) {
    log(`${missing.length} metric(s) could not be measured; see the n/a cells`);
    return 1;
  }
  return 0;
});
