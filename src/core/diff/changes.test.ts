import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AT, O, S, close, lsetxattrAt, mknodat, makedev, openat, utimensat } from "../../sys/fs-at.js";
import { isCode } from "../../errdefs/errors.js";
import {
  type Change,
  type ChangesOptions,
  comparePaths,
  computeChanges,
  diffTrees,
  openTreeRoot,
} from "./changes.js";

function tempTrees(): { dir: string; lower: string; upper: string } {
  const dir = mkdtempSync(join(tmpdir(), "berth-changes-"));
  const lower = join(dir, "lower");
  const upper = join(dir, "upper");
  mkdirSync(lower);
  mkdirSync(upper);
  return { dir, lower, upper };
}

function changes(lower: string, upper: string, opts?: ChangesOptions): string[] {
  return [...computeChanges(lower, upper, opts)].map((c: Change) => `${c.kind} ${c.path}`);
}

/** Sets the mtime (and atime) of path, without following a final symlink. */
function setMtime(path: string, sec: number, nsec = 0): void {
  utimensat(AT.FDCWD, path, { sec, nsec }, { sec, nsec });
}

function mknod(path: string, mode: number, dev = 0n): void {
  const slash = path.lastIndexOf("/");
  const dirFd = openat(AT.FDCWD, path.slice(0, slash), O.RDONLY | O.DIRECTORY);
  try {
    mknodat(dirFd, path.slice(slash + 1), mode, dev);
  } finally {
    close(dirFd);
  }
}

function setXattr(path: string, key: string, value: Buffer): void {
  const slash = path.lastIndexOf("/");
  const dirFd = openat(AT.FDCWD, path.slice(0, slash), O.RDONLY | O.DIRECTORY);
  try {
    lsetxattrAt(dirFd, path.slice(slash + 1), key, value);
  } finally {
    close(dirFd);
  }
}

/** Copies lower to upper preserving everything (modes, owners, times, links, xattrs). */
function copyTree(from: string, to: string): void {
  rmSync(to, { recursive: true, force: true });
  execFileSync("cp", ["-a", from, to]);
}

void test("comparePaths sorts '/' before every other byte and follows UTF-8 byte order", () => {
  const paths = ["/a.b", "/a/b", "/a", "/a-b", "/\u{1F600}", "/\uFFFD", "/b"];
  paths.sort(comparePaths);
  assert.deepEqual(paths, ["/a", "/a/b", "/a-b", "/a.b", "/b", "/\uFFFD", "/\u{1F600}"]);
});

void test("identical trees and a tree against itself have no changes", () => {
  const { dir, lower, upper } = tempTrees();
  try {
    mkdirSync(join(lower, "d/e"), { recursive: true });
    writeFileSync(join(lower, "d/e/f"), "content");
    symlinkSync("../x", join(lower, "d/l"));
    copyTree(lower, upper);
    assert.deepEqual(changes(lower, upper), []);
    assert.deepEqual(changes(lower, lower), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test("additions report every path of a new subtree in walk order", () => {
  const { dir, lower, upper } = tempTrees();
  try {
    mkdirSync(join(lower, "a"));
    copyTree(lower, upper);
    mkdirSync(join(upper, "a/b/c"), { recursive: true });
    writeFileSync(join(upper, "a/b/c/f"), "x");
    writeFileSync(join(upper, "a/b/g"), "x");
    writeFileSync(join(upper, "a-b"), "x");
    writeFileSync(join(upper, "a.b"), "x");
    writeFileSync(join(upper, "0"), "x");
    // The parent "a" gained a child (its mtime changed) but its own metadata is the same.
    assert.deepEqual(changes(lower, upper), [
      "add /0",
      "add /a/b",
      "add /a/b/c",
      "add /a/b/c/f",
      "add /a/b/g",
      "add /a-b",
      "add /a.b",
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test("a deleted directory is reported once, its children are implied", () => {
  const { dir, lower, upper } = tempTrees();
  try {
    mkdirSync(join(lower, "d/e/f"), { recursive: true });
    writeFileSync(join(lower, "d/e/f/x"), "x");
    writeFileSync(join(lower, "d/y"), "y");
    writeFileSync(join(lower, "d-sibling"), "s");
    writeFileSync(join(lower, "file"), "f");
    mkdirSync(join(lower, "keep"));
    writeFileSync(join(lower, "keep/gone"), "g");
    copyTree(lower, upper);
    rmSync(join(upper, "d"), { recursive: true });
    unlinkSync(join(upper, "file"));
    unlinkSync(join(upper, "keep/gone"));
    assert.deepEqual(changes(lower, upper), ["delete /d", "delete /file", "delete /keep/gone"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test("content, mode, owner and type changes are modifications", () => {
  const { dir, lower, upper } = tempTrees();
  try {
    for (const f of ["content", "mode", "owner", "group"]) writeFileSync(join(lower, f), "same");
    mkdirSync(join(lower, "dirmode"));
    mkdirSync(join(lower, "dir2file/sub"), { recursive: true });
    writeFileSync(join(lower, "dir2file/sub/x"), "x");
    writeFileSync(join(lower, "file2dir"), "f");
    symlinkSync("t", join(lower, "link2file"));
    mknod(join(lower, "fifo"), S.IFIFO | 0o644);
    mknod(join(lower, "chr"), S.IFCHR | 0o644, makedev(1, 3));
    copyTree(lower, upper);
    writeFileSync(join(upper, "content"), "different length");
    chmodSync(join(upper, "mode"), 0o600);
    chownSync(join(upper, "owner"), 1234, 0);
    chownSync(join(upper, "group"), 0, 4321);
    chmodSync(join(upper, "dirmode"), 0o700);
    rmSync(join(upper, "dir2file"), { recursive: true });
    writeFileSync(join(upper, "dir2file"), "now a file");
    rmSync(join(upper, "file2dir"));
    mkdirSync(join(upper, "file2dir"));
    writeFileSync(join(upper, "file2dir/child"), "c");
    rmSync(join(upper, "link2file"));
    writeFileSync(join(upper, "link2file"), "t");
    rmSync(join(upper, "chr"));
    mknod(join(upper, "chr"), S.IFCHR | 0o644, makedev(1, 5));
    assert.deepEqual(changes(lower, upper), [
      "modify /chr",
      "modify /content",
      "modify /dir2file",
      "modify /dirmode",
      "modify /file2dir",
      "add /file2dir/child",
      "modify /group",
      "modify /link2file",
      "modify /mode",
      "modify /owner",
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test("same size and mtime: whole-second mtimes compare content, equal nanoseconds are trusted", () => {
  const { dir, lower, upper } = tempTrees();
  try {
    const names = [
      "trunc-same",
      "trunc-diff",
      "nano-same-time",
      "nano-diff-time",
      "trunc-vs-nano",
      "sec-diff",
    ];
    for (const n of names) writeFileSync(join(lower, n), "aaaa");
    copyTree(lower, upper);
    const set = (n: string, l: [number, number], u: [number, number], content?: string): void => {
      if (content !== undefined) writeFileSync(join(upper, n), content);
      setMtime(join(lower, n), ...l);
      setMtime(join(upper, n), ...u);
    };
    set("trunc-same", [1600000000, 0], [1600000000, 0]);
    set("trunc-diff", [1600000000, 0], [1600000000, 0], "bbbb");
    // containerd does not read the files when the nanoseconds match and are not zero.
    set("nano-same-time", [1600000000, 5], [1600000000, 5], "bbbb");
    set("nano-diff-time", [1600000000, 5], [1600000000, 6]);
    set("trunc-vs-nano", [1600000000, 0], [1600000000, 7]);
    set("sec-diff", [1600000000, 0], [1600000001, 0]);
    assert.deepEqual(changes(lower, upper), [
      "modify /nano-diff-time",
      "modify /sec-diff",
      "modify /trunc-diff",
      "modify /trunc-vs-nano",
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test("symlink targets: a new target of another length, or of the same length with truncated mtimes", () => {
  const { dir, lower, upper } = tempTrees();
  try {
    symlinkSync("target-a", join(lower, "len"));
    symlinkSync("target-a", join(lower, "same-len"));
    symlinkSync("target-a", join(lower, "unchanged"));
    copyTree(lower, upper);
    rmSync(join(upper, "len"));
    symlinkSync("longer-target", join(upper, "len"));
    rmSync(join(upper, "same-len"));
    symlinkSync("target-b", join(upper, "same-len"));
    for (const n of ["len", "same-len", "unchanged"]) {
      setMtime(join(lower, n), 1600000000);
      setMtime(join(upper, n), 1600000000);
    }
    assert.deepEqual(changes(lower, upper), ["modify /len", "modify /same-len"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test("xattrs: only security.capability by default (containerd), every attribute with xattrs: all", () => {
  const { dir, lower, upper } = tempTrees();
  try {
    writeFileSync(join(lower, "cap"), "x");
    writeFileSync(join(lower, "user"), "x");
    copyTree(lower, upper);
    // cap_net_bind_service=ep, VFS_CAP_REVISION_2
    setXattr(
      join(upper, "cap"),
      "security.capability",
      Buffer.from("0100000200040000000000000000000000000000", "hex"),
    );
    setXattr(join(upper, "user"), "user.note", Buffer.from("v"));
    for (const n of ["cap", "user"]) {
      setMtime(join(lower, n), 1600000000, 1);
      setMtime(join(upper, n), 1600000000, 1);
    }
    assert.deepEqual(changes(lower, upper), ["modify /cap"]);
    assert.deepEqual(changes(lower, upper, { xattrs: "all" }), ["modify /cap", "modify /user"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test("hard links: unchanged names of a linked inode are reported as unmodified to the writer only", () => {
  const { dir, lower, upper } = tempTrees();
  try {
    writeFileSync(join(lower, "a"), "linked");
    linkSync(join(lower, "a"), join(lower, "b"));
    writeFileSync(join(lower, "plain"), "p");
    setMtime(join(lower, "a"), 1600000000, 3);
    setMtime(join(lower, "plain"), 1600000000, 3);
    copyTree(lower, upper);
    linkSync(join(upper, "a"), join(upper, "c"));
    assert.deepEqual(changes(lower, upper), ["add /c"]);
    const lowerFd = openTreeRoot(lower);
    const upperFd = openTreeRoot(upper);
    try {
      const raw = [...diffTrees(lowerFd, upperFd)].map((c) => `${c.kind} ${c.path}`);
      assert.deepEqual(raw, ["unmodified /a", "unmodified /b", "add /c"]);
    } finally {
      close(lowerFd);
      close(upperFd);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test("symlinks are never followed, in or out of the trees", () => {
  const { dir, lower, upper } = tempTrees();
  try {
    const outside = join(dir, "outside");
    mkdirSync(outside);
    writeFileSync(join(outside, "secret"), "s");
    mkdirSync(join(lower, "d"));
    copyTree(lower, upper);
    symlinkSync(outside, join(upper, "escape"));
    symlinkSync("/", join(upper, "root"));
    // A directory in lower replaced by a symlink to a directory with the same children.
    writeFileSync(join(lower, "d/secret"), "s");
    rmSync(join(upper, "d"), { recursive: true });
    symlinkSync(outside, join(upper, "d"));
    assert.deepEqual(changes(lower, upper), ["modify /d", "add /escape", "add /root"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test("an opaque replacement of a directory shows each removed child (no overlay special-casing)", () => {
  const { dir, lower, upper } = tempTrees();
  try {
    mkdirSync(join(lower, "d"));
    writeFileSync(join(lower, "d/old1"), "1");
    writeFileSync(join(lower, "d/old2"), "2");
    copyTree(lower, upper);
    rmSync(join(upper, "d"), { recursive: true });
    mkdirSync(join(upper, "d"));
    writeFileSync(join(upper, "d/new"), "n");
    assert.deepEqual(changes(lower, upper), ["add /d/new", "delete /d/old1", "delete /d/old2"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test("file names that are not UTF-8 are refused, not mangled", () => {
  const { dir, lower, upper } = tempTrees();
  try {
    writeFileSync(Buffer.concat([Buffer.from(`${upper}/bad-`), Buffer.from([0xff, 0xfe])]), "x");
    assert.throws(
      () => changes(lower, upper),
      (e) => isCode(e, "not-implemented"),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
