// The event exchange: every service publishes here, every Events.Subscribe stream reads from here.
// Delivery is best-effort and in-memory, with no replay, as in containerd; subscribers see all
// namespaces unless their filters say otherwise.
import type { AnyValue } from "../any-value.js";
import { invalidArgument } from "../../errdefs/errors.js";
import { validateIdentifier } from "../identifiers/identifiers.js";
import { parseFilters, type Filter } from "../filters/filter.js";
import { envelopeAdaptor, objectAdaptor } from "../filters/adaptors.js";

export interface Envelope {
  timestamp: Date;
  namespace: string;
  topic: string;
  event: AnyValue;
}

/** Turns an event payload into a plain object so that `event.<field>` filters can see it. */
export type EventDecoder = (event: AnyValue) => unknown;

export interface Exchange {
  /** Publishes an event into a namespace with the daemon's own timestamp. */
  publish(namespace: string, topic: string, event: AnyValue): void;
  /** Injects an envelope built elsewhere (shims), keeping its namespace and timestamp. */
  forward(envelope: Envelope): void;
  /** Streams envelopes matching filters (ORed strings) until signal aborts. */
  subscribe(filters: string[], signal: AbortSignal): AsyncIterable<Envelope>;
  readonly subscriberCount: number;
  /** Ends every subscription (their streams complete normally); later subscriptions end at once. */
  close(): void;
}

/** A subscriber that falls this far behind is dropped rather than holding daemon memory. */
const maxQueued = 65536;

export function validateTopic(topic: string): void {
  if (topic === "" || !topic.startsWith("/")) throw invalidArgument(`must start with '/'`);
  if (topic.length === 1) throw invalidArgument(`must have at least one component`);
  for (const component of topic.slice(1).split("/")) {
    try {
      validateIdentifier(component);
    } catch (err) {
      throw invalidArgument(`failed validation on component ${JSON.stringify(component)}`, err);
    }
  }
}

interface Subscriber {
  filter: Filter;
  queue: Envelope[];
  wake: (() => void) | undefined;
  dropped: boolean;
}

export function createExchange(opts: { decode?: EventDecoder } = {}): Exchange {
  const subscribers = new Set<Subscriber>();
  let closed = false;
  const decode = opts.decode ?? (() => undefined);

  function deliver(envelope: Envelope): void {
    if (subscribers.size === 0) return;
    let decoded: unknown;
    let decodedOnce = false;
    const adaptor = envelopeAdaptor({
      namespace: envelope.namespace,
      topic: envelope.topic,
      event: (path) => {
        if (!decodedOnce) {
          decodedOnce = true;
          try {
            decoded = decode(envelope.event);
          } catch {
            decoded = undefined;
          }
        }
        return objectAdaptor(decoded)(path);
      },
    });
    for (const sub of subscribers) {
      if (!sub.filter.match(adaptor)) continue;
      if (sub.queue.length >= maxQueued) {
        sub.dropped = true;
        subscribers.delete(sub);
      } else sub.queue.push(envelope);
      sub.wake?.();
    }
  }

  return {
    publish(namespace, topic, event) {
      validateIdentifier(namespace);
      validateTopic(topic);
      deliver({ timestamp: new Date(), namespace, topic, event });
    },
    forward(envelope) {
      validateIdentifier(envelope.namespace);
      validateTopic(envelope.topic);
      if (envelope.timestamp.getTime() === 0 || Number.isNaN(envelope.timestamp.getTime()))
        throw invalidArgument("timestamp must be set");
      deliver(envelope);
    },
    subscribe(filters, signal) {
      const filter = parseFilters(filters); // throws InvalidArgument before the stream starts
      const sub: Subscriber = { filter, queue: [], wake: undefined, dropped: false };
      subscribers.add(sub);
      return {
        async *[Symbol.asyncIterator]() {
          const onAbort = () => sub.wake?.();
          signal.addEventListener("abort", onAbort);
          try {
            while (!signal.aborted) {
              const next = sub.queue.shift();
              if (next) {
                yield next;
                continue;
              }
              if (sub.dropped || closed) return;
              await new Promise<void>((resolve) => (sub.wake = resolve));
              sub.wake = undefined;
            }
          } finally {
            signal.removeEventListener("abort", onAbort);
            subscribers.delete(sub);
          }
        },
      };
    },
    get subscriberCount() {
      return subscribers.size;
    },
    close() {
      closed = true;
      for (const sub of subscribers) sub.wake?.();
    },
  };
}
