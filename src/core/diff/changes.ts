// Filesystem changes between two trees, computed the way containerd 1.6 does it (continuity's
// fs.Changes "double walk"): both trees are walked in the same order at once, a path only in the
// upper tree is an addition, a path only in the lower tree is a deletion (a deleted directory is
// reported once, its children are implied), and a path in both is a modification when the two
// files differ. The walking differ mounts both sides (an overlay upper is diffed through its
// merged view), so nothing here knows about overlay whiteouts.
//
// Every access goes through directory file descriptors: a directory is opened relative to its
// parent's fd with RESOLVE_IN_ROOT and O_NOFOLLOW, entries are listed and lstat'ed through
// /proc/self/fd/<dirfd>/<name>, and files are opened by (dirfd, name). A symlink inside either
// tree is never followed, so a tree cannot point the differ at anything outside itself.
import { type BigIntStats, lstatSync, readSync, readdirSync } from "node:fs";
import {
  AT,
  O,
  S,
  close,
  flistxattr,
  fgetxattr,
  llistxattrAt,
  lgetxattrAt,
  openInRoot,
  openat,
  readlinkat,
} from "../../sys/fs-at.js";
import { hasCode } from "../../sys/errno.js";
import { BerthError } from "../../errdefs/errors.js";

export type ChangeKind = "add" | "modify" | "delete";

/** One change; path is absolute within the tree ("/a/b"). */
export interface Change {
  kind: ChangeKind;
  path: string;
}

/**
 * Which extended attributes make two otherwise equal files differ. containerd compares (and
 * exports) only security.capability; "all" compares every attribute the kernel lists.
 */
export type XattrPolicy = "capability" | "all";

export interface ChangesOptions {
  xattrs?: XattrPolicy;
}

/**
 * An entry of one tree. dirFd is its parent directory and stays open until the walker of that
 * tree is advanced past the entry's directory, so use it before asking for more changes.
 */
export interface TreeEntry {
  /** "/a/b" */
  path: string;
  name: string;
  dirFd: number;
  stat: BigIntStats;
}

/**
 * A change as the tar writer needs it: "unmodified" reports a path that is the same in both trees
 * but is a hard link (more than one name for its inode), so that a writer can relink it when
 * another name of the same inode changed (containerd's ChangeKindUnmodified).
 */
export interface RawChange {
  kind: ChangeKind | "unmodified";
  path: string;
  /** The upper tree's entry (absent for deletions). */
  upper?: TreeEntry;
  /** The lower tree's entry (absent for additions). */
  lower?: TreeEntry;
}

const SECOND = 1_000_000_000n;

export function fileType(st: BigIntStats): number {
  return Number(st.mode) & S.IFMT;
}

export function isDirStat(st: BigIntStats): boolean {
  return fileType(st) === S.IFDIR;
}

/** Seconds (floored, as Go's time.Unix) and nanoseconds of a stat's mtime. */
export function mtimeParts(st: BigIntStats): { sec: bigint; nsec: bigint } {
  const ns = st.mtimeNs;
  let sec = ns / SECOND;
  if (ns < 0n && sec * SECOND !== ns) sec -= 1n;
  return { sec, nsec: ns - sec * SECOND };
}

/** Path of an entry of an open directory that needs no further resolution by the kernel. */
export function procPath(dirFd: number, name: string): string {
  return `/proc/self/fd/${dirFd}/${name}`;
}

/**
 * Lists a directory through its fd, sorted byte-wise on the UTF-8 names (Go's sort.Strings, which
 * filepath.Walk uses). Names that are not valid UTF-8 are refused rather than mangled.
 */
function listDir(fd: number): string[] {
  const raw = readdirSync(`/proc/self/fd/${fd}`, { encoding: "buffer" });
  raw.sort((a, b) => Buffer.compare(a, b));
  const names = new Array<string>(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i]!;
    const s = b.toString("utf8");
    // Invalid sequences decode to U+FFFD; only then can the round trip fail.
    if (s.includes("\ufffd") && !Buffer.from(s, "utf8").equals(b))
      throw new BerthError("not-implemented", `file name is not valid UTF-8: ${JSON.stringify(s)}`);
    names[i] = s;
  }
  return names;
}

interface Frame {
  fd: number;
  path: string;
  names: string[];
  next: number;
  owned: boolean;
}

/**
 * Pre-order walk of one tree in filepath.Walk's order (each directory's names sorted), without
 * following symlinks. The root itself is not reported.
 */
export class TreeWalker {
  private readonly stack: Frame[] = [];

  constructor(rootFd: number) {
    this.stack.push({ fd: rootFd, path: "", names: listDir(rootFd), next: 0, owned: false });
  }

  next(): TreeEntry | null {
    for (;;) {
      const top = this.stack[this.stack.length - 1];
      if (top === undefined) return null;
      if (top.next < top.names.length) {
        const name = top.names[top.next++]!;
        const path = `${top.path}/${name}`;
        const stat = lstatSync(procPath(top.fd, name), { bigint: true });
        if (isDirStat(stat)) {
          const fd = openInRoot(top.fd, name, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
          let names: string[];
          try {
            names = listDir(fd);
          } catch (err) {
            close(fd);
            throw err;
          }
          this.stack.push({ fd, path, names, next: 0, owned: true });
        }
        return { path, name, dirFd: top.fd, stat };
      }
      this.stack.pop();
      if (top.owned) close(top.fd);
    }
  }

  close(): void {
    for (const f of this.stack.splice(0)) if (f.owned) close(f.fd);
  }
}

/**
 * Orders two paths the way the walk produces them: byte-wise on UTF-8 with "/" sorting before
 * every other byte (continuity's directoryCompare). Works on UTF-16 code units: a surrogate
 * (a code point above U+FFFF) is placed above every BMP unit, which is the UTF-8 byte order.
 */
export function comparePaths(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let c1 = a.charCodeAt(i);
    let c2 = b.charCodeAt(i);
    if (c1 === c2) continue;
    c1 = c1 === 0x2f ? 0 : c1 >= 0xd800 && c1 <= 0xdfff ? c1 + 0x10000 : c1;
    c2 = c2 === 0x2f ? 0 : c2 >= 0xd800 && c2 <= 0xdfff ? c2 + 0x10000 : c2;
    return c1 < c2 ? -1 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/** Extended attribute names of an entry; a filesystem without xattrs has none. */
export function entryXattrNames(dirFd: number, name: string): string[] {
  try {
    return llistxattrAt(dirFd, name);
  } catch (err) {
    if (hasCode(err, "ENOTSUP") || hasCode(err, "ENODATA")) return [];
    throw err;
  }
}

/** One extended attribute of an entry, or null when absent. */
export function entryXattr(dirFd: number, name: string, key: string): Buffer | null {
  try {
    return lgetxattrAt(dirFd, name, key);
  } catch (err) {
    if (hasCode(err, "ENODATA") || hasCode(err, "ENOTSUP")) return null;
    throw err;
  }
}

/** The same two readers on an open fd (used for directories opened by path). */
export function fdXattrNames(fd: number): string[] {
  try {
    return flistxattr(fd);
  } catch (err) {
    if (hasCode(err, "ENOTSUP") || hasCode(err, "ENODATA")) return [];
    throw err;
  }
}

export function fdXattr(fd: number, key: string): Buffer | null {
  try {
    return fgetxattr(fd, key);
  } catch (err) {
    if (hasCode(err, "ENODATA") || hasCode(err, "ENOTSUP")) return null;
    throw err;
  }
}

const CAPABILITY = "security.capability";

function capabilityOf(e: TreeEntry): Buffer | null {
  const names = entryXattrNames(e.dirFd, e.name);
  return names.includes(CAPABILITY) ? entryXattr(e.dirFd, e.name, CAPABILITY) : null;
}

function sameXattrs(a: TreeEntry, b: TreeEntry, policy: XattrPolicy): boolean {
  if (policy === "capability") {
    const c1 = capabilityOf(a);
    const c2 = capabilityOf(b);
    return (c1 ?? Buffer.alloc(0)).equals(c2 ?? Buffer.alloc(0));
  }
  const n1 = entryXattrNames(a.dirFd, a.name).sort();
  const n2 = entryXattrNames(b.dirFd, b.name).sort();
  if (n1.length !== n2.length) return false;
  for (let i = 0; i < n1.length; i++) {
    if (n1[i] !== n2[i]) return false;
    const v1 = entryXattr(a.dirFd, a.name, n1[i]!);
    const v2 = entryXattr(b.dirFd, b.name, n2[i]!);
    if (!(v1 ?? Buffer.alloc(0)).equals(v2 ?? Buffer.alloc(0))) return false;
  }
  return true;
}

const COMPARE_CHUNK = 1 << 20;
let compareBuffers: [Buffer, Buffer] | undefined;

function readFull(fd: number, buf: Buffer): number {
  let off = 0;
  while (off < buf.length) {
    const n = readSync(fd, buf, off, buf.length - off, null);
    if (n === 0) break;
    off += n;
  }
  return off;
}

/** Byte-for-byte comparison of two regular files of the same size. */
function sameContent(a: TreeEntry, b: TreeEntry): boolean {
  compareBuffers ??= [Buffer.allocUnsafe(COMPARE_CHUNK), Buffer.allocUnsafe(COMPARE_CHUNK)];
  const [b1, b2] = compareBuffers;
  const fd1 = openInRoot(a.dirFd, a.name, O.RDONLY | O.NOFOLLOW | O.NOCTTY);
  try {
    const fd2 = openInRoot(b.dirFd, b.name, O.RDONLY | O.NOFOLLOW | O.NOCTTY);
    try {
      for (;;) {
        const n1 = readFull(fd1, b1);
        const n2 = readFull(fd2, b2);
        if (n1 !== n2 || b1.compare(b2, 0, n2, 0, n1) !== 0) return false;
        if (n1 < COMPARE_CHUNK) return true;
      }
    } finally {
      close(fd2);
    }
  } finally {
    close(fd1);
  }
}

/**
 * continuity's sameFile: the same inode, or the same type, mode, owner, device number and
 * security.capability, and for non-directories the same size and mtime. When both mtimes have no
 * sub-second part (they may have been truncated by an archive round trip), the content (or the
 * link target) decides; equal non-zero nanoseconds are trusted without reading the files.
 */
export function sameFile(a: TreeEntry, b: TreeEntry, policy: XattrPolicy = "capability"): boolean {
  const s1 = a.stat;
  const s2 = b.stat;
  if (s1.dev === s2.dev && s1.ino === s2.ino) return true;
  if (s1.mode !== s2.mode || s1.uid !== s2.uid || s1.gid !== s2.gid || s1.rdev !== s2.rdev) return false;
  if (!sameXattrs(a, b, policy)) return false;
  if (isDirStat(s1)) return true;
  if (s1.size !== s2.size) return false;
  const t1 = mtimeParts(s1);
  const t2 = mtimeParts(s2);
  if (t1.sec !== t2.sec) return false;
  if (t1.nsec === 0n && t2.nsec === 0n) {
    const type = fileType(s1);
    if (type === S.IFLNK) return readlinkat(a.dirFd, a.name) === readlinkat(b.dirFd, b.name);
    if (type === S.IFREG && s1.size > 0n) return sameContent(a, b);
    return true;
  }
  return t1.nsec === t2.nsec;
}

function isLinked(st: BigIntStats): boolean {
  return !isDirStat(st) && st.nlink > 1n;
}

/**
 * The double walk over two open tree roots. Yields changes in path order; an entry's fds are
 * valid until the next value is requested.
 */
export function* diffTrees(
  lowerFd: number,
  upperFd: number,
  opts: ChangesOptions = {},
): Generator<RawChange> {
  const policy = opts.xattrs ?? "capability";
  const w1 = new TreeWalker(lowerFd);
  let w2: TreeWalker | undefined;
  try {
    w2 = new TreeWalker(upperFd);
    let f1 = w1.next();
    let f2 = w2.next();
    let rmdir = "";
    while (f1 !== null || f2 !== null) {
      const order = f1 === null ? 1 : f2 === null ? -1 : comparePaths(f1.path, f2.path);
      if (order > 0) {
        // Only in upper.
        rmdir = "";
        const e = f2!;
        yield { kind: "add", path: e.path, upper: e };
        f2 = w2.next();
      } else if (order < 0) {
        // Only in lower: the top-most deleted directory stands for its whole subtree.
        const e = f1!;
        if (rmdir !== "" && e.path.startsWith(rmdir)) {
          f1 = w1.next();
          continue;
        }
        if (isDirStat(e.stat)) rmdir = `${e.path}/`;
        else rmdir = "";
        yield { kind: "delete", path: e.path, lower: e };
        f1 = w1.next();
      } else {
        const l = f1!;
        const u = f2!;
        const same = sameFile(l, u, policy);
        if (isDirStat(l.stat) && !isDirStat(u.stat)) rmdir = `${l.path}/`;
        else rmdir = "";
        if (!same) yield { kind: "modify", path: u.path, upper: u, lower: l };
        else if (isLinked(u.stat)) yield { kind: "unmodified", path: u.path, upper: u, lower: l };
        f1 = w1.next();
        f2 = w2.next();
      }
    }
  } finally {
    w1.close();
    w2?.close();
  }
}

/** Opens a tree root given by the daemon (a trusted path: a snapshot or a mount point). */
export function openTreeRoot(path: string): number {
  return openat(AT.FDCWD, path, O.RDONLY | O.DIRECTORY);
}

/**
 * The changes that turn lower into upper, in path order: "add" for each path only in upper
 * (every path of an added subtree), "delete" for the top-most path only in lower, "modify" for
 * paths in both whose files differ (a directory only when its own metadata differs).
 */
export function* computeChanges(lower: string, upper: string, opts: ChangesOptions = {}): Generator<Change> {
  const lowerFd = openTreeRoot(lower);
  try {
    const upperFd = openTreeRoot(upper);
    try {
      for (const c of diffTrees(lowerFd, upperFd, opts)) {
        if (c.kind !== "unmodified") yield { kind: c.kind, path: c.path };
      }
    } finally {
      close(upperFd);
    }
  } finally {
    close(lowerFd);
  }
}
