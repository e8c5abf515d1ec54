// The ttrpc listener at <grpc socket>.ttrpc: shims forward their task events here.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Events } from "../gen/containerd/services/events/ttrpc/v1/events_pb.js";
import { createTtrpcServer } from "../ttrpc/server.js";
import type { PluginGraph } from "./plugin.js";
import type { Exchange } from "../core/events/exchange.js";
import type { Logger } from "./logger.js";
import { invalidArgument } from "../errdefs/errors.js";

export interface TtrpcEventsServer {
  close(): Promise<void>;
}

export async function startTtrpcEventsServer(
  address: string,
  graph: PluginGraph,
  log: Logger,
): Promise<TtrpcEventsServer> {
  const exchange = graph.get<Exchange>("io.containerd.event.v1");
  const server = createTtrpcServer({ onError: (err) => log.debug({ err }, "ttrpc connection error") });
  server.register(Events, {
    forward: async (req) => {
      const e = req.envelope;
      if (!e) throw invalidArgument("envelope must not be empty");
      exchange.forward({
        timestamp: e.timestamp ? timestampDate(e.timestamp) : new Date(0),
        namespace: e.namespace,
        topic: e.topic,
        event: { typeUrl: e.event?.typeUrl ?? "", value: e.event?.value ?? new Uint8Array() },
      });
      return {};
    },
  });
  await server.listen(address);
  return server;
}
