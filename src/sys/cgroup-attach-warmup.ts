// Lets the kernel's cgroup-attach grace period run while runc starts, instead of inside it.
//
// Moving a process into a cgroup (`runc create` writes its init's pid into each hierarchy's
// cgroup.procs, `runc exec` likewise) takes the kernel's one global cgroup_threadgroup_rwsem for
// writing. Unless the hierarchy is mounted with favordynmods, a writer that finds the lock cold
// (no writer within the last RCU grace period) waits a whole grace period first: 8-18 ms on the
// bench VM (HZ=250, lazy RCU), inside every `runc create`. The wait belongs to the lock, not to
// the writer: one who comes while that grace period is under way waits only for the rest of it,
// and one who comes within a grace period after the last writer left does not wait at all.
//
// So when a Create or an Exec arrives, the shim writes "0" (itself) into the cgroup.procs of the
// cgroup v2 cgroup it is in, on a libuv pool thread: a migration of the shim to where it already
// is, which moves nothing but takes the lock. The grace period then runs during runc's own start
// (its Go runtime, its config, its init process: some 5-7 ms before its first cgroup write).
// Measured with 40 alternating `runc create`s of a busybox bundle: 29-31 ms median without, 21
// ms with.
//
// The cgroup is read from /proc/self/cgroup before each write and the target file is checked
// once to list the shim's own pid, so the write never moves the shim anywhere else (a cgroup
// namespace or a mount that does not show the hierarchy's root makes that check fail, and the
// warm-up turns itself off). Without a cgroup v2 mount nothing is done. Failures are ignored:
// this only ever saves time.
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join, posix } from "node:path";
import { unescapeMountinfo } from "./mountinfo.js";

/** The mount point of the cgroup v2 hierarchy in mountinfo text, when its root is mounted. */
export function unifiedMountPoint(mountinfo: string): string | undefined {
  for (const line of mountinfo.split("\n")) {
    // id parent major:minor root mountpoint options [optional fields] - fstype source superoptions
    const [left = "", right = ""] = line.split(" - ");
    if (right.split(" ")[0] !== "cgroup2") continue;
    const fields = left.split(" ");
    if (fields[3] !== "/" || fields[4] === undefined) continue;
    return unescapeMountinfo(fields[4]);
  }
  return undefined;
}

/** The process's cgroup v2 path from /proc/<pid>/cgroup text (the "0::" line). */
export function unifiedCgroupPath(procCgroup: string): string | undefined {
  for (const line of procCgroup.split("\n")) {
    if (!line.startsWith("0::")) continue;
    const path = line.slice(3);
    // " (deleted)" marks a removed cgroup; anything not absolute and normal is not ours to touch.
    if (!path.startsWith("/") || path.endsWith(" (deleted)") || posix.normalize(path) !== path)
      return undefined;
    return path;
  }
  return undefined;
}

export interface CgroupAttachWarmupOptions {
  /** Reads a proc or cgroup file (tests substitute their own); readFileSync when absent. */
  read?: (path: string) => string;
  /** Writes the pid ("0") into a cgroup.procs file. */
  write?: (path: string, data: string) => Promise<void>;
  pid?: number;
}

export class CgroupAttachWarmup {
  private readonly read: (path: string) => string;
  private readonly write: (path: string, data: string) => Promise<void>;
  private readonly pid: number;
  /** undefined until first use; null once found unusable here. */
  private mount: string | null | undefined;
  /** The cgroup.procs file last checked to list the shim itself. */
  private checked: string | undefined;
  private inFlight: Promise<void> | undefined;

  constructor(opts: CgroupAttachWarmupOptions = {}) {
    this.read = opts.read ?? ((p) => readFileSync(p, "utf8"));
    this.write = opts.write ?? ((p, d) => writeFile(p, d));
    this.pid = opts.pid ?? process.pid;
  }

  /**
   * The shim's own cgroup.procs, if the warm-up can be used here. Reads /proc/self/cgroup each
   * time, so that a shim moved by someone else is written where it now is.
   */
  target(): string | undefined {
    try {
      if (this.mount === undefined) this.mount = unifiedMountPoint(this.read("/proc/self/mountinfo")) ?? null;
      if (this.mount === null) return undefined;
      const path = unifiedCgroupPath(this.read("/proc/self/cgroup"));
      if (path === undefined) return undefined;
      const procs = join(this.mount, path, "cgroup.procs");
      if (procs !== this.checked) {
        const listed = this.read(procs).split("\n").includes(String(this.pid));
        if (!listed) {
          this.mount = null;
          return undefined;
        }
        this.checked = procs;
      }
      return procs;
    } catch {
      this.mount = null;
      return undefined;
    }
  }

  /**
   * Starts a no-op self-migration, unless one is under way already (it serves this caller too).
   * The promise settles when the write is done, and never rejects.
   */
  kick(): Promise<void> {
    if (this.inFlight !== undefined) return this.inFlight;
    const procs = this.target();
    if (procs === undefined) return Promise.resolve();
    const done = this.write(procs, "0").then(
      () => undefined,
      () => undefined,
    );
    this.inFlight = done.then(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }
}
