// Sends the shim's task events to the daemon: ttrpc Events/Forward on TTRPC_ADDRESS (the 1.6 way),
// in order, reconnecting and retrying a few times when the daemon is away (it may be restarting).
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Events } from "../gen/containerd/services/events/ttrpc/v1/events_pb.js";
import { connectTtrpc, ttrpcService, type TtrpcClient } from "../ttrpc/client.js";
import { ttrpcNamespaceKey } from "../runtime/ttrpc-metadata.js";
import { packEvent } from "../core/events/pack-event.js";
import { BerthError } from "../errdefs/errors.js";

export interface Publisher {
  publish<S extends DescMessage>(
    namespace: string,
    topic: string,
    schema: S,
    event: MessageInitShape<S>,
  ): void;
  /** Resolves once everything queued so far was sent (or given up). */
  flush(): Promise<void>;
  close(): void;
}

interface Queued {
  namespace: string;
  topic: string;
  timestamp: Date;
  event: { typeUrl: string; value: Uint8Array };
}

const attempts = 5;
/** Events written before their replies are awaited. */
const maxInFlight = 64;

export function createPublisher(address: string, log: (msg: string) => void): Publisher {
  let client: TtrpcClient | undefined;
  const queue: Queued[] = [];
  let draining: Promise<void> | undefined;
  let closed = false;

  async function connected(): Promise<TtrpcClient> {
    if (client && !client.isClosed()) return client;
    client = await connectTtrpc(address, { timeoutMs: 5000 });
    return client;
  }

  /**
   * Sends a batch pipelined: every Forward is written at once, in order, and the daemon handles
   * them in the order they arrive. One shim serves many containers, so waiting for each reply
   * before the next request would queue one container's events behind another's round trips
   * (containerd's shims, one per container, each wait for their own). What failed is sent again,
   * in its order, after a pause; the rest is not sent twice.
   */
  async function sendBatch(batch: Queued[]): Promise<void> {
    for (let i = 1; ; i++) {
      let failure: unknown;
      try {
        const events = ttrpcService(await connected(), Events);
        const results = await Promise.allSettled(
          batch.map((q) =>
            events.forward(
              {
                envelope: {
                  timestamp: timestampFromDate(q.timestamp),
                  namespace: q.namespace,
                  topic: q.topic,
                  event: q.event,
                },
              },
              { metadata: { [ttrpcNamespaceKey]: q.namespace }, timeoutMs: 5000 },
            ),
          ),
        );
        const failed = results.flatMap((r, k) => (r.status === "rejected" ? [k] : []));
        if (failed.length === 0) return;
        failure = (results[failed[0] as number] as PromiseRejectedResult).reason;
        batch = failed.map((k) => batch[k] as Queued);
      } catch (err) {
        failure = err; // not connected: the whole batch again
      }
      if (i >= attempts || closed) {
        for (const q of batch) log(`dropping event ${q.topic}: ${BerthError.from(failure).message}`);
        return;
      }
      await new Promise((r) => setTimeout(r, 100 * 2 ** i));
    }
  }

  function drain(): Promise<void> {
    draining ??= (async () => {
      while (queue.length > 0) await sendBatch(queue.splice(0, maxInFlight));
      draining = undefined;
    })();
    return draining;
  }

  /**
   * The drain after the current turn of the event loop: the reply of the call that published (a
   * Create, Start or Delete) goes out first, so the daemon answers its client before it handles
   * the event, as containerd's shim, which forwards events from a queue of its own.
   */
  let scheduled: Promise<void> | undefined;

  return {
    publish(namespace, topic, schema, event) {
      if (closed) return;
      queue.push({ namespace, topic, timestamp: new Date(), event: packEvent(schema, event) });
      scheduled ??= new Promise<void>((resolve) =>
        setImmediate(() => {
          scheduled = undefined;
          resolve(drain());
        }),
      );
    },
    async flush() {
      await scheduled;
      await draining;
    },
    close() {
      closed = true;
      client?.close();
    },
  };
}
