// containerd.services.events.v1.Events: Publish and Forward into the exchange, Subscribe out of it.
import { Events } from "../gen/containerd/services/events/v1/events_pb.js";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "./grpc-adapter.js";
import { namespaced } from "./call-context.js";
import type { Envelope, Exchange } from "../core/events/exchange.js";
import { BerthError, invalidArgument } from "../errdefs/errors.js";

export { Events };

export function eventsService(exchange: Exchange): ServiceImpl<(typeof Events)["method"]> {
  return {
    publish: async (req, ctx) => {
      const { namespace } = namespaced(ctx);
      if (!req.event) throw invalidArgument("event must not be empty");
      exchange.publish(namespace, req.topic, { typeUrl: req.event.typeUrl, value: req.event.value });
      return {};
    },
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
    subscribe: async function* (req, ctx) {
      let stream: AsyncIterable<Envelope>;
      try {
        stream = exchange.subscribe(req.filters, ctx.signal);
      } catch (err) {
        // containerd's exchange reports a bad filter on its error channel, and the service wraps
        // that into a plain (Unknown) error: ctr prints exactly this text.
        throw new BerthError(
          "unknown",
          `subscription error: failed parsing subscription filters: ${BerthError.from(err).message}`,
          { cause: err },
        );
      }
      for await (const e of stream) {
        yield {
          timestamp: timestampFromDate(e.timestamp),
          namespace: e.namespace,
          topic: e.topic,
          event: { typeUrl: e.event.typeUrl, value: e.event.value },
        };
      }
    },
  };
}
