// A work dir for the task tests: a temp dir, a FIFO dir for `ctr run --fifo-dir` (ctr's default is
// under /run), and the busybox image built offline as an OCI archive for `ctr images import`.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { busyboxImage } from "../fixtures/busybox.js";
import { writeOciArchive } from "../fixtures/oci-image.js";
import { makeTempDir } from "../harness/temp-dir.js";

export interface TaskWork {
  /** The temp dir (removeTempDir it); the rest lives inside. */
  dir: string;
  fifo: string;
  archive: string;
}

export async function makeTaskWork(name: string, imageName: string): Promise<TaskWork> {
  const dir = await makeTempDir(name);
  const fifo = join(dir, "fifo");
  await mkdir(fifo);
  const archive = join(dir, "busybox.tar");
  await writeOciArchive(archive, { image: await busyboxImage({ format: "oci" }), name: imageName });
  return { dir, fifo, archive };
}
