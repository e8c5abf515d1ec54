// Directory-fd-relative file system calls. Node's fs has no *at() calls, so paths inside an
// untrusted tree (an image layer being applied, a snapshot being diffed) are resolved here with
// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) and acted on by (dirfd, single name) pairs, so a
// symlink planted by the same input can never redirect a write outside the root.
import { arch, endianness } from "node:os";
import { libc, check, OpenHow } from "./libc.js";
import { SysError } from "./errno.js";
import { koffi } from "./libc.js";

/** open(2) flags (x86_64 / arm64 generic values). */
export const O = {
  RDONLY: 0o0,
  WRONLY: 0o1,
  RDWR: 0o2,
  CREAT: 0o100,
  EXCL: 0o200,
  NOCTTY: 0o400,
  TRUNC: 0o1000,
  APPEND: 0o2000,
  NONBLOCK: 0o4000,
  DIRECTORY: arch() === "arm64" ? 0o40000 : 0o200000,
  NOFOLLOW: arch() === "arm64" ? 0o100000 : 0o400000,
  CLOEXEC: 0o2000000,
  PATH: 0o10000000,
} as const;

/** openat2 resolve flags (linux/openat2.h). */
export const RESOLVE = {
  NO_XDEV: 0x01,
  NO_MAGICLINKS: 0x02,
  NO_SYMLINKS: 0x04,
  BENEATH: 0x08,
  IN_ROOT: 0x10,
  CACHED: 0x20,
} as const;

/** *at() flags. */
export const AT = {
  FDCWD: -100,
  SYMLINK_NOFOLLOW: 0x100,
  REMOVEDIR: 0x200,
  SYMLINK_FOLLOW: 0x400,
  EMPTY_PATH: 0x1000,
} as const;

/** File type bits of st_mode. */
export const S = {
  IFMT: 0o170000,
  IFSOCK: 0o140000,
  IFLNK: 0o120000,
  IFREG: 0o100000,
  IFBLK: 0o060000,
  IFDIR: 0o040000,
  IFCHR: 0o020000,
  IFIFO: 0o010000,
} as const;

/** UTIME_OMIT for utimensat: leave that time unchanged. */
export const UTIME_OMIT = (1 << 30) - 2;

const SYS_openat2 = 437; // the same number on x86_64 and arm64 (asm-generic)

const syscall = libc.func("long syscall(long number, ...)");
const openatCall = libc.func("int openat(int dirfd, const char *path, int flags, uint32_t mode)");
const mkdiratCall = libc.func("int mkdirat(int dirfd, const char *path, uint32_t mode)");
const mknodatCall = libc.func("int mknodat(int dirfd, const char *path, uint32_t mode, uint64_t dev)");
const symlinkatCall = libc.func("int symlinkat(const char *target, int dirfd, const char *path)");
const linkatCall = libc.func(
  "int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags)",
);
const unlinkatCall = libc.func("int unlinkat(int dirfd, const char *path, int flags)");
const renameatCall = libc.func(
  "int renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)",
);
const fchownatCall = libc.func(
  "int fchownat(int dirfd, const char *path, uint32_t uid, uint32_t gid, int flags)",
);
const fchmodatCall = libc.func("int fchmodat(int dirfd, const char *path, uint32_t mode, int flags)");
// The two timespecs go in as raw bytes (TIMES below): koffi's struct marshalling cost a few
// microseconds per call, which showed up once per file of a layer.
const utimensatCall = libc.func(
  "int utimensat(int dirfd, const char *path, const uint8_t *times, int flags)",
);
// glibc's utimensat refuses a NULL path (EINVAL); futimens is the fd form.
const futimensCall = libc.func("int futimens(int fd, const uint8_t *times)");
const readlinkatCall = libc.func(
  "ssize_t readlinkat(int dirfd, const char *path, _Out_ uint8_t *buf, size_t size)",
);
const fsetxattrCall = libc.func(
  "int fsetxattr(int fd, const char *name, const uint8_t *value, size_t size, int flags)",
);
const lsetxattrCall = libc.func(
  "int lsetxattr(const char *path, const char *name, const uint8_t *value, size_t size, int flags)",
);
const flistxattrCall = libc.func("ssize_t flistxattr(int fd, _Out_ uint8_t *list, size_t size)");
const llistxattrCall = libc.func("ssize_t llistxattr(const char *path, _Out_ uint8_t *list, size_t size)");
const fgetxattrCall = libc.func(
  "ssize_t fgetxattr(int fd, const char *name, _Out_ uint8_t *value, size_t size)",
);
const lgetxattrCall = libc.func(
  "ssize_t lgetxattr(const char *path, const char *name, _Out_ uint8_t *value, size_t size)",
);
const closeCall = libc.func("int close(int fd)");

export interface OpenHowOptions {
  flags: number;
  mode?: number;
  resolve?: number;
}

/**
 * openat2(2): opens path relative to dirfd with the resolve restrictions given. With
 * RESOLVE.IN_ROOT, ".." and absolute symlinks are clamped to dirfd as if it were "/".
 */
export function openat2(dirfd: number, path: string, how: OpenHowOptions): number {
  const value = { flags: how.flags | O.CLOEXEC, mode: how.mode ?? 0, resolve: how.resolve ?? 0 };
  const fd = syscall(
    SYS_openat2,
    "int",
    dirfd,
    "const char *",
    path,
    koffi.pointer(OpenHow),
    value,
    "size_t",
    koffi.sizeof(OpenHow),
  ) as number | bigint;
  return Number(check(fd, "openat2", path));
}

/** Resolution used for every path inside an untrusted tree. */
export const IN_ROOT = RESOLVE.IN_ROOT | RESOLVE.NO_MAGICLINKS;

/** Opens path (relative, resolved inside dirfd as root). */
export function openInRoot(rootfd: number, path: string, flags: number, mode = 0): number {
  return openat2(rootfd, path === "" ? "." : path, { flags, mode, resolve: IN_ROOT });
}

export function openat(dirfd: number, path: string, flags: number, mode = 0): number {
  return check(openatCall(dirfd, path, flags | O.CLOEXEC, mode) as number, "openat", path);
}

export function mkdirat(dirfd: number, name: string, mode: number): void {
  check(mkdiratCall(dirfd, name, mode) as number, "mkdirat", name);
}

/** makedev(3) for Linux's encoding. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
}

export function mknodat(dirfd: number, name: string, mode: number, dev: bigint = 0n): void {
  check(mknodatCall(dirfd, name, mode, dev) as number, "mknodat", name);
}

export function symlinkat(target: string, dirfd: number, name: string): void {
  check(symlinkatCall(target, dirfd, name) as number, "symlinkat", name);
}

export function linkat(
  olddirfd: number,
  oldpath: string,
  newdirfd: number,
  newpath: string,
  flags = 0,
): void {
  check(linkatCall(olddirfd, oldpath, newdirfd, newpath, flags) as number, "linkat", newpath);
}

export function unlinkat(dirfd: number, name: string, flags = 0): void {
  check(unlinkatCall(dirfd, name, flags) as number, "unlinkat", name);
}

export function renameat(olddirfd: number, oldname: string, newdirfd: number, newname: string): void {
  check(renameatCall(olddirfd, oldname, newdirfd, newname) as number, "renameat", newname);
}

/** chown of name in dirfd, or of dirfd itself when name is "" (AT_EMPTY_PATH; works on O_PATH fds). */
export function fchownat(
  dirfd: number,
  name: string,
  uid: number,
  gid: number,
  flags = AT.SYMLINK_NOFOLLOW,
): void {
  const f = name === "" ? flags | AT.EMPTY_PATH : flags;
  check(fchownatCall(dirfd, name, uid, gid, f) as number, "fchownat", name);
}

/** chmod of name in dirfd (follows a final symlink: call it only on names known not to be one). */
export function fchmodat(dirfd: number, name: string, mode: number): void {
  check(fchmodatCall(dirfd, name, mode, 0) as number, "fchmodat", name);
}

export interface TimeSpec {
  sec: number | bigint;
  nsec: number;
}

/** struct timespec[2] (64-bit time_t and long on x86_64 and arm64), reused by every call. */
if (koffi.sizeof("long") !== 8 || endianness() !== "LE")
  throw new Error("berth's timespec layout needs a 64-bit little-endian platform (x86_64, arm64)");
const TIMES = Buffer.alloc(4 * 8);
const TIMES32 = new Int32Array(TIMES.buffer, TIMES.byteOffset, 8);

function putInt64(slot: number, v: number | bigint): void {
  if (typeof v === "bigint") {
    TIMES.writeBigInt64LE(v, slot * 8);
    return;
  }
  if (!Number.isSafeInteger(v)) throw new SysError(22 /* EINVAL */, "utimensat");
  const high = Math.floor(v / 0x1_0000_0000);
  TIMES32[slot * 2] = v - high * 0x1_0000_0000; // the low 32 bits, stored as int32
  TIMES32[slot * 2 + 1] = high;
}

function fillTimes(atime: TimeSpec, mtime: TimeSpec): Buffer {
  putInt64(0, atime.sec);
  putInt64(1, atime.nsec);
  putInt64(2, mtime.sec);
  putInt64(3, mtime.nsec);
  return TIMES;
}

/** Sets atime and mtime of name in dirfd without following a final symlink. */
export function utimensat(
  dirfd: number,
  name: string,
  atime: TimeSpec,
  mtime: TimeSpec,
  flags = AT.SYMLINK_NOFOLLOW,
): void {
  const r = utimensatCall(dirfd, name, fillTimes(atime, mtime), flags) as number;
  check(r, "utimensat", name);
}

/** Sets times on an open fd (futimens). */
export function futimens(fd: number, atime: TimeSpec, mtime: TimeSpec): void {
  check(futimensCall(fd, fillTimes(atime, mtime)) as number, "futimens");
}

export function readlinkat(dirfd: number, name: string): string {
  let size = 256;
  for (;;) {
    const buf = Buffer.alloc(size);
    const n = Number(check(readlinkatCall(dirfd, name, buf, size) as number | bigint, "readlinkat", name));
    if (n < size) return buf.subarray(0, n).toString("utf8");
    size *= 4;
    if (size > 1 << 20) throw new SysError(36 /* ENAMETOOLONG */, "readlinkat", name);
  }
}

export function fsetxattr(fd: number, name: string, value: Uint8Array, flags = 0): void {
  check(fsetxattrCall(fd, name, value, value.length, flags) as number, "fsetxattr", name);
}

/**
 * Sets an xattr on entry `name` of directory `dirfd` without following it (for symlinks, which
 * cannot be opened for fsetxattr). The path goes through /proc/self/fd/<dirfd>, which names the
 * directory itself, and name is a single component, so nothing in between can be swapped.
 */
export function lsetxattrAt(dirfd: number, name: string, key: string, value: Uint8Array): void {
  if (name.includes("/") || name === "" || name === "." || name === "..")
    throw new SysError(22 /* EINVAL */, "lsetxattr", name);
  const path = `/proc/self/fd/${dirfd}/${name}`;
  check(lsetxattrCall(path, key, value, value.length, 0) as number, "lsetxattr", name);
}

function splitNames(buf: Buffer, n: number): string[] {
  return buf
    .subarray(0, n)
    .toString("utf8")
    .split("\0")
    .filter((s) => s !== "");
}

/** Lists xattr names of an open fd (regular files and directories). */
export function flistxattr(fd: number): string[] {
  const n = Number(check(flistxattrCall(fd, null, 0) as number | bigint, "flistxattr"));
  if (n === 0) return [];
  const buf = Buffer.alloc(n);
  return splitNames(buf, Number(check(flistxattrCall(fd, buf, n) as number | bigint, "flistxattr")));
}

export function fgetxattr(fd: number, name: string): Buffer {
  const n = Number(check(fgetxattrCall(fd, name, null, 0) as number | bigint, "fgetxattr", name));
  const buf = Buffer.alloc(n);
  if (n === 0) return buf;
  return buf.subarray(
    0,
    Number(check(fgetxattrCall(fd, name, buf, n) as number | bigint, "fgetxattr", name)),
  );
}

/**
 * Whether fd has the xattr name, without building an error for the common "no" (ENODATA, or
 * ENOTSUP where the file system has no xattrs of that kind).
 */
export function fhasxattr(fd: number, name: string): boolean {
  const n = Number(fgetxattrCall(fd, name, null, 0) as number | bigint);
  if (n >= 0) return true;
  const errno = koffi.errno();
  if (errno === 61 /* ENODATA */ || errno === 95 /* ENOTSUP */) return false;
  throw new SysError(errno, "fgetxattr", name);
}

/** llistxattr/lgetxattr of entry name of dirfd (through /proc/self/fd, see lsetxattrAt). */
export function llistxattrAt(dirfd: number, name: string): string[] {
  const path = `/proc/self/fd/${dirfd}/${name}`;
  const n = Number(check(llistxattrCall(path, null, 0) as number | bigint, "llistxattr", name));
  if (n === 0) return [];
  const buf = Buffer.alloc(n);
  return splitNames(buf, Number(check(llistxattrCall(path, buf, n) as number | bigint, "llistxattr", name)));
}

export function lgetxattrAt(dirfd: number, name: string, key: string): Buffer {
  const path = `/proc/self/fd/${dirfd}/${name}`;
  const n = Number(check(lgetxattrCall(path, key, null, 0) as number | bigint, "lgetxattr", name));
  const buf = Buffer.alloc(n);
  if (n === 0) return buf;
  return buf.subarray(
    0,
    Number(check(lgetxattrCall(path, key, buf, n) as number | bigint, "lgetxattr", name)),
  );
}

export function close(fd: number): void {
  check(closeCall(fd) as number, "close");
}

/** A file name as raw bytes: names read back from disk need not be valid UTF-8. */
export type RawName = string | Uint8Array;

function showName(name: RawName): string {
  return typeof name === "string" ? name : Buffer.from(name).toString();
}

function cName(name: RawName): string {
  if (typeof name === "string") return name;
  // koffi passes a Buffer as a pointer to its bytes, so the terminating NUL must be ours.
  return Buffer.concat([name, Buffer.alloc(1)]) as unknown as string;
}

/** unlinkat(2) for a name given as bytes or a string. */
export function unlinkatRaw(dirfd: number, name: RawName, flags = 0): void {
  check(unlinkatCall(dirfd, cName(name), flags) as number, "unlinkat", showName(name));
}

/** openat(2) for a name given as bytes or a string. */
export function openatRaw(dirfd: number, name: RawName, flags: number, mode = 0): number {
  return check(openatCall(dirfd, cName(name), flags | O.CLOEXEC, mode) as number, "openat", showName(name));
}
