// containerd.services.tasks.v1.Tasks over the shim v2 runtime manager, with containerd 1.6's
// codes and messages (services/tasks/local.go): the container record must exist, one task per
// container, exec processes are looked up in the shim before they are used.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Tasks } from "../gen/containerd/services/tasks/v1/tasks_pb.js";
import type { StateResponse } from "../gen/containerd/runtime/v2/task/shim_pb.js";
import type { ServiceImpl } from "./grpc-adapter.js";
import { namespaced, type CallContext } from "./call-context.js";
import type { ContainerStore } from "../core/metadata/containers.js";
import type { RequestContext } from "../core/context.js";
import type { RuntimeTask, TaskManager } from "../runtime/task-manager.js";
import type { Checkpointer } from "../runtime/checkpoint.js";
import { BerthError, alreadyExists, invalidArgument, isCode } from "../errdefs/errors.js";
import { parseFilters } from "../core/filters/filter.js";
import { taskAdaptor } from "../core/filters/adaptors.js";
import { validateIdentifier } from "../core/identifiers/identifiers.js";

export { Tasks };

export interface TasksServiceDeps {
  containers: ContainerStore;
  tasks: TaskManager;
  checkpoints?: Checkpointer;
}

/** The process as containerd's getProcessState reports it (ID is the container or exec id). */
function processOf(id: string, s: StateResponse) {
  return {
    id,
    pid: s.pid,
    status: s.status,
    stdin: s.stdin,
    stdout: s.stdout,
    stderr: s.stderr,
    terminal: s.terminal,
    exitStatus: s.exitStatus,
    exitedAt: s.exitedAt,
  };
}

export function tasksService(deps: TasksServiceDeps): ServiceImpl<(typeof Tasks)["method"]> {
  /** The task of a container: the container's NotFound first, then containerd's own text. */
  function taskOf(ctx: CallContext, containerId: string): { rc: RequestContext; task: RuntimeTask } {
    const rc = namespaced(ctx);
    deps.containers.get(rc, containerId);
    try {
      return { rc, task: deps.tasks.get(rc.namespace, containerId) };
    } catch (err) {
      if (isCode(err, "not-found")) throw new BerthError("not-found", `task ${containerId} not found`);
      throw err;
    }
  }

  /** Resolves an exec id as containerd does (a State lookup in the shim), "" meaning init. */
  async function stateOf(task: RuntimeTask, execId: string, signal?: AbortSignal): Promise<StateResponse> {
    return task.shim.state({ id: task.id, execId }, { signal, timeoutMs: 10_000 });
  }

  return {
    create: async (req, ctx) => {
      const rc = namespaced(ctx);
      const container = deps.containers.get(rc, req.containerId);
      try {
        deps.tasks.get(rc.namespace, req.containerId);
        throw alreadyExists(`task ${req.containerId}`);
      } catch (err) {
        if (!isCode(err, "not-found")) throw err;
      }
      let checkpoint: string | undefined;
      let release: (() => Promise<void>) | undefined;
      if (req.checkpoint) {
        if (!deps.checkpoints) throw new BerthError("not-implemented", "checkpoint restore is not supported");
        ({ dir: checkpoint, release } = await deps.checkpoints.unpack(rc, req.checkpoint));
      }
      try {
        const task = await deps.tasks.create(rc.namespace, req.containerId, {
          spec: container.spec?.value ?? new Uint8Array(),
          runtime: container.runtime.name,
          runtimePath: req.runtimePath,
          runtimeOptions: container.runtime.options,
          taskOptions: req.options ? { typeUrl: req.options.typeUrl, value: req.options.value } : undefined,
          rootfs: req.rootfs.map((m) => ({
            type: m.type,
            source: m.source,
            target: m.target,
            options: [...m.options],
          })),
          stdin: req.stdin,
          stdout: req.stdout,
          stderr: req.stderr,
          terminal: req.terminal,
          checkpoint,
        });
        return { containerId: req.containerId, pid: task.pid };
      } finally {
        await release?.();
      }
    },

    start: async (req, ctx) => {
      const { task } = taskOf(ctx, req.containerId);
      if (req.execId !== "") await stateOf(task, req.execId, ctx.signal);
      const r = await task.shim.start({ id: task.id, execId: req.execId }, { signal: ctx.signal });
      return { pid: r.pid };
    },

    delete: async (req, ctx) => {
      const { rc, task } = taskOf(ctx, req.containerId);
      const exit = await deps.tasks.delete(rc.namespace, task.id);
      return { id: task.id, pid: exit.pid, exitStatus: exit.exitStatus, exitedAt: exit.exitedAt };
    },

    deleteProcess: async (req, ctx) => {
      const { task } = taskOf(ctx, req.containerId);
      if (req.execId === "") throw invalidArgument("exec id cannot be empty");
      await stateOf(task, req.execId, ctx.signal);
      const r = await task.shim.delete({ id: task.id, execId: req.execId }, { signal: ctx.signal });
      return { id: req.execId, pid: r.pid, exitStatus: r.exitStatus, exitedAt: r.exitedAt };
    },

    get: async (req, ctx) => {
      const { task } = taskOf(ctx, req.containerId);
      const s = await stateOf(task, req.execId, ctx.signal);
      return { process: processOf(req.execId === "" ? task.id : req.execId, s) };
    },

    list: async (_req, ctx) => {
      const rc = namespaced(ctx);
      const out = [];
      for (const task of deps.tasks.list(rc.namespace)) {
        try {
          out.push(processOf(task.id, await stateOf(task, "", ctx.signal)));
        } catch (err) {
          if (!isCode(err, "not-found") && !isCode(err, "unavailable")) throw err;
        }
      }
      return { tasks: out };
    },

    kill: async (req, ctx) => {
      const { task } = taskOf(ctx, req.containerId);
      if (req.execId !== "") await stateOf(task, req.execId, ctx.signal);
      await task.shim.kill({ id: task.id, execId: req.execId, signal: req.signal, all: req.all });
      return {};
    },

    exec: async (req, ctx) => {
      const { task } = taskOf(ctx, req.containerId);
      if (req.execId === "") throw invalidArgument("exec id cannot be empty");
      try {
        validateIdentifier(req.execId);
      } catch (err) {
        const e = BerthError.from(err);
        throw new BerthError(e.code, `invalid exec id ${req.execId}: ${e.message}`, { cause: err });
      }
      await task.shim.exec({
        id: task.id,
        execId: req.execId,
        terminal: req.terminal,
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
        spec: req.spec,
      });
      return {};
    },

    resizePty: async (req, ctx) => {
      const { task } = taskOf(ctx, req.containerId);
      if (req.execId !== "") await stateOf(task, req.execId, ctx.signal);
      await task.shim.resizePty({ id: task.id, execId: req.execId, width: req.width, height: req.height });
      return {};
    },

    closeIO: async (req, ctx) => {
      const { task } = taskOf(ctx, req.containerId);
      if (req.execId !== "") await stateOf(task, req.execId, ctx.signal);
      if (req.stdin) await task.shim.closeIO({ id: task.id, execId: req.execId, stdin: true });
      return {};
    },

    pause: async (req, ctx) => {
      const { task } = taskOf(ctx, req.containerId);
      await task.shim.pause({ id: task.id });
      return {};
    },

    resume: async (req, ctx) => {
      const { task } = taskOf(ctx, req.containerId);
      await task.shim.resume({ id: task.id });
      return {};
    },

    listPids: async (req, ctx) => {
      const { task } = taskOf(ctx, req.containerId);
      const r = await task.shim.pids({ id: task.id });
      return { processes: r.processes };
    },

    checkpoint: async (req, ctx) => {
      const { rc, task } = taskOf(ctx, req.containerId);
      if (!deps.checkpoints) throw new BerthError("not-implemented", "checkpoint is not supported");
      const container = deps.containers.get(rc, req.containerId);
      const descriptors = await deps.checkpoints.checkpoint(rc, task, {
        options: req.options,
        spec: container.spec ?? { typeUrl: "", value: new Uint8Array() },
      });
      return { descriptors };
    },

    update: async (req, ctx) => {
      const { task } = taskOf(ctx, req.containerId);
      await task.shim.update({ id: task.id, resources: req.resources, annotations: req.annotations });
      return {};
    },

    metrics: async (req, ctx) => {
      const rc = namespaced(ctx);
      const filter = parseFilters(req.filters);
      const metrics = [];
      for (const task of deps.tasks.list(rc.namespace)) {
        if (!filter.match(taskAdaptor({ id: task.id, namespace: task.namespace }))) continue;
        const collected = new Date();
        try {
          const r = await task.shim.stats({ id: task.id }, { signal: ctx.signal, timeoutMs: 10_000 });
          metrics.push({ timestamp: timestampFromDate(collected), id: task.id, data: r.stats });
        } catch (err) {
          if (!isCode(err, "not-found")) throw err;
        }
      }
      return { metrics };
    },

    wait: async (req, ctx) => {
      const { task } = taskOf(ctx, req.containerId);
      if (req.execId !== "") await stateOf(task, req.execId, ctx.signal);
      const r = await task.shim.wait({ id: task.id, execId: req.execId }, { signal: ctx.signal });
      return { exitStatus: r.exitStatus, exitedAt: r.exitedAt };
    },
  };
}
