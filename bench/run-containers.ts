// `node --import tsx bench/run-containers.ts`: only the container section of `npm run bench`
// (containers.ts), on its own fresh berthd and containerd; prints the JSON, then the table.
import { concurrentConditions, containerBench, containerBenchConfig, containerRows } from "./containers.js";
import { machineInfo } from "./machine-info.js";
import { renderMachine } from "./report.js";
import { publishReport, reportHead, runSection } from "./section-runner.js";

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
  const head = reportHead(started, machine, rows);
  const goals = head.targets;
  const conditions = concurrentConditions(result);
  const notes = conditions === null ? [] : [conditions];
  const report = {
    ...head,
    conditions: notes,
    raw: result,
  };
  return publishReport(OUT, report, machine, rows, goals, notes);
});
