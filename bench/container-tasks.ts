// What the container benchmarks read back from ctr and /proc: `ctr tasks ls`, a process's parent,
// and which of a daemon's shims serve the containers (the others are berthd's spares).

export interface TaskRow {
  id: string;
  pid: number;
  status: string;
}

/** The rows of `ctr tasks ls` (TASK, PID, STATUS columns under a header line). */
export function parseTasksLs(text: string): TaskRow[] {
  const rows: TaskRow[] = [];
  for (const line of text.split("\n")) {
    const m = /^(\S+)\s+(\d+)\s+(\S+)\s*$/.exec(line);
    if (m === null) continue; // the header, blank lines
    rows.push({ id: m[1] as string, pid: Number(m[2]), status: m[3] as string });
  }
  return rows;
}

/** The ids (of those wanted) that `ctr tasks ls` does not show in status. */
export function notInStatus(rows: readonly TaskRow[], ids: readonly string[], status: string): string[] {
  const byId = new Map(rows.map((r) => [r.id, r.status]));
  return ids.filter((id) => byId.get(id) !== status);
}

/** The parent pid from a /proc/<pid>/stat line (the field after the parenthesised comm). */
export function parentPidFromStat(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ppid = Number(fields[1]);
  if (fields[1] === undefined || !Number.isSafeInteger(ppid)) {
    throw new Error(`malformed /proc stat line: ${stat.slice(0, 200)}`);
  }
  return ppid;
}

export interface ShimSplit {
  /** Shims that are the parent of at least one container's init process. */
  serving: number[];
  /** Shims that serve no container (berthd's started spare). */
  idle: number[];
  /** Init processes whose parent is none of the shims (should be empty). */
  orphans: number[];
}

/** Splits a daemon's shims (found by their -address) by whether they are a container's parent. */
export function splitShims(shims: readonly number[], parentOfInit: ReadonlyMap<number, number>): ShimSplit {
  const parents = new Set(parentOfInit.values());
  const known = new Set(shims);
  return {
    serving: shims.filter((p) => parents.has(p)),
    idle: shims.filter((p) => !parents.has(p)),
    orphans: [...parentOfInit].filter(([, ppid]) => !known.has(ppid)).map(([pid]) => pid),
  };
}

/** Runs fn over items with at most `limit` running at once; resolves (or rejects) like Promise.all. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

/**
 * Waits until a CPU counter (seconds) grows by less than `idleFraction` of one CPU over each of
 * `quietIntervals` consecutive intervals, or `maxMs` passes; resolves with the time waited (ms) and
 * whether it got quiet. Used between timed runs so that one daemon's background work (berthd
 * booting a spare shim, a Go shim exiting) is neither measured against the next run nor
 * left to compete with the other daemon's.
 */
export async function waitQuiet(
  readCpuSeconds: () => Promise<number>,
  opts: {
    intervalMs?: number;
    idleFraction?: number;
    quietIntervals?: number;
    maxMs?: number;
    sleep?: (ms: number) => Promise<void>;
    now?: () => number;
  } = {},
): Promise<{ waitedMs: number; quiet: boolean }> {
  const intervalMs = opts.intervalMs ?? 100;
  const idleFraction = opts.idleFraction ?? 0.02;
  const quietIntervals = opts.quietIntervals ?? 2;
  const maxMs = opts.maxMs ?? 5000;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const now = opts.now ?? (() => performance.now());
  const start = now();
  let last = await readCpuSeconds();
  let quiet = 0;
  while (quiet < quietIntervals) {
    if (now() - start >= maxMs) return { waitedMs: now() - start, quiet: false };
    await sleep(intervalMs);
    const cpu = await readCpuSeconds();
    quiet = cpu - last < (idleFraction * intervalMs) / 1000 ? quiet + 1 : 0;
    last = cpu;
  }
  return { waitedMs: now() - start, quiet: true };
}
