// A typed client for one protobuf-es service descriptor: every method of the GenService becomes a
// function whose request and response types come from the descriptor, called over grpc-js.
import type * as grpc from "@grpc/grpc-js";
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
import {
  bindSignal,
  callMetadata,
  grpcCallOptions,
  type CallOptions,
  type ClientDefaults,
} from "./call-options.js";
import { errorFromGrpc } from "./client-error.js";
import { GrpcBidiStream, type BidiStream } from "./bidi-stream.js";
import { ResponseQueue } from "./response-queue.js";

export type UnaryMethod<I extends DescMessage, O extends DescMessage> = (
  req: MessageInitShape<I>,
  opts?: CallOptions,
) => Promise<MessageShape<O>>;

/** The call starts when iteration starts; leaving the loop early cancels it. */
export type ServerStreamingMethod<I extends DescMessage, O extends DescMessage> = (
  req: MessageInitShape<I>,
  opts?: CallOptions,
) => AsyncIterable<MessageShape<O>>;

export type ClientStreamingMethod<I extends DescMessage, O extends DescMessage> = (
  reqs: AsyncIterable<MessageInitShape<I>> | Iterable<MessageInitShape<I>>,
  opts?: CallOptions,
) => Promise<MessageShape<O>>;

/** Opens the call at once. */
export type BidiStreamingMethod<I extends DescMessage, O extends DescMessage> = (
  opts?: CallOptions,
) => BidiStream<I, O>;

type MethodOf<M> = M extends {
  methodKind: "unary";
  input: infer I extends DescMessage;
  output: infer O extends DescMessage;
}
  ? UnaryMethod<I, O>
  : M extends {
        methodKind: "server_streaming";
        input: infer I extends DescMessage;
        output: infer O extends DescMessage;
      }
    ? ServerStreamingMethod<I, O>
    : M extends {
          methodKind: "client_streaming";
          input: infer I extends DescMessage;
          output: infer O extends DescMessage;
        }
      ? ClientStreamingMethod<I, O>
      : M extends {
            methodKind: "bidi_streaming";
            input: infer I extends DescMessage;
            output: infer O extends DescMessage;
          }
        ? BidiStreamingMethod<I, O>
        : never;

/** The methods of service T, by their protobuf-es local names (`info`, `listStatuses`, ...). */
export type ServiceClient<T extends GenServiceMethods> = { readonly [K in keyof T]: MethodOf<T[K]> };

type Msg = MessageShape<DescMessage>;

function serializer(schema: DescMessage) {
  return (msg: Msg): Buffer => Buffer.from(toBinary(schema, msg));
}

function deserializer(schema: DescMessage) {
  return (buf: Buffer): Msg => fromBinary(schema, buf);
}

/** `/<package>.<Service>/<Method>`, the HTTP/2 path of a method. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

function unary(grpcClient: grpc.Client, method: DescMethod, defaults: ClientDefaults) {
  const path = methodPath(method);
  const ser = serializer(method.input);
  const de = deserializer(method.output);
  return (req: MessageInitShape<DescMessage>, opts: CallOptions = {}): Promise<Msg> =>
    new Promise((resolve, reject) => {
      let unbind = (): void => undefined;
      const call = grpcClient.makeUnaryRequest(
        path,
        ser,
        de,
        create(method.input, req),
        callMetadata(defaults, opts),
        grpcCallOptions(opts),
        (err, res) => {
          unbind();
          if (err) reject(errorFromGrpc(err));
          else if (res === undefined) reject(errorFromGrpc(new Error(`${path}: empty response`)));
          else resolve(res);
        },
      );
      unbind = bindSignal(opts.signal, call);
    });
}

function serverStreaming(grpcClient: grpc.Client, method: DescMethod, defaults: ClientDefaults) {
  const path = methodPath(method);
  const ser = serializer(method.input);
  const de = deserializer(method.output);
  return (req: MessageInitShape<DescMessage>, opts: CallOptions = {}): AsyncIterable<Msg> => {
    // Built now so that a bad request fails at the call site, not at the first iteration.
    const request = create(method.input, req);
    return {
      [Symbol.asyncIterator]: () => {
        const call = grpcClient.makeServerStreamRequest(
          path,
          ser,
          de,
          request,
          callMetadata(defaults, opts),
          grpcCallOptions(opts),
        );
        const unbind = bindSignal(opts.signal, call);
        call.once("status", unbind);
        const queue = new ResponseQueue<Msg>(call);
        return {
          next: () => queue.next(),
          return: async () => {
            if (!queue.settled) call.cancel();
            unbind();
            return { done: true, value: undefined };
          },
        };
      },
    };
  };
}

function clientStreaming(grpcClient: grpc.Client, method: DescMethod, defaults: ClientDefaults) {
  const path = methodPath(method);
  const ser = serializer(method.input);
  const de = deserializer(method.output);
  return (
    reqs: AsyncIterable<MessageInitShape<DescMessage>> | Iterable<MessageInitShape<DescMessage>>,
    opts: CallOptions = {},
  ): Promise<Msg> =>
    new Promise((resolve, reject) => {
      let unbind = (): void => undefined;
      let finished = false;
      const call = grpcClient.makeClientStreamRequest(
        path,
        ser,
        de,
        callMetadata(defaults, opts),
        grpcCallOptions(opts),
        (err, res) => {
          finished = true;
          unbind();
          if (err) reject(errorFromGrpc(err));
          else if (res === undefined) reject(errorFromGrpc(new Error(`${path}: empty response`)));
          else resolve(res);
        },
      );
      unbind = bindSignal(opts.signal, call);
      const pump = async (): Promise<void> => {
        for await (const req of reqs) {
          if (finished) return;
          const msg = create(method.input, req);
          await new Promise<void>((done) => {
            if (call.write(msg)) return done();
            // Wait for room, or for the end of a call that failed meanwhile.
            const go = (): void => {
              call.removeListener("drain", go);
              call.removeListener("status", go);
              done();
            };
            call.once("drain", go);
            call.once("status", go);
          });
        }
        call.end();
      };
      pump().catch((err: unknown) => {
        // The requests could not be produced: the call cannot complete, so it is cancelled.
        call.cancel();
        reject(errorFromGrpc(err));
      });
    });
}

function bidiStreaming(grpcClient: grpc.Client, method: DescMethod, defaults: ClientDefaults) {
  const path = methodPath(method);
  const ser = serializer(method.input);
  const de = deserializer(method.output);
  return (opts: CallOptions = {}): BidiStream<DescMessage, DescMessage> => {
    const call = grpcClient.makeBidiStreamRequest(
      path,
      ser,
      de,
      callMetadata(defaults, opts),
      grpcCallOptions(opts),
    );
    const unbind = bindSignal(opts.signal, call);
    return new GrpcBidiStream(call, method.input, unbind);
  };
}

/** Builds the typed client of `service` over an open grpc-js client. */
export function makeServiceClient<T extends GenServiceMethods>(
  grpcClient: grpc.Client,
  service: GenService<T>,
  defaults: ClientDefaults,
): ServiceClient<T> {
  const methods: Record<string, unknown> = {};
  for (const [localName, method] of Object.entries(service.method) as [string, DescMethod][]) {
    switch (method.methodKind) {
      case "unary":
        methods[localName] = unary(grpcClient, method, defaults);
        break;
      case "server_streaming":
        methods[localName] = serverStreaming(grpcClient, method, defaults);
        break;
      case "client_streaming":
        methods[localName] = clientStreaming(grpcClient, method, defaults);
        break;
      case "bidi_streaming":
        methods[localName] = bidiStreaming(grpcClient, method, defaults);
        break;
    }
  }
  return Object.freeze(methods) as ServiceClient<T>;
}
