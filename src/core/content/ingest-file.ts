// Writes a file whose size and digest are known into a content store, as one committed blob under
// a ref; a blob already present is as good as written (containerd's content.WriteBlob).
import { createReadStream } from "node:fs";
import { isCode } from "../../errdefs/errors.js";
import type { Store } from "./content.js";

export async function ingestFile(
  store: Store,
  path: string,
  ref: string,
  blob: { size: number; digest: string },
  labels: Record<string, string> = {},
): Promise<void> {
  let writer;
  try {
    writer = await store.writer({ ref, total: blob.size, expected: blob.digest });
  } catch (err) {
    if (isCode(err, "already-exists")) return;
    throw err;
  }
  try {
    const st = await writer.status();
    if (st.offset !== 0) await writer.truncate();
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }))
      await writer.write(chunk as Buffer);
    await writer.commit(blob.size, blob.digest, labels);
  } catch (err) {
    if (!isCode(err, "already-exists")) throw err;
  } finally {
    await writer.close();
  }
}
