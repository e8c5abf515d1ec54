// `node --import tsx bench/run-containers.ts`: only the container section of `npm run bench`
// (containers.ts), on its own fresh berthd and containerd; prints the JSON, then the table.
import { writeFile } from "node:fs/promises";
import { createCleanups } from "./cleanups.js";
import { containerBench, containerBenchConfig, containerRows } from "./containers.js";
import { machineInfo } from "./machine-info.js";
import { checkTargets, ratio, renderMachine, renderTable, renderTargets, verdict } from "./report.js";

const OUT = process.env.BENCH_OUT ?? "/tmp/berth-bench-containers.json";

async function main(): Promise<number> {
  const cleanups = createCleanups();
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\n${signal}: stopping the daemons and removing temp dirs\n`);
    void cleanups.run().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const started = Date.now();
  try {
    const machine = machineInfo();
    process.stderr.write(`${renderMachine(machine)}\n`);
    const result = await containerBench({
      config: containerBenchConfig(process.env),
      cleanups,
      log: (m) => process.stderr.write(`${m}\n`),
      ...(process.env.BENCH_BERTHD_CPU_PROF
        ? { berthdCpuProfileDir: process.env.BENCH_BERTHD_CPU_PROF }
        : {}),
    });
    const rows = containerRows(result);
    const goals = checkTargets(rows);
    const report = {
      when: new Date().toISOString(),
      runtimeSeconds: Math.round((Date.now() - started) / 100) / 10,
      machine,
      rows: rows.map((r) => ({ ...r, ratio: ratio(r), verdict: verdict(r) })),
      targets: goals,
      raw: result,
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
