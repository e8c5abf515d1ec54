// `node --import tsx bench/run-pulls.ts`: only the multi-layer pull section of `npm run bench`
// (image-pull.ts), on its own fresh berthd and containerd and one registry, taking turns between
// the daemons; prints the JSON, then the table.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { startBerthd } from "../test/harness/berthd.js";
import { startRegistry } from "../test/harness/registry.js";
import { pushImage } from "../test/fixtures/registry-push.js";
import { multiLayerTestImage } from "../test/fixtures/test-images.js";
import { makeTempDir, removeTempDir } from "../test/harness/temp-dir.js";
import { startDaemonPair } from "./daemon-pair.js";
import { summarizeLogFile, writeBerthdWrapper } from "./berthd-wrapper.js";
import { envInt } from "./env-config.js";
import { pullImage, pullRounds, rpcTimes, type PullSummary } from "./image-pull.js";
import { machineInfo } from "./machine-info.js";
import { comparisonRow, renderMachine, type Row } from "./report.js";
import { publishReport, reportHead, runSection } from "./section-runner.js";
import { type Outcome } from "./rounds.js";

const OUT = process.env.BENCH_OUT ?? "/tmp/berth-bench-pulls.json";
const ROUNDS = envInt(process.env, "BENCH_PULL_ROUNDS", 10);
const WARMUPS = envInt(process.env, "BENCH_PULL_WARMUPS", 1);
/** When set, berthd writes a V8 CPU profile there on exit (this slows it down; for diagnosis only). */
const BERTHD_CPU_PROF = process.env.BENCH_BERTHD_CPU_PROF;
/**
 * BENCH_PULL_RPC_TIMES=1: berthd runs at debug level, which logs every call with its duration
 * (costing it some CPU), and the time per method over all pulls (warm-ups and the untimed
 * cleanup calls included) is reported: where berthd's share of a pull goes, call by call.
 */
const RPC_TIMES = process.env.BENCH_PULL_RPC_TIMES === "1";
/**
 * BENCH_BERTHD_BASELINE=<checkout>/bin/berthd: a second berthd from another build (say the base
 * of a branch, built there) takes its turns in the same rounds, so that a change is measured
 * against its base under the same load, with containerd as the yardstick of both.
 */
const BASELINE = process.env.BENCH_BERTHD_BASELINE;

type DaemonName = "berthd" | "containerd" | "baseline";

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

/** A row of berthd (or, with of = "baseline", the baseline build in its column) against containerd. */
/** A pull row of berthd (or the baseline build, as "berthd") against containerd. */
function row(
  metric: string,
  unit: string,
  results: Partial<Record<DaemonName, Outcome<PullSummary>>>,
  pick: (s: PullSummary) => number,
  of: "berthd" | "baseline" = "berthd",
): Row {
  return comparisonRow(metric, unit, "lower", { berthd: results[of], containerd: results.containerd }, pick);
}

runSection(async (cleanups) => {
  const started = Date.now();
  const machine = machineInfo();
  log(renderMachine(machine));
  const dir = await makeTempDir("bench-pulls");
  cleanups.add("remove temp dir", () => removeTempDir(dir));

  // Built and pushed before the daemons start, so that none of it competes with them for CPU.
  const multi = await multiLayerTestImage("gzip", { repo: "bench/layers" });
  const registry = await startRegistry();
  cleanups.add("stop registry", () => registry.stop());
  await pushImage(registry.url, multi.repo, multi.tag, multi);
  const multiTarBytes = (multi.built?.layers ?? []).reduce((n, l) => n + l.tar.length, 0);
  const image = pullImage(registry.host, multi, multiTarBytes);

  log("starting berthd and containerd...");
  const berthdLog = join(dir, "berthd.log");
  const logLevel = RPC_TIMES ? "debug" : "info";
  const { berthd, containerd } = await startDaemonPair(dir, cleanups, {
    logFile: berthdLog,
    logLevel,
    cpuProfileDir: BERTHD_CPU_PROF,
  });
  let baseline: Awaited<ReturnType<typeof startBerthd>> | undefined;
  if (BASELINE !== undefined) {
    const baseBinary = await writeBerthdWrapper(dir, {
      logFile: join(dir, "baseline.log"),
      name: "baseline-wrapper",
      berthdPath: BASELINE,
    });
    baseline = await startBerthd({ extraArgs: ["--log-level", logLevel], binary: baseBinary });
    const b = baseline;
    cleanups.add("stop baseline berthd", () => b.stop());
  }

  log(
    `ctr images pull of the multi-layer image (${multi.layerDescriptors.length} layers): ` +
      `${WARMUPS} warm-up + ${ROUNDS} rounds per daemon...`,
  );
  const pulls = await pullRounds(
    [
      { name: "berthd" as const, address: berthd.address, pid: berthd.pid, root: berthd.root },
      {
        name: "containerd" as const,
        address: containerd.address,
        pid: containerd.pid,
        root: containerd.root,
      },
      ...(baseline === undefined
        ? []
        : [
            {
              name: "baseline" as const,
              address: baseline.address,
              pid: baseline.pid,
              root: baseline.root,
            },
          ]),
    ],
    image,
    "multi-layer",
    { rounds: ROUNDS, warmups: WARMUPS, timeoutMs: 120_000, log },
  );

  const rows: Row[] = [
    {
      ...row(
        `pull multi-layer image (${multi.layerDescriptors.length} layers), median of ${ROUNDS}`,
        "s",
        pulls,
        (s) => s.medianSeconds,
      ),
      target: { ratioAtMost: 1 },
    },
    row("  daemon CPU per multi-layer pull", "s", pulls, (s) => s.medianDaemonCpuSeconds),
    ...(baseline === undefined
      ? []
      : [
          row(
            "  baseline build (in the berthd column): pull",
            "s",
            pulls,
            (s) => s.medianSeconds,
            "baseline",
          ),
          row(
            "  baseline build (in the berthd column): daemon CPU",
            "s",
            pulls,
            (s) => s.medianDaemonCpuSeconds,
            "baseline",
          ),
        ]),
  ];
  const head = reportHead(started, machine, rows);
  const goals = head.targets;
  const report = {
    ...head,
    berthdLog: await summarizeLogFile(berthdLog),
    ...(RPC_TIMES ? { berthdRpcTimes: rpcTimes(await readFile(berthdLog, "utf8")) } : {}),
    raw: { pullMulti: pulls },
  };
  for (const t of report.berthdRpcTimes ?? []) {
    log(
      `  ${t.method.padEnd(40)} ${String(t.calls).padStart(5)} calls ${t.totalMs.toFixed(1).padStart(9)} ms ` +
        `(mean ${t.meanMs.toFixed(3)} ms)`,
    );
  }
  return publishReport(OUT, report, machine, rows, goals);
});
