// Collects the exits of processes libuv does not know about. The shim is the child subreaper, so
// container inits (after runc create exits) and detached exec processes are reparented to it; so is
// any orphan whose parent dies (a container sharing the host pid namespace leaks its background
// children here). libuv reaps only the pids it spawned (waitpid(pid) per child), so the reaper
// reaps everything else and never touches libuv's pids: a stolen exit would leave a ChildProcess
// that never emits 'exit'.
import { EventEmitter } from "node:events";
import type { ChildProcess } from "node:child_process";
import {
  setChildSubreaper,
  pidfdOpen,
  pidfdSendSignal,
  reapPidfd,
  reapPid,
  closeFd,
  listChildren,
  anyChildExited,
  exitStatus,
  type WaitResult,
} from "../sys/process.js";
import { watchFd, type FdWatch } from "../sys/socket.js";
import { hasCode } from "../sys/errno.js";
import { notFound } from "../errdefs/errors.js";

export interface ExitEvent {
  pid: number;
  /** The exit code, or 128 + signal when a signal ended the process (containerd's convention). */
  status: number;
  /** The terminating signal, 0 when the process exited. */
  signal: number;
  exitedAt: Date;
}

export interface ReaperOptions {
  /** Make this process the child subreaper (default true). */
  subreaper?: boolean;
  /**
   * Tells which pids libuv spawned (child_process), in addition to those passed to
   * trackSpawned. The reaper never reaps these.
   */
  isSpawnedChild?: (pid: number) => boolean;
  /** How long the exit of an unregistered process is kept for a later register (default 60 s). */
  keepUnclaimedMs?: number;
  /** At most this many unclaimed exits are kept, the oldest dropped first (default 1024). */
  maxUnclaimed?: number;
}

export interface RegisterOptions {
  /**
   * Ignore a recorded exit older than this (ms since the epoch): when the process was started
   * (before runc create/exec). Guards against a recorded exit of an earlier process whose pid
   * was reused.
   */
  since?: number;
  /** No 'exit' event for this process (its owner has the promise): the shim's own runc processes. */
  quiet?: boolean;
}

interface Registered {
  pid: number;
  quiet: boolean;
  pidfd: number;
  watch: FdWatch;
  done: Promise<ExitEvent>;
  resolve: (e: ExitEvent) => void;
}

function toEvent(r: WaitResult): ExitEvent {
  return { pid: r.pid, status: exitStatus(r), signal: r.signal, exitedAt: new Date() };
}

/** Pids of live ChildProcess handles: a safety net for spawns nobody passed to trackSpawned. */
function activeChildProcessPids(): Set<number> {
  const pids = new Set<number>();
  const getHandles = (process as unknown as { _getActiveHandles?: () => unknown[] })._getActiveHandles;
  if (typeof getHandles !== "function") return pids;
  for (const h of getHandles.call(process)) {
    const pid = (h as { pid?: unknown; constructor?: { name?: string } }).pid;
    if (
      (h as { constructor?: { name?: string } }).constructor?.name === "ChildProcess" &&
      typeof pid === "number"
    )
      pids.add(pid);
  }
  return pids;
}

/**
 * One per process. Events: 'exit' (ExitEvent) for every registered process; 'orphan'
 * (ExitEvent) for an unregistered process reaped (kept for a later register).
 */
export class Reaper extends EventEmitter<{ exit: [ExitEvent]; orphan: [ExitEvent]; error: [Error] }> {
  private readonly opts: ReaperOptions;
  private readonly spawned = new Set<number>();
  private readonly registered = new Map<number, Registered>();
  private readonly unclaimed = new Map<number, ExitEvent>();
  private scheduled = false;
  private closed = false;
  private readonly onSigchld = (): void => this.schedule();

  constructor(opts: ReaperOptions = {}) {
    super();
    this.opts = opts;
    if (opts.subreaper ?? true) setChildSubreaper(true);
    // Node allows a SIGCHLD listener next to libuv's own (libuv keeps reaping its children); the
    // signal handle is unref'd, so listening does not keep the process alive.
    process.on("SIGCHLD", this.onSigchld);
    this.schedule(); // anything that exited before we listened
  }

  /** Marks a child_process child as libuv's until it emits 'exit'. Call right after spawn. */
  trackSpawned(child: ChildProcess): void {
    const pid = child.pid;
    if (pid === undefined) return; // spawn failed; 'error' follows
    this.spawned.add(pid);
    child.once("exit", () => this.spawned.delete(pid));
  }

  /**
   * Starts watching pid (from runc's --pid-file) through a pidfd, so a reused pid cannot be
   * mistaken for it, and resolves when it exits. When the process already exited and was reaped
   * as an orphan, resolves with that recorded exit. Rejects (right away, never later) with NotFound
   * when no such process exists and no exit was recorded for it: attach a handler.
   */
  register(pid: number, opts: RegisterOptions = {}): Promise<ExitEvent> {
    try {
      return this.watchPid(pid, opts);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  private watchPid(pid: number, opts: RegisterOptions): Promise<ExitEvent> {
    if (this.closed) throw new Error("reaper closed");
    const existing = this.registered.get(pid);
    if (existing !== undefined) return existing.done;
    let pidfd: number;
    try {
      pidfd = pidfdOpen(pid);
    } catch (err) {
      if (!hasCode(err, "ESRCH")) throw err;
      const recorded = this.unclaimed.get(pid);
      if (recorded !== undefined && recorded.exitedAt.getTime() >= (opts.since ?? 0)) {
        this.unclaimed.delete(pid);
        if (opts.quiet !== true) queueMicrotask(() => this.emit("exit", recorded));
        return Promise.resolve(recorded);
      }
      throw notFound(`process ${pid}`);
    }
    // A live (or zombie, not yet reaped) process holds this pid now, so any recorded exit under
    // the same pid belongs to an earlier process.
    this.unclaimed.delete(pid);
    let resolve!: (e: ExitEvent) => void;
    const done = new Promise<ExitEvent>((r) => (resolve = r));
    // The pidfd turns readable when the process exits, even before SIGCHLD is handled.
    const watch = watchFd(pidfd, { readable: true }, () => this.schedule());
    this.registered.set(pid, { pid, quiet: opts.quiet === true, pidfd, watch, done, resolve });
    this.schedule();
    return done;
  }

  isRegistered(pid: number): boolean {
    return this.registered.has(pid);
  }

  /** The exit of a registered process (undefined when it is not registered). */
  wait(pid: number): Promise<ExitEvent> | undefined {
    return this.registered.get(pid)?.done;
  }

  /** Signals a registered process through its pidfd (never a process that reused the pid). */
  signal(pid: number, sig: number): void {
    const r = this.registered.get(pid);
    if (r === undefined) throw notFound(`process ${pid}`);
    pidfdSendSignal(r.pidfd, sig);
  }

  /** Stops watching pid without waiting for it (its exit will be recorded as unclaimed). */
  unregister(pid: number): void {
    const r = this.registered.get(pid);
    if (r === undefined) return;
    this.registered.delete(pid);
    r.watch.close();
    closeFd(r.pidfd);
  }

  /** Removes and returns a recorded exit of an unregistered process. */
  takeUnclaimed(pid: number): ExitEvent | undefined {
    const e = this.unclaimed.get(pid);
    this.unclaimed.delete(pid);
    return e;
  }

  /** Stops listening and closes every pidfd. Pending register() promises stay pending. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    process.off("SIGCHLD", this.onSigchld);
    for (const pid of [...this.registered.keys()]) this.unregister(pid);
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.closed) return;
      try {
        this.scanRegistered();
      } catch (err) {
        this.emit("error", err as Error);
      }
      // Orphans in a turn of their own: the waiters of the exits just reaped (a Wait reply) go
      // first, not after a read of every thread's children list.
      setImmediate(() => {
        if (this.closed) return;
        try {
          this.scanOrphans();
        } catch (err) {
          this.emit("error", err as Error);
        }
      });
    });
  }

  private isLibuvChild(pid: number, active: () => Set<number>): boolean {
    return this.spawned.has(pid) || this.opts.isSpawnedChild?.(pid) === true || active().has(pid);
  }

  /** Reaps every exited registered process and every exited orphan. Runs on SIGCHLD. */
  scan(): void {
    this.scanRegistered();
    this.scanOrphans();
  }

  private scanRegistered(): void {
    for (const r of [...this.registered.values()]) {
      let result: WaitResult | null;
      try {
        result = reapPidfd(r.pidfd);
      } catch (err) {
        // ECHILD: not (yet) our child, e.g. we are not the subreaper; keep watching.
        if (hasCode(err, "ECHILD")) continue;
        throw err;
      }
      if (result === null) continue;
      this.unregister(r.pid);
      const event = toEvent(result);
      r.resolve(event);
      if (!r.quiet) this.emit("exit", event);
    }
  }

  private scanOrphans(): void {
    // One waitid that reaps nothing tells whether any child at all has exited; only then is the
    // children list of every thread read (a dozen /proc reads per SIGCHLD otherwise).
    if (!anyChildExited()) return;
    let active: Set<number> | undefined;
    const activeOnce = (): Set<number> => (active ??= activeChildProcessPids());
    for (const pid of listChildren()) {
      if (this.registered.has(pid) || this.isLibuvChild(pid, activeOnce)) continue;
      let result: WaitResult | null;
      try {
        result = reapPid(pid);
      } catch (err) {
        if (hasCode(err, "ECHILD")) continue; // reaped meanwhile (libuv, or gone)
        throw err;
      }
      if (result === null) continue;
      const event = toEvent(result);
      this.record(event);
      this.emit("orphan", event);
    }
  }

  private record(event: ExitEvent): void {
    const now = event.exitedAt.getTime();
    const keep = this.opts.keepUnclaimedMs ?? 60_000;
    const max = this.opts.maxUnclaimed ?? 1024;
    this.unclaimed.delete(event.pid);
    this.unclaimed.set(event.pid, event);
    // Map iteration is in insertion order: the oldest first.
    for (const [pid, e] of this.unclaimed) {
      if (this.unclaimed.size <= max && now - e.exitedAt.getTime() <= keep) break;
      this.unclaimed.delete(pid);
    }
  }
}
