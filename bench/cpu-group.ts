// CPU accounting for a daemon and everything it forks (shims, runc, the Go shim's `start`, berthd's
// spare shims): the daemon is moved into a cgroup of its own, which its later children inherit. A
// containerd shim is not a descendant of containerd (it daemonizes), and a shim that exits is reaped
// by init, so /proc/<pid>/stat sums would miss it; the cgroup does not. Containers are not counted:
// runc puts them in their own cgroup (ctr run --cgroup).
import { mkdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

export interface CpuGroup {
  path: string;
  /** Moves the processes (all their threads) into the group. */
  add(pids: readonly number[]): Promise<void>;
  /** CPU seconds (user+system) used in the group since it was made. */
  cpuSeconds(): Promise<number>;
  /** Moves whatever is left back to the root group and removes the group. */
  remove(): Promise<void>;
}

/** cgroup v1 `cpuacct.usage` (ns) or v2 `cpu.stat` usage_usec, as seconds. */
export function parseCpuUsage(text: string, version: 1 | 2): number {
  if (version === 1) {
    const ns = Number(text.trim());
    if (!Number.isFinite(ns) || text.trim() === "") throw new Error(`bad cpuacct.usage: ${text}`);
    return ns / 1e9;
  }
  const m = /^usage_usec (\d+)$/m.exec(text);
  if (m === null) throw new Error(`no usage_usec in cpu.stat: ${text.slice(0, 200)}`);
  return Number(m[1]) / 1e6;
}

async function exists(path: string): Promise<boolean> {
  return readFile(path).then(
    () => true,
    () => false,
  );
}

/** A fresh group named `name` in the cpuacct hierarchy (v1) or the unified one (v2). */
export async function createCpuGroup(name: string): Promise<CpuGroup> {
  const v1Root = "/sys/fs/cgroup/cpuacct";
  const version: 1 | 2 = (await exists(join(v1Root, "cpuacct.usage"))) ? 1 : 2;
  const root = version === 1 ? v1Root : "/sys/fs/cgroup";
  const path = join(root, name);
  await mkdir(path);
  const usageFile = join(path, version === 1 ? "cpuacct.usage" : "cpu.stat");
  const add = async (target: string, pids: readonly number[]): Promise<void> => {
    for (const pid of pids) {
      try {
        await writeFile(join(target, "cgroup.procs"), `${pid}\n`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err; // exited meanwhile: fine
      }
    }
  };
  return {
    path,
    add: (pids) => add(path, pids),
    async cpuSeconds() {
      return parseCpuUsage(await readFile(usageFile, "utf8"), version);
    },
    async remove() {
      for (let attempt = 0; ; attempt++) {
        const left = (await readFile(join(path, "cgroup.procs"), "utf8").catch(() => ""))
          .split("\n")
          .filter(Boolean)
          .map(Number);
        await add(root, left);
        try {
          await rmdir(path);
          return;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === "ENOENT") return;
          if (code !== "EBUSY" || attempt >= 20) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    },
  };
}
