// Gives back the memory of a burst of work once berthd is idle again. V8 leaves the garbage of a
// burst (50 containers started at once, a large pull) in its old generation until allocation
// forces a major collection, and an idle daemon allocates almost nothing. Measured: berthd held
// 79 MiB PSS after 50 concurrent `ctr run -d`, 66 MiB after one collection (the bench's 50
// containers, started one by one, leave less behind: there V8's own collections had already run
// and the figure did not move). Go's runtime returns such memory on its own (its scavenger); this
// is berthd's equivalent. It needs V8's gc() (bin/berthd starts node with --expose-gc); without
// it, nothing is done.
import { getHeapStatistics } from "node:v8";
import type { Logger } from "./logger.js";

export interface IdleCollectorOptions {
  /** Runs a full collection. */
  collect: () => void;
  /** Bytes of the heap in use, garbage not yet collected included. */
  heapUsed: () => number;
  /** Milliseconds the API has been quiet (0 while a call is in flight). */
  quietFor: () => number;
  /** How long the API must have been quiet. */
  quietMs?: number;
  /** How much the heap must have grown since the last collection. */
  minGrowthBytes?: number;
}

/** Decides, at each tick, whether a collection is due: quiet, and grown since the last one. */
export class IdleCollector {
  private baseline: number;
  private readonly quietMs: number;
  private readonly minGrowth: number;

  constructor(private readonly opts: IdleCollectorOptions) {
    this.baseline = opts.heapUsed();
    this.quietMs = opts.quietMs ?? 2000;
    this.minGrowth = opts.minGrowthBytes ?? 4 << 20;
  }

  /** Collects if due; true when it did. */
  tick(): boolean {
    if (this.opts.quietFor() < this.quietMs) return false;
    const used = this.opts.heapUsed();
    if (used - this.baseline < this.minGrowth) {
      // V8 collected on its own meanwhile: measure growth from there.
      if (used < this.baseline) this.baseline = used;
      return false;
    }
    this.opts.collect();
    this.baseline = this.opts.heapUsed();
    return true;
  }
}

/** Checks every intervalMs (an unref'd timer); undefined when gc() is not exposed. */
export function startIdleCollector(
  quietFor: () => number,
  log: Logger,
  intervalMs = 5000,
): { stop(): void } | undefined {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (typeof gc !== "function") {
    log.debug("gc() is not exposed (node --expose-gc): no collection when idle");
    return undefined;
  }
  const collector = new IdleCollector({
    collect: () => gc(),
    heapUsed: () => getHeapStatistics().used_heap_size,
    quietFor,
  });
  const timer = setInterval(() => {
    const start = performance.now();
    const before = getHeapStatistics().used_heap_size;
    if (collector.tick()) {
      const after = getHeapStatistics().used_heap_size;
      log.debug(
        { ms: Math.round(performance.now() - start), freedMiB: Math.round((before - after) / 2 ** 20) },
        "collected the heap while idle",
      );
    }
  }, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
