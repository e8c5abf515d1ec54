// writeBlob: containerd's content.Copy over the Write stream: STAT (resuming from the offset the
// daemon already holds), WRITE in 1 MiB chunks, COMMIT with size, digest and labels.
import type { Content } from "../gen/containerd/services/content/v1/content_pb.js";
import { WriteAction } from "../gen/containerd/services/content/v1/content_pb.js";
import { BerthError, isCode } from "../errdefs/errors.js";
import type { CallOptions } from "./call-options.js";
import type { ServiceClient } from "./service-client.js";

/** ctr's chunk size; messages stay far below the 16 MiB limit. */
export const writeChunkSize = 1 << 20;

export interface WriteBlobOptions extends CallOptions {
  /** The ingest ref; uploads with the same ref resume each other. */
  ref: string;
  /** Expected digest ("sha256:<hex>"); the daemon verifies it on commit. */
  expected?: string;
  /** Labels set on the committed blob. */
  labels?: Record<string, string>;
  chunkSize?: number;
}

export interface WriteBlobResult {
  /** The digest the daemon committed (or `expected` when it already had the blob). */
  digest: string;
  /** Bytes the daemon already held when the upload started (a resumed ingest). */
  resumedFrom: number;
  /** True when the daemon already had the blob and nothing was sent. */
  alreadyExists: boolean;
}

type ContentClient = ServiceClient<(typeof Content)["method"]>;

/**
 * Uploads `data` under `ref`. Resumes an interrupted ingest (only the missing bytes are sent) and
 * treats AlreadyExists as success, as containerd's clients do.
 */
export async function writeBlob(
  content: ContentClient,
  data: Uint8Array,
  opts: WriteBlobOptions,
): Promise<WriteBlobResult> {
  const { ref, expected = "", labels, chunkSize = writeChunkSize, ...call } = opts;
  const total = BigInt(data.length);
  const stream = content.write(call);
  try {
    let stat;
    try {
      await stream.send({ action: WriteAction.STAT, ref, total, expected });
      stat = await stream.recv();
    } catch (err) {
      if (expected !== "" && isCode(err, "already-exists")) {
        return { digest: expected, resumedFrom: 0, alreadyExists: true };
      }
      throw err;
    }
    if (stat === undefined) throw new BerthError("unknown", `write ${ref}: stream ended before the status`);
    let offset = Number(stat.offset);
    if (offset > data.length) {
      // The ingest holds more than this blob: start it over (a WRITE at offset 0 truncates).
      offset = 0;
    }
    const resumedFrom = offset;
    // Every WRITE names its offset: offset 0 over bytes already stored would truncate them.
    for (;;) {
      const end = Math.min(offset + chunkSize, data.length);
      const last = end === data.length;
      await stream.send({
        action: last ? WriteAction.COMMIT : WriteAction.WRITE,
        offset: BigInt(offset),
        data: data.subarray(offset, end),
        ...(last ? { total, expected, labels } : {}),
      });
      const res = await stream.recv();
      if (res === undefined)
        throw new BerthError("unknown", `write ${ref}: stream ended at offset ${offset}`);
      if (last) {
        stream.end();
        return { digest: res.digest, resumedFrom, alreadyExists: false };
      }
      offset = end;
    }
  } catch (err) {
    // Committed meanwhile, by us on an earlier try or by someone else: the blob is there.
    if (expected !== "" && isCode(err, "already-exists")) {
      return { digest: expected, resumedFrom: 0, alreadyExists: true };
    }
    stream.cancel();
    throw err;
  }
}
