// What every bench runner (run.ts and the single-section ones) does around its measurements: a
// teardown list run once on success, failure or Ctrl-C, the report written as JSON and printed with
// its table and targets, and the process exit code (1 when some row could not be measured).
import { writeFile } from "node:fs/promises";
import { createCleanups, type Cleanups } from "./cleanups.js";
import type { MachineInfo } from "./machine-info.js";
import {
  checkTargets,
  ratio,
  renderMachine,
  renderTable,
  renderTargets,
  verdict,
  type Row,
  type TargetCheck,
} from "./report.js";

/** Runs body with a teardown list, then exits with its code (1 if it threw). */
export function runSection(body: (cleanups: Cleanups) => Promise<number>): void {
  const cleanups = createCleanups();
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\n${signal}: stopping the daemons and removing temp dirs\n`);
    void cleanups.run().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const run = async (): Promise<number> => {
    try {
      return await body(cleanups);
    } finally {
      await cleanups.run();
    }
  };
  run().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(
        `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exit(1);
    },
  );
}

/**
 * Writes report to out as JSON, prints it, the machine, the table and the targets; returns the
 * exit code: 1 when a row has no figure for one of the daemons.
 */
export async function publishReport(
  out: string,
  report: { runtimeSeconds: number },
  machine: MachineInfo,
  rows: readonly Row[],
  goals: readonly TargetCheck[],
  /** Lines printed under the targets (conditions the figures were taken in). */
  notes: readonly string[] = [],
): Promise<number> {
  const json = JSON.stringify(report, null, 2);
  await writeFile(out, `${json}\n`);
  process.stdout.write(`${json}\n\n${renderMachine(machine)}\n\n${renderTable(rows)}\n\n`);
  if (goals.length > 0) process.stdout.write(`${renderTargets(goals)}\n\n`);
  if (notes.length > 0) process.stdout.write(`${notes.join("\n")}\n\n`);
  process.stdout.write(`ratio = berthd/containerd; results written to ${out} (${report.runtimeSeconds} s)\n`);
  return rows.some((r) => r.berthd === null || r.containerd === null) ? 1 : 0;
}

/** The head every section's report starts with: when, how long, where, the rows and targets. */
export function reportHead(started: number, machine: MachineInfo, rows: readonly Row[]) {
  const targets = checkTargets(rows);
  return {
    when: new Date().toISOString(),
    runtimeSeconds: Math.round((Date.now() - started) / 100) / 10,
    machine,
    rows: rows.map((r) => ({ ...r, ratio: ratio(r), verdict: verdict(r) })),
    targets,
  };
}
