// How the shim starts runc: posix_spawn (sys/spawn.ts) rather than child_process, whose fork of the
// whole Node process costs the event loop ~1.5-3 ms per runc; the binary is looked up on PATH once
// rather than by an execvp walk through every PATH entry on every spawn. The child is not libuv's:
// the reaper watches it through a pidfd and reaps it. Anything this path does not handle (data for
// stdin, descriptors beyond 0-2, a binary not found on PATH, a spawn that fails) is left to
// child_process, so errors read exactly as before.
import { accessSync, constants, statSync } from "node:fs";
import { Socket } from "node:net";
import { delimiter, join } from "node:path";
import type { StdioOptions } from "node:child_process";
import { constants as osConstants } from "node:os";
import { posixSpawn, type SpawnStdio } from "../sys/spawn.js";
import { pipe2 } from "../sys/pipe.js";
import { closeFd } from "../sys/process.js";
import type { Reaper } from "./reaper.js";

export interface SpawnedProcess {
  readonly pid: number;
  readonly stdout: Socket | null;
  readonly stderr: Socket | null;
  /** Settles once the process has exited and its pipes (if any) have ended, as child_process's 'close'. */
  readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILLs the process (through its pidfd). */
  kill(): void;
}

/** Starts command; undefined when it cannot here (the caller then uses child_process). */
export type Spawner = (
  command: string,
  args: readonly string[],
  stdio: StdioOptions,
) => SpawnedProcess | undefined;

/** Executables found on PATH, by name. */
const resolved = new Map<string, string>();

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** command as execvp would find it (a name with a slash is taken as it is); undefined if not found. */
export function lookPath(command: string, path = process.env.PATH ?? ""): string | undefined {
  if (command.includes("/")) return command;
  const hit = resolved.get(command);
  if (hit !== undefined) return hit;
  for (const dir of path.split(delimiter)) {
    const candidate = join(dir === "" ? "." : dir, command);
    if (isExecutableFile(candidate)) {
      if (dir.startsWith("/")) resolved.set(command, candidate);
      return candidate;
    }
  }
  return undefined;
}

/** Forgets every PATH lookup (for tests, or when a binary moved). */
export function forgetLookups(): void {
  resolved.clear();
}

const signalNames = new Map<number, NodeJS.Signals>(
  Object.entries(osConstants.signals).map(([name, n]) => [n, name as NodeJS.Signals]),
);

/**
 * A Spawner whose children the reaper watches and reaps. Handles stdio of descriptors, "ignore" and
 * "pipe" for fds 1 and 2 (read by the caller); nothing else.
 */
export function reaperSpawner(reaper: Reaper): Spawner {
  return (command, args, stdio) => {
    if (!Array.isArray(stdio) || stdio.length > 3) return undefined;
    const kinds = [0, 1, 2].map((i) => (stdio[i] as unknown) ?? "ignore");
    if (kinds[0] === "pipe") return undefined;
    if (!kinds.every((k) => k === "ignore" || k === "pipe" || (typeof k === "number" && k >= 3)))
      return undefined;
    const path = lookPath(command);
    if (path === undefined) return undefined;

    const fds: (number | null)[] = [null, null, null];
    const readEnds: (number | undefined)[] = [undefined, undefined, undefined];
    const writeEnds: number[] = [];
    let pid: number;
    try {
      kinds.forEach((k, i) => {
        if (typeof k === "number") fds[i] = k;
        else if (k === "pipe") {
          const [r, w] = pipe2();
          readEnds[i] = r;
          writeEnds.push(w);
          fds[i] = w;
        }
      });
      const env = Object.entries(process.env).map(([k, v]) => `${k}=${v ?? ""}`);
      pid = posixSpawn(path, [command, ...args], env, fds as unknown as SpawnStdio);
    } catch {
      for (const fd of readEnds) if (fd !== undefined) closeFd(fd);
      for (const fd of writeEnds) closeFd(fd);
      // The path went away, or cannot be run: child_process reports it as it always has.
      resolved.delete(command);
      return undefined;
    }
    // Only the child writes to the pipes: its exit ends them.
    for (const fd of writeEnds) closeFd(fd);
    const stream = (fd: number | undefined): Socket | null =>
      fd === undefined ? null : new Socket({ fd, readable: true, writable: false });
    const stdout = stream(readEnds[1]);
    const stderr = stream(readEnds[2]);
    const ended = (s: Socket | null) =>
      s === null ? Promise.resolve() : new Promise<void>((resolve) => s.once("close", () => resolve()));
    const exit = reaper.register(pid, { since: Date.now(), quiet: true });
    const closed = Promise.all([exit, ended(stdout), ended(stderr)]).then(([e]) => ({
      code: e.signal === 0 ? e.status : null,
      signal: e.signal === 0 ? null : (signalNames.get(e.signal) ?? null),
    }));
    return {
      pid,
      stdout,
      stderr,
      closed,
      kill() {
        try {
          reaper.signal(pid, osConstants.signals.SIGKILL);
        } catch {
          // already gone
        }
      },
    };
  };
}
