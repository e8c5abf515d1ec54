// The breakout corpus: containerd's TestBreakouts (pkg/archive/tar_test.go) case by case, plus the
// path, resource and truncation classes of security.md §2.4. Every case runs with sentinels in a
// sibling of the root and checks they are untouched and nothing new appeared outside the root.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  linkSync,
  utimesSync,
  writeFileSync,
  fstatSync,
  closeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { isCode, type ErrorCode } from "../../errdefs/errors.js";
import { AT, O, close, openInRoot, openat } from "../../sys/fs-at.js";
import { applyTar, type ApplyTarOptions } from "./apply-tar.js";
import { decompressStream } from "./decompress.js";
import { craftTar, paxRecords, tarEntry, type CraftEntry } from "./tar-craft.js";

interface Ctx {
  /** The scratch directory: root/ and outside/ live in it. */
  base: string;
  root: string;
  outside: string;
}

type Validator = (root: string, ctx: Ctx) => void;

interface BreakoutCase {
  name: string;
  /** Entries in archive order, or raw tar bytes (built with the context's paths). */
  tar: (ctx: Ctx) => CraftEntry[] | Buffer;
  /** Pre-existing content of the root (containerd's fstest appliers). */
  setup?: (root: string, ctx: Ctx) => void;
  opts?: Partial<ApplyTarOptions>;
  /** Gzip the archive (whole, or cut short) and decompress it in front of the applier. */
  gzip?: "whole" | "truncated";
  validate?: Validator;
  /** Expected failure: the error code and a message pattern. */
  error?: { code: ErrorCode; message: RegExp };
}

const EXPECTED = "unbroken";

// ---- containerd's validators, resolving paths inside the root as fs.RootPath does ----

function statInRoot(root: string, path: string): { dev: number; ino: number } {
  const rootfd = openat(AT.FDCWD, root, O.PATH | O.DIRECTORY);
  try {
    const fd = openInRoot(rootfd, path.replace(/^\/+/, ""), O.PATH);
    try {
      const st = fstatSync(fd);
      return { dev: st.dev, ino: st.ino };
    } finally {
      closeSync(fd);
    }
  } finally {
    close(rootfd);
  }
}

const sameFile =
  (a: string, b: string): Validator =>
  (root) =>
    assert.deepEqual(statInRoot(root, a), statInRoot(root, b), `${a} and ${b} should be the same file`);

const notSameFile =
  (a: string, b: string): Validator =>
  (root) =>
    assert.notDeepEqual(statInRoot(root, a), statInRoot(root, b), `${a} and ${b} should differ`);

const fileValue =
  (p: string, content: string): Validator =>
  (root) =>
    assert.equal(readFileSync(join(root, p), "utf8"), content, p);

const fileNotExists =
  (p: string): Validator =>
  (root) =>
    assert.equal(existsSync(join(root, p)) || isLink(join(root, p)), false, `${p} should not exist`);

const isSymlink =
  (p: string): Validator =>
  (root) =>
    assert.ok(lstatSync(join(root, p)).isSymbolicLink(), `${p} should be a symlink`);

const sameSymlink =
  (a: string, b: string): Validator =>
  (root) => {
    isSymlink(a)(root, undefined as never);
    isSymlink(b)(root, undefined as never);
    assert.equal(readlinkSync(join(root, a)), readlinkSync(join(root, b)));
  };

const unbrokenCheck: Validator = fileValue("etc/unbroken", EXPECTED);

const all =
  (...vs: Validator[]): Validator =>
  (root, ctx) => {
    for (const v of vs) v(root, ctx);
  };

function isLink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

function setupEtc(content = "inside"): (root: string) => void {
  return (root) => {
    mkdirSync(join(root, "etc"), { mode: 0o755 });
    writeFileSync(join(root, "etc", "passwd"), content, { mode: 0o644 });
  };
}

const invalidArchive = {
  code: "invalid-argument" as const,
  message: /invalid whiteout name.*invalid archive/,
};

const CONTAINERD: BreakoutCase[] = [
  {
    name: "SymlinkAbsolute",
    tar: () => [
      { name: "etc", type: "dir" },
      { name: "localetc", type: "symlink", linkname: "/etc" },
      { name: "/localetc/unbroken", content: EXPECTED },
    ],
    validate: unbrokenCheck,
  },
  {
    name: "SymlinkUpAndOut",
    tar: () => [
      { name: "etc", type: "dir" },
      { name: "dummy", type: "dir" },
      { name: "localetc", type: "symlink", linkname: "/dummy/../etc" },
      { name: "/localetc/unbroken", content: EXPECTED },
    ],
    validate: unbrokenCheck,
  },
  {
    name: "SymlinkMultipleAbsolute",
    tar: () => [
      { name: "etc", type: "dir" },
      { name: "dummy", type: "dir" },
      { name: "/dummy/etc", type: "symlink", linkname: "/etc" },
      { name: "localetc", type: "symlink", linkname: "/dummy/etc" },
      { name: "/dummy/etc/unbroken", content: EXPECTED },
    ],
    validate: unbrokenCheck,
  },
  {
    name: "SymlinkMultipleRelative",
    tar: () => [
      { name: "etc", type: "dir" },
      { name: "dummy", type: "dir" },
      { name: "/dummy/etc", type: "symlink", linkname: "/etc" },
      { name: "localetc", type: "symlink", linkname: "./dummy/etc" },
      { name: "/dummy/etc/unbroken", content: EXPECTED },
    ],
    validate: unbrokenCheck,
  },
  {
    name: "SymlinkEmptyFile",
    tar: () => [
      { name: "etc", type: "dir" },
      { name: "etc/emptied", content: "notempty" },
      { name: "localetc", type: "symlink", linkname: "/etc" },
      { name: "/localetc/emptied", content: "" },
    ],
    validate: fileValue("etc/emptied", ""),
  },
  {
    name: "HardlinkRelative",
    tar: () => [
      { name: "etc", type: "dir", mode: 0o770 },
      { name: "/etc/passwd", content: "inside" },
      { name: "breakouts", type: "dir" },
      { name: "breakouts/d1", type: "symlink", linkname: "../../etc" },
      { name: "breakouts/mypasswd", type: "link", linkname: "/breakouts/d1/passwd" },
    ],
    validate: sameFile("/breakouts/mypasswd", "/etc/passwd"),
  },
  {
    name: "HardlinkDownAndOut",
    tar: () => [
      { name: "etc", type: "dir", mode: 0o770 },
      { name: "/etc/passwd", content: "inside" },
      { name: "breakouts", type: "dir" },
      { name: "downandout", type: "dir" },
      { name: "breakouts/d1", type: "symlink", linkname: "../downandout/../../etc" },
      { name: "breakouts/mypasswd", type: "link", linkname: "/breakouts/d1/passwd" },
    ],
    validate: sameFile("/breakouts/mypasswd", "/etc/passwd"),
  },
  {
    name: "HardlinkAbsolute",
    tar: () => [
      { name: "etc", type: "dir", mode: 0o770 },
      { name: "/etc/passwd", content: "inside" },
      { name: "localetc", type: "symlink", linkname: "/etc" },
      { name: "localpasswd", type: "link", linkname: "/localetc/passwd" },
    ],
    validate: sameFile("localpasswd", "/etc/passwd"),
  },
  {
    name: "HardlinkRelativeLong",
    tar: () => [
      { name: "etc", type: "dir", mode: 0o770 },
      { name: "/etc/passwd", content: "inside" },
      { name: "localetc", type: "symlink", linkname: "../../../../../../../etc" },
      { name: "localpasswd", type: "link", linkname: "/localetc/passwd" },
    ],
    validate: sameFile("localpasswd", "/etc/passwd"),
  },
  {
    name: "HardlinkRelativeUpAndOut",
    tar: () => [
      { name: "etc", type: "dir", mode: 0o770 },
      { name: "/etc/passwd", content: "inside" },
      { name: "localetc", type: "symlink", linkname: "upandout/../../../etc" },
      { name: "localpasswd", type: "link", linkname: "/localetc/passwd" },
    ],
    validate: sameFile("localpasswd", "/etc/passwd"),
  },
  {
    name: "HardlinkDirectRelative",
    tar: () => [
      { name: "etc", type: "dir", mode: 0o770 },
      { name: "/etc/passwd", content: "inside" },
      { name: "localpasswd", type: "link", linkname: "../../../../../etc/passwd" },
    ],
    validate: sameFile("localpasswd", "/etc/passwd"),
  },
  {
    name: "HardlinkDirectAbsolute",
    tar: () => [
      { name: "etc", type: "dir", mode: 0o770 },
      { name: "/etc/passwd", content: "inside" },
      { name: "localpasswd", type: "link", linkname: "/etc/passwd" },
    ],
    validate: sameFile("localpasswd", "/etc/passwd"),
  },
  {
    name: "SymlinkParentDirectory",
    tar: () => [
      { name: "etc", type: "dir", mode: 0o770 },
      { name: "/etc/passwd", content: "inside" },
      { name: "..", type: "symlink", linkname: "/etc/" },
      { name: "localpasswd", type: "link", linkname: "/etc/passwd" },
    ],
    validate: sameFile("/localpasswd", "/etc/passwd"),
  },
  {
    name: "SymlinkEmptyFilename",
    tar: () => [
      { name: "etc", type: "dir", mode: 0o770 },
      { name: "/etc/passwd", content: "inside" },
      { name: "", type: "symlink", linkname: "/etc/" },
      { name: "localpasswd", type: "link", linkname: "/etc/passwd" },
    ],
    validate: sameFile("/localpasswd", "/etc/passwd"),
  },
  {
    name: "SymlinkParentRelative",
    tar: () => [
      { name: "etc", type: "dir", mode: 0o770 },
      { name: "/etc/passwd", content: "inside" },
      { name: "localetc/sub/..", type: "symlink", linkname: "/etc/" },
      { name: "/localetc/localpasswd", type: "link", linkname: "/etc/passwd" },
    ],
    validate: sameFile("/localetc/localpasswd", "/etc/passwd"),
  },
  {
    name: "SymlinkSlashEnded",
    tar: () => [
      { name: "etc", type: "dir", mode: 0o770 },
      { name: "/etc/passwd", content: "inside" },
      { name: "localetc/", type: "dir", mode: 0o770 },
      { name: "/localetc/localpasswd", type: "link", linkname: "/etc/passwd" },
    ],
    validate: sameFile("/localetc/localpasswd", "/etc/passwd"),
  },
  {
    name: "SymlinkOverrideDirectory",
    setup: (root) => {
      setupEtc()(root);
      mkdirSync(join(root, "localetc"));
    },
    tar: () => [
      { name: "localetc", type: "symlink", linkname: "/etc" },
      { name: "/localetc/localpasswd", type: "link", linkname: "/etc/passwd" },
    ],
    validate: sameFile("/localetc/localpasswd", "/etc/passwd"),
  },
  {
    name: "SymlinkOverrideDirectoryRelative",
    setup: (root) => {
      setupEtc()(root);
      mkdirSync(join(root, "localetc"));
    },
    tar: () => [
      { name: "localetc", type: "symlink", linkname: "../../etc" },
      { name: "/localetc/localpasswd", type: "link", linkname: "/etc/passwd" },
    ],
    validate: sameFile("/localetc/localpasswd", "/etc/passwd"),
  },
  {
    name: "DirectoryOverrideSymlink",
    setup: (root) => {
      setupEtc()(root);
      symlinkSync("/etc", join(root, "localetc"));
    },
    tar: () => [
      { name: "/localetc/", type: "dir" },
      { name: "/localetc/localpasswd", type: "link", linkname: "/etc/passwd" },
    ],
    validate: sameFile("/localetc/localpasswd", "/etc/passwd"),
  },
  {
    name: "DirectoryOverrideSymlinkAndHardlink",
    setup: (root) => {
      setupEtc()(root);
      symlinkSync("etc", join(root, "localetc"));
      linkSync(join(root, "etc", "passwd"), join(root, "etc", "localpasswd"));
    },
    tar: () => [
      { name: "/localetc/", type: "dir" },
      { name: "/localetc/localpasswd", content: "different" },
    ],
    validate: notSameFile("/localetc/localpasswd", "/etc/passwd"),
  },
  {
    name: "WhiteoutRootParent",
    setup: setupEtc(),
    tar: () => [{ name: ".wh...", content: "" }],
    error: invalidArchive,
  },
  {
    name: "WhiteoutParent",
    setup: setupEtc(),
    tar: () => [{ name: "etc/.wh...", content: "" }],
    error: invalidArchive,
  },
  {
    name: "WhiteoutRoot",
    setup: setupEtc(),
    tar: () => [{ name: ".wh..", content: "" }],
    error: invalidArchive,
  },
  {
    name: "WhiteoutCurrentDirectory",
    setup: setupEtc(),
    tar: () => [{ name: "etc/.wh..", content: "" }],
    error: invalidArchive,
  },
  {
    name: "WhiteoutSymlink",
    setup: (root) => {
      setupEtc("all users")(root);
      symlinkSync("/etc", join(root, "localetc"));
    },
    tar: () => [{ name: ".wh.localetc", content: "" }],
    validate: all(fileValue("etc/passwd", "all users"), fileNotExists("localetc")),
  },
  {
    name: "WhiteoutSymlinkPath",
    setup: (root) => {
      setupEtc("all users")(root);
      writeFileSync(join(root, "etc", "whitedout"), "ahhhh whiteout");
      symlinkSync("/etc", join(root, "localetc"));
    },
    tar: () => [{ name: "localetc/.wh.whitedout", content: "" }],
    validate: all(fileValue("etc/passwd", "all users"), fileNotExists("etc/whitedout")),
  },
  {
    name: "WhiteoutDirectoryName",
    setup: (root) => {
      setupEtc("all users")(root);
      writeFileSync(join(root, "etc", "whitedout"), "ahhhh whiteout");
      symlinkSync("/etc", join(root, "localetc"));
    },
    tar: () => [{ name: ".wh.etc/somefile", content: "non-empty" }],
    validate: all(fileValue("etc/passwd", "all users"), fileValue(".wh.etc/somefile", "non-empty")),
  },
  {
    name: "WhiteoutDeadSymlinkParent",
    setup: (root) => {
      setupEtc("all users")(root);
      symlinkSync("/dne", join(root, "localetc"));
    },
    tar: () => [{ name: "localetc/.wh.etc", content: "" }],
    // containerd's mkparent creates the dead link's target (inside the root); nothing is removed.
    validate: all(fileValue("etc/passwd", "all users"), (root) =>
      assert.ok(lstatSync(join(root, "dne")).isDirectory()),
    ),
  },
  {
    name: "WhiteoutRelativePath",
    setup: (root) => {
      setupEtc("all users")(root);
      symlinkSync("/dne", join(root, "localetc"));
    },
    tar: () => [{ name: "dne/../.wh.etc", content: "" }],
    validate: fileNotExists("etc/passwd"),
  },
  {
    name: "HardlinkSymlinkBeforeCreateTarget",
    tar: () => [
      { name: "etc", type: "dir", mode: 0o770 },
      { name: "localpasswd", type: "symlink", linkname: "/etc/passwd" },
      { name: "localpasswd-dup", type: "link", linkname: "localpasswd" },
      { name: "/etc/passwd", content: "after" },
    ],
    validate: sameFile("localpasswd-dup", "/etc/passwd"),
  },
  {
    name: "HardlinkSymlinkRelative",
    tar: () => [
      { name: "etc", type: "dir", mode: 0o770 },
      { name: "/etc/passwd", content: "inside" },
      { name: "passwdlink", type: "symlink", linkname: "../../../../../etc/passwd" },
      { name: "localpasswd", type: "link", linkname: "/passwdlink" },
    ],
    validate: all(sameSymlink("/localpasswd", "/passwdlink"), sameFile("/localpasswd", "/etc/passwd")),
  },
  {
    name: "HardlinkSymlinkAbsolute",
    tar: () => [
      { name: "etc", type: "dir", mode: 0o770 },
      { name: "/etc/passwd", content: "inside" },
      { name: "passwdlink", type: "symlink", linkname: "/etc/passwd" },
      { name: "localpasswd", type: "link", linkname: "/passwdlink" },
    ],
    validate: all(sameSymlink("/localpasswd", "/passwdlink"), sameFile("/localpasswd", "/etc/passwd")),
  },
  {
    name: "HardlinkSymlinkChmod",
    setup: (_root, ctx) => {
      writeFileSync(join(ctx.outside, "perm400"), "...", { mode: 0o400 });
      writeFileSync(join(ctx.outside, "also-exists-outside-root"), "...", { mode: 0o640 });
    },
    tar: (ctx) => [
      {
        name: join(ctx.outside, "also-exists-outside-root"),
        type: "symlink",
        linkname: join(ctx.outside, "perm400"),
      },
      {
        name: "sketchylink",
        type: "link",
        linkname: join(ctx.outside, "also-exists-outside-root"),
        mode: 0o777,
      },
    ],
    validate: (_root, ctx) => assert.equal(lstatSync(join(ctx.outside, "perm400")).mode & 0o7777, 0o400),
  },
];

// ---- beyond containerd's list: security.md §2.4 ----

const tooLong = (code: ErrorCode = "invalid-argument") => ({ code, message: /ENAMETOOLONG/ });

const EXTRA: BreakoutCase[] = [
  {
    name: "DotDotComponents",
    tar: () => [
      { name: "../../outside/sentinel", content: "clamped" },
      { name: "a/../../../b", content: "b" },
      { name: "c/./d/../e", content: "e" },
    ],
    validate: all(fileValue("outside/sentinel", "clamped"), fileValue("b", "b"), fileValue("c/e", "e")),
  },
  {
    name: "AbsoluteNames",
    tar: (ctx) => [
      { name: `${ctx.outside}/sentinel`, content: "inside after all" },
      { name: "/etc/x", content: "x" },
      { name: "//double//slash", content: "d" },
    ],
    validate: (root, ctx) => {
      assert.equal(readFileSync(join(root, ctx.outside, "sentinel"), "utf8"), "inside after all");
      assert.equal(readFileSync(join(root, "etc/x"), "utf8"), "x");
      assert.equal(readFileSync(join(root, "double/slash"), "utf8"), "d");
    },
  },
  {
    name: "DotSlashPrefix",
    tar: () => [
      { name: "./", type: "dir", mode: 0o777 },
      { name: "./etc/", type: "dir" },
      { name: "./etc/x", content: "x" },
    ],
    validate: (root) => {
      assert.equal(readFileSync(join(root, "etc/x"), "utf8"), "x");
      // containerd ignores entries that resolve to the root: its mode is untouched.
      assert.equal(lstatSync(root).mode & 0o777, 0o755);
    },
  },
  {
    name: "RootNamesWithData",
    tar: () => [
      { name: ".", content: "data for the root" },
      { name: "/", content: "more" },
      { name: "..", content: "and more" },
    ],
    validate: (root) => assert.deepEqual(readdirSync(root), []),
  },
  {
    name: "NulInPaxPath",
    tar: () => [
      { name: "x", content: "x", pax: [["path", Buffer.from("etc/passwd\0../../outside/sentinel")]] },
    ],
    error: { code: "invalid-argument", message: /PAX path contains a NUL byte/ },
  },
  {
    name: "NulInPaxLinkpath",
    tar: () => [{ name: "x", type: "symlink", linkname: "y", pax: [["linkpath", Buffer.from("a\0b")]] }],
    error: { code: "invalid-argument", message: /PAX linkpath contains a NUL byte/ },
  },
  {
    name: "NulInGnuLongName",
    tar: () => [{ name: "x", content: "x", longName: Buffer.from("etc/x\0../../outside/sentinel") }],
    error: { code: "invalid-argument", message: /GNU long name contains a NUL byte/ },
  },
  {
    name: "NulInXattrName",
    tar: () => [{ name: "x", content: "x", pax: [["SCHILY.xattr.user.a\0b", "v"]] }],
    error: { code: "invalid-argument", message: /key contains NUL/ },
  },
  {
    name: "NonUtf8Name",
    tar: () => [{ name: Buffer.from([0x66, 0xff, 0x2f, 0x2e, 0x2e]), content: "x" }],
    error: { code: "invalid-argument", message: /not valid UTF-8/ },
  },
  {
    name: "PaxPathOver4096",
    tar: () => [{ name: "x", content: "x", pax: [["path", `${"d/".repeat(2100)}f`]] }],
    error: tooLong(),
  },
  {
    name: "PaxPathOver4096WithDotDot",
    tar: () => [{ name: "x", content: "x", pax: [["path", `${"../".repeat(3000)}outside/sentinel`]] }],
    validate: fileValue("outside/sentinel", "x"),
  },
  {
    name: "ComponentOver255",
    tar: () => [{ name: "x", content: "x", pax: [["path", `d/${"n".repeat(300)}`]] }],
    error: tooLong(),
  },
  {
    name: "PaxHeaderClaimsHugeSize",
    tar: () => Buffer.concat([tarEntry({ name: "x", type: "x", size: 1 << 30 }), Buffer.alloc(4096)]),
    error: { code: "invalid-argument", message: /larger than the 1048576-byte limit/ },
  },
  {
    name: "SymlinkOutThenWrite",
    tar: (ctx) => [
      { name: "abs", type: "symlink", linkname: ctx.outside },
      { name: "abs/sentinel", content: "owned" },
      { name: "rel", type: "symlink", linkname: "../outside" },
      { name: "rel/sentinel", content: "owned too" },
      { name: "rel/dir/new", content: "new" },
    ],
    validate: (root, ctx) => {
      assert.equal(readFileSync(join(root, ctx.outside, "sentinel"), "utf8"), "owned");
      assert.equal(readFileSync(join(root, "outside", "sentinel"), "utf8"), "owned too");
    },
  },
  {
    name: "SymlinkLoopParent",
    tar: () => [
      { name: "a", type: "symlink", linkname: "b" },
      { name: "b", type: "symlink", linkname: "a" },
      { name: "a/x", content: "x" },
    ],
    error: { code: "invalid-argument", message: /ELOOP/ },
  },
  {
    name: "HardlinkAbsoluteOutside",
    tar: (ctx) => [{ name: "h", type: "link", linkname: `${ctx.outside}/sentinel` }],
    error: { code: "invalid-argument", message: /does not exist in the layer or below/ },
  },
  {
    name: "HardlinkRelativeOutside",
    tar: () => [{ name: "h", type: "link", linkname: "../outside/sentinel" }],
    error: { code: "invalid-argument", message: /does not exist in the layer or below/ },
  },
  {
    name: "HardlinkThroughSymlinkedDirOutside",
    tar: (ctx) => [
      { name: "d", type: "symlink", linkname: ctx.outside },
      { name: "h", type: "link", linkname: "d/sentinel" },
    ],
    error: { code: "invalid-argument", message: /does not exist in the layer or below/ },
  },
  {
    name: "ChmodChownThroughSymlink",
    tar: (ctx) => [
      { name: "s", type: "symlink", linkname: `${ctx.outside}/sentinel`, uid: 1234, gid: 1234 },
      { name: "h", type: "link", linkname: "s", mode: 0o777, uid: 4321, gid: 4321, mtime: 5 },
      { name: "s", type: "dir", mode: 0o777 },
    ],
    validate: (root) => {
      assert.ok(lstatSync(join(root, "h")).isSymbolicLink());
      assert.equal(lstatSync(join(root, "h")).uid, 4321);
    },
  },
  {
    name: "XattrThroughSymlink",
    tar: (ctx) => [
      { name: "s", type: "symlink", linkname: `${ctx.outside}/sentinel` },
      { name: "h", type: "link", linkname: "s", pax: [["SCHILY.xattr.user.evil", "1"]] },
    ],
    // user.* xattrs are not allowed on symlinks: containerd fails the same way (EPERM).
    error: { code: "invalid-argument", message: /lsetxattr h: EPERM/ },
  },
  {
    name: "WhiteoutThroughSymlinkOutside",
    tar: (ctx) => [
      { name: "lnk", type: "symlink", linkname: ctx.outside },
      { name: "lnk/.wh.sentinel", content: "" },
      { name: "rel", type: "symlink", linkname: "../outside" },
      { name: "rel/.wh.sentinel", content: "" },
    ],
    validate: (root, ctx) => assert.ok(lstatSync(join(root, ctx.outside)).isDirectory()),
  },
  {
    name: "OpaqueThroughSymlinkOutside",
    tar: (ctx) => [
      { name: "lnk", type: "symlink", linkname: ctx.outside },
      { name: "lnk/.wh..wh..opq", content: "" },
      { name: "rel", type: "symlink", linkname: "../../outside" },
      { name: "rel/.wh..wh..opq", content: "" },
    ],
  },
  {
    name: "OverlayWhiteoutThroughSymlinkOutside",
    opts: { whiteouts: "overlay" },
    tar: (ctx) => [
      { name: "lnk", type: "symlink", linkname: ctx.outside },
      { name: "lnk/.wh.newfile", content: "" },
      { name: "lnk/.wh..wh..opq", content: "" },
    ],
    validate: (root, ctx) => assert.ok(lstatSync(join(root, ctx.outside, "newfile")).isCharacterDevice()),
  },
  {
    name: "OverlayXattrSmuggling",
    opts: { whiteouts: "overlay" },
    tar: () => [
      { name: "d/", type: "dir", pax: [["SCHILY.xattr.trusted.overlay.opaque", "y"]] },
      { name: "r", type: "symlink", linkname: "x", pax: [["SCHILY.xattr.trusted.overlay.redirect", "/etc"]] },
    ],
    validate: (root) => assert.equal(readdirSync(root).length, 2),
  },
  {
    name: "UidAboveUint32",
    tar: () => [{ name: "f", content: "x", uid: 2 ** 32, gid: 0 }],
    error: { code: "invalid-argument", message: /out of range/ },
  },
  {
    name: "NegativeUid",
    tar: () => [{ name: "f", content: "x", uid: -1 }],
    error: { code: "invalid-argument", message: /out of range/ },
  },
  {
    name: "DuplicateFileOverSymlinkToOutside",
    tar: (ctx) => [
      { name: "f", type: "symlink", linkname: `${ctx.outside}/sentinel` },
      { name: "f", content: "replaced the link, not its target", mode: 0o777 },
    ],
    validate: (root) => assert.ok(lstatSync(join(root, "f")).isFile()),
  },
  {
    name: "DeviceOverSymlinkToOutside",
    tar: (ctx) => [
      { name: "f", type: "symlink", linkname: `${ctx.outside}/sentinel` },
      { name: "f", type: "fifo", mode: 0o777 },
    ],
    validate: (root) => assert.ok(lstatSync(join(root, "f")).isFIFO()),
  },
  {
    name: "TruncatedInData",
    tar: () => craftTar([{ name: "f", content: "x".repeat(5000) }]).subarray(0, 3000),
    error: { code: "invalid-argument", message: /truncated tar/ },
  },
  {
    name: "TruncatedInHeader",
    tar: () =>
      craftTar([
        { name: "f", content: "x" },
        { name: "g", content: "y" },
      ]).subarray(0, 1024 + 100),
    error: { code: "invalid-argument", message: /truncated tar/ },
  },
  {
    name: "TruncatedAtEntryBoundary",
    tar: () => craftTar([{ name: "f", content: "x" }], { end: false }),
    error: { code: "invalid-argument", message: /without the end-of-archive blocks/ },
  },
  {
    name: "TruncatedAfterPaxHeader",
    tar: () => tarEntry({ name: "x", type: "x", content: paxRecords([["path", "a"]]) }),
    error: { code: "invalid-argument", message: /truncated tar/ },
  },
  {
    name: "Empty",
    tar: () => Buffer.alloc(0),
    error: { code: "invalid-argument", message: /truncated tar/ },
  },
  {
    name: "TruncatedGzip",
    gzip: "truncated",
    tar: () => craftTar([{ name: "f", content: "x".repeat(100000) }]),
    error: { code: "invalid-argument", message: /gzip: unexpected end of file/ },
  },
  {
    name: "DecompressionBomb",
    gzip: "whole",
    opts: { maxBytes: 10 * 1024 * 1024 },
    tar: () => craftTar([{ name: "bomb", content: Buffer.alloc(64 * 1024 * 1024) }]),
    error: { code: "resource-exhausted", message: /more than 10485760 bytes/ },
    validate: (root) => assert.equal(existsSync(join(root, "bomb")), false),
  },
  {
    name: "BombSpreadOverFiles",
    gzip: "whole",
    opts: { maxBytes: 1024 * 1024 },
    tar: () =>
      craftTar(Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, content: Buffer.alloc(100 * 1024) }))),
    error: { code: "resource-exhausted", message: /more than 1048576 bytes/ },
    validate: (root) => assert.ok(readdirSync(root).length <= 10),
  },
  {
    name: "TooManyEntries",
    opts: { maxEntries: 100 },
    tar: () => craftTar(Array.from({ length: 1000 }, (_, i) => ({ name: `e${i}`, content: "" }))),
    error: { code: "resource-exhausted", message: /more than 100 entries/ },
    validate: (root) => assert.equal(readdirSync(root).length, 100),
  },
  {
    name: "EndlessPaxHeaders",
    tar: () =>
      Buffer.concat(
        Array.from({ length: 100 }, () =>
          tarEntry({ name: "x", type: "x", content: paxRecords([["path", "a"]]) }),
        ),
      ),
    error: { code: "invalid-argument", message: /extended headers in a row/ },
  },
];

// ---- the runner ----

interface Sentinel {
  path: string;
  line: string;
}

/** Everything outside the root, with content digests, modes, owners, link counts and ctimes. */
function outsideState(base: string): Sentinel[] {
  const out: Sentinel[] = [];
  const walk = (rel: string): void => {
    const abs = join(base, rel);
    const st = lstatSync(abs, { bigint: true });
    let extra = "";
    if (st.isFile()) extra = createHash("sha256").update(readFileSync(abs)).digest("hex");
    else if (st.isSymbolicLink()) extra = readlinkSync(abs);
    out.push({
      path: rel,
      line: `${st.mode} ${st.uid}:${st.gid} nlink=${st.nlink} size=${st.size} mtime=${st.mtimeNs} ctime=${st.ctimeNs} ${extra}`,
    });
    if (st.isDirectory()) {
      for (const child of readdirSync(abs).sort()) {
        if (rel === "" && child === "root") continue;
        walk(rel === "" ? child : `${rel}/${child}`);
      }
    }
  };
  walk("");
  return out;
}

function makeContext(): Ctx {
  const base = mkdtempSync(join(tmpdir(), "berth-breakout-"));
  const root = join(base, "root");
  const outside = join(base, "outside");
  mkdirSync(root, { mode: 0o755 });
  chmodSync(root, 0o755);
  mkdirSync(join(outside, "dir"), { recursive: true });
  writeFileSync(join(outside, "sentinel"), "host data", { mode: 0o640 });
  writeFileSync(join(outside, "dir", "file"), "more host data", { mode: 0o600 });
  symlinkSync("sentinel", join(outside, "link"));
  writeFileSync(join(base, "top-sentinel"), "top");
  for (const p of [join(outside, "sentinel"), join(outside, "dir", "file"), join(outside, "dir"), outside])
    utimesSync(p, 1000000, 1000000);
  return { base, root, outside };
}

async function runCase(c: BreakoutCase): Promise<void> {
  const ctx = makeContext();
  try {
    c.setup?.(ctx.root, ctx);
    const before = outsideState(ctx.base);
    const realEtc = existsSync("/etc/unbroken");
    const built = c.tar(ctx);
    const tar = Buffer.isBuffer(built) ? built : craftTar(built);
    const gz = gzipSync(tar);
    const input =
      c.gzip === undefined
        ? Readable.from([tar])
        : Readable.from([c.gzip === "whole" ? gz : gz.subarray(0, gz.length >> 1)]).pipe(
            decompressStream("gzip"),
          );
    let failure: Error | null = null;
    try {
      await applyTar(input, ctx.root, { whiteouts: "delete", ...c.opts });
    } catch (err) {
      failure = err instanceof Error ? err : new Error(String(err));
    }
    if (c.error !== undefined) {
      assert.ok(failure !== null, `${c.name}: expected ${c.error.code}, got success`);
      assert.ok(isCode(failure, c.error.code), `${c.name}: expected ${c.error.code}, got ${failure.message}`);
      assert.match(failure.message, c.error.message, c.name);
    } else if (failure !== null) {
      throw failure;
    }
    c.validate?.(ctx.root, ctx);
    assert.deepEqual(outsideState(ctx.base), before, `${c.name}: something outside the root changed`);
    assert.equal(existsSync("/etc/unbroken"), realEtc, `${c.name}: the host's /etc was written`);
  } finally {
    rmSync(ctx.base, { recursive: true, force: true });
  }
}

for (const c of CONTAINERD) void test(`containerd TestBreakouts/${c.name}`, () => runCase(c));
for (const c of EXTRA) void test(`breakout/${c.name}`, () => runCase(c));

void test("breakout/AbortSignal", async () => {
  const ctx = makeContext();
  try {
    const controller = new AbortController();
    const tar = craftTar(Array.from({ length: 50 }, (_, i) => ({ name: `f${i}`, content: "x" })));
    async function* slow(): AsyncGenerator<Buffer> {
      for (let off = 0; off < tar.length; off += 512) {
        if (off === 512 * 20) controller.abort();
        yield tar.subarray(off, off + 512);
      }
    }
    await assert.rejects(
      applyTar(slow(), ctx.root, { whiteouts: "delete", signal: controller.signal }),
      (err) => isCode(err, "canceled"),
    );
    assert.ok(readdirSync(ctx.root).length < 50);
  } finally {
    rmSync(ctx.base, { recursive: true, force: true });
  }
});
