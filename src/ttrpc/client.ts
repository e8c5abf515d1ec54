// A ttrpc client (unary, as ttrpc v1.1 used by containerd 1.6): many concurrent requests on one
// unix socket connection, odd stream ids from 1, responses matched by stream id in any order,
// per-call timeouts sent as timeout_nano, metadata, and a google.rpc.Status mapped onto BerthError.
import { connect, type Socket } from "node:net";
import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { RequestSchema, ResponseSchema } from "../gen/ttrpc/request_pb.js";
import { BerthError } from "../errdefs/errors.js";
import { errorCodeOfGrpc } from "../errdefs/grpc-status.js";
import { encodeFrame, FrameDecoder, MessageType } from "./frame.js";

export interface TtrpcCallOptions {
  /** Sent as request metadata; a key may carry several values. */
  metadata?: Record<string, string | string[]>;
  /** Relative deadline: sent to the server and enforced here (DeadlineExceeded). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface TtrpcClient {
  call<I extends DescMessage, O extends DescMessage>(
    service: string,
    method: string,
    input: I,
    output: O,
    req: MessageInitShape<I>,
    opts?: TtrpcCallOptions,
  ): Promise<MessageShape<O>>;
  /** Resolves once the connection is closed (by either side); pending calls fail Unavailable. */
  readonly closed: Promise<void>;
  isClosed(): boolean;
  close(): void;
}

/** A typed view of one service: `client.create(req)` for each method, by its local name. */
export type TtrpcServiceClient<T extends GenServiceMethods> = {
  [K in keyof T]: T[K] extends { input: infer I extends DescMessage; output: infer O extends DescMessage }
    ? (req: MessageInitShape<I>, opts?: TtrpcCallOptions) => Promise<MessageShape<O>>
    : never;
};

interface Pending {
  resolve: (payload: Buffer) => void;
  reject: (err: unknown) => void;
}

const maxStreamId = 0xffffffff;

/** Connects to a ttrpc server on a unix socket path (a `unix://` prefix is accepted). */
export function connectTtrpc(address: string, opts: { timeoutMs?: number } = {}): Promise<TtrpcClient> {
  const path = address.startsWith("unix://") ? address.slice("unix://".length) : address;
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new BerthError("deadline-exceeded", `ttrpc: dial ${path}: timed out`));
    }, opts.timeoutMs ?? 10_000);
    sock.once("error", (err) => {
      clearTimeout(timer);
      reject(new BerthError("unavailable", `ttrpc: dial ${path}: ${err.message}`, { cause: err }));
    });
    sock.once("connect", () => {
      clearTimeout(timer);
      resolve(clientOn(sock, path));
    });
  });
}

function clientOn(sock: Socket, path: string): TtrpcClient {
  const pending = new Map<number, Pending>();
  const decoder = new FrameDecoder();
  let nextId = 1;
  let closedFlag = false;
  let closeReason: Error | undefined;
  let markClosed!: () => void;
  const closed = new Promise<void>((r) => (markClosed = r));

  const shutdown = (reason: Error) => {
    if (closedFlag) return;
    closedFlag = true;
    closeReason = reason;
    for (const p of pending.values()) p.reject(reason);
    pending.clear();
    sock.destroy();
    markClosed();
  };
  sock.on("data", (chunk: Buffer) => {
    let frames;
    try {
      frames = decoder.push(chunk);
    } catch (err) {
      shutdown(new BerthError("unavailable", `ttrpc: ${path}: ${(err as Error).message}`));
      return;
    }
    for (const f of frames) {
      if (f.type !== MessageType.response) continue;
      const p = pending.get(f.streamId);
      if (!p) continue;
      pending.delete(f.streamId);
      p.resolve(f.payload);
    }
  });
  sock.on("error", (err) => shutdown(new BerthError("unavailable", `ttrpc: ${path}: ${err.message}`)));
  sock.on("close", () => shutdown(new BerthError("unavailable", `ttrpc: ${path}: connection closed`)));

  return {
    closed,
    isClosed: () => closedFlag,
    close: () => shutdown(new BerthError("unavailable", `ttrpc: ${path}: client closed`)),
    async call(service, method, input, output, req, opts = {}) {
      if (closedFlag) throw closeReason ?? new BerthError("unavailable", "ttrpc: closed");
      opts.signal?.throwIfAborted();
      const streamId = nextId;
      nextId = nextId + 2 > maxStreamId ? 1 : nextId + 2;
      const metadata = Object.entries(opts.metadata ?? {}).flatMap(([key, v]) =>
        (Array.isArray(v) ? v : [v]).map((value) => ({ key, value })),
      );
      const request = create(RequestSchema, {
        service,
        method,
        payload: toBinary(input, create(input, req)),
        timeoutNano: opts.timeoutMs === undefined ? 0n : BigInt(Math.round(opts.timeoutMs * 1e6)),
        metadata,
      });
      const payload = await new Promise<Buffer>((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined;
        const onAbort = () => finish(new BerthError("canceled", `ttrpc: /${service}/${method}: canceled`));
        const finish = (err: unknown, value?: Buffer) => {
          if (timer) clearTimeout(timer);
          opts.signal?.removeEventListener("abort", onAbort);
          pending.delete(streamId);
          if (err) reject(BerthError.from(err));
          else resolve(value as Buffer);
        };
        pending.set(streamId, { resolve: (b) => finish(undefined, b), reject: (e) => finish(e) });
        if (opts.timeoutMs !== undefined)
          timer = setTimeout(
            () =>
              finish(new BerthError("deadline-exceeded", `ttrpc: /${service}/${method}: deadline exceeded`)),
            opts.timeoutMs,
          );
        opts.signal?.addEventListener("abort", onAbort, { once: true });
        sock.write(
          encodeFrame({
            streamId,
            type: MessageType.request,
            flags: 0,
            payload: Buffer.from(toBinary(RequestSchema, request)),
          }),
        );
      });
      const response = fromBinary(ResponseSchema, payload);
      const status = response.status;
      if (status && status.code !== 0) throw new BerthError(errorCodeOfGrpc(status.code), status.message);
      return fromBinary(output, response.payload);
    },
  };
}

/** Wraps a client as a typed service client (methods by their local names, e.g. `create`). */
export function ttrpcService<T extends GenServiceMethods>(
  client: TtrpcClient,
  service: GenService<T>,
  defaults: TtrpcCallOptions = {},
): TtrpcServiceClient<T> {
  const out: Record<string, unknown> = {};
  for (const m of service.methods) {
    out[m.localName] = (req: MessageInitShape<DescMessage>, opts: TtrpcCallOptions = {}) =>
      client.call(service.typeName, m.name, m.input, m.output, req, {
        ...defaults,
        ...opts,
        metadata: { ...defaults.metadata, ...opts.metadata },
      });
  }
  return out as TtrpcServiceClient<T>;
}
