// mount(2) and umount2(2): the daemon mounts snapshots itself (containerd does the same), never
// by shelling out to mount(8).
import { libc, check } from "./libc.js";

const mountCall = libc.func(
  "int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)",
);
const umount2Call = libc.func("int umount2(const char *target, int flags)");

/** Mount flags (linux/mount.h). */
export const MS = {
  RDONLY: 0x1,
  NOSUID: 0x2,
  NODEV: 0x4,
  NOEXEC: 0x8,
  SYNCHRONOUS: 0x10,
  REMOUNT: 0x20,
  MANDLOCK: 0x40,
  DIRSYNC: 0x80,
  NOSYMFOLLOW: 0x100,
  NOATIME: 0x400,
  NODIRATIME: 0x800,
  BIND: 0x1000,
  MOVE: 0x2000,
  REC: 0x4000,
  SILENT: 0x8000,
  UNBINDABLE: 0x20000,
  PRIVATE: 0x40000,
  SLAVE: 0x80000,
  SHARED: 0x100000,
  RELATIME: 0x200000,
  STRICTATIME: 0x1000000,
  LAZYTIME: 0x2000000,
} as const;

/** umount2 flags. */
export const MNT = { FORCE: 1, DETACH: 2, EXPIRE: 4, NOFOLLOW: 8 } as const;

export function mount(
  source: string | null,
  target: string,
  fstype: string | null,
  flags: number,
  data: string | null,
): void {
  check(mountCall(source, target, fstype, flags, data) as number, "mount", target);
}

export function unmount(target: string, flags = 0): void {
  check(umount2Call(target, flags) as number, "umount2", target);
}

/**
 * umount2 on one of koffi's worker threads, for an unmount that may take a while (an overlay's
 * syncs its upper file system): resolves with umount2's return value, 0 or -1. The errno of a call
 * on another thread is not ours to read: a caller that needs to know why repeats the call here.
 */
export function unmountOffThread(target: string, flags = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    (umount2Call as unknown as { async: (...args: unknown[]) => void }).async(
      target,
      flags,
      (err: unknown, r: number) => (err ? reject(err as Error) : resolve(r)),
    );
  });
}
