// Stream plumbing shared by the apply and diff jobs: a pass-through that hashes and counts, and
// stream.pipeline over a computed list of stages.
import { createHash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";

/** A pass-through that hashes (sha256) and counts what flows by. */
export class HashTap extends Transform {
  readonly hash = createHash("sha256");
  count = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.count += chunk.length;
    done(null, chunk);
  }
  /** "sha256:<hex>" of everything seen; call once, after the stream ended. */
  digest(): string {
    return `sha256:${this.hash.digest("hex")}`;
  }
}

/** stream.pipeline over a computed list of stages (its typings only cover fixed arities). */
export const pipelineAll = pipeline as unknown as (...stages: unknown[]) => Promise<void>;
