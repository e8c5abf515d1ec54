// A stand-in for bin/berthd that runs the same build under `node --cpu-prof` (Node refuses
// --cpu-prof in NODE_OPTIONS, so the flag has to be on node's own command line).
import { chmod, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { BERTHD_PATH } from "../test/harness/berthd.js";

/** Writes `<dir>/berthd-profiled` and returns its path; profiles land in profileDir on exit. */
export async function writeProfiledBerthd(dir: string, profileDir: string): Promise<string> {
  const main = resolve(dirname(BERTHD_PATH), "../dist/daemon/main.js");
  const path = join(dir, "berthd-profiled");
  const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  await writeFile(
    path,
    `#!/bin/sh\nexec node --cpu-prof --cpu-prof-dir=${quote(resolve(profileDir))} ${quote(main)} "$@"\n`,
  );
  await chmod(path, 0o755);
  return path;
}
