// The entry point of a layer decoder thread, the helper of one diff worker: it reads a layer blob,
// hashes the compressed bytes, decompresses them (zlib on the libuv threadpool, or zstd), hashes the
// tar and copies it into a byte ring the diff worker applies it from. Decoding and applying then
// run on two CPUs at once instead of taking turns on one event loop (see layer-decoder.ts).
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { parentPort } from "node:worker_threads";
import { BerthError } from "../../errdefs/errors.js";
import { RingProducer } from "./byte-ring.js";
import { decompressStream } from "./decompress.js";
import { HashTap, pipelineAll } from "./hash-tap.js";
import type { DecodeReply, DecodeRequest } from "./layer-decoder.js";

const port = parentPort;
if (port === null) throw new Error("decode-worker must run in a worker thread");

/** Bytes per read of the blob file. */
const READ_CHUNK = 1 << 20;
/**
 * zlib's output chunk here. zlib gets one chunk further per turn of this thread's event loop, which
 * also hashes, so chunks are larger than the in-thread path's 128 KiB; 1 MiB ones were no faster
 * and left the daemon's peak RSS some 50 MB higher (one measurement, 256 MiB layer x3).
 */
const GUNZIP_CHUNK = 256 * 1024;

port.on("message", (req: DecodeRequest) => {
  decode(req).then(
    (result) => port.postMessage({ id: req.id, ok: true, ...result } satisfies DecodeReply),
    (err: unknown) => {
      const e = BerthError.from(err);
      const code = e.code === "unknown" && hasSysCode(err) ? "invalid-argument" : e.code;
      port.postMessage({ id: req.id, ok: false, error: { code, message: e.message } } satisfies DecodeReply);
    },
  );
});

async function decode(
  req: DecodeRequest,
): Promise<{ digest: string; size: number; diffId: string; tarSize: number }> {
  const producer = new RingProducer(req.ring);
  const compressed = new HashTap();
  const tar = createHash("sha256");
  let tarSize = 0;
  try {
    const stages: NodeJS.ReadWriteStream[] = [compressed];
    if (req.compression !== "none")
      stages.push(decompressStream(req.compression, { gunzipChunk: GUNZIP_CHUNK }));
    await pipelineAll(
      createReadStream(req.blobPath, { highWaterMark: READ_CHUNK }),
      ...stages,
      async (input: AsyncIterable<Buffer>) => {
        for await (const chunk of input) {
          tar.update(chunk);
          tarSize += chunk.length;
          await producer.write(chunk);
        }
      },
    );
  } catch (err) {
    producer.fail();
    throw err;
  }
  producer.end();
  return {
    digest: compressed.digest(),
    size: compressed.count,
    diffId: `sha256:${tar.digest("hex")}`,
    tarSize,
  };
}

/** Errors from the file system while reading a layer are the input's fault, as a rule (as in diff-worker). */
function hasSysCode(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && /^E[A-Z]+$/.test(code) && code !== "ENOSPC" && code !== "EIO";
}
