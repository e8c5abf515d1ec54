// Renders the comparison: one row per metric, each daemon's value, the ratio and who wins.
import type { MachineInfo } from "./machine-info.js";
import type { Outcome } from "./rounds.js";

export interface Row {
  metric: string;
  unit: string;
  /** Which direction is better for this metric. */
  better: "lower" | "higher";
  berthd: number | null;
  containerd: number | null;
  /** Why a value is missing (the error the daemon gave). */
  berthdError?: string;
  containerdError?: string;
  /** A goal this metric is held to: berthd/containerd at most x, or berthd's value at least x. */
  target?: { ratioAtMost: number } | { berthdAtLeast: number };
}

/** Within this factor the two are called equal: run-to-run noise on a shared VM is about that. */
const NOISE = 1.05;

function fmt(v: number | null): string {
  if (v === null) return "n/a";
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/** berthd/containerd, or null when either is missing. */
export function ratio(row: Row): number | null {
  if (row.berthd === null || row.containerd === null || row.containerd === 0) return null;
  return row.berthd / row.containerd;
}

/** "berthd 1.8x better", "containerd 2.3x better" or "about equal". */
export function verdict(row: Row): string {
  const r = ratio(row);
  if (r === null || r === 0) return "-";
  const berthdWins = row.better === "lower" ? r < 1 : r > 1;
  const factor = r >= 1 ? r : 1 / r;
  if (factor < NOISE) return "about equal";
  return `${berthdWins ? "berthd" : "containerd"} ${factor.toFixed(2)}x better`;
}

/** The table, then one footnote per distinct error behind an n/a cell. */
export function renderTable(rows: readonly Row[]): string {
  const errors: string[] = [];
  const cell = (v: number | null, daemon: string, err: string | undefined): string => {
    if (v !== null || err === undefined) return fmt(v);
    const text = `${daemon}: ${err}`;
    if (!errors.includes(text)) errors.push(text);
    return `n/a [${errors.indexOf(text) + 1}]`;
  };
  const header = ["metric", "berthd", "containerd", "berthd/containerd", "verdict"];
  const body = rows.map((row) => {
    const r = ratio(row);
    return [
      `${row.metric} (${row.unit}, ${row.better} is better)`,
      cell(row.berthd, "berthd", row.berthdError),
      cell(row.containerd, "containerd", row.containerdError),
      r === null ? "-" : r.toFixed(2),
      verdict(row),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((cells) => (cells[i] ?? "").length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(" | ");
  return [
    line(header),
    widths.map((w) => "-".repeat(w)).join("-|-"),
    ...body.map(line),
    ...errors.map((e, i) => `[${i + 1}] ${e}`),
  ].join("\n");
}

export function renderMachine(m: MachineInfo): string {
  const busy = m.loadAverage > m.nproc / 2 ? " - the machine is busy, expect noisy numbers" : "";
  return (
    `machine: ${m.nproc} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB RAM, Linux ${m.kernel}, node ${m.node}, ` +
    `ctr ${m.ctr}, load average ${m.loadAverage} at start${busy}`
  );
}

export interface TargetCheck {
  metric: string;
  /** "berthd/containerd <= 1.00" or "berthd >= 250 MB/s". */
  goal: string;
  /** What was measured against the goal (the ratio or berthd's value), or null when missing. */
  actual: number | null;
  met: boolean | null;
}

/** Each row's target, met or not (null when a value is missing). */
export function checkTargets(rows: readonly Row[]): TargetCheck[] {
  const out: TargetCheck[] = [];
  for (const row of rows) {
    const t = row.target;
    if (t === undefined) continue;
    if ("ratioAtMost" in t) {
      const r = ratio(row);
      out.push({
        metric: row.metric,
        goal: `berthd/containerd <= ${t.ratioAtMost.toFixed(2)}`,
        actual: r,
        met: r === null ? null : r <= t.ratioAtMost,
      });
    } else {
      out.push({
        metric: row.metric,
        goal: `berthd >= ${t.berthdAtLeast} ${row.unit}`,
        actual: row.berthd,
        met: row.berthd === null ? null : row.berthd >= t.berthdAtLeast,
      });
    }
  }
  return out;
}

/** One line per target: "met", "MISSED" or "not measured". */
export function renderTargets(checks: readonly TargetCheck[]): string {
  return checks
    .map((c) => {
      const status = c.met === null ? "not measured" : c.met ? "met" : "MISSED";
      return `target ${status}: ${c.metric}: ${c.goal} (measured ${fmt(c.actual)})`;
    })
    .join("\n");
}

/**
 * A row comparing berthd and containerd from their outcomes (a failed or missing side shows as
 * n/a, with its error).
 */
export function comparisonRow<T>(
  metric: string,
  unit: string,
  better: Row["better"],
  results: { berthd?: Outcome<T>; containerd?: Outcome<T> },
  pick: (v: T) => number,
): Row {
  const b = results.berthd ?? { ok: false, error: "not run" };
  const c = results.containerd ?? { ok: false, error: "not run" };
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
