// Reads a daemon's CPU time and resident memory from /proc, to put a cost next to each speed.
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";

// utime/stime are in clock ticks; 100 on every Linux we run on, but ask rather than assume.
const TICKS_PER_SECOND = ((): number => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User+system CPU seconds the process has used so far (threads included, children not). */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // Fields after the parenthesised comm, which may itself contain spaces; utime/stime are 14/15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
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
