// The runc driver (go-runc's job): one method per runc command, argument arrays only (never a
// shell), errors carrying runc's own last error message from its JSON log.
import { spawn, type ChildProcess, type StdioOptions } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { BerthError, type ErrorCode } from "../errdefs/errors.js";
import { releaseExecFifo } from "./exec-fifo.js";
import { lookPath, type SpawnedProcess, type Spawner } from "./spawner.js";

export interface RuncOptions {
  /** The runc binary (default "runc", looked up on PATH). */
  command?: string;
  /** runc --root: where runc keeps container state (default: runc's own, /run/runc). */
  root?: string;
  /**
   * runc --log, written as JSON lines (--log-format json); errors are read back from it. Without
   * it each command that can fail gets a private temporary log.
   */
  log?: string;
  systemdCgroup?: boolean;
  /** runc --criu: the criu binary for checkpoint/restore. */
  criu?: string;
  debug?: boolean;
  rootless?: "true" | "false" | "auto";
  /**
   * Called synchronously right after each runc process is spawned, before anything else runs on
   * the loop: the shim hands the child to its reaper so the reaper never steals libuv's exit.
   */
  onSpawn?: (child: ChildProcess) => void;
  /**
   * Starts runc without child_process where it can (the shim's posix_spawn through its reaper,
   * spawner.ts); child_process (and onSpawn) otherwise.
   */
  spawner?: Spawner;
}

/** A descriptor runc hands on to the container (0, 1, 2), or "ignore" for /dev/null. */
export type IOTarget = number | "ignore";

/** The container's stdio: the shim opens the client's FIFOs (or pipes) and passes their fds here. */
export interface ProcessIO {
  stdin?: IOTarget;
  stdout?: IOTarget;
  stderr?: IOTarget;
}

export interface CallOptions {
  /** Aborting kills the runc process (SIGKILL) and rejects. */
  signal?: AbortSignal;
}

export interface CreateOptions extends CallOptions {
  pidFile?: string;
  /** Path of a listening unix socket (ConsoleSocket) when the spec has terminal: true. */
  consoleSocket?: string;
  noPivot?: boolean;
  noNewKeyring?: boolean;
  io?: ProcessIO;
  /** More fds for the container, numbered 3, 4, ... inside (--preserve-fds). */
  extraFiles?: number[];
}

export interface ExecOptions extends CallOptions {
  pidFile?: string;
  consoleSocket?: string;
  /** --detach (default true): runc returns once the process runs; it is reparented to the shim. */
  detach?: boolean;
  io?: ProcessIO;
  extraFiles?: number[];
}

export interface CheckpointOptions extends CallOptions {
  /** Directory for the CRIU image files. */
  imagePath: string;
  /** Directory for CRIU's logs and work files. */
  workPath?: string;
  parentPath?: string;
  leaveRunning?: boolean;
  tcpEstablished?: boolean;
  extUnixSk?: boolean;
  shellJob?: boolean;
  fileLocks?: boolean;
  preDump?: boolean;
  lazyPages?: boolean;
  autoDedup?: boolean;
  /** "soft" | "full" | "strict" | "ignore". */
  manageCgroupsMode?: string;
  emptyNamespaces?: string[];
}

export interface RestoreOptions extends CallOptions {
  imagePath: string;
  workPath?: string;
  pidFile?: string;
  consoleSocket?: string;
  noPivot?: boolean;
  /** --detach (default true), as for create. */
  detach?: boolean;
  tcpEstablished?: boolean;
  extUnixSk?: boolean;
  shellJob?: boolean;
  fileLocks?: boolean;
  lazyPages?: boolean;
  manageCgroupsMode?: string;
  emptyNamespaces?: string[];
  io?: ProcessIO;
}

export type ContainerStatus = "creating" | "created" | "running" | "paused" | "stopped";

/** `runc state` / `runc list` output. */
export interface ContainerState {
  ociVersion: string;
  id: string;
  /** 0 once stopped. */
  pid: number;
  status: ContainerStatus;
  bundle: string;
  rootfs: string;
  /** RFC 3339 with nanoseconds. */
  created: string;
  owner?: string;
  annotations?: Record<string, string>;
}

/** `runc events --stats` data (the cgroup counters; fields absent when the controller is). */
export interface RuncStats {
  cpu?: {
    usage?: { total?: number; percpu?: number[]; kernel?: number; user?: number };
    throttling?: { periods?: number; throttledPeriods?: number; throttledTime?: number };
  };
  memory?: {
    cache?: number;
    usage?: { limit?: number; usage?: number; max?: number; failcnt?: number };
    swap?: { limit?: number; usage?: number; max?: number; failcnt?: number };
    kernel?: { limit?: number; usage?: number; max?: number; failcnt?: number };
    raw?: Record<string, number>;
  };
  pids?: { current?: number; limit?: number };
  blkio?: Record<string, unknown>;
  hugetlb?: Record<string, unknown>;
  network_interfaces?: unknown[];
  [key: string]: unknown;
}

export interface RuncVersion {
  runc: string;
  commit: string;
  spec: string;
}

/** A runc command failed: the message is runc's own last error (from its log, else stderr). */
export class RuncError extends BerthError {
  /** The runc subcommand and its arguments (without the global flags). */
  readonly args: string[];
  readonly exitCode: number | null;
  readonly stderr: string;

  constructor(args: string[], message: string, exitCode: number | null, stderr: string, cause?: unknown) {
    super(codeOf(message), message, { cause });
    this.args = args;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

function codeOf(message: string): ErrorCode {
  if (/container does not exist|container .* does not exist/.test(message)) return "not-found";
  if (/already exists|container with id exists/.test(message)) return "already-exists";
  if (/not running|not paused|is paused|cannot .* (a|the) (paused|stopped|running)/.test(message))
    return "failed-precondition";
  return "unknown";
}

interface RunOptions extends CallOptions {
  stdio?: StdioOptions;
  input?: string;
  /** Capture stdout (the container does not inherit it: JSON-producing commands only). */
  output?: boolean;
}

/** Reads the last error or fatal message from a runc JSON log, from byte `from` on. */
async function lastLogError(path: string, from: number): Promise<string | undefined> {
  let text: string;
  try {
    const fh = await open(path, "r");
    try {
      const size = (await fh.stat()).size;
      if (size <= from) return undefined;
      const buf = Buffer.alloc(Math.min(size - from, 1 << 20));
      const { bytesRead } = await fh.read(buf, 0, buf.length, Math.max(from, size - buf.length));
      text = buf.subarray(0, bytesRead).toString("utf8");
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
  let last: string | undefined;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if ((entry.level === "error" || entry.level === "fatal") && typeof entry.msg === "string")
        last = entry.msg;
    } catch {
      // a torn or non-JSON line (runc init may write raw text): skip it
    }
  }
  return last;
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function ioStdio(io: ProcessIO | undefined, extraFiles: number[] | undefined): StdioOptions {
  const fd = (t: IOTarget | undefined): number | "ignore" => t ?? "ignore";
  return [fd(io?.stdin), fd(io?.stdout), fd(io?.stderr), ...(extraFiles ?? [])];
}

function flag(args: string[], on: boolean | undefined, name: string): void {
  if (on === true) args.push(name);
}

function value(args: string[], v: string | undefined, name: string): void {
  if (v !== undefined) args.push(name, v);
}

export class Runc {
  readonly command: string;
  readonly root: string | undefined;
  readonly log: string | undefined;
  private readonly opts: RuncOptions;

  constructor(opts: RuncOptions = {}) {
    this.opts = opts;
    this.command = opts.command ?? "runc";
    this.root = opts.root;
    this.log = opts.log;
  }

  /** The same runc with another --log (undefined: a private temporary log per command). */
  withLog(log: string | undefined): Runc {
    return new Runc({ ...this.opts, log });
  }

  private globalArgs(log: string | undefined): string[] {
    const args: string[] = [];
    value(args, this.opts.root, "--root");
    if (log !== undefined) args.push("--log", log, "--log-format", "json");
    flag(args, this.opts.debug, "--debug");
    flag(args, this.opts.systemdCgroup, "--systemd-cgroup");
    value(args, this.opts.criu, "--criu");
    value(args, this.opts.rootless, "--rootless");
    return args;
  }

  /** Runs runc and waits for it to exit; a failure carries runc's own last error. */
  private async run(args: string[], ro: RunOptions = {}): Promise<string> {
    let scratch: string | undefined;
    let log = this.opts.log;
    if (log === undefined) {
      scratch = await mkdtemp(join(tmpdir(), "berth-runc-"));
      log = join(scratch, "log.json");
    }
    try {
      const from = sizeOf(log);
      const stdio: StdioOptions = ro.stdio ?? [
        ro.input === undefined ? "ignore" : "pipe",
        ro.output === true ? "pipe" : "ignore",
        "pipe",
      ];
      const argv = [...this.globalArgs(log), ...args];
      const child = this.spawn(argv, stdio, ro.signal);
      let stdout = "";
      let stderr = "";
      child.stdout?.setEncoding("utf8").on("data", (d: string) => (stdout += d));
      child.stderr?.setEncoding("utf8").on("data", (d: string) => {
        if (stderr.length < 65536) stderr += d; // runc's stderr is a line or two; cap a runaway
      });
      if (ro.input !== undefined) child.stdin?.end(ro.input);
      const { code, signal } = await child.closed.catch((err: unknown) => {
        throw new RuncError(args, `runc ${args[0] ?? ""}: ${(err as Error).message}`, null, stderr, err);
      });
      if (code !== 0) {
        const msg =
          (await lastLogError(log, from)) ??
          (stderr.trim().split("\n").pop() ||
            (signal !== null ? `killed by ${signal}` : `exit status ${code}`));
        throw new RuncError(args, msg, code, stderr);
      }
      return stdout;
    } finally {
      if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
    }
  }

  /**
   * Starts runc: through the spawner when there is one and it takes the job, else child_process.
   * Only commands that produce output get a stdout pipe; the others are done at exit rather than
   * when their pipes close, because with create/exec/restore the container inherits runc's stdio
   * and would hold a pipe open for its whole life.
   */
  private spawn(
    argv: string[],
    stdio: StdioOptions,
    signal: AbortSignal | undefined,
  ): Pick<SpawnedProcess, "stdout" | "stderr" | "closed"> & { stdin?: { end(data: string): void } | null } {
    // A cancellable call keeps child_process, whose abort handling callers know.
    const fast = signal === undefined ? this.opts.spawner?.(this.command, argv, stdio) : undefined;
    if (fast !== undefined) return fast;
    // The binary as PATH has it, looked up once, not by execvp's walk on every spawn.
    const child = spawn(lookPath(this.command) ?? this.command, argv, {
      argv0: this.command,
      stdio,
      signal,
      killSignal: "SIGKILL",
    });
    this.opts.onSpawn?.(child);
    const waitFor = child.stdout !== null || child.stderr !== null ? "close" : "exit";
    const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.once("error", reject);
      child.once(waitFor, (c: number | null, s: NodeJS.Signals | null) => resolve({ code: c, signal: s }));
    });
    return {
      stdout: child.stdout as SpawnedProcess["stdout"],
      stderr: child.stderr as SpawnedProcess["stderr"],
      stdin: child.stdin,
      closed,
    };
  }

  /** runc create: the init process waits on runc's exec fifo until start. */
  async create(id: string, bundle: string, opts: CreateOptions = {}): Promise<void> {
    const args = ["create", "--bundle", bundle];
    value(args, opts.pidFile, "--pid-file");
    value(args, opts.consoleSocket, "--console-socket");
    flag(args, opts.noPivot, "--no-pivot");
    flag(args, opts.noNewKeyring, "--no-new-keyring");
    if (opts.extraFiles !== undefined && opts.extraFiles.length > 0)
      args.push("--preserve-fds", String(opts.extraFiles.length));
    args.push(id);
    await this.run(args, { stdio: ioStdio(opts.io, opts.extraFiles), signal: opts.signal });
  }

  /**
   * runc start. Given initExited (the reaper's word on the init process), the shim releases init
   * through runc's exec fifo itself, as `runc start` would (exec-fifo.ts), when the binary is runc
   * and the fifo is where runc keeps it; otherwise, or if that does not work out, runs `runc start`.
   */
  async start(id: string, opts: CallOptions & { initExited?: Promise<unknown> } = {}): Promise<void> {
    if (opts.initExited !== undefined && this.root !== undefined && basename(this.command) === "runc") {
      if (await releaseExecFifo(join(this.root, id, "exec.fifo"), opts.initExited)) return;
    }
    await this.run(["start", id], opts);
  }

  /**
   * runc exec of an OCI Process (process.json). With detach (the default) runc returns once the
   * process runs, and the process is reparented to the shim (the subreaper), which must reap it.
   */
  async exec(id: string, spec: object, opts: ExecOptions = {}): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), "berth-exec-"));
    try {
      const processFile = join(dir, "process.json");
      await writeFile(processFile, JSON.stringify(spec), { mode: 0o600 });
      const args = ["exec", "--process", processFile];
      flag(args, opts.detach ?? true, "--detach");
      value(args, opts.pidFile, "--pid-file");
      value(args, opts.consoleSocket, "--console-socket");
      if (opts.extraFiles !== undefined && opts.extraFiles.length > 0)
        args.push("--preserve-fds", String(opts.extraFiles.length));
      args.push(id);
      await this.run(args, { stdio: ioStdio(opts.io, opts.extraFiles), signal: opts.signal });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** runc kill: signal is a number or a name ("KILL", "SIGTERM"); all signals every process. */
  async kill(id: string, signal: number | string, opts: CallOptions & { all?: boolean } = {}): Promise<void> {
    const args = ["kill"];
    flag(args, opts.all, "--all");
    args.push(id, String(signal));
    await this.run(args, opts);
  }

  async delete(id: string, opts: CallOptions & { force?: boolean } = {}): Promise<void> {
    const args = ["delete"];
    flag(args, opts.force, "--force");
    args.push(id);
    await this.run(args, opts);
  }

  async pause(id: string, opts: CallOptions = {}): Promise<void> {
    await this.run(["pause", id], opts);
  }

  async resume(id: string, opts: CallOptions = {}): Promise<void> {
    await this.run(["resume", id], opts);
  }

  /** The host pids of every process in the container. */
  async ps(id: string, opts: CallOptions = {}): Promise<number[]> {
    const out = await this.run(["ps", "--format", "json", id], { ...opts, output: true });
    return (JSON.parse(out) as number[] | null) ?? [];
  }

  async state(id: string, opts: CallOptions = {}): Promise<ContainerState> {
    return JSON.parse(await this.run(["state", id], { ...opts, output: true })) as ContainerState;
  }

  async list(opts: CallOptions = {}): Promise<ContainerState[]> {
    const out = await this.run(["list", "--format", "json"], { ...opts, output: true });
    return (JSON.parse(out) as ContainerState[] | null) ?? [];
  }

  /** runc update --resources -: resources is an OCI LinuxResources object. */
  async update(id: string, resources: object, opts: CallOptions = {}): Promise<void> {
    await this.run(["update", "--resources", "-", id], { ...opts, input: JSON.stringify(resources) });
  }

  /** One sample of the container's cgroup counters (runc events --stats). */
  async stats(id: string, opts: CallOptions = {}): Promise<RuncStats> {
    const out = await this.run(["events", "--stats", id], { ...opts, output: true });
    const event = JSON.parse(out) as { type: string; data?: RuncStats };
    return event.data ?? {};
  }

  async checkpoint(id: string, opts: CheckpointOptions): Promise<void> {
    const args = ["checkpoint", "--image-path", opts.imagePath];
    value(args, opts.workPath, "--work-path");
    value(args, opts.parentPath, "--parent-path");
    flag(args, opts.leaveRunning, "--leave-running");
    flag(args, opts.tcpEstablished, "--tcp-established");
    flag(args, opts.extUnixSk, "--ext-unix-sk");
    flag(args, opts.shellJob, "--shell-job");
    flag(args, opts.fileLocks, "--file-locks");
    flag(args, opts.preDump, "--pre-dump");
    flag(args, opts.lazyPages, "--lazy-pages");
    flag(args, opts.autoDedup, "--auto-dedup");
    value(args, opts.manageCgroupsMode, "--manage-cgroups-mode");
    for (const ns of opts.emptyNamespaces ?? []) args.push("--empty-ns", ns);
    args.push(id);
    await this.run(args, opts);
  }

  async restore(id: string, bundle: string, opts: RestoreOptions): Promise<void> {
    const args = ["restore", "--bundle", bundle, "--image-path", opts.imagePath];
    value(args, opts.workPath, "--work-path");
    flag(args, opts.detach ?? true, "--detach");
    value(args, opts.pidFile, "--pid-file");
    value(args, opts.consoleSocket, "--console-socket");
    flag(args, opts.noPivot, "--no-pivot");
    flag(args, opts.tcpEstablished, "--tcp-established");
    flag(args, opts.extUnixSk, "--ext-unix-sk");
    flag(args, opts.shellJob, "--shell-job");
    flag(args, opts.fileLocks, "--file-locks");
    flag(args, opts.lazyPages, "--lazy-pages");
    value(args, opts.manageCgroupsMode, "--manage-cgroups-mode");
    for (const ns of opts.emptyNamespaces ?? []) args.push("--empty-ns", ns);
    args.push(id);
    await this.run(args, { stdio: ioStdio(opts.io, undefined), signal: opts.signal });
  }

  async version(opts: CallOptions = {}): Promise<RuncVersion> {
    const out = await this.run(["--version"], { ...opts, output: true });
    const pick = (re: RegExp): string => re.exec(out)?.[1] ?? "";
    return { runc: pick(/runc version (\S+)/), commit: pick(/commit: (\S+)/), spec: pick(/spec: (\S+)/) };
  }
}

/**
 * Reads a pid file runc wrote (--pid-file); runc writes it atomically before it exits. A few bytes
 * on local disk: read synchronously, cheaper than a thread-pool round trip.
 */
export async function readPidFile(path: string): Promise<number> {
  const text = readFileSync(path, "utf8").trim();
  const pid = Number(text);
  if (!Number.isSafeInteger(pid) || pid <= 0)
    throw new BerthError("unknown", `bad pid file ${path}: "${text}"`);
  return pid;
}
