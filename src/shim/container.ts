// One container in the shim: its bundle and rootfs mounts, the init process and its exec
// processes, each driven through runc and watched by the reaper. State machines as containerd's
// runc shim has them: created -> running -> stopped (init may also be paused); an exec is added,
// then started, then deleted.
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Status } from "../gen/containerd/types/task/task_pb.js";
import { BerthError, alreadyExists, failedPrecondition, notFound } from "../errdefs/errors.js";
import { mountAll, unmountAll, unmountAllOffThread } from "../core/mount/mount.js";
import type { Mount } from "../core/mount/mount-types.js";
import { validateIdentifier } from "../core/identifiers/identifiers.js";
import type { Reaper, ExitEvent } from "./reaper.js";
import { readPidFile, type Runc } from "./runc.js";
import { openStdio, type ProcessStdio, type StdioContext, type StdioPaths } from "./stdio.js";
import { validateProcess } from "./process-spec.js";

export interface ProcessState {
  id: string;
  execId: string;
  pid: number;
  status: Status;
  stdio: StdioPaths;
  exitStatus: number;
  exitedAt?: Timestamp;
}

/** Called when a process exits (after its stdio is released): the shim publishes /tasks/exit. */
/** Told of each exit; what it returns settles once the exit has been reported (its event). */
export type ExitListener = (c: Container, p: ShimProcess, exit: ExitEvent) => void | Promise<void>;

export class ShimProcess {
  pid = 0;
  status: Status = Status.CREATED;
  exitStatus = 0;
  exitedAt?: Timestamp;
  stdio?: ProcessStdio;
  /** While a start is being reported: its exit is reported after the start event, never before. */
  startGate?: Promise<void>;
  private exitedResolve!: () => void;
  /** Resolves once the process has exited and its exit is recorded. */
  readonly exited = new Promise<void>((r) => (this.exitedResolve = r));
  /** Settles once the exit listener has reported the exit (the /tasks/exit event is out). */
  exitReported: Promise<void> = Promise.resolve();

  constructor(
    readonly execId: string,
    readonly paths: StdioPaths,
    /** The OCI Process JSON of an exec; undefined for init. */
    readonly spec?: object,
  ) {}

  setExited(status: number, at: Date): void {
    if (this.status === Status.STOPPED) return;
    this.status = Status.STOPPED;
    this.exitStatus = status;
    this.exitedAt = timestampFromDate(at);
    this.stdio?.close();
    this.exitedResolve();
  }
}

export interface ContainerOptions {
  id: string;
  namespace: string;
  bundle: string;
  rootfs: Mount[];
  stdio: StdioPaths;
  runc: Runc;
  reaper: Reaper;
  onExit: ExitListener;
  noPivot?: boolean;
  /** A CRIU image directory: the init process is restored from it at start instead of created. */
  checkpoint?: string;
}

export class Container {
  readonly id: string;
  readonly namespace: string;
  readonly bundle: string;
  readonly init: ShimProcess;
  readonly execs = new Map<string, ShimProcess>();
  private readonly runc: Runc;
  private readonly reaper: Reaper;
  private readonly onExit: ExitListener;
  private rootfsMounted = false;
  /**
   * `runc delete` may finish after Delete is answered: the spec gives the container a pid namespace
   * of its own (not a path to another's), so its processes end with init, and no poststop hook
   * (which could expect the bundle, removed right after the answer).
   */
  private deferrableDelete = false;
  /**
   * With deferrableDelete, the rootfs unmount started when init exited: nothing of the container
   * runs any more (its pid namespace died with init) and a stopped container's rootfs serves nobody,
   * so the unmount (an overlay's syncs its upper file system) runs off the event loop while the
   * client hears of the exit, instead of inside Delete. Never rejects.
   */
  private unmounting: Promise<void> | undefined;
  /** The deferred-delete path's deletion, once begun. */
  private deleting: Promise<ShimProcess> | undefined;
  /**
   * Set by delete() when `runc delete` finishes after the reply: settles once runc's state for
   * this id is gone (a new container of the same id waits for it); rejects with runc's error.
   */
  retired: Promise<void> | undefined;

  /** Where runc keeps this container's state. */
  get runcRoot(): string | undefined {
    return this.runc.root;
  }
  private checkpointDir?: string;
  private noPivot?: boolean;

  private constructor(o: ContainerOptions) {
    this.id = o.id;
    this.namespace = o.namespace;
    this.bundle = o.bundle;
    this.runc = o.runc;
    this.reaper = o.reaper;
    this.onExit = o.onExit;
    this.init = new ShimProcess("", o.stdio);
  }

  /** Mounts the rootfs, opens stdio and runs `runc create`; the init process waits for start. */
  static async create(o: ContainerOptions): Promise<Container> {
    const c = new Container(o);
    const rootfs = join(o.bundle, "rootfs");
    const spec = (await Container.spec(o.bundle)) as {
      process?: unknown;
      linux?: { namespaces?: Array<{ type?: string; path?: string }> };
      hooks?: { poststop?: unknown[] };
    };
    validateProcess(spec.process);
    c.deferrableDelete =
      (spec.linux?.namespaces ?? []).some((n) => n.type === "pid" && !n.path) &&
      (spec.hooks?.poststop ?? []).length === 0;
    try {
      await clearStoppedLeftover(o.runc, o.id);
      if (o.rootfs.length > 0) {
        mkdirSync(rootfs, { recursive: true, mode: 0o711 });
        mountAll(o.rootfs, rootfs);
        c.rootfsMounted = true;
      }
      if (o.checkpoint !== undefined) {
        // containerd's createdCheckpoint state: nothing runs until start restores it.
        c.checkpointDir = o.checkpoint;
        c.noPivot = o.noPivot;
        return c;
      }
      const pidFile = join(o.bundle, "init.pid");
      c.init.stdio = await openStdio(o.stdio, c.stdioContext());
      const since = Date.now();
      await o.runc
        .create(o.id, o.bundle, {
          pidFile,
          consoleSocket: c.init.stdio.consoleSocket,
          noPivot: o.noPivot,
          io: c.init.stdio.io,
        })
        .catch(runtimeError("OCI runtime create failed"));
      await c.init.stdio.started();
      c.init.pid = await readPidFile(pidFile);
      c.watch(c.init, since);
      return c;
    } catch (err) {
      c.init.stdio?.close();
      await o.runc.delete(o.id, { force: true }).catch(() => undefined);
      if (c.rootfsMounted) unmountAll(rootfs);
      throw err;
    }
  }

  private watch(p: ShimProcess, since: number): void {
    void this.reaper.register(p.pid, { since }).then(
      (exit) => {
        p.setExited(exit.status, exit.exitedAt);
        p.exitReported = Promise.resolve(this.onExit(this, p, exit)).catch(() => undefined);
        if (p === this.init && this.deferrableDelete && this.rootfsMounted)
          // A failure is Delete's to report: it unmounts again, and says why.
          this.unmounting = unmountAllOffThread(join(this.bundle, "rootfs")).catch(() => undefined);
      },
      () => {
        // The process was gone before we could watch it and no exit was recorded.
        p.setExited(255, new Date());
        const exit = { pid: p.pid, status: 255, signal: 0, exitedAt: new Date() };
        p.exitReported = Promise.resolve(this.onExit(this, p, exit)).catch(() => undefined);
      },
    );
  }

  private stdioContext(): StdioContext {
    return { id: this.id, namespace: this.namespace, onSpawn: (child) => this.reaper.trackSpawned(child) };
  }

  process(execId: string): ShimProcess {
    if (execId === "") return this.init;
    const p = this.execs.get(execId);
    if (!p) throw notFound(`process ${execId} does not exist`);
    return p;
  }

  async start(execId: string): Promise<ShimProcess> {
    const p = this.process(execId);
    if (execId === "") {
      if (p.status !== Status.CREATED)
        throw failedPrecondition(`cannot start a ${statusName(p.status)} process`);
      if (this.checkpointDir !== undefined) return this.restore(p, this.checkpointDir);
      await this.runc
        .start(this.id, { initExited: p.exited })
        .catch(runtimeError("OCI runtime start failed"));
      // A short-lived process may have exited (and been reaped) before runc start returned.
      if (p.status === Status.CREATED) p.status = Status.RUNNING;
      return p;
    }
    if (this.init.status !== Status.RUNNING && this.init.status !== Status.PAUSED)
      throw failedPrecondition("container is not running");
    if (p.status !== Status.CREATED)
      throw failedPrecondition(`cannot start a ${statusName(p.status)} process`);
    const dir = join(this.bundle, "exec");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const pidFile = join(dir, `${execId}.pid`);
    p.stdio = await openStdio(p.paths, this.stdioContext());
    const since = Date.now();
    try {
      await this.runc
        .exec(this.id, p.spec ?? {}, {
          pidFile,
          consoleSocket: p.stdio.consoleSocket,
          detach: true,
          io: p.stdio.io,
        })
        .catch(runtimeError("OCI runtime exec failed"));
      await p.stdio.started();
      p.pid = await readPidFile(pidFile);
    } catch (err) {
      p.stdio.close();
      p.setExited(255, new Date());
      throw err;
    } finally {
      await rm(pidFile, { force: true });
    }
    if (p.status === Status.CREATED) p.status = Status.RUNNING;
    this.watch(p, since);
    return p;
  }

  /** runc restore of the init process from a CRIU image (the start of a checkpointed task). */
  private async restore(p: ShimProcess, imagePath: string): Promise<ShimProcess> {
    const pidFile = join(this.bundle, "init.pid");
    p.stdio = await openStdio(p.paths, this.stdioContext());
    const since = Date.now();
    try {
      await this.runc
        .restore(this.id, this.bundle, {
          imagePath,
          workPath: join(this.bundle, "criu-work"),
          pidFile,
          consoleSocket: p.stdio.consoleSocket,
          noPivot: this.noPivot,
          detach: true,
          io: p.stdio.io,
        })
        .catch(runtimeError("OCI runtime restore failed"));
      await p.stdio.started();
      p.pid = await readPidFile(pidFile);
    } catch (err) {
      p.stdio.close();
      throw err;
    }
    this.checkpointDir = undefined;
    p.status = Status.RUNNING;
    this.watch(p, since);
    return p;
  }

  addExec(execId: string, paths: StdioPaths, spec: object): void {
    validateIdentifier(execId);
    validateProcess(spec);
    if (this.execs.has(execId)) throw alreadyExists(`id ${execId}`);
    if (this.init.status === Status.STOPPED) throw failedPrecondition("container is stopped");
    this.execs.set(execId, new ShimProcess(execId, paths, spec));
  }

  async kill(execId: string, signal: number, all: boolean): Promise<void> {
    const p = this.process(execId);
    if (p.status === Status.STOPPED && !all) throw notFound("process already finished");
    if (execId === "") {
      await this.runc.kill(this.id, signal, { all });
      return;
    }
    if (p.status === Status.CREATED) throw failedPrecondition("process not started");
    this.reaper.signal(p.pid, signal);
  }

  /** Deletes an exec, or the container (init stopped or never started), unmounting its rootfs. */
  async delete(execId: string): Promise<ShimProcess> {
    const p = this.process(execId);
    if (p.status !== Status.STOPPED && p.status !== Status.CREATED)
      throw failedPrecondition(`cannot delete a ${statusName(p.status)} process`);
    if (execId !== "") {
      this.execs.delete(execId);
      return p;
    }
    if (p.status === Status.STOPPED && this.deferrableDelete) {
      // Every process of the container died with its init (the kernel kills a pid namespace's
      // members with its init), so the rootfs is free now, and what `runc delete` has left to do
      // (its state dir, the cgroup, poststop hooks) need not hold up the reply: it runs on in
      // `retired`. Its log cannot go in the bundle, which the daemon removes next. One deletion
      // serves concurrent Deletes; a failed one (the rootfs still busy) is tried again by the next.
      if (this.deleting !== undefined) return this.deleting;
      const deleting = (async () => {
        await this.unmounting;
        if (this.rootfsMounted) unmountAll(join(this.bundle, "rootfs"));
        this.rootfsMounted = false;
        p.stdio?.close();
        this.retired = this.runc.withLog(undefined).delete(this.id, { force: true }).catch(ignoreGone);
        return p;
      })();
      this.deleting = deleting;
      deleting.catch(() => {
        if (this.deleting === deleting) this.deleting = undefined;
      });
      return deleting;
    }
    if (p.status === Status.CREATED) {
      await this.runc.kill(this.id, 9).catch(() => undefined);
      await Promise.race([p.exited, new Promise((r) => setTimeout(r, 2000))]);
    }
    await this.runc.delete(this.id, { force: true }).catch(ignoreGone);
    if (this.rootfsMounted) unmountAll(join(this.bundle, "rootfs"));
    this.rootfsMounted = false;
    p.stdio?.close();
    return p;
  }

  async pause(): Promise<void> {
    if (this.init.status !== Status.RUNNING) throw failedPrecondition("container is not running");
    await this.runc.pause(this.id).catch(runtimeError("OCI runtime pause failed"));
    this.init.status = Status.PAUSED;
  }

  async resume(): Promise<void> {
    if (this.init.status !== Status.PAUSED) throw failedPrecondition("container is not paused");
    await this.runc.resume(this.id).catch(runtimeError("OCI runtime resume failed"));
    this.init.status = Status.RUNNING;
  }

  state(execId: string): ProcessState {
    const p = this.process(execId);
    return {
      id: this.id,
      execId,
      pid: p.pid,
      status: p.status,
      stdio: p.paths,
      exitStatus: p.exitStatus,
      exitedAt: p.exitedAt,
    };
  }

  /** Pids in the container, each exec's pid tagged with its exec id. */
  async pids(): Promise<{ pid: number; execId?: string }[]> {
    const pids = await this.runc.ps(this.id);
    const byPid = new Map([...this.execs.values()].map((p) => [p.pid, p.execId]));
    return pids.map((pid) => ({ pid, execId: byPid.get(pid) }));
  }

  async stats(): Promise<Awaited<ReturnType<Runc["stats"]>>> {
    if (this.init.status === Status.STOPPED) throw notFound(`container ${this.id} is stopped`);
    return this.runc.stats(this.id);
  }

  async update(resources: object): Promise<void> {
    await this.runc.update(this.id, resources).catch(runtimeError("OCI runtime update failed"));
  }

  async checkpoint(
    imagePath: string,
    o: {
      exit: boolean;
      workPath?: string;
      openTcp?: boolean;
      externalUnixSockets?: boolean;
      fileLocks?: boolean;
      shellJob?: boolean;
      cgroupsMode?: string;
      emptyNamespaces?: string[];
    },
  ): Promise<void> {
    if (this.init.status !== Status.RUNNING && this.init.status !== Status.PAUSED)
      throw failedPrecondition("container is not running");
    await this.runc
      .checkpoint(this.id, {
        imagePath,
        workPath: o.workPath,
        leaveRunning: !o.exit,
        tcpEstablished: o.openTcp,
        extUnixSk: o.externalUnixSockets,
        fileLocks: o.fileLocks,
        shellJob: o.shellJob,
        manageCgroupsMode: o.cgroupsMode,
        emptyNamespaces: o.emptyNamespaces,
      })
      .catch(runtimeError("OCI runtime checkpoint failed"));
  }

  closeIO(execId: string): void {
    this.process(execId).stdio?.closeStdin();
  }

  resizePty(execId: string, width: number, height: number): void {
    const p = this.process(execId);
    if (!p.stdio) throw failedPrecondition("process not started");
    p.stdio.resize(width, height);
  }

  /**
   * config.json of a bundle ({} when missing or not JSON: runc then reports the problem). Read
   * synchronously: a few KiB on local disk, cheaper than a round trip through the thread pool.
   */
  static async spec(bundle: string): Promise<Record<string, unknown>> {
    try {
      const spec: unknown = JSON.parse(readFileSync(join(bundle, "config.json"), "utf8"));
      return typeof spec === "object" && spec !== null ? (spec as Record<string, unknown>) : {};
    } catch {
      return {};
    }
  }

  /** The annotations of config.json, for grouping. */
  static async annotations(bundle: string): Promise<Record<string, string>> {
    const a = (await Container.spec(bundle)).annotations;
    return typeof a === "object" && a !== null ? (a as Record<string, string>) : {};
  }
}

/** containerd's runc shim prefixes runc's own error with what failed; the code stays. */
function runtimeError(what: string): (err: unknown) => never {
  return (err) => {
    const e = BerthError.from(err);
    throw new BerthError(e.code, `${what}: ${e.message}`, { cause: err });
  };
}

export function statusName(s: Status): string {
  switch (s) {
    case Status.CREATED:
      return "created";
    case Status.RUNNING:
      return "running";
    case Status.STOPPED:
      return "stopped";
    case Status.PAUSED:
      return "paused";
    case Status.PAUSING:
      return "pausing";
    default:
      return "unknown";
  }
}

const ignoreGone = (err: unknown): void => {
  if (!/does not exist|not exist/.test((err as Error).message)) throw err;
};

/**
 * runc state left for id by a container of the same id that was deleted while its `runc delete`
 * still ran on (in another shim of the same group, or in one that died meanwhile). The daemon
 * creates a task only once the previous one of that id is deleted, so a stopped leftover is
 * finished here; anything else is left for `runc create` to refuse.
 */
async function clearStoppedLeftover(runc: Runc, id: string): Promise<void> {
  if (runc.root === undefined) return;
  const dir = join(runc.root, id);
  // The other shim's `runc delete` is most likely still running: give it time to finish rather
  // than race it (a `runc state` of a half-removed dir fails, and runc create would refuse).
  for (let waited = 0; existsSync(dir) && waited < LEFTOVER_WAIT_MS; waited += 10)
    await new Promise((resolve) => setTimeout(resolve, 10));
  if (!existsSync(dir)) return;
  const state = await runc.state(id).catch(() => undefined);
  if (state?.status === "stopped") await runc.delete(id, { force: true }).catch(ignoreGone);
}

/** How long a Create waits for another shim's deferred `runc delete` of the same id. */
const LEFTOVER_WAIT_MS = 2000;
