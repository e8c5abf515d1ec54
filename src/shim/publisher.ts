// Sends the shim's task events to the daemon: ttrpc Events/Forward on TTRPC_ADDRESS (the 1.6 way),
// in order, reconnecting and retrying a few times when the daemon is away (it may be restarting).
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Events } from "../gen/containerd/services/events/ttrpc/v1/events_pb.js";
import { connectTtrpc, ttrpcService, type TtrpcClient } from "../ttrpc/client.js";
import { ttrpcNamespaceKey } from "../runtime/ttrpc-metadata.js";
import { packEvent } from "../core/events/pack-event.js";

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

  async function send(q: Queued): Promise<void> {
    for (let i = 1; ; i++) {
      try {
        const c = await connected();
        await ttrpcService(c, Events).forward(
          {
            envelope: {
              timestamp: timestampFromDate(q.timestamp),
              namespace: q.namespace,
              topic: q.topic,
              event: q.event,
            },
          },
          { metadata: { [ttrpcNamespaceKey]: q.namespace }, timeoutMs: 5000 },
        );
        return;
      } catch (err) {
        if (i >= attempts || closed) {
          log(`dropping event ${q.topic}: ${(err as Error).message}`);
          return;
        }
        await new Promise((r) => setTimeout(r, 100 * 2 ** i));
      }
    }
  }

  function drain(): Promise<void> {
    draining ??= (async () => {
      while (queue.length > 0) await send(queue.shift() as Queued);
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
