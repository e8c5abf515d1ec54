// Compares an unpacked root filesystem (e.g. a mounted snapshot) with an ExpectedTree and lists
// every difference; an empty list means it matches. xattrs are read with lgetxattr via koffi.
import { lstat, readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import koffi from "koffi";
import type { ExpectedNode, ExpectedTree } from "../fixtures/test-images.js";

const libc = koffi.load("libc.so.6");
const lgetxattrFn = libc.func(
  "long lgetxattr(const char *path, const char *name, _Out_ uint8_t *value, size_t size)",
);

/** An extended attribute of path (not following a final symlink), or undefined if it has none by that name. */
export function lgetxattr(path: string, name: string): Buffer | undefined {
  const buf = Buffer.alloc(64 * 1024);
  const n = Number(lgetxattrFn(path, name, buf, buf.length));
  return n < 0 ? undefined : buf.subarray(0, n);
}

function typeOf(st: Awaited<ReturnType<typeof lstat>>): string {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "dir";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isFIFO()) return "fifo";
  if (st.isCharacterDevice()) return "char";
  if (st.isBlockDevice()) return "block";
  return "socket";
}

const octal = (n: number): string => `0${n.toString(8)}`;

async function checkNode(root: string, rel: string, want: ExpectedNode): Promise<string[]> {
  const path = join(root, rel);
  const st = await lstat(path).catch(() => undefined);
  if (!st) return [`${rel}: missing`];
  const got = typeOf(st);
  if (got !== want.type) return [`${rel}: is a ${got}, want ${want.type}`];
  const problems: string[] = [];
  const expect = (what: string, actual: unknown, wanted: unknown): void => {
    if (actual !== wanted) problems.push(`${rel}: ${what} is ${String(actual)}, want ${String(wanted)}`);
  };
  if (want.type !== "symlink") expect("mode", octal(st.mode & 0o7777), octal(want.mode));
  if (want.type === "symlink") expect("target", await readlink(path), want.target);
  if (want.type === "file" || want.type === "dir") {
    if (want.uid !== undefined) expect("uid", st.uid, want.uid);
    if (want.gid !== undefined) expect("gid", st.gid, want.gid);
  }
  if (want.type === "dir" && want.entries) {
    expect("entries", JSON.stringify((await readdir(path)).sort()), JSON.stringify(want.entries));
  }
  if (want.type === "file") {
    if (want.content !== undefined)
      expect("content", JSON.stringify(await readFile(path, "utf8")), JSON.stringify(want.content));
    if (want.mtime) expect("mtime", st.mtime.toISOString(), want.mtime.toISOString());
    if (want.nlink !== undefined) expect("nlink", st.nlink, want.nlink);
    if (want.sameInodeAs) {
      const other = await lstat(join(root, want.sameInodeAs)).catch(() => undefined);
      expect(`inode (vs ${want.sameInodeAs})`, st.ino, other?.ino);
    }
    for (const [name, value] of Object.entries(want.xattrs ?? {})) {
      expect(`xattr ${name}`, lgetxattr(path, name)?.toString(), value);
    }
  }
  return problems;
}

/** Every way root differs from the expected tree, as readable lines. */
export async function checkRootfs(root: string, expected: ExpectedTree): Promise<string[]> {
  const problems: string[] = [];
  for (const [rel, node] of Object.entries(expected.present))
    problems.push(...(await checkNode(root, rel, node)));
  for (const rel of expected.absent) {
    const st = await lstat(join(root, rel)).catch(() => undefined);
    if (st) problems.push(`${rel}: present (a ${typeOf(st)}), want absent`);
  }
  return problems;
}
