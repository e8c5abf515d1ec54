// Layer media types and decompression. As containerd's compression.DecompressStream, the stream
// itself decides: gzip and zstd are recognised by their magic bytes whatever the media type said,
// and anything else passes through as an uncompressed tar.
import { Transform, type TransformCallback } from "node:stream";
import { createGunzip } from "node:zlib";
import { createRequire } from "node:module";
import { invalidArgument } from "../../errdefs/errors.js";

export type Compression = "none" | "gzip" | "zstd";

const OCI_LAYER = "application/vnd.oci.image.layer.v1.tar";
const OCI_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar";
const DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar";

const MEDIA_TYPES: ReadonlyMap<string, Compression> = new Map<string, Compression>([
  [OCI_LAYER, "none"],
  [`${OCI_LAYER}+gzip`, "gzip"],
  [`${OCI_LAYER}+zstd`, "zstd"],
  [OCI_NONDISTRIBUTABLE, "none"],
  [`${OCI_NONDISTRIBUTABLE}+gzip`, "gzip"],
  [`${OCI_NONDISTRIBUTABLE}+zstd`, "zstd"],
  // Docker's uncompressed names are sniffed by containerd ("may have been compressed but failed
  // to use the correct media type"); decompressStream sniffs every stream anyway.
  [DOCKER_LAYER, "none"],
  [`${DOCKER_LAYER}.gzip`, "gzip"],
  [DOCKER_FOREIGN, "none"],
  [`${DOCKER_FOREIGN}.gzip`, "gzip"],
]);

/** The compression a layer media type declares; InvalidArgument for anything not a layer. */
export function layerCompression(mediaType: string): Compression {
  const kind = MEDIA_TYPES.get(mediaType);
  if (kind === undefined) throw invalidArgument(`unsupported media type ${mediaType}`);
  return kind;
}

const GZIP_MAGIC = [0x1f, 0x8b, 0x08];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

/** containerd's DetectCompression over the first bytes of a stream (null: need more bytes). */
export function detectCompression(head: Uint8Array, final: boolean): Compression | null {
  const starts = (magic: number[]): boolean | null => {
    for (let i = 0; i < magic.length; i++) {
      if (i >= head.length) return final ? false : null;
      if (head[i] !== magic[i]) return false;
    }
    return true;
  };
  const gzip = starts(GZIP_MAGIC);
  if (gzip === true) return "gzip";
  const zstd = starts(ZSTD_MAGIC);
  if (zstd === true) return "zstd";
  // A zstd skippable frame (magic 0x184D2A50..5F, little endian) may lead a zstd stream.
  if (head.length >= 8) {
    if ((head[0]! & 0xf0) === 0x50 && head[1] === 0x2a && head[2] === 0x4d && head[3] === 0x18) return "zstd";
  } else if (!final) {
    return null;
  }
  if (gzip === null || zstd === null) return null;
  return "none";
}

/** Zlib's output chunk: larger than its 16 KiB default, so the applier sees fewer chunks. */
const GUNZIP_CHUNK = 128 * 1024;
/**
 * Decompressed bytes buffered ahead of the consumer: the decompressor (zlib runs on the libuv
 * threadpool) keeps going while the consumer hashes and writes files, up to this much.
 */
const READ_AHEAD = 1 << 20;
/** zstd's default decoder limit (128 MiB windows); larger ones are refused, not allocated. */
const ZSTD_WINDOW_LOG_MAX = 27;

/**
 * A Transform that decompresses a layer stream. kind is what the media type declared; the bytes
 * decide (gzip, zstd or none), as containerd's DecompressStream does, so a mislabelled layer is
 * still read.
 */
export function decompressStream(kind: Compression = "none", opts: DecompressOptions = {}): Transform {
  void kind;
  return new SniffingDecompressor(opts.gunzipChunk ?? GUNZIP_CHUNK);
}

export interface DecompressOptions {
  /**
   * zlib's output chunk. Each chunk takes one turn of the event loop to hand over and start the
   * next, so an event loop that is busy elsewhere inflates no faster than a chunk per turn.
   */
  gunzipChunk?: number;
}

class SniffingDecompressor extends Transform {
  private head: Buffer[] = [];
  private headLength = 0;
  private inner: Transform | null = null;
  private passthrough = false;

  constructor(private readonly gunzipChunk: number) {
    super({ readableHighWaterMark: READ_AHEAD });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.passthrough) {
      done(null, chunk);
      return;
    }
    if (this.inner !== null) {
      this.feed(chunk, done);
      return;
    }
    this.head.push(chunk);
    this.headLength += chunk.length;
    const head = this.head.length === 1 ? chunk : Buffer.concat(this.head);
    const kind = detectCompression(head, false);
    if (kind === null) {
      done();
      return;
    }
    this.start(kind, head, done);
  }

  override _flush(done: TransformCallback): void {
    if (this.inner === null && !this.passthrough) {
      const head = Buffer.concat(this.head);
      this.head = [];
      if (head.length === 0) {
        done();
        return;
      }
      const kind = detectCompression(head, true) ?? "none";
      if (kind === "none") {
        done(null, head);
        return;
      }
      this.start(kind, head, (err) => {
        if (err) done(err);
        else this.finishInner(done);
      });
      return;
    }
    this.finishInner(done);
  }

  private finishInner(done: TransformCallback): void {
    const inner = this.inner;
    if (inner === null) {
      done();
      return;
    }
    inner.once("end", () => done());
    inner.once("error", (err) => done(err));
    inner.end();
  }

  private start(kind: Compression, head: Buffer, done: TransformCallback): void {
    this.head = [];
    if (kind === "none") {
      this.passthrough = true;
      done(null, head);
      return;
    }
    const inner = kind === "gzip" ? createGunzip({ chunkSize: this.gunzipChunk }) : new ZstdDecompress();
    this.inner = inner;
    inner.on("data", (out: Buffer) => {
      // Backpressure: stop the decompressor while our reader is full.
      if (!this.push(out)) inner.pause();
    });
    // A corrupt or truncated stream is bad input, not a daemon fault.
    inner.on("error", (err) => this.destroy(invalidArgument(`${kind}: ${err.message}`, err)));
    this.feed(head, done);
  }

  override _read(size: number): void {
    this.inner?.resume();
    super._read(size);
  }

  private feed(chunk: Buffer, done: TransformCallback): void {
    if (this.inner!.write(chunk)) done();
    else this.inner!.once("drain", () => done());
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.inner?.destroy();
    callback(err);
  }
}

interface ZstdDCtx {
  decompressStream(dst: Uint8Array, src: Uint8Array): [number, number, number];
  setParameter(param: number, value: number): void;
}
interface ZstdBinding {
  DCtx: new () => ZstdDCtx;
  DParameter: { windowLogMax: number };
  dStreamOutSize(): number;
}

// zstd-napi's own DecompressStream pushes a whole input chunk's output at once (a bomb could
// expand one chunk to gigabytes in memory); this one yields to backpressure between outputs.
const zstd = createRequire(import.meta.url)("zstd-napi/binding.js") as ZstdBinding;
const ZSTD_OUT = zstd.dStreamOutSize();

class ZstdDecompress extends Transform {
  private readonly dctx = new zstd.DCtx();
  private inFrame = false;
  private pending: { src: Buffer; done: TransformCallback } | null = null;

  constructor() {
    super();
    this.dctx.setParameter(zstd.DParameter.windowLogMax, ZSTD_WINDOW_LOG_MAX);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.pending = { src: chunk, done };
    this.pump();
  }

  override _read(size: number): void {
    if (this.pending !== null) this.pump();
    else super._read(size);
  }

  private pump(): void {
    const pending = this.pending!;
    for (;;) {
      const dst = Buffer.allocUnsafe(ZSTD_OUT);
      let ret: number;
      let produced: number;
      let consumed: number;
      try {
        [ret, produced, consumed] = this.dctx.decompressStream(dst, pending.src);
      } catch (err) {
        this.pending = null;
        pending.done(err as Error);
        return;
      }
      pending.src = pending.src.subarray(consumed);
      const finished = pending.src.length === 0 && (produced < dst.length || ret === 0);
      if (finished) this.inFrame = ret !== 0;
      const more = produced > 0 ? this.push(dst.subarray(0, produced)) : true;
      if (finished) {
        this.pending = null;
        pending.done();
        return;
      }
      if (!more) return; // resumed by _read
    }
  }

  override _flush(done: TransformCallback): void {
    if (this.inFrame) done(new Error("stream ended in the middle of a frame"));
    else done();
  }
}
