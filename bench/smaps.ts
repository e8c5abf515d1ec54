// A process's memory as the kernel accounts it: RSS counts every resident page it maps, PSS
// (proportional set size) divides each page by the number of processes mapping it, so that the PSS of
// a group of processes adds up to what the group really costs (50 Go shims share one copy of their
// text; two Node processes share node's). Read from /proc/<pid>/smaps_rollup (Linux 4.14+).
import { readFile } from "node:fs/promises";

/** Resident memory in KiB; pssAnon/pssFile split PSS into heap and mapped files when the kernel says. */
export interface MemoryKiB {
  rss: number;
  pss: number;
  pssAnon?: number;
  pssFile?: number;
}

/** Rss, Pss, Pss_Anon and Pss_File of a smaps_rollup (or of one smaps entry), in KiB. */
export function parseSmapsRollup(text: string): MemoryKiB {
  const field = (key: string): number | undefined => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB$`, "m").exec(text);
    return m === null ? undefined : Number(m[1]);
  };
  const rss = field("Rss");
  const pss = field("Pss");
  if (rss === undefined || pss === undefined) {
    throw new Error(`no Rss/Pss in smaps_rollup: ${JSON.stringify(text.slice(0, 200))}`);
  }
  const pssAnon = field("Pss_Anon");
  const pssFile = field("Pss_File");
  return {
    rss,
    pss,
    ...(pssAnon === undefined ? {} : { pssAnon }),
    ...(pssFile === undefined ? {} : { pssFile }),
  };
}

/** The sum over processes; the PSS split only when every process has it. */
export function sumMemory(list: readonly MemoryKiB[]): MemoryKiB {
  const sum = (f: (m: MemoryKiB) => number | undefined): number | undefined => {
    let total = 0;
    for (const m of list) {
      const v = f(m);
      if (v === undefined) return undefined;
      total += v;
    }
    return total;
  };
  const pssAnon = sum((m) => m.pssAnon);
  const pssFile = sum((m) => m.pssFile);
  return {
    rss: sum((m) => m.rss) ?? 0,
    pss: sum((m) => m.pss) ?? 0,
    ...(pssAnon === undefined ? {} : { pssAnon }),
    ...(pssFile === undefined ? {} : { pssFile }),
  };
}

export interface ProcessMemory extends MemoryKiB {
  pid: number;
  command: string;
}

/** One process's memory now. */
export async function processMemory(pid: number): Promise<ProcessMemory> {
  const [rollup, comm] = await Promise.all([
    readFile(`/proc/${pid}/smaps_rollup`, "utf8"),
    readFile(`/proc/${pid}/comm`, "utf8"),
  ]);
  return { pid, command: comm.trim(), ...parseSmapsRollup(rollup) };
}

export const kibToMiB = (kib: number): number => kib / 1024;
