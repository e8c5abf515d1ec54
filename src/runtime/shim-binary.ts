// From a runtime name to the shim executable, as containerd 1.6 resolves it: the last two
// components of `io.containerd.<name>.<version>` give `containerd-shim-<name>-<version>`, looked up
// in the runtime's own directory, on $PATH, then next to the daemon; an absolute path is used as is.
import { accessSync, constants } from "node:fs";
import { delimiter, dirname, isAbsolute, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BerthError, invalidArgument } from "../errdefs/errors.js";

/** `io.containerd.runc.v2` -> `containerd-shim-runc-v2`. */
export function shimBinaryName(runtime: string): string {
  const parts = runtime.split(".");
  if (parts.length < 2 || parts.some((p) => p === "") || runtime.includes("/"))
    throw invalidArgument(
      `invalid runtime name ${runtime}, correct runtime name should be either format like \`io.containerd.runc.v1\` or a full path to the binary`,
    );
  return `containerd-shim-${parts[parts.length - 2]}-${parts[parts.length - 1]}`;
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export interface ShimLookup {
  /** Extra directories searched after $PATH (berthd's own bin/, where our shim lives). */
  extraDirs?: readonly string[];
  env?: NodeJS.ProcessEnv;
}

/** The absolute path of the shim for runtime (a name or an absolute path); NotFound if none. */
export function resolveShimBinary(runtime: string, opts: ShimLookup = {}): string {
  if (isAbsolute(runtime)) {
    if (!executable(runtime)) throw notInstalled(runtime, runtime);
    return runtime;
  }
  const name = shimBinaryName(runtime);
  const path = (opts.env ?? process.env).PATH ?? "";
  const dirs = [...path.split(delimiter).filter((d) => d !== ""), ...(opts.extraDirs ?? [])];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (executable(candidate)) return isAbsolute(candidate) ? candidate : join(process.cwd(), candidate);
  }
  throw notInstalled(runtime, name);
}

// containerd wraps os.ErrNotExist, which is no errdefs error: clients see Unknown.
const notInstalled = (runtime: string, name: string) =>
  new BerthError(
    "unknown",
    `runtime ${JSON.stringify(runtime)} binary not installed ${JSON.stringify(name)}: file does not exist`,
  );

/** The directory of berthd's own executables (bin/ beside dist/ or src/), searched for our shim. */
export const berthBinDir = join(dirname(dirname(dirname(fileURLToPath(import.meta.url)))), "bin");
