// Binds a protobuf-es service descriptor and a typed implementation onto a grpc-js server:
// decoding, encoding, cancellation and error-code mapping live here and nowhere else. No response
// leaves before every database commit made so far is on stable storage (wal-sync.ts): commits do
// not fsync on the event loop, this is where their durability is awaited.
import { once } from "node:events";
import * as grpc from "@grpc/grpc-js";
import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethod,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { BerthError } from "../errdefs/errors.js";
import { grpcCodeOf } from "../errdefs/grpc-status.js";
import { durabilityPending, durable } from "../core/metadata/wal-sync.js";
import type { CallContext } from "./call-context.js";
import { callContextOf } from "./call-context.js";

type Shape<M> = M extends DescMessage ? MessageShape<M> : never;
type Init<M> = M extends DescMessage ? MessageInitShape<M> : never;
type Output<M> = Init<M> | Shape<M>;

type Handler<M> = M extends { methodKind: "unary"; input: infer I; output: infer O }
  ? (req: Shape<I>, ctx: CallContext) => Promise<Output<O>>
  : M extends { methodKind: "server_streaming"; input: infer I; output: infer O }
    ? (req: Shape<I>, ctx: CallContext) => AsyncIterable<Output<O>>
    : M extends { methodKind: "bidi_streaming"; input: infer I; output: infer O }
      ? (reqs: AsyncIterable<Shape<I>>, ctx: CallContext) => AsyncIterable<Output<O>>
      : M extends { methodKind: "client_streaming"; input: infer I; output: infer O }
        ? (reqs: AsyncIterable<Shape<I>>, ctx: CallContext) => Promise<Output<O>>
        : never;

/** A service implementation: methods left out answer Unimplemented, as containerd's do. */
export type ServiceImpl<T extends GenServiceMethods> = { [K in keyof T]?: Handler<T[K]> };

/** Observes every call (metrics, debug logs); must not throw. */
export type CallObserver = (path: string, code: grpc.status, durationMs: number, err?: unknown) => void;

export interface AdapterOptions {
  observe?: CallObserver;
}

function toServiceError(err: unknown): Partial<grpc.StatusObject> {
  // A client that goes away mid-stream surfaces as an AbortError from the request iterator.
  if ((err as { code?: unknown } | null)?.code === "ABORT_ERR")
    return { code: grpc.status.CANCELLED, details: "context canceled" };
  const e = BerthError.from(err);
  return { code: grpcCodeOf(e), details: e.message };
}

/**
 * The requests of a client- or bidi-streaming call. Node's default stream iterator destroys the
 * stream once the requests end, and grpc-js then resets the HTTP/2 stream: the client would see
 * CANCELLED instead of the responses still to come and the OK status (containerd's Write sends
 * one more response after the half-close).
 */
function requestsOf(
  call: grpc.ServerReadableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>,
) {
  return { [Symbol.asyncIterator]: () => call.iterator({ destroyOnReturn: false }) };
}

function serializer(schema: DescMessage) {
  return (msg: unknown) => Buffer.from(toBinary(schema, msg as MessageShape<DescMessage>));
}

function deserializer(schema: DescMessage) {
  return (buf: Buffer) => fromBinary(schema, buf);
}

function asMessage(schema: DescMessage, value: unknown): MessageShape<DescMessage> {
  // Handlers may return either full messages or init shapes; create() accepts both.
  return create(schema, value as MessageInitShape<DescMessage>);
}

/** Runs send once every commit so far is durable; fail instead when syncing fails. */
function whenDurable(send: () => void, fail: (err: unknown) => void = send): void {
  if (!durabilityPending()) {
    send();
    return;
  }
  durable().then(send, fail);
}

/** Resolves once every commit so far is durable (undefined, without a promise, when they are). */
function durablePoint(): Promise<void> | undefined {
  return durabilityPending() ? durable() : undefined;
}

async function writeAll(
  call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>,
  schema: DescMessage,
  source: AsyncIterable<unknown>,
  signal: AbortSignal,
): Promise<void> {
  for await (const item of source) {
    if (signal.aborted) return;
    const message = asMessage(schema, item);
    await durablePoint();
    if (signal.aborted) return;
    if (!call.write(message)) {
      await Promise.race([once(call, "drain"), once(signal, "abort")]);
    }
  }
}

/** Registers `impl` for `service` on `server`. */
export function registerService<T extends GenServiceMethods>(
  server: grpc.Server,
  service: GenService<T>,
  impl: ServiceImpl<T>,
  opts: AdapterOptions = {},
): void {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const handlers: grpc.UntypedServiceImplementation = {};
  const observe = opts.observe ?? (() => undefined);
  const methods = Object.entries(service.method) as [string, DescMethod][];
  for (const [localName, method] of methods) {
    const path = `/${service.typeName}/${method.name}`;
    const kind = method.methodKind;
    definition[method.name] = {
      path,
      requestStream: kind === "client_streaming" || kind === "bidi_streaming",
      responseStream: kind === "server_streaming" || kind === "bidi_streaming",
      requestSerialize: serializer(method.input),
      requestDeserialize: deserializer(method.input),
      responseSerialize: serializer(method.output),
      responseDeserialize: deserializer(method.output),
      originalName: localName,
    };
    const fn = (impl as Record<string, unknown>)[localName] as
      | ((a: unknown, ctx: CallContext) => unknown)
      | undefined;
    handlers[method.name] = makeHandler(path, kind, method.output, fn, observe);
  }
  server.addService(definition, handlers);
}

function makeHandler(
  path: string,
  kind: DescMethod["methodKind"],
  output: DescMessage,
  fn: ((a: unknown, ctx: CallContext) => unknown) | undefined,
  observe: CallObserver,
): grpc.UntypedHandleCall {
  const unimplemented = { code: grpc.status.UNIMPLEMENTED, details: `unknown method ${path}` };
  const finish = (start: number, code: grpc.status, err?: unknown) =>
    observe(path, code, performance.now() - start, err);

  switch (kind) {
    case "unary":
      return (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const start = performance.now();
        if (!fn) {
          finish(start, grpc.status.UNIMPLEMENTED);
          callback(unimplemented);
          return;
        }
        const ctx = callContextOf(call);
        Promise.resolve()
          .then(() => fn(call.request, ctx) as Promise<unknown>)
          .then(
            (res) => {
              const message = asMessage(output, res);
              whenDurable(
                () => {
                  finish(start, grpc.status.OK);
                  callback(null, message);
                },
                (err: unknown) => {
                  const se = toServiceError(err);
                  finish(start, se.code ?? grpc.status.UNKNOWN, err);
                  callback(se);
                },
              );
            },
            (err: unknown) => {
              const se = toServiceError(err);
              whenDurable(() => {
                finish(start, se.code ?? grpc.status.UNKNOWN, err);
                callback(se);
              });
            },
          )
          .finally(() => ctx.dispose());
      };
    case "server_streaming":
      return (call: grpc.ServerWritableStream<unknown, unknown>) => {
        const start = performance.now();
        if (!fn) {
          finish(start, grpc.status.UNIMPLEMENTED);
          call.emit("error", unimplemented);
          return;
        }
        const ctx = callContextOf(call);
        Promise.resolve()
          .then(() => writeAll(call, output, fn(call.request, ctx) as AsyncIterable<unknown>, ctx.signal))
          .then(durablePoint)
          .then(
            () => {
              finish(start, grpc.status.OK);
              call.end();
            },
            (err: unknown) => {
              const se = toServiceError(err);
              whenDurable(() => {
                finish(start, se.code ?? grpc.status.UNKNOWN, err);
                if (!ctx.signal.aborted) call.emit("error", se);
              });
            },
          )
          .finally(() => ctx.dispose());
      };
    case "bidi_streaming":
      return (call: grpc.ServerDuplexStream<unknown, unknown>) => {
        const start = performance.now();
        if (!fn) {
          finish(start, grpc.status.UNIMPLEMENTED);
          call.emit("error", unimplemented);
          return;
        }
        const ctx = callContextOf(call);
        Promise.resolve()
          .then(() => writeAll(call, output, fn(requestsOf(call), ctx) as AsyncIterable<unknown>, ctx.signal))
          .then(durablePoint)
          .then(
            () => {
              finish(start, grpc.status.OK);
              call.end();
            },
            (err: unknown) => {
              const se = toServiceError(err);
              whenDurable(() => {
                finish(start, se.code ?? grpc.status.UNKNOWN, err);
                if (!ctx.signal.aborted) call.emit("error", se);
              });
            },
          )
          .finally(() => ctx.dispose());
      };
    case "client_streaming":
      return (call: grpc.ServerReadableStream<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const start = performance.now();
        if (!fn) {
          finish(start, grpc.status.UNIMPLEMENTED);
          callback(unimplemented);
          return;
        }
        const ctx = callContextOf(call);
        Promise.resolve()
          .then(() => fn(requestsOf(call), ctx) as Promise<unknown>)
          .then(
            (res) => {
              const message = asMessage(output, res);
              whenDurable(
                () => {
                  finish(start, grpc.status.OK);
                  callback(null, message);
                },
                (err: unknown) => {
                  const se = toServiceError(err);
                  finish(start, se.code ?? grpc.status.UNKNOWN, err);
                  callback(se);
                },
              );
            },
            (err: unknown) => {
              const se = toServiceError(err);
              whenDurable(() => {
                finish(start, se.code ?? grpc.status.UNKNOWN, err);
                callback(se);
              });
            },
          )
          .finally(() => ctx.dispose());
      };
  }
}
