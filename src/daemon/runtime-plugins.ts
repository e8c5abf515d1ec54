// The shim v2 runtime (io.containerd.runtime.v2.task) and the Tasks gRPC service over it. The
// runtime reconnects to the shims of a previous run while it initialises, as containerd's does.
import { join } from "node:path";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { PluginRegistration } from "./plugin.js";
import type { Config } from "./config.js";
import type { Logger } from "./logger.js";
import type { Exchange } from "../core/events/exchange.js";
import type { Metadata } from "./metadata-plugins.js";
import { createTaskManager, type TaskManager } from "../runtime/task-manager.js";
import { berthBinDir } from "../runtime/shim-binary.js";
import { createBerthShimPool } from "../runtime/berth-shim-pool.js";
import { createCheckpointer } from "../runtime/checkpoint.js";
import { registerService } from "../services/grpc-adapter.js";
import { Tasks, tasksService } from "../services/tasks-service.js";
import { packEvent } from "../core/events/pack-event.js";
import { TaskDeleteSchema, TaskExitSchema } from "../gen/containerd/events/task_pb.js";

/** `-publish-binary` for shims: berthd itself, as containerd passes its own binary. */
const publishBinary = join(berthBinDir, "berthd");

export function runtimePlugins(deps: { cfg: Config; log: Logger }): PluginRegistration[] {
  return [
    {
      type: "io.containerd.runtime.v2",
      id: "task",
      requires: ["io.containerd.event.v1", "io.containerd.metadata.v1"],
      init: async (ic): Promise<TaskManager> => {
        const events = ic.get<Exchange>("io.containerd.event.v1");
        const log = deps.log.child({ plugin: "io.containerd.runtime.v2.task" });
        // Shim sockets: path-based, in a directory only root can enter.
        const socketDir = join(deps.cfg.state, "s");
        const spares = ic.config.spare_shims ?? 1;
        if (typeof spares !== "number" || !Number.isSafeInteger(spares) || spares < 0)
          throw new Error(`spare_shims must be a whole number, not ${JSON.stringify(spares)}`);
        const pool = createBerthShimPool({
          socketDir,
          flags: { namespace: "", address: deps.cfg.grpc.address, publishBinary },
          env: { ...process.env, TTRPC_ADDRESS: deps.cfg.ttrpc.address },
          spares,
          log,
        });
        const manager = createTaskManager({
          dirs: { root: ic.root, state: ic.state },
          grpcAddress: deps.cfg.grpc.address,
          ttrpcAddress: deps.cfg.ttrpc.address,
          publishBinary,
          shimDirs: [berthBinDir],
          shimEnv: { BERTH_SHIM_SOCKET_DIR: socketDir },
          berthShim: { binary: join(berthBinDir, "containerd-shim-berth-v1"), pool },
          log,
          events: {
            exit: (ns, id, e) =>
              events.publish(
                ns,
                "/tasks/exit",
                packEvent(TaskExitSchema, {
                  containerId: id,
                  id,
                  pid: e.pid,
                  exitStatus: e.exitStatus,
                  exitedAt: e.exitedAt ?? timestampFromDate(new Date()),
                }),
              ),
            delete: (ns, id, e) =>
              events.publish(
                ns,
                "/tasks/delete",
                packEvent(TaskDeleteSchema, {
                  containerId: id,
                  pid: e.pid,
                  exitStatus: e.exitStatus,
                  exitedAt: e.exitedAt ?? timestampFromDate(new Date()),
                }),
              ),
          },
        });
        await manager.restore();
        pool.warm();
        return {
          ...manager,
          close: () => {
            pool.close();
            manager.close();
          },
        };
      },
    },
    {
      type: "io.containerd.grpc.v1",
      id: "tasks",
      requires: ["io.containerd.runtime.v2", "io.containerd.metadata.v1"],
      init: (ic) => {
        const md = ic.get<Metadata>("io.containerd.metadata.v1");
        const tasks = ic.get<TaskManager>("io.containerd.runtime.v2");
        return {
          register: (s: Parameters<typeof registerService>[0], o: Parameters<typeof registerService>[3]) =>
            registerService(
              s,
              Tasks,
              tasksService({
                containers: md.containers,
                tasks,
                checkpoints: createCheckpointer({
                  contentFor: (ctx) => md.content.forContext(ctx),
                  workDir: join(ic.state, "checkpoints"),
                }),
              }),
              o,
            ),
        };
      },
    },
  ];
}
