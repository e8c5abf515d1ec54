// berthd's lifecycle: INITIALIZED -> RUNNING -> STOPPING -> STOPPED (or FAILED). Prepares the
// roots, initialises the plugin graph, serves gRPC (and ttrpc for shims) on unix sockets, and on
// stop refuses new calls, lets in-flight ones finish (bounded), then closes every store.
import { mkdir, chmod, stat } from "node:fs/promises";
import type { Config } from "./config.js";
import { pluginConfig } from "./config.js";
import type { Logger } from "./logger.js";
import { initPlugins, type PluginGraph } from "./plugin.js";
import { builtinPlugins, type GrpcServicePlugin, type Closable } from "./builtin-plugins.js";
import { prepareSocketPath, secureSocket } from "./socket.js";
import { createMetrics, type Metrics } from "./metrics.js";
import { startIdleCollector } from "./idle-gc.js";
import type { Exchange } from "../core/events/exchange.js";
import { GrpcServer } from "../grpc/server.js";
import { startTtrpcEventsServer, type TtrpcEventsServer } from "./ttrpc-events-server.js";

export type DaemonState = "INITIALIZED" | "RUNNING" | "STOPPING" | "STOPPED" | "FAILED";

export interface Daemon {
  readonly state: DaemonState;
  readonly graph: PluginGraph;
  stop(graceMs?: number): Promise<void>;
}

/** Creates dir with mode, and tightens it if it already exists group/world-writable or wider than mode. */
async function ensurePrivateDir(dir: string, mode: number): Promise<void> {
  await mkdir(dir, { recursive: true, mode });
  const st = await stat(dir);
  if ((st.mode & 0o777 & ~mode) !== 0) await chmod(dir, mode);
}

export async function startDaemon(cfg: Config, log: Logger): Promise<Daemon> {
  let state: DaemonState = "INITIALIZED";
  await ensurePrivateDir(cfg.root, 0o700);
  await ensurePrivateDir(cfg.state, 0o711);
  await prepareSocketPath(cfg.grpc.address);
  await prepareSocketPath(cfg.ttrpc.address);

  const metrics: Metrics = createMetrics();
  // The server is made after the plugins; until it serves, the API counts as quiet.
  const api: { server?: GrpcServer } = {};
  const apiQuietFor = () => api.server?.quietFor() ?? Number.POSITIVE_INFINITY;
  const graph = await initPlugins(
    builtinPlugins({ log, metrics, cfg, serving: () => state === "RUNNING", apiQuietFor }),
    {
      root: cfg.root,
      state: cfg.state,
      config: (type, id) => pluginConfig(cfg, type, id),
      disabled: cfg.disabled_plugins,
      onError: (s) =>
        log.warn(
          { type: s.registration.type, id: s.registration.id, error: s.error?.message },
          "failed to load plugin",
        ),
    },
  );

  const server = new GrpcServer({
    maxReceiveMessageLength: cfg.grpc.max_recv_message_size,
    maxSendMessageLength: cfg.grpc.max_send_message_size,
  });
  api.server = server;
  const observe = metrics.observeGrpc(log);
  for (const [id, svc] of graph.getAll<GrpcServicePlugin>("io.containerd.grpc.v1")) {
    svc.register(server, { observe });
    log.debug({ id }, "registered grpc service");
  }
  await server.listen(cfg.grpc.address);
  await secureSocket(cfg.grpc.address, cfg.grpc.uid, cfg.grpc.gid);

  const ttrpc: TtrpcEventsServer = await startTtrpcEventsServer(cfg.ttrpc.address, graph, log);
  await secureSocket(cfg.ttrpc.address, cfg.ttrpc.uid, cfg.ttrpc.gid);
  const metricsServer = cfg.metrics.address ? await metrics.serve(cfg.metrics.address) : undefined;

  state = "RUNNING";
  log.info({ address: cfg.grpc.address, ttrpc: cfg.ttrpc.address }, "berthd successfully booted");
  const idleCollector = startIdleCollector(() => server.quietFor(), log);

  const closeAll = async () => {
    // Close plugins in reverse init order so that nothing outlives what it depends on.
    for (const s of [...graph.states].reverse()) {
      const inst = s.instance as Partial<Closable> | undefined;
      if (inst && typeof inst.close === "function") {
        try {
          await inst.close();
        } catch (err) {
          log.error({ type: s.registration.type, id: s.registration.id, err }, "failed to close plugin");
        }
      }
    }
  };

  return {
    get state() {
      return state;
    },
    graph,
    async stop(graceMs = 10_000) {
      if (state !== "RUNNING") return;
      state = "STOPPING";
      log.info("stopping berthd");
      idleCollector?.stop();
      await ttrpc.close();
      metricsServer?.close();
      // Subscriptions never end on their own; end them so that in-flight unary calls can drain.
      for (const exchange of graph.getAll<Exchange>("io.containerd.event.v1").values()) exchange.close();
      // shutdown stops accepting and waits for in-flight calls; forceShutdown cancels the rest.
      const timer = setTimeout(() => server.forceShutdown(), graceMs);
      timer.unref();
      await server.shutdown();
      clearTimeout(timer);
      server.forceShutdown(); // drops the connections the clients keep open
      await closeAll();
      state = "STOPPED";
      log.info("berthd stopped");
    },
  };
}
