// Container benchmarks: berthd running containers through the Berth shim (io.containerd.berth.v1)
// against a real containerd 1.6 running them through its Go shim (io.containerd.runc.v2), both
// driven by the same stock ctr with the same busybox image. A fresh pair of daemons is started for
// this section, so that idle memory is measured right after start-up and nothing from the other
// sections (pulls, applies) weighs on either daemon. Each daemon and everything it forks is put in a
// cgroup of its own for CPU accounting (cpu-group.ts); containers get their own cgroups
// (`--cgroup /<daemon>-<ns>/<id>`), so both daemons' containers never share one.
import { execFile } from "node:child_process";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { busyboxImage } from "../test/fixtures/busybox.js";
import { writeOciArchive } from "../test/fixtures/oci-image.js";
import { removeCgroupParents } from "../test/harness/cgroups.js";
import { CTR_PATH, ctrArgv, ctrEnv, ctrOk, runCtr } from "../test/harness/ctr.js";
import { pidsWithArgs } from "../test/harness/process-tree.js";
import { makeTempDir, removeTempDir } from "../test/harness/temp-dir.js";
import { startDaemonPair } from "./daemon-pair.js";
import { ctrBurst } from "./ctr-burst.js";
import { runLight } from "./light-spawn.js";
import { summarizeLogFile, type LogSummary } from "./berthd-wrapper.js";
import { createCleanups, type Cleanups } from "./cleanups.js";
import {
  mapLimit,
  notInStatus,
  parentPidFromStat,
  parseTasksLs,
  splitShims,
  waitQuiet,
} from "./container-tasks.js";
import { createCpuGroup, type CpuGroup } from "./cpu-group.js";
import { watchTaskStarts, type TaskStartWatch } from "./task-start-watch.js";
import { envInt } from "./env-config.js";
import type { Row } from "./report.js";
import { errorText, interleavedRounds, mapOutcomes, type Outcome } from "./rounds.js";
import { distinctResidentKiB } from "./resident-pages.js";
import { settleDisks } from "./settle.js";
import { describeProbes, probeFreshWrites } from "./page-cache-probe.js";
import { MiB } from "./apply-layer.js";
import { kibToMiB, processMemory, sumMemory, type MemoryKiB, type ProcessMemory } from "./smaps.js";
import { median, summarize, type Summary } from "./stats.js";

const execFileAsync = promisify(execFile);

export interface ContainerBenchConfig {
  /** `ctr run --rm IMAGE id true`: untimed runs per configuration, then timed runs taking turns. */
  runRmWarmups: number;
  runRmRuns: number;
  /** Containers started at once with `ctr run -d`, and how many rounds of it (after warm-ups). */
  concurrent: number;
  concurrentWarmups: number;
  concurrentRounds: number;
  /** Running `sleep` containers the memory of the daemon and its shims is measured with. */
  memoryContainers: number;
  /**
   * Seconds the memory is watched with them running: V8 gives memory back only some time after a
   * burst of work (its memory reducer), so the figure right after the start is not the steady one.
   */
  memorySettleSeconds: number;
  /** Written into a new file after each concurrent round (page-cache-probe.ts); 0: no probe. */
  probeMiB: number;
  /** The issue's goals: berthd/containerd at most this much. */
  runRmTargetRatio: number;
  concurrentTargetRatio: number;
  memoryTargetRatio: number;
}

export function containerBenchConfig(env: Record<string, string | undefined>): ContainerBenchConfig {
  return {
    // berthd runs on a JIT: a fresh daemon's first few dozen starts are ~10 ms slower than later ones
    // (88 then 78 ms here; containerd, compiled, has no such ramp), so the timed runs come after
    // 25, and the warm-ups' own median is reported beside them.
    runRmWarmups: envInt(env, "BENCH_RUN_RM_WARMUPS", 25, 0),
    runRmRuns: envInt(env, "BENCH_RUN_RM_RUNS", 30),
    concurrent: envInt(env, "BENCH_CONCURRENT_CONTAINERS", 20),
    concurrentWarmups: envInt(env, "BENCH_CONCURRENT_WARMUPS", 1, 0),
    concurrentRounds: envInt(env, "BENCH_CONCURRENT_ROUNDS", 5),
    memoryContainers: envInt(env, "BENCH_MEMORY_CONTAINERS", 50),
    memorySettleSeconds: envInt(env, "BENCH_MEMORY_SETTLE_SECONDS", 45, 0),
    probeMiB: envInt(env, "BENCH_PROBE_MIB", 64, 0),
    runRmTargetRatio: 0.8,
    concurrentTargetRatio: 0.8,
    memoryTargetRatio: 0.5,
  };
}

type DaemonName = "berthd" | "containerd";
/** A daemon with a runtime: berthd with the Berth shim, containerd with its Go shim, and (for
 * information) berthd with the stock Go shim, which tells berthd's own overhead from its shim's. */
export type Setup = "berthd" | "containerd" | "berthd-runc";
const SETUPS: readonly Setup[] = ["berthd", "containerd", "berthd-runc"];

const IMAGE = "docker.io/library/busybox:bench";
const BERTH_RUNTIME = "io.containerd.berth.v1";
const RUNC_RUNTIME = "io.containerd.runc.v2";

interface Daemon {
  name: DaemonName;
  address: string;
  pid: number;
  fifoDir: string;
  cpu: CpuGroup | undefined;
}

export interface RunRmSample {
  ms: number;
  /** CPU of the daemon and all it forked, from spawning ctr until it was quiet again. */
  cpuSeconds: number | null;
  /** How long it took after ctr exited until the daemon was quiet (e.g. berthd booting a spare). */
  quietAfterMs: number;
}

export interface RunRmSummary {
  wallMs: Summary;
  /** The untimed warm-up runs before (a fresh daemon's first starts); null without any. */
  warmupWallMs: Summary | null;
  medianCpuSeconds: number | null;
  medianQuietAfterMs: number;
  samples: RunRmSample[];
}

export interface ConcurrentRound {
  /**
   * From launching the ctr processes until the daemon's /tasks/start event for the last of them
   * arrived (one `ctr events` subscriber, task-start-watch.ts; no polling).
   */
  runningMs: number;
  /** From launching until the last `ctr run -d` exited. */
  allExitedMs: number;
  /** From the launch until the shell had started every ctr process (ctr-burst.ts). */
  launchMs: number;
  /** CPU of the daemon and all it forked from the launch until quiet again (cleanup excluded). */
  cpuSeconds: number | null;
  /** The machine's rate into fresh page cache right after the round (page-cache-probe.ts), MB/s. */
  machineWriteMBps?: number;
}

export interface ConcurrentSummary {
  rounds: ConcurrentRound[];
  medianRunningMs: number;
  medianAllExitedMs: number;
  medianCpuSeconds: number | null;
}

export interface MemorySnapshot {
  containers: number;
  daemon: ProcessMemory;
  /** Shims that are the parent of a container's init process. */
  servingShims: ProcessMemory[];
  /** Shims serving nothing: berthd's spare. */
  idleShims: ProcessMemory[];
  shims: MemoryKiB;
  /** Daemon + every shim (serving and idle). */
  total: MemoryKiB;
  /** KiB of distinct physical pages resident in the daemon and its shims (resident-pages.ts). */
  distinctKiB: number;
  /** When it was taken: seconds after the last container was started. */
  atSeconds: number;
}

export interface MemoryResult {
  /** Seconds to start the containers (ctr run -d, 10 at a time); for information. */
  startSeconds: number;
  /** Once the daemon is quiet after the start, plus 2 s. */
  early: MemorySnapshot;
  /** At the end of the settle time (the same as early when it is 0). */
  settled: MemorySnapshot;
  /** Daemon + shims every 5 s in between. */
  series: { atSeconds: number; pssMiB: number; rssMiB: number }[];
}

export interface IdleMemory {
  daemon: ProcessMemory;
  /** Shims running with nothing to serve (berthd's started spare; none for containerd). */
  spares: ProcessMemory[];
  total: MemoryKiB;
  /** KiB of distinct physical pages resident in the daemon and its spares. */
  distinctKiB: number;
}

export interface ContainerBenchResult {
  config: ContainerBenchConfig;
  namespace: string;
  daemons: Record<DaemonName, { pid: number; cpuGroup: string | null }>;
  idle: Record<DaemonName, Outcome<IdleMemory>>;
  runRm: Record<Setup, Outcome<RunRmSummary>>;
  concurrent: Record<DaemonName, Outcome<ConcurrentSummary>>;
  memory: Record<DaemonName, Outcome<MemoryResult>>;
  berthdLog: LogSummary;
}

export interface ContainerBenchOptions {
  config: ContainerBenchConfig;
  /** The caller's teardown list: this section's own teardown is registered on it too (for Ctrl-C). */
  cleanups: Cleanups;
  log: (msg: string) => void;
  /** berthd writes V8 .cpuprofiles there on exit when given (diagnosis only). */
  berthdCpuProfileDir?: string;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function attempt<T>(log: (m: string) => void, what: string, fn: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (err) {
    log(`  ${what}: failed: ${errorText(err)}`);
    return { ok: false, error: errorText(err) };
  }
}

/** Runs the whole section on a fresh berthd and containerd, which it stops before returning. */
export async function containerBench(opts: ContainerBenchOptions): Promise<ContainerBenchResult> {
  const own = createCleanups();
  opts.cleanups.add("stop the container bench daemons", () => own.run());
  try {
    // Whatever the sections before left dirty is written back first.
    await settleDisks();
    return await runSection(opts, own);
  } catch (err) {
    // Daemons that would not start, or an image that would not import: every metric is missing
    // (with the reason), and the other sections' results still get reported.
    opts.log(`  container benchmarks: failed: ${errorText(err)}`);
    return failedResult(opts.config, errorText(err));
  } finally {
    opts.log("  stopping the container bench daemons...");
    await own.run();
  }
}

async function runSection(opts: ContainerBenchOptions, cleanups: Cleanups): Promise<ContainerBenchResult> {
  const { config, log } = opts;
  const ns = `bench-containers-${process.pid}`;
  const dir = await makeTempDir("bench-containers");
  cleanups.add("remove container bench dir", () => removeTempDir(dir));
  // State dirs and ctr's FIFOs on a tmpfs, as /run is on a standard host (where both daemons keep
  // their state by default: /run/berth, /run/containerd; ctr's FIFOs go to /run/containerd/fifo).
  // This VM's /run is on its ext4 disk, and there every file created costs ext4's inode
  // allocator a walk over the inodes freed in the last 30 s (each cleanup frees a few hundred):
  // 578-608 ms against 521 ms for berthd's 20 concurrent starts with the state on ext4 and on a
  // tmpfs. containerd had its runc state, shim sockets and FIFOs there already (the harness's
  // private /run is a tmpfs), its bundles not.
  const run = join(dir, "run");
  await mkdir(run);
  // Unmounted by removeTempDir (registered above: it runs after the daemons are stopped).
  await execFileAsync("mount", ["-t", "tmpfs", "-o", "mode=0755", "tmpfs", run]);
  const berthdFifo = join(run, "berthd-fifo");
  const containerdFifo = join(run, "containerd-fifo");
  await mkdir(berthdFifo);
  await mkdir(containerdFifo);
  const berthdLog = join(dir, "berthd.log");

  // Built before the daemons start, so that none of it competes with them for CPU.
  const archive = join(dir, "busybox.tar");
  await writeOciArchive(archive, { image: await busyboxImage({ format: "oci" }), name: IMAGE });

  log("starting a fresh berthd and containerd for the container benchmarks...");
  log(`  ${await forkCost()}`);
  const { berthd, containerd } = await startDaemonPair(dir, cleanups, {
    logFile: berthdLog,
    cpuProfileDir: opts.berthdCpuProfileDir,
    stateDir: run,
  });

  const daemons: Record<DaemonName, Daemon> = {
    berthd: { name: "berthd", address: berthd.address, pid: berthd.pid, fifoDir: berthdFifo, cpu: undefined },
    containerd: {
      name: "containerd",
      address: containerd.address,
      pid: containerd.pid,
      fifoDir: containerdFifo,
      cpu: undefined,
    },
  };
  const cgroupParents = new Set<string>();
  cleanups.add("remove the containers' parent cgroups", () => removeCgroupParents(cgroupParents));
  for (const d of Object.values(daemons)) {
    const r = await attempt(log, `${d.name} CPU cgroup`, async () => {
      const g = await createCpuGroup(`berth-bench-${process.pid}-${d.name}`);
      cleanups.add(`remove ${d.name}'s CPU cgroup`, () => g.remove());
      // The daemon first, so that whatever it forks from now on is in the group; then its shims.
      await g.add([d.pid]);
      await g.add(await shimPids(d));
      return g;
    });
    if (r.ok) d.cpu = r.value;
  }
  const quiet = (d: Daemon) =>
    d.cpu ? waitQuiet(() => (d.cpu as CpuGroup).cpuSeconds(), { maxMs: 10_000 }) : sleep(1000);
  const allQuiet = async () => {
    for (const d of Object.values(daemons)) await quiet(d);
  };

  // Idle: after start-up (berthd's spare shim up and quiet), before anything else.
  await allQuiet();
  await sleep(1000);
  const idle = {} as Record<DaemonName, Outcome<IdleMemory>>;
  for (const d of Object.values(daemons)) {
    idle[d.name] = await attempt(log, `${d.name} idle memory`, () => idleMemory(d));
    if (idle[d.name].ok) {
      const v = (idle[d.name] as { value: IdleMemory }).value;
      log(
        `  ${d.name} idle: RSS ${kibToMiB(v.daemon.rss).toFixed(1)} MiB, PSS ${kibToMiB(v.daemon.pss).toFixed(1)} MiB` +
          (v.spares.length > 0
            ? `; ${v.spares.length} spare shim(s): RSS ${kibToMiB(sumMemory(v.spares).rss).toFixed(1)} MiB, ` +
              `PSS ${kibToMiB(sumMemory(v.spares).pss).toFixed(1)} MiB`
            : ""),
      );
    }
  }

  for (const d of Object.values(daemons)) {
    await ctrOk(d.address, ["images", "import", archive], { namespace: ns, timeoutMs: 60_000 });
  }

  const runArgs = (setup: Setup, id: string, rest: readonly string[]): string[] => {
    const d = daemons[setup === "berthd-runc" ? "berthd" : setup];
    const runtime = setup === "berthd" ? BERTH_RUNTIME : RUNC_RUNTIME;
    const parent = `/${setup}-${ns}`;
    cgroupParents.add(parent);
    return ["run", "--fifo-dir", d.fifoDir, "--cgroup", `${parent}/${id}`, "--runtime", runtime, ...rest];
  };
  const daemonOf = (setup: Setup): Daemon => daemons[setup === "berthd-runc" ? "berthd" : setup];
  const cpuNow = async (d: Daemon): Promise<number | null> => (d.cpu ? d.cpu.cpuSeconds() : null);

  // 1. ctr run --rm IMAGE id true, taking turns between the setups.
  log(
    `ctr run --rm ${IMAGE} id true: ${config.runRmWarmups} warm-ups, then ${config.runRmRuns} runs ` +
      `taking turns (${SETUPS.join(", ")})...`,
  );
  await allQuiet();
  let runId = 0;
  const warmupMs = new Map<Setup, number[]>(SETUPS.map((s) => [s, []]));
  const runRmRounds = await interleavedRounds(
    SETUPS,
    { warmups: config.runRmWarmups, rounds: config.runRmRuns },
    async (setup, round): Promise<RunRmSample> => {
      const d = daemonOf(setup);
      const id = `rm-${setup}-${++runId}`;
      const cpuBefore = await cpuNow(d);
      const start = performance.now();
      // posix_spawn, not child_process: a fork of the bench process is not the daemon's time.
      const r = await runLight(
        CTR_PATH,
        ctrArgv(d.address, runArgs(setup, id, ["--rm", IMAGE, id, "true"]), ns),
        ctrEnv(undefined),
        60_000,
      );
      const ms = performance.now() - start;
      if (r.code !== 0) throw new Error(`ctr run --rm exited ${r.code}: ${r.stderr.trim()}`);
      if (round < 0) warmupMs.get(setup)?.push(ms);
      const q = await quiet(d);
      const cpuAfter = await cpuNow(d);
      return {
        ms,
        cpuSeconds: cpuBefore === null || cpuAfter === null ? null : cpuAfter - cpuBefore,
        quietAfterMs: q ? q.waitedMs : 1000,
      };
    },
    (setup, _round, error) => log(`  ${setup} ctr run --rm: failed: ${error}`),
  );
  const runRm = mapOutcomes(runRmRounds, (samples, setup): RunRmSummary => {
    const cpu = samples.map((s) => s.cpuSeconds);
    const warm = warmupMs.get(setup) ?? [];
    return {
      wallMs: summarize(samples.map((s) => s.ms)),
      warmupWallMs: warm.length > 0 ? summarize(warm) : null,
      medianCpuSeconds: cpu.every((c) => c !== null) ? median(cpu) : null,
      medianQuietAfterMs: median(samples.map((s) => s.quietAfterMs)),
      samples,
    };
  });
  for (const s of SETUPS) {
    const o = runRm[s];
    if (o.ok)
      log(
        `  ${s}: median ${o.value.wallMs.median.toFixed(0)} ms, p90 ${o.value.wallMs.p90.toFixed(0)} ms, ` +
          `CPU ${((o.value.medianCpuSeconds ?? NaN) * 1000).toFixed(0)} ms per run, ` +
          `quiet ${o.value.medianQuietAfterMs.toFixed(0)} ms after`,
      );
  }

  // 2. N concurrent ctr run -d until all are RUNNING.
  log(
    `${config.concurrent} concurrent ctr run -d: ${config.concurrentWarmups} warm-up(s), then ` +
      `${config.concurrentRounds} rounds taking turns...`,
  );
  // One subscriber per daemon for the whole series, connected before the first round launches.
  const watches: Record<DaemonName, TaskStartWatch> = {
    berthd: watchTaskStarts(daemons.berthd.address),
    containerd: watchTaskStarts(daemons.containerd.address),
  };
  cleanups.add("stop the /tasks/start watchers", () =>
    Promise.all(Object.values(watches).map((w) => w.close())),
  );
  await sleep(1000);
  let roundId = 0;
  const concurrentRounds = await interleavedRounds(
    ["berthd", "containerd"] as const,
    { warmups: config.concurrentWarmups, rounds: config.concurrentRounds },
    async (name, round): Promise<ConcurrentRound> => {
      const d = daemons[name];
      await allQuiet();
      const ids = Array.from({ length: config.concurrent }, (_, i) => `c${++roundId}-${i}`);
      try {
        const cpuBefore = await cpuNow(d);
        const r = await concurrentRun(
          d,
          watches[name],
          ns,
          ids,
          (id) => runArgs(name, id, ["-d", IMAGE, id, "sleep", "1000"]),
          join(dir, "burst", `${roundId}`),
        );
        await quiet(d);
        const cpuAfter = await cpuNow(d);
        const probe = config.probeMiB > 0 ? probeFreshWrites(dir, config.probeMiB * MiB) : undefined;
        const result: ConcurrentRound = {
          ...r,
          cpuSeconds: cpuBefore === null || cpuAfter === null ? null : cpuAfter - cpuBefore,
          ...(probe === undefined ? {} : { machineWriteMBps: probe.megabytesPerSecond }),
        };
        log(
          `  ${name} ${round < 0 ? "warm-up" : `round ${round + 1}`}: all RUNNING after ` +
            `${result.runningMs.toFixed(0)} ms, all ctr exited after ` +
            `${result.allExitedMs.toFixed(0)} ms (all launched after ${result.launchMs.toFixed(0)} ms), CPU ${((result.cpuSeconds ?? NaN) * 1000).toFixed(0)} ms` +
            (result.machineWriteMBps === undefined
              ? ""
              : `; machine's page-cache writes ${result.machineWriteMBps.toFixed(0)} MB/s`),
        );
        return result;
      } finally {
        await removeContainers(d, ns, ids);
      }
    },
    (name, _round, error) => log(`  ${name} concurrent run -d: failed: ${error}`),
  );
  await Promise.all(Object.values(watches).map((w) => w.close()));
  const concurrent = mapOutcomes(
    concurrentRounds,
    (rounds): ConcurrentSummary => ({
      rounds,
      medianRunningMs: median(rounds.map((r) => r.runningMs)),
      medianAllExitedMs: median(rounds.map((r) => r.allExitedMs)),
      medianCpuSeconds: rounds.every((r) => r.cpuSeconds !== null)
        ? median(rounds.map((r) => r.cpuSeconds as number))
        : null,
    }),
  );

  // 3. Memory with N running containers, one daemon at a time.
  log(
    `memory with ${config.memoryContainers} running sleep containers, ` +
      `watched for ${config.memorySettleSeconds} s...`,
  );
  const memory = {} as Record<DaemonName, Outcome<MemoryResult>>;
  const describe = (name: string, snap: MemorySnapshot) =>
    `  ${name} at ${snap.atSeconds.toFixed(0)} s: daemon PSS ${kibToMiB(snap.daemon.pss).toFixed(1)} MiB + ` +
    `${snap.servingShims.length} serving and ${snap.idleShims.length} idle shim(s) ` +
    `PSS ${kibToMiB(snap.shims.pss).toFixed(1)} MiB = ${kibToMiB(snap.total.pss).toFixed(1)} MiB ` +
    `(RSS ${kibToMiB(snap.total.rss).toFixed(1)} MiB, distinct ${kibToMiB(snap.distinctKiB).toFixed(1)} MiB)`;
  for (const name of ["berthd", "containerd"] as const) {
    const d = daemons[name];
    const ids = Array.from({ length: config.memoryContainers }, (_, i) => `m-${i}`);
    await allQuiet();
    memory[name] = await attempt(log, `${name} memory with containers`, async () => {
      try {
        const started = performance.now();
        await mapLimit(ids, 10, (id) =>
          ctrOk(d.address, runArgs(name, id, ["-d", IMAGE, id, "sleep", "1000"]), {
            namespace: ns,
            timeoutMs: 120_000,
          }),
        );
        const allStarted = performance.now();
        const since = () => (performance.now() - allStarted) / 1000;
        await quiet(d);
        await sleep(2000);
        const early = await memoryWithContainers(d, ns, ids, since());
        log(describe(name, early));
        const series: MemoryResult["series"] = [];
        const end = allStarted + config.memorySettleSeconds * 1000;
        let settled = early;
        if (config.memorySettleSeconds > 0) {
          while (performance.now() < end - 5000) {
            await sleep(5000);
            const now = sumMemory(
              await Promise.all([d.pid, ...(await shimPids(d))].map((pid) => processMemory(pid))),
            );
            series.push({ atSeconds: since(), pssMiB: kibToMiB(now.pss), rssMiB: kibToMiB(now.rss) });
          }
          await sleep(Math.max(0, end - performance.now()));
          settled = await memoryWithContainers(d, ns, ids, since());
          log(describe(name, settled));
        }
        return { startSeconds: (allStarted - started) / 1000, early, settled, series };
      } finally {
        await removeContainers(d, ns, ids);
      }
    });
  }

  const result: ContainerBenchResult = {
    config,
    namespace: ns,
    daemons: {
      berthd: { pid: berthd.pid, cpuGroup: daemons.berthd.cpu?.path ?? null },
      containerd: { pid: containerd.pid, cpuGroup: daemons.containerd.cpu?.path ?? null },
    },
    idle,
    runRm,
    concurrent,
    memory,
    berthdLog: await summarizeLogFile(berthdLog),
  };
  return result;
}

/** A result with every metric missing for the same reason. */
export function failedResult(config: ContainerBenchConfig, error: string): ContainerBenchResult {
  const failed = { ok: false as const, error };
  return {
    config,
    namespace: "",
    daemons: { berthd: { pid: 0, cpuGroup: null }, containerd: { pid: 0, cpuGroup: null } },
    idle: { berthd: failed, containerd: failed },
    runRm: { berthd: failed, containerd: failed, "berthd-runc": failed },
    concurrent: { berthd: failed, containerd: failed },
    memory: { berthd: failed, containerd: failed },
    berthdLog: { lines: 0, warnings: [] },
  };
}

/** The daemon's shims: processes started with `-address <its socket>` (Go shims and Berth shims). */
async function shimPids(d: Daemon): Promise<number[]> {
  return (await pidsWithArgs("-address", d.address)).filter((pid) => pid !== d.pid);
}

async function idleMemory(d: Daemon): Promise<IdleMemory> {
  const daemon = await processMemory(d.pid);
  const spares = await Promise.all((await shimPids(d)).map((pid) => processMemory(pid)));
  const distinctKiB = await distinctResidentKiB([d.pid, ...spares.map((s) => s.pid)]);
  return { daemon, spares, total: sumMemory([daemon, ...spares]), distinctKiB };
}

async function tasksLs(d: Daemon, ns: string) {
  return parseTasksLs(await ctrOk(d.address, ["tasks", "ls"], { namespace: ns, timeoutMs: 30_000 }));
}

/**
 * Launches one `ctr run -d` per id at once and waits for the daemon's /tasks/start event of every
 * id (and every ctr to exit); then checks, untimed, that `ctr tasks ls` shows them RUNNING.
 * Throws if a ctr fails.
 */
async function concurrentRun(
  d: Daemon,
  watch: TaskStartWatch,
  ns: string,
  ids: readonly string[],
  args: (id: string) => string[],
  stderrDir: string,
): Promise<Omit<ConcurrentRound, "cpuSeconds">> {
  await mkdir(stderrDir, { recursive: true });
  const running = watch.allStarted(ns, ids, 120_000).then(
    (at) => ({ at }),
    (err: unknown) => ({ error: errorText(err) }),
  );
  const burst = await ctrBurst(d.address, ns, ids.map(args), stderrDir, 120_000);
  const failed = burst.exits.findIndex((e) => e.code !== 0);
  if (failed >= 0) {
    const e = burst.exits[failed];
    throw new Error(`ctr run -d ${ids[failed]} exited ${e?.code}: ${e?.stderr.trim()}`);
  }
  const r = await running;
  if ("error" in r) throw new Error(r.error);
  // Not timed: what the events said, as `ctr tasks ls` sees it.
  const notRunning = notInStatus(await tasksLs(d, ns), ids, "RUNNING");
  if (notRunning.length > 0) throw new Error(`started but not RUNNING: ${notRunning.join(" ")}`);
  return {
    runningMs: r.at - burst.startedAt,
    allExitedMs: Math.max(...burst.exits.map((e) => e.exitedMs)),
    launchMs: burst.launchedMs,
  };
}

/** kill -9, wait until stopped, tasks rm, containers rm; tolerant of what was never created. */
async function removeContainers(d: Daemon, ns: string, ids: readonly string[]): Promise<void> {
  const quietly = (args: string[]) => runCtr(d.address, args, { namespace: ns, timeoutMs: 60_000 });
  const present = new Set((await tasksLs(d, ns)).map((t) => t.id));
  const tasks = ids.filter((id) => present.has(id));
  await mapLimit(tasks, 10, (id) => quietly(["tasks", "kill", "-s", "9", id]));
  for (let i = 0; i < 300; i++) {
    const rows = (await tasksLs(d, ns)).filter((t) => tasks.includes(t.id));
    if (rows.every((t) => t.status === "STOPPED")) break;
    await sleep(100);
  }
  await mapLimit(tasks, 10, (id) => quietly(["tasks", "rm", "-f", id]));
  await mapLimit(ids, 10, (id) => quietly(["containers", "rm", id]));
  const left = (await tasksLs(d, ns)).filter((t) => ids.includes(t.id));
  if (left.length > 0)
    throw new Error(`${d.name}: tasks left after cleanup: ${left.map((t) => t.id).join(" ")}`);
}

async function memoryWithContainers(
  d: Daemon,
  ns: string,
  ids: readonly string[],
  atSeconds: number,
): Promise<MemorySnapshot> {
  const rows = await tasksLs(d, ns);
  const missing = notInStatus(rows, ids, "RUNNING");
  if (missing.length > 0) throw new Error(`not RUNNING: ${missing.join(" ")}`);
  const parentOfInit = new Map<number, number>();
  for (const r of rows.filter((t) => ids.includes(t.id)))
    parentOfInit.set(r.pid, parentPidFromStat(await readFile(`/proc/${r.pid}/stat`, "utf8")));
  const split = splitShims(await shimPids(d), parentOfInit);
  if (split.orphans.length > 0) {
    throw new Error(`init pids whose parent is none of the daemon's shims: ${split.orphans.join(" ")}`);
  }
  const daemon = await processMemory(d.pid);
  const servingShims = await Promise.all(split.serving.map((pid) => processMemory(pid)));
  const idleShims = await Promise.all(split.idle.map((pid) => processMemory(pid)));
  const shims = sumMemory([...servingShims, ...idleShims]);
  return {
    containers: ids.length,
    daemon,
    servingShims,
    idleShims,
    shims,
    total: sumMemory([daemon, ...servingShims, ...idleShims]),
    distinctKiB: await distinctResidentKiB([d.pid, ...split.serving, ...split.idle]),
    atSeconds,
  };
}

function row<T>(
  metric: string,
  unit: string,
  better: Row["better"],
  berthd: Outcome<T>,
  containerd: Outcome<T>,
  pick: (v: T) => number | null,
  missing = "not measured",
): Row {
  const value = (o: Outcome<T>): { v: number | null; error?: string } => {
    if (!o.ok) return { v: null, error: o.error };
    const v = pick(o.value);
    return v === null ? { v, error: missing } : { v };
  };
  const b = value(berthd);
  const c = value(containerd);
  return {
    metric,
    unit,
    better,
    berthd: b.v,
    containerd: c.v,
    ...(b.error === undefined ? {} : { berthdError: b.error }),
    ...(c.error === undefined ? {} : { containerdError: c.error }),
  };
}

/** The table rows: berthd (Berth shim) against containerd (Go shim), the goals on the main ones. */
export function containerRows(r: ContainerBenchResult): Row[] {
  const c = r.config;
  const rm = r.runRm;
  const cpuMs = (s: { medianCpuSeconds: number | null }) =>
    s.medianCpuSeconds === null ? null : s.medianCpuSeconds * 1000;
  const noCpu = "no cgroup for CPU accounting";
  const ms = (
    metric: string,
    pick: (s: RunRmSummary) => number | null,
    b: Setup = "berthd",
    missing?: string,
  ) => row(metric, "ms", "lower", rm[b], rm.containerd, pick, missing);
  const many = (metric: string, pick: (s: ConcurrentSummary) => number | null, missing?: string) =>
    row(metric, "ms", "lower", r.concurrent.berthd, r.concurrent.containerd, pick, missing);
  const mem = (metric: string, pick: (m: MemorySnapshot) => number | null, missing?: string) =>
    row(metric, "MiB", "lower", r.memory.berthd, r.memory.containerd, (m) => pick(m.settled), missing);
  const idle = (metric: string, pick: (m: IdleMemory) => number) =>
    row(metric, "MiB", "lower", r.idle.berthd, r.idle.containerd, pick);
  const run = "ctr run --rm true";
  const go = "berthd with the Go shim (runc.v2)";
  const n = c.memoryContainers;
  const when = c.memorySettleSeconds > 0 ? `at ${c.memorySettleSeconds} s` : "right after the start";
  return [
    {
      ...ms(`${run} median, n=${c.runRmRuns}`, (s) => s.wallMs.median),
      target: { ratioAtMost: c.runRmTargetRatio },
    },
    {
      ...ms(`${run} p90, n=${c.runRmRuns}`, (s) => s.wallMs.p90),
      target: { ratioAtMost: c.runRmTargetRatio },
    },
    ms("  daemon+shim CPU per run --rm", cpuMs, "berthd", noCpu),
    ms(
      `  ${run} median of the ${c.runRmWarmups} warm-ups before (a fresh daemon's first starts)`,
      (s) => s.warmupWallMs?.median ?? null,
      "berthd",
      "no warm-ups",
    ),
    ms(`  ${go}: ${run} median`, (s) => s.wallMs.median, "berthd-runc"),
    ms(`  ${go}: ${run} p90`, (s) => s.wallMs.p90, "berthd-runc"),
    ms(`  ${go}: daemon+shim CPU per run`, cpuMs, "berthd-runc", noCpu),
    {
      ...many(
        `${c.concurrent} concurrent run -d until all RUNNING, median of ${c.concurrentRounds}`,
        (s) => s.medianRunningMs,
      ),
      target: { ratioAtMost: c.concurrentTargetRatio },
    },
    many(`  until all ${c.concurrent} ctr run -d exited`, (s) => s.medianAllExitedMs),
    many(`  daemon+shim CPU per ${c.concurrent} run -d`, cpuMs, noCpu),
    {
      ...mem(`PSS of daemon + shims, ${n} sleep containers, ${when}`, (m) => kibToMiB(m.total.pss)),
      target: { ratioAtMost: c.memoryTargetRatio },
    },
    ...(c.memorySettleSeconds > 0
      ? [
          row(
            "  the same right after the start (quiet + 2 s)",
            "MiB",
            "lower",
            r.memory.berthd,
            r.memory.containerd,
            (m: MemoryResult) => kibToMiB(m.early.total.pss),
          ),
        ]
      : []),
    mem(`  RSS of daemon + shims, ${n} containers`, (m) => kibToMiB(m.total.rss)),
    mem(`  distinct resident pages of daemon + shims, ${n} containers`, (m) => kibToMiB(m.distinctKiB)),
    mem(
      "  of which anonymous PSS (heap, stacks)",
      (m) => (m.total.pssAnon === undefined ? null : kibToMiB(m.total.pssAnon)),
      "no Pss_Anon in smaps_rollup",
    ),
    mem("  of which the daemon's PSS", (m) => kibToMiB(m.daemon.pss)),
    mem("  of which the shims' PSS", (m) => kibToMiB(m.shims.pss)),
    idle("idle daemon RSS after start-up", (m) => kibToMiB(m.daemon.rss)),
    idle("idle daemon PSS after start-up", (m) => kibToMiB(m.daemon.pss)),
    idle("  idle daemon + spare shim RSS", (m) => kibToMiB(m.total.rss)),
    idle("  idle daemon + spare shim PSS", (m) => kibToMiB(m.total.pss)),
    idle("  idle daemon + spare shim, distinct resident pages", (m) => kibToMiB(m.distinctKiB)),
  ];
}

/** The machine's state during the concurrent rounds, as a line under the targets (null: no probes). */
export function concurrentConditions(result: ContainerBenchResult): string | null {
  const rates: Record<string, number[]> = {};
  for (const [name, outcome] of Object.entries(result.concurrent)) {
    if (!outcome.ok) continue;
    rates[name] = outcome.value.rounds.flatMap((r) =>
      r.machineWriteMBps === undefined ? [] : [r.machineWriteMBps],
    );
  }
  const probes = describeProbes(rates);
  return probes === null ? null : `machine during the concurrent run -d rounds: ${probes}`;
}

/**
 * What one child_process spawn (a fork of this process) costs the bench process now, against
 * posix_spawn: why the timed ctr processes are started with the latter (light-spawn.ts).
 */
async function forkCost(): Promise<string> {
  const time = async (start: () => Promise<unknown>): Promise<number> => {
    const samples: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      await start();
      samples.push(performance.now() - t);
    }
    return median(samples);
  };
  const forked = await time(() => execFileAsync("/bin/true"));
  const vforked = await time(() => runLight("/bin/true", [], {}, 10_000));
  const rss = process.memoryUsage().rss / MiB;
  return (
    `bench process: RSS ${rss.toFixed(0)} MiB; running /bin/true takes it ${forked.toFixed(1)} ms ` +
    `through child_process, ${vforked.toFixed(1)} ms through posix_spawn (medians of 5)`
  );
}
