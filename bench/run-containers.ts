// `node --import tsx bench/run-containers.ts`: only the container section of `npm run bench`
// (containers.ts), on its own fresh berthd and containerd; prints the JSON, then the table.
import { containerBench, containerBenchConfig, containerRows } from "./containers.js";
import { machineInfo } from "./machine-info.js";
import { checkTargets, ratio, renderMachine, verdict } from "./report.js";
import { publishReport, runSection } from "./section-runner.js";

const OUT = process.env.BENCH_OUT ?? "/tmp/berth-bench-containers.json";

runSection(async (cleanups) => {
  const started = Date.now();
  const machine = machineInfo();
  process.stderr.write(`${renderMachine(machine)}\n`);
  const result = await containerBench({
    config: containerBenchConfig(process.env),
    cleanups,
    log: (m) => process.stderr.write(`${m}\n`),
    ...(process.env.BENCH_BERTHD_CPU_PROF ? { berthdCpuProfileDir: process.env.BENCH_BERTHD_CPU_PROF } : {}),
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
  return publishReport(OUT, report, machine, rows, goals);
});
