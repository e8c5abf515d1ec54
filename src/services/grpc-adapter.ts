// Binds a protobuf-es service descriptor and a typed implementation onto berthd's gRPC server
// (src/grpc/server.ts): decoding, encoding, cancellation and error-code mapping live here and
// nowhere else. No response leaves before every database commit made so far is on stable storage
// (wal-sync.ts): commits do not fsync on the event loop, this is where their durability is awaited.
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
import { GrpcCode, grpcCodeOf } from "../errdefs/grpc-status.js";
import { durabilityPending, durable } from "../core/metadata/wal-sync.js";
import type { GrpcServer, ServerCall } from "../grpc/server.js";
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
export type CallObserver = (path: string, code: number, durationMs: number, err?: unknown) => void;

export interface AdapterOptions {
  observe?: CallObserver;
}

interface Status {
  code: number;
  message: string;
}

function toStatus(err: unknown): Status {
  // A client that goes away mid-stream surfaces as an AbortError from the request iterator.
  if ((err as { code?: unknown } | null)?.code === "ABORT_ERR") {
    return { code: GrpcCode.CANCELLED, message: "context canceled" };
  }
  const e = BerthError.from(err);
  return { code: grpcCodeOf(e), message: e.message };
}

/** Handlers may return either full messages or init shapes; create() accepts both. */
function encode(schema: DescMessage, value: unknown): Uint8Array {
  return toBinary(schema, create(schema, value as MessageInitShape<DescMessage>));
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
  call: ServerCall,
  schema: DescMessage,
  source: AsyncIterable<unknown>,
): Promise<void> {
  for await (const item of source) {
    if (call.finished) return;
    const message = encode(schema, item);
    await durablePoint();
    if (call.finished) return;
    if (!call.write(message)) await call.drain();
  }
}

async function* decodeAll(schema: DescMessage, requests: AsyncIterable<Buffer>): AsyncIterable<unknown> {
  for await (const bytes of requests) yield fromBinary(schema, bytes);
}

/** Registers `impl` for `service` on `server`. */
export function registerService<T extends GenServiceMethods>(
  server: GrpcServer,
  service: GenService<T>,
  impl: ServiceImpl<T>,
  opts: AdapterOptions = {},
): void {
  const observe = opts.observe ?? (() => undefined);
  const methods = Object.entries(service.method) as [string, DescMethod][];
  for (const [localName, method] of methods) {
    const path = `/${service.typeName}/${method.name}`;
    const kind = method.methodKind;
    const fn = (impl as Record<string, unknown>)[localName] as
      | ((a: unknown, ctx: CallContext) => unknown)
      | undefined;
    server.register(path, {
      requestStream: kind === "client_streaming" || kind === "bidi_streaming",
      responseStream: kind === "server_streaming" || kind === "bidi_streaming",
      handler: makeHandler(path, method, fn, observe),
    });
  }
}

function makeHandler(
  path: string,
  method: DescMethod,
  fn: ((a: unknown, ctx: CallContext) => unknown) | undefined,
  observe: CallObserver,
): (call: ServerCall, request: Buffer | undefined) => void {
  const { input, output } = method;
  const streamsResponses = method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming";
  const streamsRequests = method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming";

  return (call, request) => {
    const start = performance.now();
    const end = (status: Status, err?: unknown) => {
      call.finish(status.code, status.message);
      // The call may have ended otherwise first (a reply over the size limit, a deadline).
      observe(path, call.code ?? GrpcCode.CANCELLED, performance.now() - start, err);
    };
    const fail = (err: unknown) => whenDurable(() => end(toStatus(err), err));
    if (!fn) {
      end({ code: GrpcCode.UNIMPLEMENTED, message: `unknown method ${path}` });
      return;
    }
    let arg: unknown;
    try {
      arg = streamsRequests
        ? decodeAll(input, call.requests())
        : fromBinary(input, request ?? new Uint8Array());
    } catch (err) {
      end({ code: GrpcCode.INTERNAL, message: `grpc: error unmarshalling request: ${String(err)}` }, err);
      return;
    }
    const ctx = callContextOf(call);
    if (streamsResponses) {
      Promise.resolve()
        .then(() => writeAll(call, output, fn(arg, ctx) as AsyncIterable<unknown>))
        .then(durablePoint)
        .then(() => end({ code: GrpcCode.OK, message: "" }), fail);
      return;
    }
    // The handler starts now (no extra turn); a synchronous throw fails the call like a rejection.
    let pending: Promise<unknown>;
    try {
      pending = Promise.resolve(fn(arg, ctx));
    } catch (err) {
      fail(err);
      return;
    }
    pending.then((res) => {
      let message: Uint8Array;
      try {
        message = encode(output, res);
      } catch (err) {
        // A reply that cannot be encoded (a negative uint32, say) is our bug, not the client's.
        end({ code: GrpcCode.INTERNAL, message: `grpc: error encoding the reply: ${String(err)}` }, err);
        return;
      }
      whenDurable(
        () => {
          if (call.finished) return;
          call.write(message);
          end({ code: GrpcCode.OK, message: "" });
        },
        (err: unknown) => end(toStatus(err), err),
      );
    }, fail);
  };
}
