// Finds processes a test daemon left behind (shims and their children) by reading /proc, so that
// they can be ended by pid; nothing here matches processes by name.
import { readdir, readFile } from "node:fs/promises";
import { readFileSync } from "node:fs";

async function readProc(pid: number, file: string): Promise<string | undefined> {
  try {
    return await readFile(`/proc/${pid}/${file}`, "utf8");
  } catch {
    return undefined; // the process exited meanwhile
  }
}

async function allPids(): Promise<number[]> {
  return (await readdir("/proc")).filter((n) => /^\d+$/.test(n)).map(Number);
}

/** The parent pid from /proc/<pid>/stat (the field after the parenthesised comm). */
async function parentPid(pid: number): Promise<number | undefined> {
  const stat = await readProc(pid, "stat");
  if (!stat) return undefined;
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[1]);
}

/** Pids whose argv contains `flag` immediately followed by `value` (e.g. "-address", socket path). */
export async function pidsWithArgs(flag: string, value: string): Promise<number[]> {
  const found: number[] = [];
  for (const pid of await allPids()) {
    if (pid === process.pid) continue;
    const argv = (await readProc(pid, "cmdline"))?.split("\0") ?? [];
    const i = argv.indexOf(flag);
    if (i !== -1 && argv[i + 1] === value) found.push(pid);
  }
  return found;
}

/** All descendants of the given pids (children first found, deepest last). */
export async function descendantsOf(roots: readonly number[]): Promise<number[]> {
  const parents = new Map<number, number>();
  for (const pid of await allPids()) {
    const ppid = await parentPid(pid);
    if (ppid !== undefined) parents.set(pid, ppid);
  }
  const out: number[] = [];
  let frontier = new Set(roots);
  while (frontier.size > 0) {
    const next = new Set<number>();
    for (const [pid, ppid] of parents) if (frontier.has(ppid) && !out.includes(pid)) next.add(pid);
    out.push(...next);
    frontier = next;
  }
  return out;
}

/** SIGKILLs the pids, ignoring those already gone. */
export function killPids(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already exited
    }
  }
}

/** Waits until none of the pids exist any more (or the deadline passes). */
/**
 * Whether pid is a process that has not exited. A zombie has exited: an orphan waits for this
 * machine's init (here a process that reaps about once a second) to collect it.
 */
function running(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return false;
  }
  // "pid (comm) S ...": the state follows the last ")" (comm may hold spaces and parentheses).
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
}

export async function waitGone(pids: readonly number[], timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const alive = pids.filter(running);
    if (alive.length === 0) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}
