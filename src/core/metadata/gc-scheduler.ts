// When GC runs (containerd's io.containerd.gc.v1.scheduler): once after startup, soon after anything
// marks the DB dirty (coalesced, spaced so GC takes at most pauseThreshold of wall time, and in a
// quiet moment of the API when there is one), and on demand.
import { unavailable } from "../../errdefs/errors.js";
import type { GcStats } from "./gc.js";

export interface GcSchedulerOptions {
  collect: () => Promise<GcStats>;
  /** Called after every successful collection (berthd logs "garbage collected d=…ms"). */
  log?: (stats: GcStats) => void;
  /** Failures of collections nobody awaits; a process warning by default. */
  onError?: (err: unknown) => void;
  /** Delay before the first collection after start. Default 100 ms. */
  startupDelayMs?: number;
  /** Delay between markDirty and the collection it triggers. Default 0. */
  scheduleDelayMs?: number;
  /** Largest share of wall time GC may take; spaces dirty-triggered runs. Default 0.02. */
  pauseThreshold?: number;
  /**
   * How long the API has been quiet (ms; 0 while a call is in flight). A dirty-triggered run
   * waits for quietMs of quiet, and at most maxDeferMs: a collection holds the event loop and
   * the write lock, and one landing between a client's calls (a lease deleted halfway through
   * `ctr run`) delays the next call by its whole length. Absent: runs are never deferred.
   */
  quietFor?: () => number;
  /** Quiet needed before a deferred run. Default 5 ms. */
  quietMs?: number;
  /** The longest a dirty-triggered run waits for quiet. Default 1000 ms. */
  maxDeferMs?: number;
}

export interface GcScheduler {
  /** Something was deleted: schedule a collection soon. Calls coalesce into one run. */
  markDirty(): void;
  /** Resolves with a collection that started after this call (concurrent callers share it). */
  runNow(): Promise<GcStats>;
  /** Cancels timers and waits for the running collection (and one already asked for by runNow). */
  close(): Promise<void>;
  readonly lastStats: GcStats | undefined;
}

interface Deferred {
  promise: Promise<GcStats>;
  resolve: (s: GcStats) => void;
  reject: (err: unknown) => void;
}

function deferred(): Deferred {
  let resolve!: (s: GcStats) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<GcStats>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export function createGcScheduler(opts: GcSchedulerOptions): GcScheduler {
  const scheduleDelayMs = opts.scheduleDelayMs ?? 0;
  const pauseThreshold = opts.pauseThreshold ?? 0.02;
  const quietMs = opts.quietMs ?? 5;
  const maxDeferMs = opts.maxDeferMs ?? 1000;
  const onError =
    opts.onError ??
    ((err: unknown) =>
      process.emitWarning(`garbage collection failed: ${err instanceof Error ? err.message : String(err)}`));

  let current: Promise<GcStats> | undefined;
  /** A run asked for by runNow while another was running; it starts when that one ends. */
  let next: Deferred | undefined;
  let dirty = false;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let lastStats: GcStats | undefined;
  let lastEnd = 0;
  let lastDuration = 0;
  /** When the pending dirty-triggered run was first due (for maxDeferMs). */
  let dueSince: number | undefined;

  function clearTimer(): void {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  }

  function setTimer(delayMs: number, deferrable = false): void {
    timer = setTimeout(
      () => {
        timer = undefined;
        if (deferrable && opts.quietFor) {
          const now = performance.now();
          dueSince ??= now;
          const quiet = opts.quietFor();
          if (quiet < quietMs && now - dueSince < maxDeferMs) {
            setTimer(Math.max(1, quietMs - quiet), true);
            return;
          }
        }
        void start().catch(onError);
      },
      Math.max(0, delayMs),
    );
    timer.unref();
  }

  function start(): Promise<GcStats> {
    clearTimer();
    dirty = false;
    dueSince = undefined;
    const begin = performance.now();
    const run = (async () => {
      try {
        const stats = await opts.collect();
        lastStats = stats;
        opts.log?.(stats);
        return stats;
      } finally {
        lastEnd = performance.now();
        lastDuration = lastEnd - begin;
        current = undefined;
        afterRun();
      }
    })();
    current = run;
    return run;
  }

  function afterRun(): void {
    const waiting = next;
    if (waiting !== undefined) {
      next = undefined;
      start().then(waiting.resolve, waiting.reject);
    } else if (dirty && !closed) {
      schedule();
    }
  }

  function schedule(): void {
    // Spacing after the last run keeps GC under pauseThreshold of wall time, as containerd's does.
    const spacing = lastDuration > 0 ? lastEnd + lastDuration / pauseThreshold - performance.now() : 0;
    setTimer(Math.max(scheduleDelayMs, spacing), true);
  }

  setTimer(opts.startupDelayMs ?? 100);

  return {
    markDirty(): void {
      if (closed) return;
      dirty = true;
      // A pending timer or run picks this up; a running one reschedules when it ends.
      if (current !== undefined || next !== undefined || timer !== undefined) return;
      schedule();
    },

    runNow(): Promise<GcStats> {
      if (closed) return Promise.reject(unavailable("garbage collector is closed"));
      if (current === undefined) return start();
      next ??= deferred();
      return next.promise;
    },

    async close(): Promise<void> {
      closed = true;
      dirty = false;
      clearTimer();
      while (current !== undefined) await current.catch(() => undefined);
    },

    get lastStats(): GcStats | undefined {
      return lastStats;
    },
  };
}
