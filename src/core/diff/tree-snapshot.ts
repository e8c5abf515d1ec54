// A canonical listing of a directory tree (types, modes, owners, sizes, content digests, link
// targets, device numbers, xattrs, times, hardlink groups), for comparing what two extractors or
// two differs produced. Symlinks are never followed.
import { createHash } from "node:crypto";
import {
  closeSync,
  lstatSync,
  openSync,
  readSync,
  readdirSync,
  readlinkSync,
  type BigIntStats,
} from "node:fs";
import { constants } from "node:fs";
import { AT, O, S, close, lgetxattrAt, llistxattrAt, openat } from "../../sys/fs-at.js";

export type TreeEntryType = "file" | "dir" | "symlink" | "char" | "block" | "fifo" | "socket";

export interface TreeEntry {
  /** Relative to the root, "/"-separated; the root itself is "." */
  path: string;
  type: TreeEntryType;
  /** Permission bits including setuid, setgid and sticky. */
  mode: number;
  uid: number;
  gid: number;
  /** Regular files: size and sha256 of the content. */
  size?: number;
  sha256?: string;
  /** Symlinks: the target as stored. */
  target?: string;
  /** Character and block devices. */
  major?: number;
  minor?: number;
  /** xattr name -> value as hex, sorted by name. */
  xattrs: Record<string, string>;
  /** Nanoseconds since the epoch, as a decimal string. */
  mtime: string;
  /** For a regular file with more than one link: the first path (in order) sharing its inode. */
  hardlinkOf?: string;
}

export interface SnapshotOptions {
  /** Include the root directory's own entry ("."). Default false. */
  includeRoot?: boolean;
  /** Read xattrs. Default true. */
  xattrs?: boolean;
}

function typeOf(st: BigIntStats): TreeEntryType {
  switch (Number(st.mode) & S.IFMT) {
    case S.IFREG:
      return "file";
    case S.IFDIR:
      return "dir";
    case S.IFLNK:
      return "symlink";
    case S.IFCHR:
      return "char";
    case S.IFBLK:
      return "block";
    case S.IFIFO:
      return "fifo";
    default:
      return "socket";
  }
}

function major(rdev: bigint): number {
  return Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
}

function minor(rdev: bigint): number {
  return Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
}

function digestFile(path: string): string {
  const hash = createHash("sha256");
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

function readXattrs(dirfd: number, name: string): Record<string, string> {
  const out: Record<string, string> = {};
  let keys: string[];
  try {
    keys = llistxattrAt(dirfd, name);
  } catch {
    return out;
  }
  for (const key of keys.sort()) out[key] = lgetxattrAt(dirfd, name, key).toString("hex");
  return out;
}

/** Walks root (without following symlinks) and returns its entries sorted by path. */
export function snapshotTree(root: string, opts: SnapshotOptions = {}): TreeEntry[] {
  const withXattrs = opts.xattrs ?? true;
  const entries: TreeEntry[] = [];
  const inodes = new Map<string, TreeEntry[]>();

  const visit = (rel: string, abs: string, dirfd: number, name: string): void => {
    const st = lstatSync(abs, { bigint: true });
    const type = typeOf(st);
    const entry: TreeEntry = {
      path: rel,
      type,
      mode: Number(st.mode) & 0o7777,
      uid: Number(st.uid),
      gid: Number(st.gid),
      xattrs: withXattrs ? readXattrs(dirfd, name) : {},
      mtime: st.mtimeNs.toString(),
    };
    if (type === "file") {
      entry.size = Number(st.size);
      entry.sha256 = digestFile(abs);
      if (st.nlink > 1n) {
        const key = `${st.dev}:${st.ino}`;
        const group = inodes.get(key) ?? [];
        group.push(entry);
        inodes.set(key, group);
      }
    } else if (type === "symlink") {
      entry.target = readlinkSync(abs);
    } else if (type === "char" || type === "block") {
      entry.major = major(st.rdev);
      entry.minor = minor(st.rdev);
    }
    if (rel !== "." || opts.includeRoot === true) entries.push(entry);
    if (type !== "dir") return;
    const fd = openat(AT.FDCWD, abs, O.PATH | O.DIRECTORY | O.NOFOLLOW);
    try {
      for (const child of readdirSync(abs).sort()) {
        visit(rel === "." ? child : `${rel}/${child}`, `${abs}/${child}`, fd, child);
      }
    } finally {
      close(fd);
    }
  };

  // The root's xattrs are read through its parent directory.
  const parent = openat(AT.FDCWD, `${root}/..`, O.PATH | O.DIRECTORY);
  try {
    const rootName = root.replace(/\/+$/, "").split("/").pop() ?? ".";
    visit(".", root, parent, rootName);
  } finally {
    close(parent);
  }

  for (const group of inodes.values()) {
    if (group.length < 2) continue;
    group.sort((a, b) => compare(a.path, b.path));
    for (const e of group.slice(1)) e.hardlinkOf = group[0]!.path;
  }
  return entries.sort((a, b) => compare(a.path, b.path));
}

function compare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export type TreeField = Exclude<keyof TreeEntry, "path" | "type">;

export interface FormatOptions {
  /** Fields left out of the listing (e.g. "mtime" when times are not comparable). */
  omit?: TreeField[];
  /** Types whose mtime is listed; default all but symlinks and directories. */
  mtimeFor?: TreeEntryType[];
}

/** One line per entry, fields in a fixed order: diff two listings to compare trees. */
export function formatTree(entries: readonly TreeEntry[], opts: FormatOptions = {}): string[] {
  const omit = new Set<string>(opts.omit ?? []);
  const mtimeFor = new Set<TreeEntryType>(opts.mtimeFor ?? ["file", "char", "block", "fifo", "socket"]);
  return entries.map((e) => {
    const parts = [e.path, e.type];
    if (!omit.has("mode")) parts.push(`mode=${e.mode.toString(8).padStart(4, "0")}`);
    if (!omit.has("uid")) parts.push(`uid=${e.uid}`);
    if (!omit.has("gid")) parts.push(`gid=${e.gid}`);
    if (e.size !== undefined && !omit.has("size")) parts.push(`size=${e.size}`);
    if (e.sha256 !== undefined && !omit.has("sha256")) parts.push(`sha256=${e.sha256.slice(0, 16)}`);
    if (e.target !== undefined && !omit.has("target")) parts.push(`target=${JSON.stringify(e.target)}`);
    if (e.major !== undefined && !omit.has("major")) parts.push(`rdev=${e.major}:${e.minor}`);
    if (e.hardlinkOf !== undefined && !omit.has("hardlinkOf"))
      parts.push(`link=${JSON.stringify(e.hardlinkOf)}`);
    if (!omit.has("xattrs")) {
      for (const [k, v] of Object.entries(e.xattrs)) parts.push(`xattr.${k}=${v}`);
    }
    if (!omit.has("mtime") && mtimeFor.has(e.type)) parts.push(`mtime=${e.mtime}`);
    return parts.join(" ");
  });
}
