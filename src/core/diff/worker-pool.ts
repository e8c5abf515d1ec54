// A small pool of worker threads for the jobs that must not run on the daemon's event loop (layer
// apply and diff: synchronous syscalls, decompression, hashing). Jobs are plain messages; a
// cancelled job terminates its worker, which is replaced on demand. A worker is a whole V8 isolate
// (8-10 MB resident), so one left idle for idleMs is retired too: a daemon running containers
// and pulling nothing holds none.
import { Worker } from "node:worker_threads";
import { BerthError, type ErrorCode } from "../../errdefs/errors.js";

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  busy: boolean;
  /** Retires the worker once it has been idle for idleMs. */
  idleTimer?: NodeJS.Timeout;
}

export interface WorkerPoolOptions {
  /** The worker module (a URL to a .js file, or .ts under tsx). */
  script: URL;
  size: number;
  /** How long an idle worker lives before it is terminated (default 30 s). */
  idleMs?: number;
  /**
   * Called when idleness has retired the last worker, once its thread is gone (berthd hands the
   * memory the threads freed back to the kernel then).
   */
  onAllRetired?: () => void;
}

export interface WorkerPool {
  run<T>(op: string, args: unknown, signal?: AbortSignal): Promise<T>;
  /** Workers alive now, busy or idle. */
  readonly workers: number;
  close(): Promise<void>;
}

const DEFAULT_IDLE_MS = 30_000;

/** What a worker posts back. */
export type WorkerReply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: { code: ErrorCode; message: string } };

export function createWorkerPool(opts: WorkerPoolOptions): WorkerPool {
  const slots: Slot[] = [];
  const queue: Array<() => void> = [];
  let nextId = 1;
  let closed = false;
  const idleMs = opts.idleMs ?? DEFAULT_IDLE_MS;

  const spawn = (): Slot => {
    const worker = new Worker(opts.script);
    worker.unref();
    const slot: Slot = { worker, busy: false };
    slots.push(slot);
    return slot;
  };

  const acquire = (): Promise<Slot> => {
    const free = slots.find((s) => !s.busy);
    if (free) {
      clearTimeout(free.idleTimer);
      free.busy = true;
      return Promise.resolve(free);
    }
    if (slots.length < opts.size) {
      const s = spawn();
      s.busy = true;
      return Promise.resolve(s);
    }
    return new Promise((resolve) => queue.push(() => void acquire().then(resolve)));
  };

  const release = (slot: Slot): void => {
    slot.busy = false;
    const next = queue.shift();
    if (next !== undefined) {
      next();
      return;
    }
    slot.idleTimer = setTimeout(() => {
      if (slot.busy) return;
      const exited = discard(slot);
      if (slots.length === 0 && opts.onAllRetired !== undefined) void exited.then(opts.onAllRetired);
    }, idleMs);
    slot.idleTimer.unref();
  };

  /** Ends slot's worker; resolves once its thread is gone. */
  const discard = (slot: Slot): Promise<unknown> => {
    clearTimeout(slot.idleTimer);
    const i = slots.indexOf(slot);
    if (i >= 0) slots.splice(i, 1);
    const exited = slot.worker.terminate().catch(() => undefined);
    queue.shift()?.();
    return exited;
  };

  return {
    async run<T>(op: string, args: unknown, signal?: AbortSignal): Promise<T> {
      if (closed) throw new BerthError("unavailable", "worker pool closed");
      signal?.throwIfAborted();
      const slot = await acquire();
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        const pending: Pending = { resolve: resolve as (v: unknown) => void, reject };
        let settled = false;
        const cleanup = (): void => {
          settled = true;
          slot.worker.off("message", onMessage);
          slot.worker.off("error", onError);
          slot.worker.off("exit", onExit);
          signal?.removeEventListener("abort", onAbort);
        };
        const onMessage = (reply: WorkerReply): void => {
          if (reply.id !== id || settled) return;
          cleanup();
          release(slot);
          if (reply.ok) pending.resolve(reply.result);
          else pending.reject(new BerthError(reply.error.code, reply.error.message));
        };
        const onError = (err: Error): void => {
          if (settled) return;
          cleanup();
          void discard(slot);
          pending.reject(new BerthError("unknown", `worker failed: ${err.message}`, { cause: err }));
        };
        const onExit = (code: number): void => {
          if (settled) return;
          cleanup();
          void discard(slot);
          pending.reject(new BerthError("unknown", `worker exited with code ${code}`));
        };
        const onAbort = (): void => {
          if (settled) return;
          cleanup();
          void discard(slot);
          pending.reject(new BerthError("canceled", "context canceled"));
        };
        slot.worker.on("message", onMessage);
        slot.worker.on("error", onError);
        slot.worker.on("exit", onExit);
        signal?.addEventListener("abort", onAbort, { once: true });
        slot.worker.postMessage({ id, op, args });
      });
    },
    get workers(): number {
      return slots.length;
    },
    async close(): Promise<void> {
      closed = true;
      for (const slot of slots) clearTimeout(slot.idleTimer);
      await Promise.all(slots.splice(0).map((s) => s.worker.terminate()));
    },
  };
}
