// A faithful copy of a directory tree (continuity's fs.CopyDir, which the native snapshotter uses
// to give every snapshot its own copy of its parent): directories, regular files (cloned where the
// file system can), hard links kept as links, symlinks as they are, device nodes, fifos and
// sockets recreated with mknod; owner, mode (setuid bits too: chown comes before chmod), extended
// attributes and nanosecond times preserved. Symlinks are never followed. xattrs the target file
// system refuses (security.* without privilege, for instance) are skipped, as containerd does.
import {
  chmod,
  copyFile,
  constants,
  lchown,
  link,
  lstat,
  mkdir,
  readdir,
  readlink,
  symlink,
} from "node:fs/promises";
import type { BigIntStats } from "node:fs";
import { basename, dirname, join } from "node:path";
import { hasCode } from "../../sys/errno.js";
import {
  AT,
  O,
  S,
  close,
  lgetxattrAt,
  llistxattrAt,
  lsetxattrAt,
  mknodat,
  openat,
  utimensat,
} from "../../sys/fs-at.js";

/** How many entries of one directory are copied at once. */
const parallelism = 16;

const ns = 1_000_000_000n;

function times(st: BigIntStats) {
  return {
    atime: { sec: st.atimeNs / ns, nsec: Number(st.atimeNs % ns) },
    mtime: { sec: st.mtimeNs / ns, nsec: Number(st.mtimeNs % ns) },
  };
}

/** Runs fn with O_PATH descriptors of the directories holding src and dst. */
function withParents<T>(src: string, dst: string, fn: (srcDir: number, dstDir: number) => T): T {
  const s = openat(AT.FDCWD, dirname(src), O.PATH | O.DIRECTORY);
  try {
    const d = openat(AT.FDCWD, dirname(dst), O.PATH | O.DIRECTORY);
    try {
      return fn(s, d);
    } finally {
      close(d);
    }
  } finally {
    close(s);
  }
}

function copyXattrs(src: string, dst: string): void {
  withParents(src, dst, (srcDir, dstDir) => {
    let keys: string[];
    try {
      keys = llistxattrAt(srcDir, basename(src));
    } catch (err) {
      if (hasCode(err, "ENOTSUP") || hasCode(err, "EOPNOTSUPP")) return;
      throw err;
    }
    for (const key of keys) {
      try {
        lsetxattrAt(dstDir, basename(dst), key, lgetxattrAt(srcDir, basename(src), key));
      } catch {
        // containerd's native snapshotter logs and skips an xattr it cannot copy.
      }
    }
  });
}

/** Owner, mode, xattrs and times of src onto dst, in the order that keeps each of them. */
async function copyMetadata(src: string, dst: string, st: BigIntStats, withTimes: boolean): Promise<void> {
  await lchown(dst, Number(st.uid), Number(st.gid));
  if (!st.isSymbolicLink()) await chmod(dst, Number(st.mode & 0o7777n));
  copyXattrs(src, dst);
  if (withTimes) setTimes(dst, st);
}

function setTimes(dst: string, st: BigIntStats): void {
  const t = times(st);
  utimensat(AT.FDCWD, dst, t.atime, t.mtime, AT.SYMLINK_NOFOLLOW);
}

interface CopyState {
  /** Source inode ("dev:ino") of multiply linked files to the first copy made of it. */
  links: Map<string, Promise<string>>;
}

async function copyEntry(src: string, dst: string, state: CopyState): Promise<void> {
  const st = await lstat(src, { bigint: true });
  const type = Number(st.mode) & S.IFMT;
  switch (type) {
    case S.IFDIR:
      await copyDirectory(src, dst, st, state);
      return;
    case S.IFREG: {
      if (st.nlink > 1n) {
        const key = `${st.dev}:${st.ino}`;
        const first = state.links.get(key);
        if (first !== undefined) {
          await link(await first, dst);
          return;
        }
        const made = copyFile(src, dst, constants.COPYFILE_FICLONE).then(() => dst);
        state.links.set(key, made);
        await made;
      } else {
        await copyFile(src, dst, constants.COPYFILE_FICLONE);
      }
      break;
    }
    case S.IFLNK:
      await symlink(await readlink(src), dst);
      break;
    case S.IFCHR:
    case S.IFBLK:
    case S.IFIFO:
    case S.IFSOCK:
      mknodat(AT.FDCWD, dst, Number(st.mode & 0o177777n), st.rdev);
      break;
    default:
      // Nothing else can live in a directory; skip rather than fail, as continuity does.
      return;
  }
  await copyMetadata(src, dst, st, true);
}

async function copyDirectory(src: string, dst: string, st: BigIntStats, state: CopyState): Promise<void> {
  try {
    await mkdir(dst, Number(st.mode & 0o7777n));
  } catch (err) {
    if (!hasCode(err, "EEXIST")) throw err;
    const existing = await lstat(dst);
    if (!existing.isDirectory()) throw new Error(`cannot copy directory ${src} onto ${dst}: not a directory`);
  }
  await copyMetadata(src, dst, st, false);
  const names = await readdir(src);
  for (let i = 0; i < names.length; i += parallelism) {
    await Promise.all(
      names.slice(i, i + parallelism).map((n) => copyEntry(join(src, n), join(dst, n), state)),
    );
  }
  // Last: creating the entries changed the directory's times.
  setTimes(dst, st);
}

/**
 * Copies the tree at src into dst (created if missing; an existing directory takes src's
 * attributes and gains its entries).
 */
export async function copyTree(src: string, dst: string): Promise<void> {
  const st = await lstat(src, { bigint: true });
  if (!st.isDirectory()) throw new Error(`source ${src} is not directory`);
  await copyDirectory(src, dst, st, { links: new Map() });
}
