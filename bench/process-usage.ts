// Reads a daemon's CPU time and resident memory from /proc, to put a cost next to each speed.
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { descendantsOf } from "../test/harness/process-tree.js";

// utime/stime are in clock ticks; 100 on every Linux we run on, but ask rather than assume.
const TICKS_PER_SECOND = ((): number => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

export interface StatTicks {
  /** utime and stime: the process's threads. */
  user: number;
  system: number;
  /** cutime and cstime: the children it has waited for (and theirs). */
  childUser: number;
  childSystem: number;
}

/** CPU clock ticks from a /proc/<pid>/stat line. */
export function parseStatTicks(stat: string): StatTicks {
  // Fields after the parenthesised comm, which may itself contain spaces; utime/stime are 14/15,
  // cutime/cstime 16/17.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const n = (i: number): number => {
    const v = Number(fields[i]);
    if (fields[i] === undefined || !Number.isFinite(v)) {
      throw new Error(`malformed /proc stat line: ${stat.slice(0, 200)}`);
    }
    return v;
  };
  return { user: n(11), system: n(12), childUser: n(13), childSystem: n(14) };
}

async function statTicks(pid: number): Promise<StatTicks> {
  return parseStatTicks(await readFile(`/proc/${pid}/stat`, "utf8"));
}

/** User+system CPU seconds the process has used so far (threads included, children not). */
export async function cpuSeconds(pid: number): Promise<number> {
  const t = await statTicks(pid);
  return (t.user + t.system) / TICKS_PER_SECOND;
}

export interface CpuTimes {
  user: number;
  system: number;
}

/**
 * User and system CPU seconds of the process and its children: its threads, the children it has
 * reaped (cutime/cstime) and the descendants alive now. A child alive at one sample and reaped by
 * the next is counted once: its time moves from the live sum into cutime/cstime.
 */
export async function treeCpuTimes(pid: number): Promise<CpuTimes> {
  const own = await statTicks(pid);
  let user = own.user + own.childUser;
  let system = own.system + own.childSystem;
  for (const child of await descendantsOf([pid])) {
    try {
      const t = await statTicks(child);
      user += t.user;
      system += t.system;
    } catch {
      // exited meanwhile: its time is in its parent's cutime/cstime once reaped
    }
  }
  return { user: user / TICKS_PER_SECOND, system: system / TICKS_PER_SECOND };
}

/**
 * This process's CPU seconds, with the children it has reaped (each `ctr` it ran) but not the
 * ones still running (the daemons and the registry): the client side of a measurement.
 */
export async function ownCpuTimes(): Promise<CpuTimes> {
  const t = await statTicks(process.pid);
  return {
    user: (t.user + t.childUser) / TICKS_PER_SECOND,
    system: (t.system + t.childSystem) / TICKS_PER_SECOND,
  };
}

/** The CPU a process tree used between two samples. */
export function cpuDelta(before: CpuTimes, after: CpuTimes): CpuTimes & { total: number } {
  const user = after.user - before.user;
  const system = after.system - before.system;
  return { user, system, total: user + system };
}

/** VmRSS and VmHWM (peak) in MiB. */
export async function memoryMiB(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kib = (key: string): number =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rss: kib("VmRSS") / 1024, peak: kib("VmHWM") / 1024 };
}

/** The process's command name (to check that the pid we measure is the daemon, not a wrapper). */
export async function commandName(pid: number): Promise<string> {
  return (await readFile(`/proc/${pid}/comm`, "utf8")).trim();
}
