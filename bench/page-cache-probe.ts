// How fast this machine writes into fresh page cache right now: a reference taken after each
// Diff.Apply round and each concurrent `run -d` round, because on the bench VM that rate is not a
// constant. The VM's memory is handed back to the
// host when the guest frees it (its page cache is reclaimed from outside: `Cached` stays near
// 0.8 GiB after several GiB written), and the first touch of such a page costs a fault on the host.
// In that state perf shows both daemons' applies spending their time in copy_folio_from_iter_atomic,
// memset and clear_page (the kernel filling new page-cache pages), their system CPU per apply rises
// from 0.3 s to 2-5 s, and both run at a third of their speed. A plain write shows the same thing
// without either daemon, so the report can tell a slow machine from a slow apply.
import { closeSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { median } from "./stats.js";

export interface ProbeResult {
  /** 10^6 bytes per second into a new file (page cache, no fsync). */
  megabytesPerSecond: number;
}

let probeCount = 0;

/**
 * Writes `bytes` of incompressible data into a new file in `dir` with plain write(2) calls of 1 MiB.
 * The file stays (its pages are part of the state the next round runs in, as the applies' trees
 * are); whoever owns `dir` removes it.
 */
export function probeFreshWrites(dir: string, bytes: number): ProbeResult {
  const chunk = randomBytes(1 << 20);
  const path = join(dir, `page-cache-probe-${process.pid}-${probeCount++}`);
  const fd = openSync(path, "wx", 0o600);
  const start = performance.now();
  try {
    for (let written = 0; written < bytes; ) {
      const n = writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - written));
      written += n;
    }
  } finally {
    closeSync(fd);
  }
  const seconds = (performance.now() - start) / 1000;
  return { megabytesPerSecond: bytes / 1e6 / seconds };
}

/**
 * "fresh page-cache writes at a median A (min B) in berthd's, C (min D) in containerd's rounds":
 * the probes' rates (MB/s) by daemon; null when there are none.
 */
export function describeProbes(rates: Readonly<Record<string, readonly number[]>>): string | null {
  const parts = Object.entries(rates)
    .filter(([, r]) => r.length > 0)
    .map(([name, r]) => `${median(r).toFixed(0)} (min ${Math.min(...r).toFixed(0)}) in ${name}'s`);
  if (parts.length === 0) return null;
  return `fresh page-cache writes at a median ${parts.join(", ")} rounds (MB/s; page-cache-probe.ts)`;
}
