// A ttrpc server (unary requests, as ttrpc v1.1 used by containerd 1.6): decodes Request frames,
// dispatches "/<service>/<method>" to handlers, and answers with Response frames carrying a
// google.rpc.Status. Requests on one connection are handled concurrently.
import { createServer, type Server, type Socket } from "node:net";
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { RequestSchema, ResponseSchema } from "../gen/ttrpc/request_pb.js";
import { BerthError } from "../errdefs/errors.js";
import { grpcCodeOf } from "../errdefs/grpc-status.js";
import { encodeFrame, FrameDecoder, MessageType } from "./frame.js";
import { peerCredentials, type PeerCredentials } from "../sys/peer-credentials.js";

export interface TtrpcCallContext {
  metadata: Map<string, string[]>;
  signal: AbortSignal;
}

type UnaryHandler = (req: unknown, ctx: TtrpcCallContext) => Promise<unknown>;

export type TtrpcServiceImpl<T extends GenServiceMethods> = {
  [K in keyof T]?: T[K] extends { input: infer I extends DescMessage; output: infer O extends DescMessage }
    ? (req: MessageShape<I>, ctx: TtrpcCallContext) => Promise<MessageShape<O> | Record<string, unknown>>
    : never;
};

interface Route {
  input: DescMessage;
  output: DescMessage;
  handler: UnaryHandler;
}

export interface TtrpcServer {
  register<T extends GenServiceMethods>(service: GenService<T>, impl: TtrpcServiceImpl<T>): void;
  /** Connections open now. */
  readonly connections: number;
  listen(path: string): Promise<void>;
  close(): Promise<void>;
}

export interface TtrpcServerOptions {
  onError?: (err: unknown) => void;
  onDisconnect?: (remaining: number) => void;
  /**
   * Which peers may talk (SO_PEERCRED); by default only this process's own uid and gid, as
   * containerd's ttrpc servers. A refused peer is disconnected before any request is read.
   */
  authorize?: (peer: PeerCredentials) => boolean;
}

/** containerd's check: the peer runs as our uid and gid. */
export const sameUser = (peer: PeerCredentials): boolean =>
  peer.uid === process.getuid?.() && peer.gid === process.getgid?.();

export function createTtrpcServer(opts: TtrpcServerOptions = {}): TtrpcServer {
  const authorize = opts.authorize ?? sameUser;
  const routes = new Map<string, Route>();
  const sockets = new Set<Socket>();
  let server: Server | undefined;

  const handleConnection = (sock: Socket) => {
    const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd ?? -1;
    let peer: PeerCredentials | undefined;
    try {
      peer = fd >= 0 ? peerCredentials(fd) : undefined;
    } catch (err) {
      opts.onError?.(err);
    }
    if (!peer || !authorize(peer)) {
      opts.onError?.(
        new Error(
          `ttrpc: refused a connection from ${peer ? `uid ${peer.uid} gid ${peer.gid}` : "an unknown peer"}`,
        ),
      );
      sock.destroy();
      return;
    }
    sockets.add(sock);
    const decoder = new FrameDecoder();
    const controller = new AbortController();
    sock.on("close", () => {
      sockets.delete(sock);
      controller.abort();
      opts.onDisconnect?.(sockets.size);
    });
    sock.on("error", (err) => opts.onError?.(err));
    sock.on("data", (chunk: Buffer) => {
      let frames;
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        opts.onError?.(err);
        sock.destroy();
        return;
      }
      for (const frame of frames) {
        if (frame.type !== MessageType.request) continue;
        void dispatch(frame.payload, controller.signal).then((response) => {
          if (!sock.destroyed)
            sock.write(
              encodeFrame({
                streamId: frame.streamId,
                type: MessageType.response,
                flags: 0,
                payload: response,
              }),
            );
        });
      }
    });
  };

  async function dispatch(payload: Buffer, signal: AbortSignal): Promise<Buffer> {
    const status = (code: number, message: string) =>
      Buffer.from(toBinary(ResponseSchema, create(ResponseSchema, { status: { code, message } })));
    let req;
    try {
      req = fromBinary(RequestSchema, payload);
    } catch {
      return status(3, "invalid ttrpc request");
    }
    const route = routes.get(`/${req.service}/${req.method}`);
    if (!route) return status(12, `/${req.service}/${req.method} not implemented`);
    const metadata = new Map<string, string[]>();
    for (const kv of req.metadata) metadata.set(kv.key, [...(metadata.get(kv.key) ?? []), kv.value]);
    try {
      const input = fromBinary(route.input, req.payload);
      const out = await route.handler(input, { metadata, signal });
      const msg = create(route.output, out as MessageShape<DescMessage>);
      return Buffer.from(
        toBinary(
          ResponseSchema,
          create(ResponseSchema, { status: { code: 0 }, payload: toBinary(route.output, msg) }),
        ),
      );
    } catch (err) {
      return status(grpcCodeOf(err), BerthError.from(err).message);
    }
  }

  return {
    get connections() {
      return sockets.size;
    },
    register(service, impl) {
      for (const method of service.methods) {
        const handler = (impl as Record<string, UnaryHandler | undefined>)[method.localName];
        if (!handler) continue;
        routes.set(`/${service.typeName}/${method.name}`, {
          input: method.input,
          output: method.output,
          handler,
        });
      }
    },
    listen(path) {
      server = createServer(handleConnection);
      const s = server;
      return new Promise((resolve, reject) => {
        s.once("error", reject);
        s.listen(path, () => resolve());
      });
    },
    close() {
      for (const sock of sockets) sock.destroy();
      const s = server;
      return new Promise((resolve) => (s ? s.close(() => resolve()) : resolve()));
    },
  };
}
