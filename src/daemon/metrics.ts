// Prometheus metrics (prom-client): gRPC call counts and latencies, GC pauses, build info; served
// at /v1/metrics on the [metrics] address, as containerd does.
import { createServer, type Server } from "node:http";
import { Registry, Counter, Histogram, Gauge, collectDefaultMetrics } from "prom-client";
import { GrpcCode } from "../errdefs/grpc-status.js";
import type { Logger } from "./logger.js";
import type { CallObserver } from "../services/grpc-adapter.js";
import { berthVersion, berthRevision } from "./version.js";

export interface Metrics {
  readonly registry: Registry;
  readonly gcPauseSeconds: Histogram;
  /** Layers unpacked ahead, by what became of them (staged, claimed, unused, failed, dropped). */
  readonly unpackAheadLayers: Counter<"outcome">;
  observeGrpc(log: Logger): CallObserver;
  serve(address: string): Promise<Server>;
}

const codeNames = new Map<number, string>(Object.entries(GrpcCode).map(([k, v]) => [v as number, k]));

export function createMetrics(): Metrics {
  const registry = new Registry();
  // The event-loop lag histogram samples once a second: prom-client's default (every 10 ms) kept
  // an idle berthd waking 100 times a second, about 1% of a CPU doing nothing.
  collectDefaultMetrics({ register: registry, prefix: "berthd_", eventLoopMonitoringPrecision: 1000 });
  new Gauge({
    name: "containerd_build_info_total",
    help: "berthd build information (containerd-compatible name)",
    labelNames: ["version", "revision"],
    registers: [registry],
  }).set({ version: berthVersion, revision: berthRevision }, 1);
  const handled = new Counter({
    name: "grpc_server_handled_total",
    help: "Total number of RPCs completed on the server, regardless of success or failure.",
    labelNames: ["grpc_service", "grpc_method", "grpc_code"],
    registers: [registry],
  });
  const latency = new Histogram({
    name: "grpc_server_handling_seconds",
    help: "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
    labelNames: ["grpc_service", "grpc_method"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const gcPauseSeconds = new Histogram({
    name: "berthd_gc_pause_seconds",
    help: "Duration of metadata garbage collections (the write lock is held throughout).",
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
    registers: [registry],
  });

  const unpackAheadLayers = new Counter({
    name: "berthd_unpack_ahead_layers_total",
    help: "Layers unpacked before Diff.Apply asked for them, by outcome: staged, then claimed by an apply, or unused (expired), failed or dropped.",
    labelNames: ["outcome"],
    registers: [registry],
  });

  return {
    registry,
    gcPauseSeconds,
    unpackAheadLayers,
    observeGrpc(log) {
      // The labelled children, by path and code: prom-client hashes a label object on every
      // inc/observe, which showed in profiles of busy daemons.
      const children = new Map<string, { handled: Counter.Internal; latency: Histogram.Internal<string> }>();
      const childrenOf = (path: string, code: number) => {
        const key = `${path}\0${code}`;
        let c = children.get(key);
        if (c === undefined) {
          const slash = path.lastIndexOf("/");
          const service = path.slice(1, slash);
          const method = path.slice(slash + 1);
          c = {
            handled: handled.labels(service, method, codeNames.get(code) ?? String(code)),
            latency: latency.labels(service, method),
          };
          children.set(key, c);
        }
        return c;
      };
      return (path: string, code: number, durationMs: number, err?: unknown) => {
        const c = childrenOf(path, code);
        c.handled.inc();
        c.latency.observe(durationMs / 1000);
        if (code === GrpcCode.UNKNOWN || code === GrpcCode.INTERNAL) log.error({ path, err }, "rpc failed");
        else if (log.isLevelEnabled("debug"))
          log.debug({ path, code: codeNames.get(code), ms: Math.round(durationMs * 1000) / 1000 }, "rpc");
      };
    },
    async serve(address) {
      const idx = address.lastIndexOf(":");
      const host = address.slice(0, idx) || "127.0.0.1";
      const port = Number(address.slice(idx + 1));
      const server = createServer((req, res) => {
        if (req.url !== "/v1/metrics") {
          res.writeHead(404).end();
          return;
        }
        registry.metrics().then(
          (body) => res.writeHead(200, { "content-type": registry.contentType }).end(body),
          (err: unknown) => res.writeHead(500).end(String(err)),
        );
      });
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => resolve());
      });
      return server;
    },
  };
}
