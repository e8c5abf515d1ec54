// Temporary directories for integration tests (/tmp/berth-test-*), removed safely: mounts first.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve, sep } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);
export const TEMP_PREFIX = "berth-test-";

/** Creates /tmp/berth-test-<label>-XXXXXX. */
export async function makeTempDir(label = "tmp"): Promise<string> {
  return mkdtemp(join(tmpdir(), `${TEMP_PREFIX}${label}-`));
}

/** Unescapes the octal escapes (\040 etc.) the kernel uses in /proc/self/mountinfo. */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Mount points at or below dir in this process's mount namespace, deepest first. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const root = resolve(dir);
  const info = await readFile("/proc/self/mountinfo", "utf8");
  const points = info
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    .map(unescapeMountPath)
    .filter((p) => p === root || p.startsWith(root + sep));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/**
 * Unmounts everything below dir (lazily, deepest first), then deletes it. Refuses to delete
 * anything that is not one of our temp dirs, and refuses when a mount survives, because a
 * recursive delete would walk into a bind-mounted host directory.
 */
export async function removeTempDir(dir: string): Promise<void> {
  const root = resolve(dir);
  if (!root.startsWith(join(tmpdir(), TEMP_PREFIX))) {
    throw new Error(`refusing to remove ${root}: not a ${TEMP_PREFIX} temp dir`);
  }
  for (const point of await mountsUnder(root)) {
    await execFileAsync("umount", ["-l", point]).catch(() => undefined);
  }
  const left = await mountsUnder(root);
  if (left.length > 0) throw new Error(`refusing to remove ${root}: still mounted: ${left.join(", ")}`);
  await rm(root, { recursive: true, force: true, maxRetries: 3 });
}
