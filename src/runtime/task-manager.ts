// The shim v2 runtime manager (containerd's runtime/v2 TaskManager): creates a task by laying out
// its bundle, starting the runtime's shim and calling the shim's Task.Create over ttrpc; keeps one
// connection per shim address (a Berth shim serves a group of tasks on one socket); deletes tasks;
// cleans up after shims that die; and on start reconnects to every shim that outlived berthd.
import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { MessageShape } from "@bufbuild/protobuf";
import { Task as ShimTaskService } from "../gen/containerd/runtime/v2/task/shim_pb.js";
import type { DeleteResponseSchema } from "../gen/containerd/runtime/v2/task/shim_pb.js";
import { BerthError, alreadyExists, isCode, notFound } from "../errdefs/errors.js";
import type { AnyValue } from "../core/any-value.js";
import type { Mount } from "../core/mount/mount-types.js";
import { connectTtrpc, ttrpcService, type TtrpcClient, type TtrpcServiceClient } from "../ttrpc/client.js";
import {
  addressFile,
  createBundle,
  deleteBundle,
  listBundles,
  readBundleFile,
  removeRetiredBundles,
  shimBinaryFile,
  writeBundleFile,
  type Bundle,
  type BundleDirs,
} from "./bundle.js";
import { deleteShimProcess, openShimLog, startShimProcess, type ShimCommand } from "./shim-process.js";
import { resolveShimBinary } from "./shim-binary.js";
import { ttrpcNamespaceKey } from "./ttrpc-metadata.js";
import type { BerthShimPool } from "./berth-shim-pool.js";
import { shimGroup } from "../shim/launch.js";

export type ShimTaskClient = TtrpcServiceClient<(typeof ShimTaskService)["method"]>;

export interface RuntimeTask {
  readonly namespace: string;
  readonly id: string;
  readonly bundle: Bundle;
  /** The runtime name the task was created with (or the binary, after a restore). */
  readonly runtime: string;
  readonly address: string;
  /** The init process's pid as the shim reported it at creation. */
  readonly pid: number;
  /** The shim's Task service, with this task's namespace on every call. */
  readonly shim: ShimTaskClient;
}

export interface CreateTaskOptions {
  /** The container's OCI spec as JSON bytes (written as config.json). */
  spec: Uint8Array;
  runtime: string;
  /** runtime_path of Tasks.Create: an absolute shim binary that overrides the name. */
  runtimePath?: string;
  runtimeOptions?: AnyValue;
  taskOptions?: AnyValue;
  rootfs: Mount[];
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
  /** A directory holding a checkpoint to restore from. */
  checkpoint?: string;
}

export interface TaskExitInfo {
  pid: number;
  exitStatus: number;
  exitedAt?: Timestamp;
}

/** What the manager reports of tasks whose shim died (published as /tasks/exit and /tasks/delete). */
export interface DeadShimEvents {
  exit(namespace: string, id: string, exit: TaskExitInfo): void;
  delete(namespace: string, id: string, exit: TaskExitInfo): void;
}

export interface TaskManagerOptions {
  dirs: BundleDirs;
  grpcAddress: string;
  ttrpcAddress: string;
  publishBinary: string;
  /** Directories searched after $PATH for shim binaries. */
  shimDirs?: readonly string[];
  events: DeadShimEvents;
  /** More environment for shims' command lines. */
  shimEnv?: Record<string, string>;
  /** Berth shims are served from berthd's pool (grouped, pre-started) rather than `start`ed. */
  berthShim?: { binary: string; pool: BerthShimPool };
  log: {
    debug(obj: object, msg: string): void;
    info(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
  };
}

export interface TaskManager {
  create(namespace: string, id: string, opts: CreateTaskOptions): Promise<RuntimeTask>;
  /** NotFound when the namespace has no task of that id. */
  get(namespace: string, id: string): RuntimeTask;
  list(namespace: string): RuntimeTask[];
  /** Deletes the task in its shim, shuts the shim down when it serves no more, removes the bundle. */
  delete(namespace: string, id: string): Promise<TaskExitInfo>;
  /** Reconnects to the shims of a previous run; cleans up after those that are gone. */
  restore(): Promise<void>;
  /** Closes connections; shims and their containers keep running. */
  close(): void;
}

interface Connection {
  address: string;
  client: TtrpcClient;
  tasks: Set<string>;
}

interface Entry extends RuntimeTask {
  binary: string;
  /** The pool group of a Berth shim's task. */
  group?: string;
  closeLog: () => void;
}

const key = (namespace: string, id: string) => `${namespace}/${id}`;

/** containerd's `fmt.Errorf("<what>: %w", err)`: the message grows, the code stays. */
function prefixed(what: string, err: unknown): BerthError {
  const e = BerthError.from(err);
  return new BerthError(e.code, `${what}: ${e.message}`, { cause: err });
}

function withPrefix<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw prefixed(what, err);
  }
}

export function createTaskManager(opts: TaskManagerOptions): TaskManager {
  const tasks = new Map<string, Entry>();
  const connections = new Map<string, Promise<Connection>>();
  let closing = false;

  const command = (binary: string, bundle: Bundle): ShimCommand => ({
    binary,
    bundle,
    grpcAddress: opts.grpcAddress,
    ttrpcAddress: opts.ttrpcAddress,
    publishBinary: opts.publishBinary,
    env: opts.shimEnv,
  });

  const pooled = (binary: string | undefined) =>
    opts.berthShim !== undefined && binary === opts.berthShim.binary;

  /** The pool group of a task: its namespace, or the pod/group its spec's annotations name. */
  const groupOf = (namespace: string, spec: Uint8Array | string): string => {
    let annotations: Record<string, string> = {};
    try {
      const text = typeof spec === "string" ? spec : Buffer.from(spec).toString("utf8");
      annotations = (JSON.parse(text) as { annotations?: Record<string, string> }).annotations ?? {};
    } catch {
      // no spec, no annotations
    }
    return `${namespace}/${shimGroup(annotations, namespace)}`;
  };

  /** The bundle's `log` FIFO, which `start`ed shims write to; pooled Berth shims never open it. */
  const shimLog = (bundle: Bundle, binary: string | undefined): { close: () => void } =>
    pooled(binary)
      ? { close: () => undefined }
      : openShimLog(bundle, (line) =>
          opts.log.debug({ namespace: bundle.namespace, id: bundle.id, shim: line }, "shim"),
        );

  function connection(address: string): Promise<Connection> {
    let c = connections.get(address);
    if (!c) {
      c = connectTtrpc(address).then((client) => {
        const conn: Connection = { address, client, tasks: new Set() };
        void client.closed.then(() => onShimClosed(address, conn));
        return conn;
      });
      connections.set(address, c);
      c.catch(() => connections.delete(address));
    }
    return c;
  }

  const shimClient = (client: TtrpcClient, namespace: string): ShimTaskClient =>
    ttrpcService(client, ShimTaskService, { metadata: { [ttrpcNamespaceKey]: namespace } });

  /** A shim connection dropped: every task still registered on it lost its shim. */
  function onShimClosed(address: string, conn: Connection): void {
    if (connections.get(address) !== undefined) connections.delete(address);
    if (closing) return;
    for (const k of conn.tasks) {
      const entry = tasks.get(k);
      if (!entry || entry.address !== address) continue;
      tasks.delete(k);
      if (entry.group !== undefined) opts.berthShim?.pool.forget(entry.group, address);
      opts.log.warn({ namespace: entry.namespace, id: entry.id }, "shim disconnected");
      void cleanupAfterDeadShim(entry.bundle, entry.binary, entry.pid, entry.closeLog);
    }
  }

  /** containerd's cleanupAfterDeadShim: the shim's `delete`, then exit and delete events. */
  async function cleanupAfterDeadShim(
    bundle: Bundle,
    binary: string | undefined,
    pid: number,
    closeLog?: () => void,
  ): Promise<void> {
    let exit: TaskExitInfo = { pid, exitStatus: 255, exitedAt: timestampFromDate(new Date()) };
    if (binary) {
      try {
        const r = await deleteShimProcess(command(binary, bundle));
        exit = { pid: r.pid || pid, exitStatus: r.exitStatus, exitedAt: r.exitedAt ?? exit.exitedAt };
      } catch (err) {
        opts.log.warn(
          { err, namespace: bundle.namespace, id: bundle.id },
          "failed to clean up after shim disconnected",
        );
      }
    }
    closeLog?.();
    try {
      await deleteBundle(bundle);
    } catch (err) {
      opts.log.warn({ err, bundle: bundle.path }, "failed to remove bundle of a dead shim");
    }
    opts.events.exit(bundle.namespace, bundle.id, exit);
    opts.events.delete(bundle.namespace, bundle.id, exit);
  }

  function register(entry: Entry, conn: Connection): void {
    tasks.set(key(entry.namespace, entry.id), entry);
    conn.tasks.add(key(entry.namespace, entry.id));
  }

  /** Reconnects to the shim of one bundle left by a previous run, or cleans up after it. */
  async function restoreOne(bundle: Bundle): Promise<void> {
    const binary = await readBundleFile(bundle, shimBinaryFile);
    const address = await readBundleFile(bundle, addressFile);
    let conn: Connection | undefined;
    if (address) conn = await connection(address).catch(() => undefined);
    if (!conn || !binary) {
      opts.log.info({ namespace: bundle.namespace, id: bundle.id }, "cleaning up after a shim that is gone");
      await cleanupAfterDeadShim(bundle, binary, 0);
      return;
    }
    const shim = shimClient(conn.client, bundle.namespace);
    let pid: number;
    try {
      pid = (await shim.connect({ id: bundle.id }, { timeoutMs: 10_000 })).taskPid;
      // Connect answers for any id (the Go shim's does too); State tells whether the task exists.
      await shim.state({ id: bundle.id }, { timeoutMs: 10_000 });
    } catch (err) {
      opts.log.warn({ err, namespace: bundle.namespace, id: bundle.id }, "shim does not know its task");
      await shim.shutdown({ id: bundle.id }).catch(() => undefined);
      await cleanupAfterDeadShim(bundle, binary, 0);
      return;
    }
    const log = shimLog(bundle, binary);
    let group: string | undefined;
    if (pooled(binary)) {
      group = groupOf(bundle.namespace, (await readBundleFile(bundle, "config.json")) ?? "");
      opts.berthShim?.pool.adopt(group, address as string);
    }
    register(
      {
        group,
        namespace: bundle.namespace,
        id: bundle.id,
        bundle,
        runtime: binary,
        address: address as string,
        pid,
        shim,
        binary,
        closeLog: log.close,
      },
      conn,
    );
    opts.log.info({ namespace: bundle.namespace, id: bundle.id, pid }, "task restored");
  }

  return {
    async create(namespace, id, o) {
      if (tasks.has(key(namespace, id))) throw alreadyExists(`task ${id}`);
      const runtime = o.runtimePath || o.runtime;
      const binary = withPrefix("failed to start shim: failed to resolve runtime path", () =>
        resolveShimBinary(runtime, { extraDirs: opts.shimDirs }),
      );
      const bundle = await createBundle(opts.dirs, namespace, id, o.spec);
      const log = shimLog(bundle, binary);
      let shim: ShimTaskClient | undefined;
      let conn: Connection | undefined;
      let group: string | undefined;
      try {
        let address: string;
        if (opts.berthShim && pooled(binary)) {
          group = groupOf(namespace, o.spec);
          address = await opts.berthShim.pool.acquire(group).catch((err: unknown) => {
            throw prefixed("failed to start shim", err);
          });
          writeBundleFile(bundle, addressFile, address);
        } else {
          address = await startShimProcess(command(binary, bundle), o.taskOptions ?? o.runtimeOptions).catch(
            (err: unknown) => {
              throw prefixed("failed to start shim", err);
            },
          );
        }
        conn = await connection(address);
        shim = shimClient(conn.client, namespace);
        writeBundleFile(bundle, shimBinaryFile, binary);
        const created = await shim
          .create({
            id,
            bundle: bundle.path,
            rootfs: o.rootfs.map((m) => ({
              type: m.type,
              source: m.source,
              target: m.target ?? "",
              options: m.options,
            })),
            terminal: o.terminal,
            stdin: o.stdin,
            stdout: o.stdout,
            stderr: o.stderr,
            checkpoint: o.checkpoint ?? "",
            options: o.taskOptions,
          })
          .catch((err: unknown) => {
            throw prefixed("failed to create shim task", err);
          });
        const entry: Entry = {
          namespace,
          id,
          bundle,
          runtime,
          address,
          pid: created.pid,
          shim,
          binary,
          group,
          closeLog: log.close,
        };
        register(entry, conn);
        return entry;
      } catch (err) {
        // Leave nothing behind: the shim (if it started and serves nothing else), its task, the bundle.
        if (shim && (!conn || conn.tasks.size === 0)) {
          const kept =
            group !== undefined && conn !== undefined && opts.berthShim?.pool.release(group, conn.address);
          if (!kept) await shim.shutdown({ id, now: true }).catch(() => undefined);
        }
        if (!pooled(binary)) await deleteShimProcess(command(binary, bundle)).catch(() => undefined);
        log.close();
        await deleteBundle(bundle).catch((e: unknown) =>
          opts.log.warn({ err: e, bundle: bundle.path }, "failed to remove bundle"),
        );
        throw err;
      }
    },

    get(namespace, id) {
      const t = tasks.get(key(namespace, id));
      if (!t) throw notFound(`task ${id}`);
      return t;
    },

    list(namespace) {
      return [...tasks.values()]
        .filter((t) => t.namespace === namespace)
        .sort((a, b) => (a.id < b.id ? -1 : 1));
    },

    async delete(namespace, id) {
      const t = tasks.get(key(namespace, id));
      if (!t) throw notFound(`task ${id}`);
      let resp: MessageShape<typeof DeleteResponseSchema> | undefined;
      try {
        resp = await t.shim.delete({ id });
      } catch (err) {
        // A shim that is gone, or that no longer knows the task, is what we wanted anyway.
        if (!isCode(err, "not-found") && !isCode(err, "unavailable")) throw err;
      }
      tasks.delete(key(namespace, id));
      const conn = await connections.get(t.address)?.catch(() => undefined);
      conn?.tasks.delete(key(namespace, id));
      // A Berth shim serves its whole group: shut it down only when it serves nothing more.
      if (t.group === undefined || !conn || conn.tasks.size === 0) {
        // An emptied Berth shim may go back to the pool as the spare instead.
        const kept = t.group !== undefined && opts.berthShim?.pool.release(t.group, t.address);
        if (!kept) await t.shim.shutdown({ id }).catch(() => undefined);
      }
      t.closeLog();
      await deleteBundle(t.bundle);
      return { pid: resp?.pid ?? t.pid, exitStatus: resp?.exitStatus ?? 0, exitedAt: resp?.exitedAt };
    },

    async restore() {
      await removeRetiredBundles(opts.dirs).catch((err: unknown) =>
        opts.log.warn({ err }, "failed to remove retired bundles"),
      );
      for (const bundle of await listBundles(opts.dirs)) {
        try {
          await restoreOne(bundle);
        } catch (err) {
          opts.log.warn({ err, bundle: bundle.path }, "failed to restore task");
        }
      }
    },

    close() {
      closing = true;
      for (const t of tasks.values()) t.closeLog();
      for (const c of connections.values())
        void c.then(
          (conn) => conn.client.close(),
          () => undefined,
        );
    },
  };
}
