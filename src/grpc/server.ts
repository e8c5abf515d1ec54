// berthd's gRPC server: gRPC over HTTP/2 (the "gRPC over HTTP2" protocol: length-prefixed
// messages, grpc-status trailers, grpc-timeout) on our own HTTP/2 connection. It replaced
// @grpc/grpc-js's server, whose per-call cost (an Http2Stream duplex, header objects, interceptor
// chain) was two thirds of berthd's CPU for a `ctr run`; see docs/architecture.md. Methods are
// registered by path with raw bytes in and out; decoding is the service adapter's business.
import { createServer, type Server, type Socket } from "node:net";
import { gunzipSync } from "node:zlib";
import { GrpcCode } from "../errdefs/grpc-status.js";
import { encodeHeaderBlock, type HeaderList } from "./hpack.js";
import {
  Http2Connection,
  Http2Stream,
  defaultHttp2Limits,
  type Http2Limits,
  type StreamEvents,
} from "./http2-connection.js";
import { ErrorCode } from "./http2-frames.js";

/** The request metadata: custom headers, lower-case names, `-bin` values still base64. */
export class CallMetadata {
  constructor(private readonly fields: HeaderList) {}

  /** The first value of name, if any. */
  get(name: string): string | undefined {
    for (const [n, v] of this.fields) if (n === name) return v;
    return undefined;
  }

  getAll(name: string): string[] {
    return this.fields.filter(([n]) => n === name).map(([, v]) => v);
  }
}

export interface ServerCall {
  readonly path: string;
  readonly metadata: CallMetadata;
  /** Aborted when the client cancels, the deadline passes or the connection goes. */
  readonly signal: AbortSignal;
  /** The requests of a client- or bidi-streaming method, as they arrive. */
  requests(): AsyncIterable<Buffer>;
  /** Sends one encoded message; false means wait for drain() before the next. */
  write(message: Uint8Array): boolean;
  /** Resolves when write() may be called again, or the call is over. */
  drain(): Promise<void>;
  /** Ends the call with a status; the first call wins, later ones are ignored. */
  finish(code: number, message?: string): void;
  readonly finished: boolean;
  /** The status the call ended with (undefined when it was cancelled, or is not over). */
  readonly code: number | undefined;
}

export interface MethodDefinition {
  requestStream: boolean;
  responseStream: boolean;
  /** Called once per call; for methods without request streaming, with the request's bytes. */
  handler(call: ServerCall, request: Buffer | undefined): void;
}

export interface GrpcServerOptions {
  maxReceiveMessageLength: number;
  maxSendMessageLength: number;
  http2?: Partial<Http2Limits>;
}

const RESPONSE_HEADERS = encodeHeaderBlock([
  [":status", "200"],
  ["content-type", "application/grpc"],
]);
const OK_TRAILERS = encodeHeaderBlock([["grpc-status", "0"]]);

/** grpc-message is percent-encoded: printable ASCII but '%' passes, the rest as %XX of UTF-8. */
export function encodeGrpcMessage(message: string): string {
  let out = "";
  for (const b of Buffer.from(message, "utf8")) {
    out +=
      b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

function trailerBlock(code: number, message: string | undefined, withHeaders: boolean): Buffer {
  if (code === GrpcCode.OK && !message && !withHeaders) return OK_TRAILERS;
  const fields: [string, string][] = [];
  if (withHeaders) fields.push([":status", "200"], ["content-type", "application/grpc"]);
  fields.push(["grpc-status", String(code)]);
  if (message) fields.push(["grpc-message", encodeGrpcMessage(message)]);
  return encodeHeaderBlock(fields);
}

const MAX_TIMER_MS = 0x7fffffff;
const TIMEOUT_UNITS: Record<string, number> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 0.001,
  n: 0.000001,
};

/** grpc-timeout ("1-8 digits + unit") in ms; undefined when absent or malformed. */
export function parseGrpcTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!m) return undefined;
  return Number(m[1]) * TIMEOUT_UNITS[m[2]!]!;
}

/** Reassembles length-prefixed gRPC messages from DATA chunks. */
class MessageReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxLength: number) {}

  /** Appends chunk and returns the complete messages (compressed flag, bytes) it finished. */
  push(chunk: Buffer): { compressed: boolean; bytes: Buffer }[] | MessageTooLarge {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const out: { compressed: boolean; bytes: Buffer }[] = [];
    while (this.buffered >= 5) {
      const head = this.chunks[0]!.length >= 5 ? this.chunks[0]! : this.collapse();
      const length = head.readUInt32BE(1);
      if (length > this.maxLength) return new MessageTooLarge(length, this.maxLength);
      if (this.buffered < 5 + length) break;
      const whole = head.length >= 5 + length ? head : this.collapse();
      out.push({ compressed: whole[0] === 1, bytes: whole.subarray(5, 5 + length) });
      const rest = whole.subarray(5 + length);
      this.chunks[0] = rest;
      this.buffered -= 5 + length;
      if (rest.length === 0) this.chunks.shift();
    }
    return out;
  }

  get pending(): number {
    return this.buffered;
  }

  private collapse(): Buffer {
    const all = Buffer.concat(this.chunks);
    this.chunks = [all];
    return all;
  }
}

class MessageTooLarge {
  constructor(
    readonly length: number,
    readonly max: number,
  ) {}
}

/**
 * The request messages of a streaming call, consumed by an async iterator. The client is credited
 * (HTTP/2 flow control) for bytes as they arrive while fewer than QUEUE_LIMIT bytes of complete
 * messages wait for the handler; beyond that, credit waits until the handler takes messages.
 * Crediting only on consumption would deadlock on a message larger than the stream window.
 */
const QUEUE_LIMIT = 4 << 20;

class RequestQueue implements AsyncIterable<Buffer> {
  private readonly items: Buffer[] = [];
  private queuedBytes = 0;
  private withheld = 0;
  private ended = false;
  private error: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly stream: Http2Stream) {}

  /** Received wire bytes (any part of a message). */
  received(n: number): void {
    if (this.queuedBytes < QUEUE_LIMIT) this.stream.consumed(n);
    else this.withheld += n;
  }

  push(bytes: Buffer): void {
    this.items.push(bytes);
    this.queuedBytes += bytes.length;
    this.notify();
  }

  end(): void {
    this.ended = true;
    this.notify();
  }

  fail(err: Error): void {
    this.error = err;
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    for (;;) {
      const item = this.items.shift();
      if (item) {
        this.queuedBytes -= item.length;
        if (this.withheld > 0 && this.queuedBytes < QUEUE_LIMIT) {
          this.stream.consumed(this.withheld);
          this.withheld = 0;
        }
        yield item;
        continue;
      }
      if (this.error) throw this.error;
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}

class AbortError extends Error {
  readonly code = "ABORT_ERR";
  constructor() {
    super("The operation was aborted");
    this.name = "AbortError";
  }
}

class Call implements ServerCall, StreamEvents {
  readonly metadata: CallMetadata;
  finished = false;
  code: number | undefined;
  private controller: AbortController | undefined;
  private readonly reader: MessageReader;
  private request: Buffer | undefined;
  private requestCount = 0;
  private queue: RequestQueue | undefined;
  private deadline: NodeJS.Timeout | undefined;
  private drainWaiters: (() => void)[] = [];
  private started = false;

  constructor(
    readonly path: string,
    private readonly stream: Http2Stream,
    private readonly method: MethodDefinition,
    headers: HeaderList,
    private readonly encoding: string | undefined,
    private readonly server: GrpcServer,
    timeoutMs: number | undefined,
  ) {
    this.metadata = new CallMetadata(headers);
    this.reader = new MessageReader(server.options.maxReceiveMessageLength);
    if (method.requestStream) this.queue = new RequestQueue(stream);
    // setTimeout cannot wait longer than 2^31-1 ms (it would fire at once): a longer deadline
    // (grpc-go sends "2592000S" for 30 days) is as good as none.
    if (timeoutMs !== undefined && timeoutMs <= MAX_TIMER_MS) {
      this.deadline = setTimeout(() => {
        this.finish(GrpcCode.DEADLINE_EXCEEDED, "context deadline exceeded");
        // A handler reading requests must see the end too, or it waits for them forever.
        this.queue?.fail(new AbortError());
        this.abort();
      }, timeoutMs);
    }
  }

  get signal(): AbortSignal {
    this.controller ??= new AbortController();
    return this.controller.signal;
  }

  /** Starts the handler: at once for streaming requests, after the request for the others. */
  start(): void {
    if (this.method.requestStream) {
      this.started = true;
      this.invoke(undefined);
    }
  }

  requests(): AsyncIterable<Buffer> {
    if (!this.queue) throw new Error(`${this.path} does not stream requests`);
    return this.queue;
  }

  onData(stream: Http2Stream, chunk: Buffer, endStream: boolean): void {
    if (this.finished) {
      stream.consumed(chunk.length);
      return;
    }
    const messages = this.reader.push(chunk);
    if (messages instanceof MessageTooLarge) {
      this.finishWithError(
        GrpcCode.RESOURCE_EXHAUSTED,
        `grpc: received message larger than max (${messages.length} vs. ${messages.max})`,
      );
      return;
    }
    // Unary requests are bounded by the message size limit; streams by the queue's limit.
    if (this.queue) this.queue.received(chunk.length);
    else stream.consumed(chunk.length);
    for (const m of messages) {
      let bytes = m.bytes;
      if (m.compressed) {
        const decoded = this.decompress(bytes);
        if (!decoded) return;
        bytes = decoded;
      }
      if (this.queue) {
        this.queue.push(bytes);
      } else {
        this.requestCount++;
        this.request = bytes;
      }
    }
    if (!endStream) return;
    if (this.reader.pending > 0) {
      this.finishWithError(GrpcCode.INTERNAL, "grpc: request ended in the middle of a message");
      return;
    }
    if (this.queue) {
      this.queue.end();
      return;
    }
    if (this.requestCount !== 1) {
      this.finishWithError(
        this.requestCount === 0 ? GrpcCode.INTERNAL : GrpcCode.UNIMPLEMENTED,
        this.requestCount === 0
          ? "grpc: the client sent no request message"
          : `grpc: ${this.requestCount} request messages for a unary request`,
      );
      return;
    }
    this.started = true;
    this.invoke(this.request);
  }

  onAbort(): void {
    this.queue?.fail(new AbortError());
    this.settle();
    this.abort();
  }

  onDrain(): void {
    this.releaseDrainWaiters();
  }

  write(message: Uint8Array): boolean {
    if (this.finished) return false;
    if (message.length > this.server.options.maxSendMessageLength) {
      this.finishWithError(
        GrpcCode.RESOURCE_EXHAUSTED,
        `grpc: trying to send message larger than max (${message.length} vs. ${this.server.options.maxSendMessageLength})`,
      );
      return false;
    }
    this.stream.respond(RESPONSE_HEADERS);
    const framed = Buffer.allocUnsafe(5 + message.length);
    framed[0] = 0;
    framed.writeUInt32BE(message.length, 1);
    framed.set(message, 5);
    return this.stream.write(framed);
  }

  drain(): Promise<void> {
    if (this.finished) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  finish(code: number, message?: string): void {
    if (this.finished) return;
    this.code = code;
    this.settle();
    if (this.stream.closed) return;
    this.stream.end(trailerBlock(code, message, !this.stream.headersSent));
    this.stream.headersSent = true;
  }

  private finishWithError(code: number, message: string): void {
    const wasStarted = this.started;
    this.finish(code, message);
    // The handler may be reading requests that will never come.
    this.queue?.fail(new Error(message));
    if (!wasStarted) this.abort();
  }

  private decompress(bytes: Buffer): Buffer | undefined {
    if (this.encoding === "gzip") {
      try {
        return gunzipSync(bytes, { maxOutputLength: this.server.options.maxReceiveMessageLength });
      } catch (err) {
        this.finishWithError(
          GrpcCode.RESOURCE_EXHAUSTED,
          `grpc: failed to decompress the message: ${String(err)}`,
        );
        return undefined;
      }
    }
    this.finishWithError(
      this.encoding === undefined || this.encoding === "identity"
        ? GrpcCode.INTERNAL
        : GrpcCode.UNIMPLEMENTED,
      this.encoding === undefined || this.encoding === "identity"
        ? "grpc: compressed flag set with identity or empty encoding"
        : `grpc: Decompressor is not installed for grpc-encoding "${this.encoding}"`,
    );
    return undefined;
  }

  private invoke(request: Buffer | undefined): void {
    try {
      this.method.handler(this, request);
    } catch (err) {
      this.finish(GrpcCode.UNKNOWN, err instanceof Error ? err.message : String(err));
    }
  }

  /** The call is over for this side: no deadline, no waiting writers, out of the server's set. */
  private settle(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.deadline) clearTimeout(this.deadline);
    this.releaseDrainWaiters();
    this.server.callEnded(this);
  }

  abort(): void {
    this.controller ??= new AbortController();
    if (!this.controller.signal.aborted) this.controller.abort();
  }

  private releaseDrainWaiters(): void {
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of w) resolve();
  }
}

export class GrpcServer {
  private readonly methods = new Map<string, MethodDefinition>();
  private readonly connections = new Set<Http2Connection>();
  private readonly calls = new Set<Call>();
  private readonly limits: Http2Limits;
  private listener: Server | undefined;
  private idleWaiters: (() => void)[] = [];
  private closing = false;
  /** Calls in flight other than server-streaming ones (which may last as long as a subscription). */
  private busyCalls = 0;
  private readonly counted = new WeakSet<Call>();
  private lastActivity = performance.now();

  constructor(readonly options: GrpcServerOptions) {
    this.limits = { ...defaultHttp2Limits, ...options.http2 };
  }

  register(path: string, method: MethodDefinition): void {
    if (this.methods.has(path)) throw new Error(`method ${path} registered twice`);
    this.methods.set(path, method);
  }

  /** Serves on a unix socket path (which must not exist). */
  listen(path: string): Promise<void> {
    const listener = createServer({ pauseOnConnect: false }, (socket) => this.accept(socket));
    this.listener = listener;
    return new Promise((resolve, reject) => {
      listener.once("error", reject);
      listener.listen(path, () => {
        listener.off("error", reject);
        resolve();
      });
    });
  }

  /** Stops accepting connections and calls, and resolves once in-flight calls have finished. */
  shutdown(): Promise<void> {
    this.closing = true;
    this.listener?.close();
    for (const c of this.connections) c.shutdown();
    // Done when every call has ended and every connection has closed: a connection closes once
    // its last stream's trailers (which may wait on the client's window) are out.
    if (this.idle) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private get idle(): boolean {
    return this.calls.size === 0 && this.connections.size === 0;
  }

  /** Cancels every call and drops every connection. */
  forceShutdown(): void {
    this.closing = true;
    this.listener?.close();
    for (const call of [...this.calls]) call.onAbort();
    for (const c of [...this.connections]) c.destroy();
    this.releaseIdle();
  }

  /** Milliseconds since a call last started or ended, or 0 while a call is in flight. */
  quietFor(): number {
    return this.busyCalls > 0 ? 0 : performance.now() - this.lastActivity;
  }

  /** For Call: the call's status has been sent or the stream is gone. */
  callEnded(call: Call): void {
    this.calls.delete(call);
    this.lastActivity = performance.now();
    if (this.counted.delete(call)) this.busyCalls--;
    if (this.closing && this.idle) this.releaseIdle();
  }

  private releaseIdle(): void {
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of w) resolve();
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const connection = new Http2Connection(
      socket,
      {
        onStream: (stream, headers, endStream, oversize) =>
          this.onStream(stream, headers, endStream, oversize),
        onClose: (c) => {
          this.connections.delete(c);
          if (this.closing && this.idle) this.releaseIdle();
        },
      },
      this.limits,
    );
    this.connections.add(connection);
  }

  private onStream(stream: Http2Stream, headers: HeaderList, endStream: boolean, oversize: boolean): void {
    let path: string | undefined;
    let method: string | undefined;
    let contentType: string | undefined;
    let timeout: string | undefined;
    let encoding: string | undefined;
    const metadata: HeaderList = [];
    for (const field of headers) {
      const name = field[0];
      if (name.charCodeAt(0) === 58 /* ':' */) {
        if (name === ":path") path = field[1];
        else if (name === ":method") method = field[1];
        continue;
      }
      switch (name) {
        case "content-type":
          contentType = field[1];
          break;
        case "grpc-timeout":
          timeout = field[1];
          break;
        case "grpc-encoding":
          encoding = field[1];
          break;
        case "te":
        case "grpc-accept-encoding":
          break;
        default:
          metadata.push(field);
      }
    }
    const refuse = (code: number, message: string) => {
      stream.end(trailerBlock(code, message, true));
      stream.headersSent = true;
    };
    if (method !== "POST" || path === undefined) {
      stream.reset(ErrorCode.PROTOCOL_ERROR);
      return;
    }
    if (contentType === undefined || !/^application\/grpc(?:[+;]|$)/.test(contentType)) {
      refuse(GrpcCode.INTERNAL, `invalid gRPC request content-type ${JSON.stringify(contentType ?? "")}`);
      return;
    }
    if (oversize) {
      refuse(GrpcCode.RESOURCE_EXHAUSTED, "header list larger than the advertised limit");
      return;
    }
    const def = this.methods.get(path);
    if (!def) {
      const slash = path.lastIndexOf("/");
      const service = path.slice(1, slash);
      const known = [...this.methods.keys()].some((p) => p.startsWith(`/${service}/`));
      refuse(
        GrpcCode.UNIMPLEMENTED,
        known
          ? `unknown method ${path.slice(slash + 1)} for service ${service}`
          : `unknown service ${service}`,
      );
      return;
    }
    if (this.closing) {
      refuse(GrpcCode.UNAVAILABLE, "the server is shutting down");
      return;
    }
    const call = new Call(path, stream, def, metadata, encoding, this, parseGrpcTimeout(timeout));
    this.calls.add(call);
    this.lastActivity = performance.now();
    if (def.requestStream || !def.responseStream) {
      this.counted.add(call);
      this.busyCalls++;
    }
    stream.events = call;
    call.start();
    if (endStream) call.onData(stream, Buffer.alloc(0), true);
  }
}
