// Small filesystem probes the content store needs: errno checks, existence, directory fsync.
import { statSync } from "node:fs";
import { open, stat } from "node:fs/promises";

export function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

export async function pathExists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch (err) {
    if (isErrno(err, "ENOENT")) return false;
    throw err;
  }
}

/** pathExists without a threadpool round trip (one stat of a path in the page cache). */
export function pathExistsSync(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch (err) {
    if (isErrno(err, "ENOENT")) return false;
    throw err;
  }
}

/** Makes a rename into (or out of) dir durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
