// The server side of one HTTP/2 connection (RFC 9113): parses frames off the socket, keeps the
// HPACK decoder and both directions' flow-control windows, and hands each client stream to the
// layer above (grpc/server.ts) as an Http2Stream. Frames go out through one corked socket per
// event-loop turn, so a unary call's headers, message and trailers leave in a single write.
import type { Socket } from "node:net";
import {
  CONNECTION_PREFACE,
  ConnectionError,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW,
  ErrorCode,
  Flag,
  FRAME_HEADER_LENGTH,
  FrameType,
  MAX_ALLOWED_FRAME_SIZE,
  MAX_WINDOW,
  Setting,
  StreamError,
  frame,
  frameHeader,
  goAwayFrame,
  rstStreamFrame,
  settingsFrame,
  windowUpdateFrame,
} from "./http2-frames.js";
import { HpackDecoder, HpackError, type HeaderList } from "./hpack.js";

export interface Http2Limits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS we advertise and enforce. */
  maxConcurrentStreams: number;
  /** SETTINGS_INITIAL_WINDOW_SIZE we advertise: what a stream may send before we credit it. */
  streamWindow: number;
  /** The connection-level receive window we grant right after the preface. */
  connectionWindow: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE we advertise; also bounds a header block's encoded size. */
  maxHeaderListSize: number;
}

export const defaultHttp2Limits: Http2Limits = {
  maxConcurrentStreams: 1000,
  streamWindow: 1 << 20,
  connectionWindow: 16 << 20,
  maxHeaderListSize: 1 << 20,
};

const HEADER_TABLE_SIZE = 4096;
/** Unsent socket bytes above which no more DATA is framed until the socket drains. */
const SOCKET_HIGH_WATER = 1 << 20;
/** Unsent socket bytes at which the connection is given up. */
const SOCKET_LIMIT = 64 << 20;
/** The longest a PING's acknowledgement waits to leave with other frames. */
const PING_ACK_DELAY_MS = 2;

/** What the stream's owner is told. */
export interface StreamEvents {
  /** Request bytes (DATA payload, padding removed); endStream once the client half-closed. */
  onData(stream: Http2Stream, chunk: Buffer, endStream: boolean): void;
  /** The stream was reset by the client or the connection went away before the stream closed. */
  onAbort(stream: Http2Stream): void;
  /** Outgoing data fell below the low-water mark after having been above it. */
  onDrain(stream: Http2Stream): void;
}

/** Bytes queued on a stream above which write() asks its caller to wait for onDrain. */
const HIGH_WATER = 256 * 1024;

/** One client-initiated stream. */
export class Http2Stream {
  /** Set by the layer above when it accepts the stream. */
  events: StreamEvents | undefined;
  /** Arbitrary owner state. */
  owner: unknown;
  sendWindow: number;
  recvWindow: number;
  /** Received bytes not yet credited back to the client (stream level). */
  uncredited = 0;
  remoteClosed = false;
  localClosed = false;
  private readonly queue: Buffer[] = [];
  private queueOffset = 0;
  queuedBytes = 0;
  private trailers: Buffer | undefined;
  private aboveHighWater = false;
  headersSent = false;

  constructor(
    readonly id: number,
    readonly connection: Http2Connection,
    sendWindow: number,
    recvWindow: number,
  ) {
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  get closed(): boolean {
    return this.localClosed && this.remoteClosed;
  }

  /** Sends the response header block (HEADERS, no END_STREAM). */
  respond(block: Buffer): void {
    if (this.localClosed || this.headersSent) return;
    this.headersSent = true;
    this.connection.sendHeaders(this.id, block, false);
  }

  /** Queues DATA; false once the queue is above the high-water mark (wait for onDrain). */
  write(data: Buffer): boolean {
    if (this.localClosed || this.trailers) return false;
    if (data.length > 0) {
      this.queue.push(data);
      this.queuedBytes += data.length;
      this.connection.flushStream(this);
    }
    if (this.queuedBytes > HIGH_WATER) this.aboveHighWater = true;
    return !this.aboveHighWater;
  }

  /** Sends the trailer block with END_STREAM once the queued data has gone out. */
  end(trailerBlock: Buffer): void {
    if (this.localClosed || this.trailers) return;
    this.trailers = trailerBlock;
    this.connection.flushStream(this);
  }

  /** Ends the stream at once with RST_STREAM; queued data is dropped. */
  reset(code: number): void {
    if (this.closed) return;
    this.dropQueue();
    this.localClosed = true;
    this.remoteClosed = true;
    this.connection.resetStream(this, code);
  }

  /** Credits the client for n received bytes the owner has consumed (stream-level window). */
  consumed(n: number): void {
    if (this.remoteClosed) return;
    this.uncredited += n;
    if (this.uncredited >= this.connection.limits.streamWindow / 2) {
      this.connection.send(windowUpdateFrame(this.id, this.uncredited));
      this.recvWindow += this.uncredited;
      this.uncredited = 0;
    }
  }

  /** Moves as much queued data as both windows allow into frames; true when all went out. */
  pump(maxFrameSize: number, connectionWindow: () => number, take: (n: number) => void): void {
    while (this.queuedBytes > 0) {
      const allowed = Math.min(this.sendWindow, connectionWindow(), maxFrameSize);
      if (allowed <= 0) return;
      const head = this.queue[0]!;
      const available = head.length - this.queueOffset;
      const n = Math.min(allowed, available);
      const chunk =
        this.queueOffset === 0 && n === head.length
          ? head
          : head.subarray(this.queueOffset, this.queueOffset + n);
      this.queueOffset += n;
      if (this.queueOffset === head.length) {
        this.queue.shift();
        this.queueOffset = 0;
      }
      this.queuedBytes -= n;
      this.sendWindow -= n;
      take(n);
      this.connection.sendData(this.id, chunk);
    }
    if (this.trailers && !this.localClosed) {
      const block = this.trailers;
      this.trailers = undefined;
      this.localClosed = true;
      this.connection.sendHeaders(this.id, block, true);
      this.connection.streamLocallyClosed(this);
    }
    if (this.aboveHighWater && this.queuedBytes <= HIGH_WATER / 4) {
      this.aboveHighWater = false;
      this.events?.onDrain(this);
    }
  }

  get hasPending(): boolean {
    return this.queuedBytes > 0 || this.trailers !== undefined;
  }

  private dropQueue(): void {
    this.queue.length = 0;
    this.queueOffset = 0;
    this.queuedBytes = 0;
    this.trailers = undefined;
  }
}

export interface ConnectionHandler {
  /** A new stream's request headers. The handler sets stream.events or resets the stream. */
  onStream(stream: Http2Stream, headers: HeaderList, endStream: boolean, oversize: boolean): void;
  /** The connection is gone (after every open stream's onAbort). */
  onClose(connection: Http2Connection): void;
}

type State = "preface" | "settings" | "open" | "closed";

export class Http2Connection {
  private state: State = "preface";
  private buffer: Buffer | undefined;
  private readonly decoder: HpackDecoder;
  private readonly streams = new Map<number, Http2Stream>();
  private readonly blocked = new Set<Http2Stream>();
  private lastStreamId = 0;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  private connectionSendWindow = DEFAULT_WINDOW;
  private connectionUncredited = 0;
  private goingAway = false;
  private pingAcks: Buffer[] = [];
  private pingTimer: NodeJS.Timeout | undefined;
  /** A connection error is being sent: nothing more is read or written. */
  private failing = false;
  private corked = false;
  /** Frames of a socket read are being handled. */
  private reading = false;
  // A header block being continued: the stream it opens and its fragments.
  private continuation:
    | { streamId: number; endStream: boolean; fragments: Buffer[]; size: number }
    | undefined;

  constructor(
    readonly socket: Socket,
    private readonly handler: ConnectionHandler,
    readonly limits: Http2Limits = defaultHttp2Limits,
  ) {
    this.decoder = new HpackDecoder({
      maxTableSize: HEADER_TABLE_SIZE,
      maxHeaderListSize: limits.maxHeaderListSize,
    });
    socket.on("data", (chunk: Buffer) => this.onSocketData(chunk));
    socket.on("error", () => this.destroy());
    socket.on("close", () => this.destroy());
    socket.on("end", () => this.destroy());
    socket.on("drain", () => this.flushBlocked());
    this.send(
      settingsFrame([
        [Setting.MAX_CONCURRENT_STREAMS, limits.maxConcurrentStreams],
        [Setting.INITIAL_WINDOW_SIZE, limits.streamWindow],
        [Setting.MAX_HEADER_LIST_SIZE, limits.maxHeaderListSize],
      ]),
    );
    if (limits.connectionWindow > DEFAULT_WINDOW) {
      this.send(windowUpdateFrame(0, limits.connectionWindow - DEFAULT_WINDOW));
    }
  }

  get isClosed(): boolean {
    return this.state === "closed";
  }

  get openStreams(): number {
    return this.streams.size;
  }

  /** Stops accepting streams (GOAWAY); the connection closes once the open ones are done. */
  shutdown(): void {
    if (this.goingAway || this.state === "closed") return;
    this.goingAway = true;
    this.send(goAwayFrame(this.lastStreamId, ErrorCode.NO_ERROR));
    this.closeIfIdle();
  }

  /** Ends the connection now: every open stream is aborted. */
  destroy(): void {
    if (this.state === "closed") return;
    this.state = "closed";
    if (this.pingTimer) clearTimeout(this.pingTimer);
    this.socket.destroy();
    const open = [...this.streams.values()];
    this.streams.clear();
    this.blocked.clear();
    for (const s of open) {
      s.localClosed = true;
      s.remoteClosed = true;
      s.events?.onAbort(s);
    }
    this.handler.onClose(this);
  }

  // ---- output -------------------------------------------------------------------------------

  /** Queues bytes for the socket; everything queued in one turn leaves in one writev. */
  send(bytes: Buffer): void {
    if (this.state === "closed" || this.failing) return;
    if (this.socket.writableLength > SOCKET_LIMIT) {
      // Only control frames (PING and SETTINGS acknowledgements, resets) can pile up this far:
      // a client flooding them without reading the answers.
      this.fail(ErrorCode.ENHANCE_YOUR_CALM, "the client does not read");
      return;
    }
    if (this.pingAcks.length > 0) this.flushPingAcks();
    if (bytes.length > 0) this.write(bytes);
  }

  /** Writes to the socket, corked until the end of this turn or the end of a response. */
  private write(bytes: Buffer): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => this.uncork());
    }
    this.socket.write(bytes);
  }

  /** Sends what is corked now (one writev). */
  private uncork(): void {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  }

  /**
   * Answers a PING with the next frames we send, or within PING_ACK_DELAY_MS. grpc-go's client
   * pings after every response it reads (to estimate bandwidth-delay for its window), and the
   * next request usually follows within a millisecond: its response carries the ACK, which
   * saves a write here and a wake-up of the client per call. Keepalive pings have timeouts of
   * seconds, and the estimate only sizes the client's receive window.
   */
  private acknowledgePing(payload: Buffer): void {
    this.pingAcks.push(frame(FrameType.PING, Flag.ACK, 0, payload));
    if (this.pingAcks.length >= 16) {
      this.send(Buffer.alloc(0));
      return;
    }
    this.pingTimer ??= setTimeout(() => {
      this.pingTimer = undefined;
      if (this.pingAcks.length > 0) this.send(Buffer.alloc(0));
    }, PING_ACK_DELAY_MS);
  }

  private flushPingAcks(): void {
    const acks = this.pingAcks;
    this.pingAcks = [];
    if (this.pingTimer) {
      clearTimeout(this.pingTimer);
      this.pingTimer = undefined;
    }
    for (const ack of acks) this.write(ack);
  }

  sendHeaders(streamId: number, block: Buffer, endStream: boolean): void {
    const max = this.peerMaxFrameSize;
    const endFlag = endStream ? Flag.END_STREAM : 0;
    if (block.length <= max) {
      this.send(frame(FrameType.HEADERS, Flag.END_HEADERS | endFlag, streamId, block));
      return;
    }
    this.send(frame(FrameType.HEADERS, endFlag, streamId, block.subarray(0, max)));
    for (let off = max; off < block.length; off += max) {
      const last = off + max >= block.length;
      this.send(
        frame(FrameType.CONTINUATION, last ? Flag.END_HEADERS : 0, streamId, block.subarray(off, off + max)),
      );
    }
  }

  sendData(streamId: number, chunk: Buffer): void {
    if (chunk.length <= 4096) {
      this.send(frame(FrameType.DATA, 0, streamId, chunk));
    } else {
      this.send(frameHeader(chunk.length, FrameType.DATA, 0, streamId));
      this.send(chunk);
    }
  }

  flushStream(stream: Http2Stream): void {
    stream.pump(
      this.peerMaxFrameSize,
      // A client that grants windows but does not read must not make us buffer without bound:
      // data waits in the streams' queues (whose writers wait for drain) until the socket drains.
      () => (this.socket.writableLength >= SOCKET_HIGH_WATER ? 0 : this.connectionSendWindow),
      (n) => {
        this.connectionSendWindow -= n;
      },
    );
    if (stream.hasPending && !stream.localClosed) this.blocked.add(stream);
    else this.blocked.delete(stream);
  }

  resetStream(stream: Http2Stream, code: number): void {
    this.send(rstStreamFrame(stream.id, code));
    this.forget(stream);
  }

  streamLocallyClosed(stream: Http2Stream): void {
    if (!stream.remoteClosed) {
      // The response is complete while the client is still sending: tell it to stop (as gRPC
      // servers do), and stop expecting its data.
      stream.remoteClosed = true;
      this.send(rstStreamFrame(stream.id, ErrorCode.NO_ERROR));
    }
    this.forget(stream);
    // A complete response leaves at once: the caller's bookkeeping after it (metrics, logs)
    // must not delay it. Responses that end while a read is being parsed (errors found there)
    // still share the turn's writev.
    if (!this.reading) this.uncork();
  }

  private forget(stream: Http2Stream): void {
    this.streams.delete(stream.id);
    this.blocked.delete(stream);
    this.closeIfIdle();
  }

  private closeIfIdle(): void {
    if (this.goingAway && this.streams.size === 0 && this.state !== "closed") {
      // Let the GOAWAY and the last responses out first; a client that keeps its end open after
      // that is cut off a second later.
      process.nextTick(() => {
        this.socket.end();
        setTimeout(() => this.destroy(), 1000).unref();
      });
    }
  }

  private flushBlocked(): void {
    for (const s of [...this.blocked]) {
      if (this.connectionSendWindow <= 0) return;
      this.flushStream(s);
    }
  }

  // ---- input --------------------------------------------------------------------------------

  private onSocketData(chunk: Buffer): void {
    if (this.state === "closed" || this.failing) return;
    this.reading = true;
    try {
      this.readFrames(chunk);
    } finally {
      this.reading = false;
    }
  }

  private readFrames(chunk: Buffer): void {
    let data = this.buffer ? Buffer.concat([this.buffer, chunk]) : chunk;
    this.buffer = undefined;
    try {
      let pos = 0;
      if (this.state === "preface") {
        if (data.length < CONNECTION_PREFACE.length) {
          if (!CONNECTION_PREFACE.subarray(0, data.length).equals(data)) {
            throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "not an HTTP/2 connection preface");
          }
          this.buffer = data;
          return;
        }
        if (!data.subarray(0, CONNECTION_PREFACE.length).equals(CONNECTION_PREFACE)) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "not an HTTP/2 connection preface");
        }
        pos = CONNECTION_PREFACE.length;
        this.state = "settings";
      }
      while (data.length - pos >= FRAME_HEADER_LENGTH) {
        const length = data.readUIntBE(pos, 3);
        if (length > DEFAULT_MAX_FRAME_SIZE) {
          throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `frame of ${length} bytes`);
        }
        if (data.length - pos < FRAME_HEADER_LENGTH + length) break;
        const type = data[pos + 3];
        const flags = data[pos + 4];
        const streamId = data.readUInt32BE(pos + 5) & MAX_WINDOW;
        const payload = data.subarray(pos + FRAME_HEADER_LENGTH, pos + FRAME_HEADER_LENGTH + length);
        pos += FRAME_HEADER_LENGTH + length;
        try {
          this.onFrame(type!, flags!, streamId, payload);
        } catch (err) {
          if (!(err instanceof StreamError)) throw err;
          const s = this.streams.get(err.streamId);
          if (s) {
            s.reset(err.code);
            s.events?.onAbort(s);
          } else {
            this.send(rstStreamFrame(err.streamId, err.code));
          }
        }
        if (this.isClosed || this.failing) return;
      }
      if (pos < data.length) {
        // Keep the partial frame; copy it off a large read so the read's memory can go.
        data = data.subarray(pos);
        this.buffer = data.length < 1024 ? Buffer.from(data) : data;
      }
    } catch (err) {
      const code = err instanceof ConnectionError ? err.code : ErrorCode.INTERNAL_ERROR;
      this.fail(code, err instanceof Error ? err.message : String(err));
    }
  }

  /** A connection error: GOAWAY with code, then the connection ends. */
  private fail(code: number, message: string): void {
    if (this.failing || this.state === "closed") return;
    this.failing = true;
    this.socket.write(goAwayFrame(this.lastStreamId, code, message));
    this.socket.end(); // flushes what is corked, the GOAWAY last
    process.nextTick(() => this.destroy());
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.state === "settings" && type !== FrameType.SETTINGS) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "the preface must be followed by SETTINGS");
    }
    if (this.continuation && type !== FrameType.CONTINUATION) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "header block interrupted");
    }
    switch (type) {
      case FrameType.DATA:
        return this.onData(flags, streamId, payload);
      case FrameType.HEADERS:
        return this.onHeaders(flags, streamId, payload);
      case FrameType.PRIORITY:
        if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
        // Priorities are ignored; a bad size resets the stream if it is open (never an idle one).
        if (payload.length !== 5 && this.streams.has(streamId)) {
          throw new StreamError(streamId, ErrorCode.FRAME_SIZE_ERROR, "PRIORITY size");
        }
        return;
      case FrameType.RST_STREAM:
        return this.onRstStream(streamId, payload);
      case FrameType.SETTINGS:
        return this.onSettings(flags, streamId, payload);
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE from a client");
      case FrameType.PING:
        if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
        if (payload.length !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "PING size");
        if ((flags & Flag.ACK) === 0) this.acknowledgePing(payload);
        return;
      case FrameType.GOAWAY:
        if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
        this.goingAway = true;
        this.closeIfIdle();
        return;
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(streamId, payload);
      case FrameType.CONTINUATION:
        return this.onContinuation(flags, streamId, payload);
      default:
        return; // unknown frame types are ignored (RFC 9113 4.1)
    }
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & Flag.ACK) {
      if (payload.length !== 0)
        throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with payload");
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS size");
    let initialWindow: number | undefined;
    for (let off = 0; off < payload.length; off += 6) {
      const id = payload.readUInt16BE(off);
      const value = payload.readUInt32BE(off + 2);
      switch (id) {
        case Setting.ENABLE_PUSH:
          if (value > 1) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "ENABLE_PUSH above 1");
          break;
        case Setting.INITIAL_WINDOW_SIZE:
          if (value > MAX_WINDOW)
            throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE");
          initialWindow = value; // the last one counts; applied once per frame below
          break;
        case Setting.MAX_FRAME_SIZE:
          if (value < DEFAULT_MAX_FRAME_SIZE || value > MAX_ALLOWED_FRAME_SIZE) {
            throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range");
          }
          this.peerMaxFrameSize = value;
          break;
        default:
          break; // HEADER_TABLE_SIZE concerns an encoder that never indexes; the rest, a client
      }
    }
    if (initialWindow !== undefined && initialWindow !== this.peerInitialWindow) {
      const delta = initialWindow - this.peerInitialWindow;
      this.peerInitialWindow = initialWindow;
      for (const s of this.streams.values()) {
        s.sendWindow += delta;
        if (s.sendWindow > MAX_WINDOW)
          throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "window overflow");
      }
    }
    this.send(frame(FrameType.SETTINGS, Flag.ACK, 0));
    if (this.state === "settings") this.state = "open";
    this.flushBlocked();
  }

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE size");
    const increment = payload.readUInt32BE(0) & MAX_WINDOW;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      this.connectionSendWindow += increment;
      if (this.connectionSendWindow > MAX_WINDOW) {
        throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window overflow");
      }
      this.flushBlocked();
      return;
    }
    const s = this.streams.get(streamId);
    if (!s) {
      if (streamId > this.lastStreamId)
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on idle stream");
      return; // closed stream: ignored
    }
    if (increment === 0) throw new StreamError(streamId, ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
    s.sendWindow += increment;
    if (s.sendWindow > MAX_WINDOW)
      throw new StreamError(streamId, ErrorCode.FLOW_CONTROL_ERROR, "window overflow");
    this.flushStream(s);
  }

  private onRstStream(streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0");
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM size");
    if (streamId > this.lastStreamId)
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on idle stream");
    const s = this.streams.get(streamId);
    if (!s) return;
    s.localClosed = true;
    s.remoteClosed = true;
    this.forget(s);
    s.events?.onAbort(s);
  }

  private onData(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    // Flow control counts the whole payload, padding included, whatever becomes of the stream.
    this.connectionUncredited += payload.length;
    if (this.connectionUncredited > this.limits.connectionWindow) {
      throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window exceeded");
    }
    if (this.connectionUncredited >= this.limits.connectionWindow / 2) {
      this.send(windowUpdateFrame(0, this.connectionUncredited));
      this.connectionUncredited = 0;
    }
    const data = unpad(flags, payload, streamId);
    const s = this.streams.get(streamId);
    if (!s) {
      if (streamId > this.lastStreamId)
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on idle stream");
      return; // a stream we closed or reset: its data is dropped
    }
    if (s.remoteClosed) throw new StreamError(streamId, ErrorCode.STREAM_CLOSED, "DATA after END_STREAM");
    s.recvWindow -= payload.length;
    if (s.recvWindow < 0)
      throw new StreamError(streamId, ErrorCode.FLOW_CONTROL_ERROR, "stream window exceeded");
    // Padding is never delivered, so credit it now.
    if (payload.length > data.length) s.consumed(payload.length - data.length);
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (endStream) s.remoteClosed = true;
    s.events?.onData(s, data, endStream);
    if (endStream && s.closed) this.forget(s);
  }

  private onHeaders(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    let fragment = unpad(flags, payload, streamId);
    if (flags & Flag.PRIORITY) {
      if (fragment.length < 5) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS priority size");
      fragment = fragment.subarray(5);
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (flags & Flag.END_HEADERS) {
      this.onHeaderBlock(streamId, fragment, endStream);
      return;
    }
    this.continuation = { streamId, endStream, fragments: [Buffer.from(fragment)], size: fragment.length };
  }

  private onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const c = this.continuation;
    if (!c || c.streamId !== streamId)
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "unexpected CONTINUATION");
    // Frame headers count too: empty CONTINUATIONs must not be free.
    c.size += FRAME_HEADER_LENGTH + payload.length;
    if (c.size > this.limits.maxHeaderListSize) {
      throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large");
    }
    if (payload.length > 0) c.fragments.push(Buffer.from(payload));
    if (flags & Flag.END_HEADERS) {
      this.continuation = undefined;
      this.onHeaderBlock(streamId, Buffer.concat(c.fragments), c.endStream);
    }
  }

  private onHeaderBlock(streamId: number, block: Buffer, endStream: boolean): void {
    // Decode first, whatever the stream: the HPACK table must stay in step with the client's.
    let decoded;
    try {
      decoded = this.decoder.decode(block);
    } catch (err) {
      if (err instanceof HpackError) throw new ConnectionError(ErrorCode.COMPRESSION_ERROR, err.message);
      throw err;
    }
    const existing = this.streams.get(streamId);
    if (existing) {
      // Trailers from the client: gRPC has none, but they end the request like END_STREAM.
      if (!endStream || existing.remoteClosed) {
        throw new StreamError(streamId, ErrorCode.PROTOCOL_ERROR, "HEADERS in the middle of a stream");
      }
      existing.remoteClosed = true;
      existing.events?.onData(existing, Buffer.alloc(0), true);
      if (existing.closed) this.forget(existing);
      return;
    }
    if (streamId % 2 === 0)
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `HEADERS on even stream ${streamId}`);
    // A stream we have closed (or reset): its late frames are ignored (RFC 9113 5.1).
    if (streamId <= this.lastStreamId) return;
    this.lastStreamId = streamId;
    if (this.goingAway) {
      this.send(rstStreamFrame(streamId, ErrorCode.REFUSED_STREAM));
      return;
    }
    if (this.streams.size >= this.limits.maxConcurrentStreams) {
      this.send(rstStreamFrame(streamId, ErrorCode.REFUSED_STREAM));
      return;
    }
    const s = new Http2Stream(streamId, this, this.peerInitialWindow, this.limits.streamWindow);
    s.remoteClosed = endStream;
    this.streams.set(streamId, s);
    this.handler.onStream(s, decoded.headers, endStream, decoded.oversize);
  }
}

function unpad(flags: number, payload: Buffer, streamId: number): Buffer {
  if ((flags & Flag.PADDED) === 0) return payload;
  if (payload.length < 1)
    throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "padded frame without pad length");
  const pad = payload[0];
  if (pad! >= payload.length) {
    throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `padding exceeds the frame on stream ${streamId}`);
  }
  return payload.subarray(1, payload.length - pad!);
}
