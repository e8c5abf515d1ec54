// `npm run bench`: berthd against a real containerd 1.6 started in the same run, on the same
// machine, driven by the same stock ctr and the same Node gRPC client; prints a table and JSON.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startBerthd } from "../test/harness/berthd.js";
import { startContainerd } from "../test/harness/containerd.js";
import { ctrOk } from "../test/harness/ctr.js";
import { makeTempDir, removeTempDir } from "../test/harness/temp-dir.js";
import { Version } from "../src/gen/containerd/services/version/v1/version_pb.js";
import { Images } from "../src/gen/containerd/services/images/v1/images_pb.js";
import { writeBlobFile } from "./blob-file.js";
import { createCleanups } from "./cleanups.js";
import { ingestOnce, type IngestResult } from "./content-ingest.js";
import { timeCtr } from "./ctr-latency.js";
import { unaryCaller } from "./grpc-unary.js";
import { machineInfo } from "./machine-info.js";
import { writeProfiledBerthd } from "./profiled-berthd.js";
import { commandName, memoryMiB } from "./process-usage.js";
import { renderMachine, renderTable, ratio, verdict, type Row } from "./report.js";
import { median, summarize, type Summary } from "./stats.js";
import { measureThroughput, type ThroughputResult } from "./unary-throughput.js";

const CONFIG = {
  ctrWarmups: 3,
  ctrRuns: 30,
  concurrency: 16,
  durationMs: 3000,
  // berthd is a JIT runtime: its per-call cost keeps falling for the first few seconds of load.
  warmupMs: 2000,
  ingestMiB: Number(process.env.BENCH_INGEST_MIB ?? 1024),
  ingestRounds: 3,
  namespace: "bench",
};
const OUT = process.env.BENCH_OUT ?? "/tmp/berth-bench.json";
/** When set, berthd writes a V8 CPU profile there on exit (this slows it down; for diagnosis only). */
const BERTHD_CPU_PROF = process.env.BENCH_BERTHD_CPU_PROF;

type DaemonName = "berthd" | "containerd";
const DAEMONS: readonly DaemonName[] = ["berthd", "containerd"];

interface Target {
  name: DaemonName;
  address: string;
  pid: number;
}

/** One metric for one daemon: the value, or why there is none. */
type Outcome<T> = { ok: true; value: T } | { ok: false; error: string };

function errorText(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split("\n")[0] ?? msg;
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

function row<T>(
  metric: string,
  unit: string,
  better: Row["better"],
  results: Record<DaemonName, Outcome<T>>,
  pick: (v: T) => number,
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

    const dir = await makeTempDir("bench");
    cleanups.add("remove blob dir", () => removeTempDir(dir));
    log(`writing a ${CONFIG.ingestMiB} MiB blob...`);
    const blob = await writeBlobFile(join(dir, "blob.bin"), CONFIG.ingestMiB);

    log("starting berthd and containerd...");
    // berthd's harness default is debug logging, which would cost it a log line per call.
    const berthd = await startBerthd({
      extraArgs: ["--log-level", "info"],
      ...(BERTHD_CPU_PROF ? { binary: await writeProfiledBerthd(dir, BERTHD_CPU_PROF) } : {}),
    });
    cleanups.add("stop berthd", () => berthd.stop());
    const containerd = await startContainerd({ logLevel: "info" });
    cleanups.add("stop containerd", () => containerd.stop());
    const targets: Target[] = [
      { name: "berthd", address: berthd.address, pid: berthd.pid },
      { name: "containerd", address: containerd.address, pid: containerd.pid },
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
      version[t.name] = await throughput(
        t,
        "Version.Version",
        unaryCaller(t.address, Version.method.version),
      );
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

    const memory = {} as Record<DaemonName, Outcome<{ rss: number; peak: number }>>;
    for (const t of targets) memory[t.name] = await attempt(`${t.name} memory`, () => memoryMiB(t.pid));

    const ingestLabel = `content ingest ${CONFIG.ingestMiB} MiB, median of ${CONFIG.ingestRounds}`;
    const rows: Row[] = [
      row(`ctr version median, n=${CONFIG.ctrRuns}`, "ms", "lower", ctrVersion, (s) => s.median),
      row(`ctr version p90, n=${CONFIG.ctrRuns}`, "ms", "lower", ctrVersion, (s) => s.p90),
      row(`Version.Version, c=${CONFIG.concurrency}`, "req/s", "higher", version, (r) => r.requestsPerSecond),
      row("  daemon CPU per Version call", "µs", "lower", version, (r) => r.daemonCpuMicrosPerRequest),
      row(
        `Images.List (ns), c=${CONFIG.concurrency}`,
        "req/s",
        "higher",
        imagesList,
        (r) => r.requestsPerSecond,
      ),
      row("  daemon CPU per Images.List call", "µs", "lower", imagesList, (r) => r.daemonCpuMicrosPerRequest),
      row(ingestLabel, "MB/s", "higher", ingest, (s) => s.medianMegabytesPerSecond),
      row("  daemon CPU per ingest", "s", "lower", ingest, (s) => s.medianDaemonCpuSeconds),
      row("daemon RSS at the end", "MiB", "lower", memory, (m) => m.rss),
      row("daemon peak RSS", "MiB", "lower", memory, (m) => m.peak),
    ];

    const report = {
      when: new Date().toISOString(),
      runtimeSeconds: 0,
      machine,
      config: CONFIG,
      daemons,
      rows: rows.map((r) => ({ ...r, ratio: ratio(r), verdict: verdict(r) })),
      raw: { ctrVersion, version, imagesList, ingest, memory },
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
    process.stdout.write(
      `ratio = berthd/containerd; results written to ${OUT} (${report.runtimeSeconds} s)\n`,
    );

    const missing = rows.filter((r) => r.berthd === null || r.containerd === null);
    if (missing.length > 0) {
      log(`${missing.length} metric(s) could not be measured; see the n/a cells`);
      return 1;
    }
    return 0;
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
