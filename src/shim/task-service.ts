// The shim v2 Task API (containerd.task.v2.Task over ttrpc) for a group of containers: one Berth
// shim serves every container of its group (a namespace, or a pod), each with its own runc root
// beside its bundle. Publishes the /tasks/* events as containerd's runc shim does.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { dirname, join } from "node:path";
import { Task, type CreateTaskRequest } from "../gen/containerd/runtime/v2/task/shim_pb.js";
import {
  CheckpointOptionsSchema,
  ProcessDetailsSchema,
  OptionsSchema,
} from "../gen/containerd/runc/options/oci_pb.js";
import {
  TaskCheckpointedSchema,
  TaskCreateSchema,
  TaskDeleteSchema,
  TaskExecAddedSchema,
  TaskExecStartedSchema,
  TaskExitSchema,
  TaskOOMSchema,
  TaskPausedSchema,
  TaskResumedSchema,
  TaskStartSchema,
} from "../gen/containerd/events/task_pb.js";
import { readFile } from "node:fs/promises";
import type { TtrpcCallContext, TtrpcServiceImpl } from "../ttrpc/server.js";
import { ttrpcNamespaceKey } from "../runtime/ttrpc-metadata.js";
import { BerthError, alreadyExists, invalidArgument, notFound } from "../errdefs/errors.js";
import { Container } from "./container.js";
import { metricsFromRuncStats } from "./metrics.js";
import type { Publisher } from "./publisher.js";
import type { Reaper } from "./reaper.js";
import { Runc } from "./runc.js";
import type { Spawner } from "./spawner.js";

export interface ShimServiceDeps {
  /** The -namespace flag: the namespace of calls that carry none. */
  namespace: string;
  reaper: Reaper;
  publisher: Publisher;
  /** Registers runc processes with the reaper (so it never steals their exits). */
  onSpawn: NonNullable<ConstructorParameters<typeof Runc>[0]>["onSpawn"];
  /** Starts runc without forking the shim (spawner.ts); child_process when absent. */
  spawner?: Spawner;
  /** Told when runc is about to move a process into a cgroup (cgroup-attach-warmup.ts). */
  cgroupWarmup?: { kick(): Promise<void> };
  /** Called after Shutdown when no container is left: the shim exits. */
  exit: () => void;
  log: (msg: string) => void;
}

export interface ShimService {
  impl: TtrpcServiceImpl<(typeof Task)["method"]>;
  readonly size: number;
  /** Settles once every `runc delete` still running after its Delete reply has finished. */
  retired(): Promise<void>;
}

/** runc keeps its state beside the bundles: `<runtime state>/.runc/<namespace>` (hidden dirs are not namespaces). */
export function runcRootFor(bundle: string, namespace: string): string {
  return join(dirname(dirname(bundle)), ".runc", namespace);
}

const ProcessDetailsUrl = ProcessDetailsSchema.typeName;

export function createShimService(deps: ShimServiceDeps): ShimService {
  const containers = new Map<string, Container>();
  /** Ids whose Create is under way. */
  const creating = new Set<string>();
  /** `runc delete`s still running after their Delete was answered, by runc root and id. */
  const retiring = new Map<string, Promise<void>>();
  const nsOf = (ctx: TtrpcCallContext) => ctx.metadata.get(ttrpcNamespaceKey)?.[0] ?? deps.namespace;
  const get = (id: string): Container => {
    const c = containers.get(id);
    if (!c) throw notFound(`container ${id}`);
    return c;
  };

  async function oomKilled(c: Container): Promise<boolean> {
    // cgroup v1: memory.oom_control counts OOM kills of the container's cgroup.
    try {
      const spec = JSON.parse(await readFile(join(c.bundle, "config.json"), "utf8")) as {
        linux?: { cgroupsPath?: string };
      };
      const path = spec.linux?.cgroupsPath;
      if (!path) return false;
      const text = await readFile(join("/sys/fs/cgroup/memory", path, "memory.oom_control"), "utf8");
      return /oom_kill [1-9]/.test(text);
    } catch {
      return false;
    }
  }

  async function createContainer(req: CreateTaskRequest, ctx: TtrpcCallContext): Promise<{ pid: number }> {
    // runc create's first cgroup write is some 5-10 ms away: the lock's grace period starts now.
    void deps.cgroupWarmup?.kick();
    const namespace = nsOf(ctx);
    let opts: { noPivotRoot?: boolean; binaryName?: string; root?: string; systemdCgroup?: boolean } = {};
    if (req.options && req.options.typeUrl.endsWith(OptionsSchema.typeName))
      opts = fromBinary(OptionsSchema, req.options.value);
    const runc = new Runc({
      command: opts.binaryName || "runc",
      root: opts.root ? join(opts.root, namespace) : runcRootFor(req.bundle, namespace),
      log: join(req.bundle, "log.json"),
      systemdCgroup: opts.systemdCgroup,
      onSpawn: deps.onSpawn,
      spawner: deps.spawner,
    });
    // The previous container of this id may still be leaving runc's state.
    await retiring.get(join(runc.root ?? "", req.id));
    const c = await Container.create({
      id: req.id,
      namespace,
      bundle: req.bundle,
      rootfs: req.rootfs.map((m) => ({
        type: m.type,
        source: m.source,
        target: m.target,
        options: [...m.options],
      })),
      stdio: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
      runc,
      reaper: deps.reaper,
      noPivot: opts.noPivotRoot,
      checkpoint: req.checkpoint || undefined,
      onExit: (container, p, exit) =>
        (async () => {
          await p.startGate;
          if (p.execId === "" && exit.signal === 9 && (await oomKilled(container)))
            deps.publisher.publish(container.namespace, "/tasks/oom", TaskOOMSchema, {
              containerId: container.id,
            });
          deps.publisher.publish(container.namespace, "/tasks/exit", TaskExitSchema, {
            containerId: container.id,
            id: p.execId === "" ? container.id : p.execId,
            pid: exit.pid,
            exitStatus: exit.status,
            exitedAt: timestampFromDate(exit.exitedAt),
          });
        })(),
    });
    containers.set(req.id, c);
    deps.publisher.publish(namespace, "/tasks/create", TaskCreateSchema, {
      containerId: req.id,
      bundle: req.bundle,
      rootfs: req.rootfs,
      io: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
      checkpoint: req.checkpoint,
      pid: c.init.pid,
    });
    return { pid: c.init.pid };
  }

  const impl: ShimService["impl"] = {
    async create(req, ctx) {
      // Reserved before the first await: a second Create of the same id must fail here, not in
      // runc, whose failure cleanup (delete --force) would take the first container with it.
      if (containers.has(req.id) || creating.has(req.id)) throw alreadyExists(`container ${req.id}`);
      creating.add(req.id);
      try {
        return await createContainer(req, ctx);
      } finally {
        creating.delete(req.id);
      }
    },

    async start(req) {
      const c = get(req.id);
      const target = c.process(req.execId);
      let opened!: () => void;
      target.startGate = new Promise<void>((r) => (opened = r));
      // runc exec moves its process into the container's cgroups.
      if (req.execId !== "") void deps.cgroupWarmup?.kick();
      try {
        const p = await c.start(req.execId);
        if (req.execId === "")
          deps.publisher.publish(c.namespace, "/tasks/start", TaskStartSchema, {
            containerId: c.id,
            pid: p.pid,
          });
        else
          deps.publisher.publish(c.namespace, "/tasks/exec-started", TaskExecStartedSchema, {
            containerId: c.id,
            execId: req.execId,
            pid: p.pid,
          });
        return { pid: p.pid };
      } finally {
        // The exit (if it came already) is published after the start event, never before.
        opened();
      }
    },

    async delete(req) {
      const c = get(req.id);
      const p = await c.delete(req.execId);
      // As containerd's shim: a process's /tasks/exit goes out before its container's /tasks/delete.
      await p.exitReported;
      if (req.execId === "") {
        containers.delete(req.id);
        const retired = c.retired?.catch((err: unknown) =>
          deps.log(`runc delete of ${c.id} after its Delete failed: ${(err as Error).message}`),
        );
        if (retired !== undefined) {
          const key = join(c.runcRoot ?? "", c.id);
          retiring.set(key, retired);
          void retired.then(() => {
            if (retiring.get(key) === retired) retiring.delete(key);
          });
        }
        deps.publisher.publish(c.namespace, "/tasks/delete", TaskDeleteSchema, {
          containerId: c.id,
          pid: p.pid,
          exitStatus: p.exitStatus,
          exitedAt: p.exitedAt,
        });
      }
      return { pid: p.pid, exitStatus: p.exitStatus, exitedAt: p.exitedAt };
    },

    async state(req) {
      const c = get(req.id);
      const s = c.state(req.execId);
      return {
        id: req.execId === "" ? c.id : req.execId,
        bundle: c.bundle,
        pid: s.pid,
        status: s.status,
        stdin: s.stdio.stdin,
        stdout: s.stdio.stdout,
        stderr: s.stdio.stderr,
        terminal: s.stdio.terminal,
        exitStatus: s.exitStatus,
        exitedAt: s.exitedAt,
        execId: req.execId,
      };
    },

    async pids(req) {
      const c = get(req.id);
      const pids = await c.pids();
      return {
        processes: pids.map((p) => ({
          pid: p.pid,
          info:
            p.execId === undefined
              ? undefined
              : {
                  typeUrl: ProcessDetailsUrl,
                  value: toBinary(ProcessDetailsSchema, create(ProcessDetailsSchema, { execId: p.execId })),
                },
        })),
      };
    },

    async pause(req) {
      const c = get(req.id);
      await c.pause();
      deps.publisher.publish(c.namespace, "/tasks/paused", TaskPausedSchema, { containerId: c.id });
      return {};
    },

    async resume(req) {
      const c = get(req.id);
      await c.resume();
      deps.publisher.publish(c.namespace, "/tasks/resumed", TaskResumedSchema, { containerId: c.id });
      return {};
    },

    async checkpoint(req) {
      const c = get(req.id);
      const o =
        req.options && req.options.typeUrl.endsWith(CheckpointOptionsSchema.typeName)
          ? fromBinary(CheckpointOptionsSchema, req.options.value)
          : undefined;
      await c.checkpoint(o?.imagePath || req.path, {
        exit: o?.exit ?? false,
        workPath: o?.workPath || undefined,
        openTcp: o?.openTcp,
        externalUnixSockets: o?.externalUnixSockets,
        fileLocks: o?.fileLocks,
        shellJob: o?.terminal,
        cgroupsMode: o?.cgroupsMode || undefined,
        emptyNamespaces: o?.emptyNamespaces,
      });
      deps.publisher.publish(c.namespace, "/tasks/checkpointed", TaskCheckpointedSchema, {
        containerId: c.id,
        checkpoint: req.path,
      });
      return {};
    },

    async kill(req) {
      await get(req.id).kill(req.execId, req.signal, req.all);
      return {};
    },

    async exec(req) {
      const c = get(req.id);
      if (!req.spec) throw invalidArgument("exec spec must not be empty");
      let spec: object;
      try {
        spec = JSON.parse(Buffer.from(req.spec.value).toString("utf8")) as object;
      } catch {
        throw invalidArgument("exec spec is not a JSON OCI process");
      }
      c.addExec(
        req.execId,
        { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
        spec,
      );
      deps.publisher.publish(c.namespace, "/tasks/exec-added", TaskExecAddedSchema, {
        containerId: c.id,
        execId: req.execId,
      });
      return {};
    },

    async resizePty(req) {
      get(req.id).resizePty(req.execId, req.width, req.height);
      return {};
    },

    async closeIO(req) {
      if (req.stdin) get(req.id).closeIO(req.execId);
      return {};
    },

    async update(req) {
      const c = get(req.id);
      if (!req.resources) throw invalidArgument("resources must not be empty");
      let resources: object;
      try {
        resources = JSON.parse(Buffer.from(req.resources.value).toString("utf8")) as object;
      } catch {
        throw invalidArgument("resources are not JSON LinuxResources");
      }
      await c.update(resources);
      return {};
    },

    async wait(req, ctx) {
      const p = get(req.id).process(req.execId);
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(new BerthError("canceled", "wait canceled"));
        ctx.signal.addEventListener("abort", onAbort, { once: true });
        void p.exited.then(() => {
          ctx.signal.removeEventListener("abort", onAbort);
          resolve();
        });
      });
      return { exitStatus: p.exitStatus, exitedAt: p.exitedAt };
    },

    async stats(req) {
      const stats = await get(req.id).stats();
      return { stats: metricsFromRuncStats(stats) };
    },

    async connect(req) {
      const c = containers.get(req.id);
      return { shimPid: process.pid, taskPid: c?.init.pid ?? 0, version: "" };
    },

    async shutdown() {
      if (containers.size === 0) setImmediate(deps.exit);
      return {};
    },
  };

  return {
    impl,
    get size() {
      return containers.size;
    },
    async retired() {
      await Promise.all(retiring.values());
    },
  };
}
