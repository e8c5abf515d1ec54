// `node --import tsx bench/run-apply.ts`: only the Diff.Apply section of `npm run bench`
// (diff-apply.ts), on its own fresh berthd and containerd: the large gzip layer (throughput), then
// a small one (the fixed cost of one call: worker hand-off, mounts, the gRPC round trip). Prints the
// JSON, then the table.
import { join } from "node:path";
import { makeTempDir, removeTempDir } from "../test/harness/temp-dir.js";
import { startDaemonPair } from "./daemon-pair.js";
import { KiB, MiB, buildApplyLayer } from "./apply-layer.js";
import { startWrappedBerthd } from "./berthd-wrapper.js";
import { applyConditions, applyRounds, applyRows } from "./diff-apply.js";
import { envInt } from "./env-config.js";
import { machineInfo } from "./machine-info.js";
import { comparisonRow, renderMachine, type Row } from "./report.js";
import { publishReport, reportHead, runSection } from "./section-runner.js";
import { unaryCaller } from "./grpc-unary.js";
import { errorText, type Outcome } from "./rounds.js";
import { median } from "./stats.js";
import { Version } from "../src/gen/containerd/services/version/v1/version_pb.js";

const CONFIG = {
  applyMiB: envInt(process.env, "BENCH_APPLY_MIB", 256),
  applyRounds: envInt(process.env, "BENCH_APPLY_ROUNDS", 5),
  applyWarmups: envInt(process.env, "BENCH_APPLY_WARMUPS", 1, 0),
  /** File content of the small layer whose applies measure the fixed cost per call. */
  smallKiB: envInt(process.env, "BENCH_APPLY_SMALL_KIB", 64),
  smallRounds: envInt(process.env, "BENCH_APPLY_SMALL_ROUNDS", 20),
  smallWarmups: 3,
  /** Sequential Version.Version calls: the gRPC round trip alone, to read the small apply against. */
  unaryCalls: 200,
  namespace: "bench-apply",
  applyTargetMBps: 250,
  /** After each apply, this much written into a new file: the machine's own page-cache rate. */
  probeMiB: envInt(process.env, "BENCH_PROBE_MIB", 64, 0),
  /** The probe rate from which a round counts as taken on an unthrottled machine. */
  probeFastMBps: 1000,
};
const OUT = process.env.BENCH_OUT ?? "/tmp/berth-bench-apply.json";
const BERTHD_CPU_PROF = process.env.BENCH_BERTHD_CPU_PROF;
/**
 * BENCH_BERTHD_BASELINE=<checkout>/bin/berthd: a second berthd from another build takes its turns
 * in the same rounds (as in run-pulls.ts), reported in extra rows against the same containerd.
 */
const BASELINE = process.env.BENCH_BERTHD_BASELINE;

type DaemonName = "berthd" | "containerd" | "baseline";

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

runSection(async (cleanups) => {
  const started = Date.now();
  const machine = machineInfo();
  log(renderMachine(machine));
  log(`building the ${CONFIG.applyMiB} MiB and ${CONFIG.smallKiB} KiB apply layers...`);
  const layer = await buildApplyLayer(CONFIG.applyMiB * MiB);
  log(
    `  apply layer: ${layer.tarSize} tar bytes -> ${layer.gzip.length} gzip bytes, ` +
      `${layer.plan.files} files, in ${(layer.generationMs / 1000).toFixed(1)} s`,
  );
  const small = await buildApplyLayer(CONFIG.smallKiB * KiB);
  log(`  small layer: ${small.tarSize} tar bytes, ${small.plan.files} files`);

  const dir = await makeTempDir("bench-apply");
  cleanups.add("remove temp dir", () => removeTempDir(dir));
  log("starting berthd and containerd...");
  const berthdLog = join(dir, "berthd.log");
  const { berthd, containerd } = await startDaemonPair(dir, cleanups, {
    logFile: berthdLog,
    cpuProfileDir: BERTHD_CPU_PROF,
  });
  const targets: { name: DaemonName; address: string; pid: number }[] = [
    { name: "berthd", address: berthd.address, pid: berthd.pid },
    { name: "containerd", address: containerd.address, pid: containerd.pid },
  ];
  if (BASELINE !== undefined) {
    const baseline = await startWrappedBerthd(dir, {
      logFile: join(dir, "baseline.log"),
      name: "baseline-wrapper",
      berthdPath: BASELINE,
    });
    cleanups.add("stop baseline berthd", () => baseline.stop());
    targets.push({ name: "baseline", address: baseline.address, pid: baseline.pid });
  }

  log(
    `Diff.Apply of the ${CONFIG.applyMiB} MiB gzip layer: ${CONFIG.applyWarmups} warm-up(s), then ` +
      `${CONFIG.applyRounds} rounds taking turns...`,
  );
  const apply = await applyRounds(targets, layer, {
    namespace: CONFIG.namespace,
    rounds: CONFIG.applyRounds,
    warmups: CONFIG.applyWarmups,
    log,
    ...(CONFIG.probeMiB > 0 ? { probe: { dir, bytes: CONFIG.probeMiB * MiB } } : {}),
  });
  log(`Diff.Apply of the ${CONFIG.smallKiB} KiB gzip layer x${CONFIG.smallRounds}...`);
  const applySmall = await applyRounds(targets, small, {
    namespace: `${CONFIG.namespace}-small`,
    rounds: CONFIG.smallRounds,
    warmups: CONFIG.smallWarmups,
    label: "small Diff.Apply",
    log,
  });

  log(`Version.Version x${CONFIG.unaryCalls}, one at a time (the bare gRPC round trip)...`);
  const unary = {} as Record<DaemonName, Outcome<number>>;
  for (const t of targets) {
    const caller = unaryCaller(t.address, Version.method.version);
    try {
      for (let i = 0; i < CONFIG.unaryCalls / 4; i++) await caller.call();
      const times: number[] = [];
      for (let i = 0; i < CONFIG.unaryCalls; i++) {
        const start = performance.now();
        await caller.call();
        times.push(performance.now() - start);
      }
      unary[t.name] = { ok: true, value: median(times) };
      log(`  ${t.name}: ${median(times).toFixed(2)} ms`);
    } catch (err) {
      unary[t.name] = { ok: false, error: errorText(err) };
    } finally {
      caller.close();
    }
  }

  const of = <T>(
    results: Partial<Record<DaemonName, Outcome<T>>>,
    who: "berthd" | "baseline",
  ): Partial<Record<"berthd" | "containerd", Outcome<T>>> => ({
    berthd: results[who],
    containerd: results.containerd,
  });
  const baselineRows: Row[] =
    BASELINE === undefined
      ? []
      : [
          comparisonRow(
            "  baseline build (in the berthd column): Diff.Apply large",
            "MB/s",
            "higher",
            of(apply, "baseline"),
            (s) => s.medianMegabytesPerSecond,
          ),
          comparisonRow(
            "  baseline build (in the berthd column): daemon CPU per apply",
            "s",
            "lower",
            of(apply, "baseline"),
            (s) => s.medianDaemonCpuSeconds,
          ),
          comparisonRow(
            "  baseline build (in the berthd column): Diff.Apply small",
            "ms",
            "lower",
            of(applySmall, "baseline"),
            (s) => s.medianSeconds * 1000,
          ),
          comparisonRow(
            "  baseline build (in the berthd column): Version round trip",
            "ms",
            "lower",
            of(unary, "baseline"),
            (v) => v,
          ),
        ];
  const rows: Row[] = [
    ...applyRows(apply, {
      mib: CONFIG.applyMiB,
      rounds: CONFIG.applyRounds,
      targetMBps: CONFIG.applyTargetMBps,
    }),
    comparisonRow(
      `Diff.Apply ${CONFIG.smallKiB} KiB gzip layer, median of ${CONFIG.smallRounds}`,
      "ms",
      "lower",
      applySmall,
      (s) => s.medianSeconds * 1000,
    ),
    comparisonRow(
      `  Version.Version round trip, median of ${CONFIG.unaryCalls}`,
      "ms",
      "lower",
      unary,
      (v) => v,
    ),
    ...baselineRows,
  ];
  const conditions = applyConditions(apply, CONFIG.probeFastMBps);
  const notes = conditions === null ? [] : [conditions];
  const head = reportHead(started, machine, rows);
  const goals = head.targets;
  const report = {
    ...head,
    config: CONFIG,
    applyLayer: {
      tarBytes: layer.tarSize,
      gzipBytes: layer.gzip.length,
      files: layer.plan.files,
      smallFiles: layer.plan.smallFiles,
    },
    conditions: notes,
    raw: { apply, applySmall, unary },
  };
  return publishReport(OUT, report, machine, rows, goals, notes);
});
