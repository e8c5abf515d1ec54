// `node --import tsx bench/run-apply.ts`: only the Diff.Apply section of `npm run bench`
// (diff-apply.ts), on its own fresh berthd and containerd: the large gzip layer (throughput), then
// a small one (the fixed cost of one call: worker hand-off, mounts, the gRPC round trip). Prints the
// JSON, then the table.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startBerthd } from "../test/harness/berthd.js";
import { startContainerd } from "../test/harness/containerd.js";
import { makeTempDir, removeTempDir } from "../test/harness/temp-dir.js";
import { KiB, MiB, buildApplyLayer } from "./apply-layer.js";
import { writeBerthdWrapper } from "./berthd-wrapper.js";
import { createCleanups } from "./cleanups.js";
import { applyRounds, type ApplySummary } from "./diff-apply.js";
import { envInt } from "./env-config.js";
import { machineInfo } from "./machine-info.js";
import {
  checkTargets,
  ratio,
  renderMachine,
  renderTable,
  renderTargets,
  verdict,
  type Row,
} from "./report.js";
import { unaryCaller } from "./grpc-unary.js";
import { errorText, type Outcome } from "./rounds.js";
import { median } from "./stats.js";
import { Version } from "../src/gen/containerd/services/version/v1/version_pb.js";

const CONFIG = {
  applyMiB: envInt(process.env, "BENCH_APPLY_MIB", 256),
  applyRounds: envInt(process.env, "BENCH_APPLY_ROUNDS", 5),
  /** File content of the small layer whose applies measure the fixed cost per call. */
  smallKiB: envInt(process.env, "BENCH_APPLY_SMALL_KIB", 64),
  smallRounds: envInt(process.env, "BENCH_APPLY_SMALL_ROUNDS", 20),
  smallWarmups: 3,
  /** Sequential Version.Version calls: the gRPC round trip alone, to read the small apply against. */
  unaryCalls: 200,
  namespace: "bench-apply",
  applyTargetMBps: 250,
};
const OUT = process.env.BENCH_OUT ?? "/tmp/berth-bench-apply.json";
const BERTHD_CPU_PROF = process.env.BENCH_BERTHD_CPU_PROF;

type DaemonName = "berthd" | "containerd";

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

function row(
  metric: string,
  unit: string,
  better: Row["better"],
  results: Record<DaemonName, Outcome<ApplySummary>>,
  pick: (v: ApplySummary) => number,
): Row {
  const b = results.berthd;
  const c = results.containerd;
  return {
    metric,
    unit,
    better,
    berthd: b.ok ? pick(b.value) : null,
    containerd: c.ok ? pick(c.value) : null,
    ...(b.ok ? {} : { berthdError: b.error }),
    ...(c.ok ? {} : { containerdError: c.error }),
  };
}

async function main(): Promise<number> {
  const cleanups = createCleanups();
  const onSignal = (signal: NodeJS.Signals): void => {
    log(`\n${signal}: stopping the daemons and removing temp dirs`);
    void cleanups.run().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const started = Date.now();
  try {
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
    const berthdBinary = await writeBerthdWrapper(dir, {
      logFile: berthdLog,
      ...(BERTHD_CPU_PROF ? { cpuProfileDir: BERTHD_CPU_PROF } : {}),
    });
    const berthd = await startBerthd({ extraArgs: ["--log-level", "info"], binary: berthdBinary }).catch(
      async (err: unknown) => {
        const tail = (await readFile(berthdLog, "utf8").catch(() => "")).split("\n").slice(-20).join("\n");
        throw new Error(`${errorText(err)}\n--- ${berthdLog} tail ---\n${tail}`);
      },
    );
    cleanups.add("stop berthd", () => berthd.stop());
    const containerd = await startContainerd({ logLevel: "info" });
    cleanups.add("stop containerd", () => containerd.stop());
    const targets = [
      { name: "berthd" as const, address: berthd.address, pid: berthd.pid },
      { name: "containerd" as const, address: containerd.address, pid: containerd.pid },
    ];

    log(`Diff.Apply of the ${CONFIG.applyMiB} MiB gzip layer x${CONFIG.applyRounds}...`);
    const apply = await applyRounds(targets, layer, {
      namespace: CONFIG.namespace,
      rounds: CONFIG.applyRounds,
      log,
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

    const rows: Row[] = [
      {
        ...row(
          `Diff.Apply ${CONFIG.applyMiB} MiB gzip layer, median of ${CONFIG.applyRounds}`,
          "MB/s",
          "higher",
          apply,
          (s) => s.medianMegabytesPerSecond,
        ),
        target: { berthdAtLeast: CONFIG.applyTargetMBps },
      },
      row("  daemon CPU per apply", "s", "lower", apply, (s) => s.medianDaemonCpuSeconds),
      row(
        `Diff.Apply ${CONFIG.smallKiB} KiB gzip layer, median of ${CONFIG.smallRounds}`,
        "ms",
        "lower",
        applySmall,
        (s) => s.medianSeconds * 1000,
      ),
      {
        metric: `  Version.Version round trip, median of ${CONFIG.unaryCalls}`,
        unit: "ms",
        better: "lower",
        berthd: unary.berthd.ok ? unary.berthd.value : null,
        containerd: unary.containerd.ok ? unary.containerd.value : null,
      },
    ];
    const goals = checkTargets(rows);
    const report = {
      when: new Date().toISOString(),
      runtimeSeconds: Math.round((Date.now() - started) / 100) / 10,
      machine,
      config: CONFIG,
      applyLayer: {
        tarBytes: layer.tarSize,
        gzipBytes: layer.gzip.length,
        files: layer.plan.files,
        smallFiles: layer.plan.smallFiles,
      },
      rows: rows.map((r) => ({ ...r, ratio: ratio(r), verdict: verdict(r) })),
      targets: goals,
      raw: { apply, applySmall, unary },
    };
    const json = JSON.stringify(report, null, 2);
    await writeFile(OUT, `${json}\n`);
    process.stdout.write(`${json}\n\n${renderMachine(machine)}\n\n${renderTable(rows)}\n\n`);
    if (goals.length > 0) process.stdout.write(`${renderTargets(goals)}\n\n`);
    process.stdout.write(
      `ratio = berthd/containerd; results written to ${OUT} (${report.runtimeSeconds} s)\n`,
    );
    return rows.some((r) => r.berthd === null || r.containerd === null) ? 1 : 0;
  } finally {
    await cleanups.run();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(
      `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
