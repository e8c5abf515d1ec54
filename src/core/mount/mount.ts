// Performing containerd mounts on Linux (containerd's mount.Mount, mount.All, mount.UnmountAll and
// mount.WithTempMount): fstab-style options become mount(2) flags plus a data string, a read-only
// bind needs a second remount call, and propagation changes are a separate call after the mount.
import { mkdtemp, rmdir } from "node:fs/promises";
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { join, resolve } from "node:path";
import { MNT, MS, mount, unmount, unmountOffThread } from "../../sys/mount.js";
import { hasCode } from "../../sys/errno.js";
import { unescapeMountinfo } from "../../sys/mountinfo.js";
import { AT, O, close, openat, openInRoot } from "../../sys/fs-at.js";
import type { Mount } from "./mount-types.js";

interface FlagOption {
  /** True when the option clears the flag ("rw" clears MS_RDONLY). */
  clear: boolean;
  flag: number;
}

// containerd's table, plus the propagation names runc and mount(8) understand.
const flagOptions: ReadonlyMap<string, FlagOption> = new Map([
  ["async", { clear: true, flag: MS.SYNCHRONOUS }],
  ["atime", { clear: true, flag: MS.NOATIME }],
  ["bind", { clear: false, flag: MS.BIND }],
  ["defaults", { clear: false, flag: 0 }],
  ["dev", { clear: true, flag: MS.NODEV }],
  ["diratime", { clear: true, flag: MS.NODIRATIME }],
  ["dirsync", { clear: false, flag: MS.DIRSYNC }],
  ["exec", { clear: true, flag: MS.NOEXEC }],
  ["mand", { clear: false, flag: MS.MANDLOCK }],
  ["noatime", { clear: false, flag: MS.NOATIME }],
  ["nodev", { clear: false, flag: MS.NODEV }],
  ["nodiratime", { clear: false, flag: MS.NODIRATIME }],
  ["noexec", { clear: false, flag: MS.NOEXEC }],
  ["nomand", { clear: true, flag: MS.MANDLOCK }],
  ["norelatime", { clear: true, flag: MS.RELATIME }],
  ["nostrictatime", { clear: true, flag: MS.STRICTATIME }],
  ["nosuid", { clear: false, flag: MS.NOSUID }],
  ["rbind", { clear: false, flag: MS.BIND | MS.REC }],
  ["relatime", { clear: false, flag: MS.RELATIME }],
  ["remount", { clear: false, flag: MS.REMOUNT }],
  ["ro", { clear: false, flag: MS.RDONLY }],
  ["rw", { clear: true, flag: MS.RDONLY }],
  ["strictatime", { clear: false, flag: MS.STRICTATIME }],
  ["suid", { clear: true, flag: MS.NOSUID }],
  ["sync", { clear: false, flag: MS.SYNCHRONOUS }],
  ["private", { clear: false, flag: MS.PRIVATE }],
  ["rprivate", { clear: false, flag: MS.PRIVATE | MS.REC }],
  ["shared", { clear: false, flag: MS.SHARED }],
  ["rshared", { clear: false, flag: MS.SHARED | MS.REC }],
  ["slave", { clear: false, flag: MS.SLAVE }],
  ["rslave", { clear: false, flag: MS.SLAVE | MS.REC }],
  ["unbindable", { clear: false, flag: MS.UNBINDABLE }],
  ["runbindable", { clear: false, flag: MS.UNBINDABLE | MS.REC }],
]);

const propagationFlags = MS.SHARED | MS.PRIVATE | MS.SLAVE | MS.UNBINDABLE;

/** Options to mount(2) flags and the comma-joined data string of everything else, in order. */
export function parseMountOptions(options: readonly string[]): { flags: number; data: string } {
  let flags = 0;
  const data: string[] = [];
  for (const o of options) {
    const f = flagOptions.get(o);
    if (f !== undefined && f.flag !== 0) flags = f.clear ? flags & ~f.flag : flags | f.flag;
    else if (f === undefined) data.push(o);
  }
  return { flags, data: data.join(",") };
}

const pageSize = 4096;

/**
 * For overlay mounts whose options near the one-page limit of mount(2) data: the directory all
 * lower dirs share and the lowerdir option rewritten relative to it (containerd's
 * compactLowerdirOption). An empty dir means there is nothing to compact.
 */
export function compactLowerdirs(options: readonly string[]): { dir: string; options: string[] } {
  const idx = options.findIndex((o) => o.startsWith("lowerdir="));
  if (idx === -1) return { dir: "", options: [...options] };
  const dirs = (options[idx] as string).slice("lowerdir=".length).split(":");
  if (dirs.length === 1) return { dir: "", options: [...options] };
  let common = commonPrefix(dirs);
  // Back to a directory boundary: snapshot ids are digits, so "snapshots/1" must become "snapshots".
  common = common.slice(0, Math.max(common.lastIndexOf("/"), 0));
  if (common === "" || common === "/") return { dir: "", options: [...options] };
  const out = options.filter((_, i) => i !== idx);
  out.push(`lowerdir=${dirs.map((d) => d.slice(common.length + 1)).join(":")}`);
  return { dir: common, options: out };
}

function commonPrefix(strs: readonly string[]): string {
  let min = strs[0] as string;
  let max = min;
  for (const s of strs) {
    if (s < min) min = s;
    if (s > max) max = s;
  }
  let i = 0;
  while (i < min.length && min[i] === max[i]) i++;
  return min.slice(0, i);
}

function optionsSize(options: readonly string[]): number {
  return options.reduce((n, o) => n + Buffer.byteLength(o), 0);
}

/**
 * Where a mount goes, resolved afresh for each call: after the first mount(2) the same path must
 * reach the new mount's root, not the directory underneath it.
 */
type TargetRef = () => { path: string; release(): void };

const plainTarget =
  (target: string): TargetRef =>
  () => ({ path: target, release: () => undefined });

/** sub resolved inside root (symlinks and ".." clamped to it), named through /proc/self/fd. */
const inRootTarget =
  (root: string, sub: string): TargetRef =>
  () => {
    const rootfd = openat(AT.FDCWD, root, O.PATH | O.DIRECTORY);
    let fd: number;
    try {
      fd = openInRoot(rootfd, sub, O.PATH | O.DIRECTORY);
    } finally {
      close(rootfd);
    }
    return { path: `/proc/self/fd/${fd}`, release: () => close(fd) };
  };

function withTarget<T>(ref: TargetRef, fn: (path: string) => T): T {
  const t = ref();
  try {
    return fn(t.path);
  } finally {
    t.release();
  }
}

/** Mounts one mount at target (containerd's Mount.Mount on Linux). */
export function mountOne(m: Mount, target: string): void {
  mountAt(m, plainTarget(target));
}

function mountAt(m: Mount, target: TargetRef): void {
  if (m.type === "overlay" && optionsSize(m.options) >= pageSize - 512) {
    const { dir, options } = compactLowerdirs(m.options);
    if (dir !== "") {
      // containerd mounts from a child chdir'ed into dir. The cwd is process-wide (and off limits
      // in worker threads), so the relative paths are anchored on an O_PATH descriptor instead.
      const fd = openat(AT.FDCWD, dir, O.PATH | O.DIRECTORY);
      try {
        const anchored = options.map((o) =>
          o.startsWith("lowerdir=")
            ? `lowerdir=${o
                .slice("lowerdir=".length)
                .split(":")
                .map((rel) => `/proc/self/fd/${fd}/${rel}`)
                .join(":")}`
            : o,
        );
        mountParsed({ ...m, options: anchored }, target);
      } finally {
        close(fd);
      }
      return;
    }
  }
  mountParsed(m, target);
}

function mountParsed(m: Mount, target: TargetRef): void {
  const { flags, data } = parseMountOptions(m.options);
  if (Buffer.byteLength(data) > pageSize) throw new Error("mount options is too long");

  const oflags = flags & ~propagationFlags;
  let mounted = false;
  // A pure remount without data changes only flags: it skips the first call.
  if ((flags & MS.REMOUNT) === 0 || data !== "") {
    withTarget(target, (p) => mount(m.source, p, m.type, oflags, data));
    mounted = (flags & MS.REMOUNT) === 0;
  }
  try {
    if ((flags & propagationFlags) !== 0)
      withTarget(target, (p) => mount("", p, "", flags & (propagationFlags | MS.REC | MS.SILENT), ""));
    // The kernel ignores MS_RDONLY on a new bind mount: remount the bind read-only.
    if ((oflags & (MS.BIND | MS.RDONLY)) === (MS.BIND | MS.RDONLY))
      withTarget(target, (p) => mount("", p, "", oflags | MS.REMOUNT, ""));
  } catch (err) {
    // Never leave a half-configured mount (a bind that should have been read-only) behind.
    if (mounted) {
      try {
        withTarget(target, (p) => unmount(p, MNT.DETACH));
      } catch {
        // The original error matters more.
      }
    }
    throw err;
  }
}

/**
 * Mounts all of mounts, in order, on target (containerd's mount.All). A mount with a `target`
 * subdirectory goes on that path resolved inside target, never through a symlink out of it. When
 * one fails, the ones already made are unmounted before the error is thrown.
 */
export function mountAll(mounts: readonly Mount[], target: string): void {
  const done: TargetRef[] = [];
  try {
    for (const m of mounts) {
      const sub = m.target ?? "";
      const ref = sub === "" || sub === "/" || sub === "." ? plainTarget(target) : inRootTarget(target, sub);
      mountAt(m, ref);
      done.push(ref);
    }
  } catch (err) {
    for (const ref of done.reverse()) {
      try {
        withTarget(ref, (p) => unmount(p, MNT.DETACH));
      } catch {
        // Best effort: the original error matters more.
      }
    }
    throw err;
  }
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

/** umount2 that waits out EBUSY for a while (50 x 50 ms, like containerd). */
function unmountRetrying(target: string, flags: number): void {
  for (let i = 0; i < 50; i++) {
    try {
      unmount(target, flags);
      return;
    } catch (err) {
      if (!hasCode(err, "EBUSY")) throw err;
      Atomics.wait(sleepCell, 0, 0, 50);
    }
  }
  unmount(target, flags);
}

/**
 * Unmounts target until nothing is mounted there any more (EINVAL), undoing a stack of mounts
 * (containerd's mount.UnmountAll). A no-op for "" and for a path that does not exist.
 */
export function unmountAll(target: string, flags = 0): void {
  if (target === "" || !existsSync(target)) return;
  for (;;) {
    try {
      unmountRetrying(target, flags);
    } catch (err) {
      if (hasCode(err, "EINVAL")) return;
      throw err;
    }
  }
}

/**
 * unmountAll with the unmounts themselves off the event loop (an overlay's unmount syncs its upper
 * file system: milliseconds). When one fails, the same call here says why: EINVAL (nothing is
 * mounted any more) ends it; anything else (EBUSY) is thrown at once, without unmountAll's waits,
 * for a later unmountAll to retry.
 */
export async function unmountAllOffThread(target: string): Promise<void> {
  if (target === "" || !existsSync(target)) return;
  for (;;) {
    if ((await unmountOffThread(target)) === 0) continue;
    try {
      unmount(target);
    } catch (err) {
      if (hasCode(err, "EINVAL")) return;
      throw err;
    }
  }
}

/**
 * Mounts mounts on a fresh directory under tempParent, runs fn on it, and always unmounts and
 * removes the directory (containerd's mount.WithTempMount). The directory is removed with rmdir,
 * never recursively: if unmounting failed, deleting would reach into the mounted data.
 */
export async function withTempMount<T>(
  mounts: readonly Mount[],
  tempParent: string,
  fn: (root: string) => Promise<T>,
): Promise<T> {
  const root = await mkdtemp(join(tempParent, "berth-mount-"));
  try {
    mountAll(mounts, root);
  } catch (err) {
    await rmdir(root).catch(() => undefined);
    throw new Error(`failed to mount ${root}: ${(err as Error).message}`, { cause: err });
  }
  let result: { ok: true; value: T } | { ok: false; error: unknown };
  try {
    result = { ok: true, value: await fn(root) };
  } catch (error) {
    result = { ok: false, error };
  }
  try {
    unmountAll(root);
  } catch (err) {
    // Still busy (a process holds it): detach it so the tree goes once the last user leaves, but
    // leave the directory alone and report the failure unless fn already failed.
    try {
      unmountAll(root, MNT.DETACH);
    } catch {
      // Reported below.
    }
    if (result.ok) throw new Error(`failed to unmount ${root}: ${(err as Error).message}`, { cause: err });
    throw result.error;
  }
  await rmdir(root).catch(() => undefined);
  if (!result.ok) throw result.error;
  return result.value;
}

/** Mount points at or below dir in this process's mount namespace, deepest first. */
export function mountPointsUnder(dir: string): string[] {
  let base = resolve(dir);
  try {
    base = realpathSync(base);
  } catch {
    // Not there (any more): compare the path as given.
  }
  const points = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    .map(unescapeMountinfo)
    .filter((p) => p === base || p.startsWith(`${base}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}
