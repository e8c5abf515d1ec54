// The diff worker's side of its decoder thread (decode-worker.ts). Inside one thread, zlib's output
// is picked up by the event loop, which is busy with file writes most of the time, so inflating and
// applying end up taking turns; the decoder thread reads, hashes and decompresses on its own, and
// hands the tar over through a bounded shared ring (byte-ring.ts). One decoder per diff worker,
// started on first use and kept; it ends with the diff worker (a terminated worker's threads go
// with it).
import { Worker } from "node:worker_threads";
import { BerthError, type ErrorCode } from "../../errdefs/errors.js";
import { RingConsumer, createByteRing, resetByteRing, type ByteRing } from "./byte-ring.js";
import type { Compression } from "./decompress.js";

export interface DecodeRequest {
  id: number;
  blobPath: string;
  compression: Compression;
  ring: ByteRing;
}

export interface DecodeResult {
  /** "sha256:..." and byte count of the blob as read. */
  digest: string;
  size: number;
  /** "sha256:..." and byte count of the decompressed stream. */
  diffId: string;
  tarSize: number;
}

export type DecodeReply =
  | ({ id: number; ok: true } & DecodeResult)
  | { id: number; ok: false; error: { code: ErrorCode; message: string } };

/** 8 slots of 1 MiB: what the decoder may run ahead of the applier. */
const SLOTS = 8;
const SLOT_SIZE = 1 << 20;

const SCRIPT = new URL(`./decode-worker${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url);

function spawn(): Worker {
  if (!SCRIPT.pathname.endsWith(".ts")) return new Worker(SCRIPT);
  // Under tsx (the unit tests), Node 20 loads a worker's entry before its --import hooks are in
  // place; the loader is registered by hand first.
  const api = import.meta.resolve("tsx/esm/api");
  const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(SCRIPT.href)}); })`;
  return new Worker(code, { eval: true });
}

interface Decoder {
  worker: Worker;
  /**
   * One ring for every job of this decoder. A diff worker runs one job at a time, and a job
   * returns only once it has read its stream to the end (or aborted it) and has the decoder's
   * reply, so the next job finds both sides idle. A new 8 MiB SharedArrayBuffer per job lived on
   * until both threads had collected it, and RSS crept up by about that much per apply.
   */
  ring: ByteRing;
  busy: boolean;
  /** Called with the reason when the thread dies. */
  onDeath: Set<(err: Error) => void>;
}

let current: Decoder | null = null;
let nextId = 1;

function decoder(): Decoder {
  if (current !== null) return current;
  const worker = spawn();
  worker.unref();
  const d: Decoder = { worker, ring: createByteRing(SLOTS, SLOT_SIZE), busy: false, onDeath: new Set() };
  const died = (err: Error): void => {
    if (current === d) current = null;
    for (const f of d.onDeath) f(err);
    d.onDeath.clear();
  };
  worker.on("error", (err) => died(new BerthError("unknown", `layer decoder failed: ${err.message}`)));
  worker.on("exit", (code) => died(new BerthError("unknown", `layer decoder exited with code ${code}`)));
  current = d;
  return d;
}

export interface DecodedLayer {
  /** The decompressed stream, slot by slot; each value is valid until the next call of next(). */
  tar: RingConsumer;
  /** The digests and sizes, once the decoder is done with the blob (after its end, failure or abort). */
  result: Promise<DecodeResult>;
  /** Stops the decoder (result then rejects). */
  abort(): void;
}

/** Starts decoding blobPath in the decoder thread. */
export function decodeLayer(blobPath: string, compression: Compression): DecodedLayer {
  const d = decoder();
  const id = nextId++;
  if (d.busy) throw new Error("layer decoder: one job at a time per thread");
  d.busy = true;
  const ring = d.ring;
  resetByteRing(ring);
  let onMessage: (reply: DecodeReply) => void = () => undefined;
  let onDeath: (err: Error) => void = () => undefined;
  const result = new Promise<DecodeResult>((resolve, reject) => {
    onMessage = (reply) => {
      if (reply.id !== id) return;
      done();
      if (reply.ok) {
        const { digest, size, diffId, tarSize } = reply;
        resolve({ digest, size, diffId, tarSize });
      } else reject(new BerthError(reply.error.code, reply.error.message));
    };
    onDeath = (err) => {
      done();
      reject(err);
    };
  });
  const done = (): void => {
    d.busy = false;
    d.worker.off("message", onMessage);
    d.onDeath.delete(onDeath);
    if (d.onDeath.size === 0) d.worker.unref();
  };
  d.worker.on("message", onMessage);
  d.onDeath.add(onDeath);
  // Referenced while it works for someone: waiting on the ring alone keeps no event loop alive.
  d.worker.ref();
  // The consumer stops waiting when the thread dies without ending the stream.
  const stopped = result.then(() => new Promise<never>(() => undefined));
  stopped.catch(() => undefined);
  result.catch(() => undefined);
  const tar = new RingConsumer(ring, stopped);
  try {
    d.worker.postMessage({ id, blobPath, compression, ring } satisfies DecodeRequest);
  } catch (err) {
    done();
    throw err;
  }
  return { tar, result, abort: () => tar.abort() };
}
