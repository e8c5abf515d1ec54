import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  chownSync,
  chmodSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { isCode } from "../../errdefs/errors.js";
import { AT, O, close, fgetxattr, fsetxattr, lgetxattrAt, openat } from "../../sys/fs-at.js";
import { applyTar, type ApplyTarOptions } from "./apply-tar.js";
import { decompressStream } from "./decompress.js";
import { TAR_END, craftTar, paxRecords, tarEntry, type CraftEntry } from "./tar-craft.js";
import { formatTree, snapshotTree } from "./tree-snapshot.js";

const ALL_MTIMES = { mtimeFor: ["file", "dir", "symlink", "char", "block", "fifo", "socket"] as const };

function scratch(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), "berth-apply-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function apply(tar: Buffer, root: string, opts: Partial<ApplyTarOptions> = {}) {
  return applyTar(Readable.from([tar]), root, { whiteouts: "delete", ...opts });
}

/** Feeds the tar in chunks of varying, odd sizes (every parser boundary gets crossed). */
function* chunked(tar: Buffer, seed = 7): Generator<Buffer> {
  let off = 0;
  let x = seed;
  while (off < tar.length) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const n = 1 + (x % 1500);
    yield tar.subarray(off, off + n);
    off += n;
  }
}

function gnuTar(tar: Buffer, dir: string, extra: string[] = []): void {
  const file = `${dir}.tar`;
  writeFileSync(file, tar);
  execFileSync("tar", ["--xattrs", "--xattrs-include=*", "--same-owner", ...extra, "-xpf", file, "-C", dir], {
    stdio: "pipe",
  });
  rmSync(file);
}

function listing(dir: string): string[] {
  return formatTree(snapshotTree(dir), { mtimeFor: [...ALL_MTIMES.mtimeFor] });
}

/** Applies the layers in order with applyTar and with GNU tar, and compares the trees. */
async function compareWithGnuTar(
  t: { after: (fn: () => void) => void },
  layers: Buffer[],
  gnuArgs: string[] = [],
): Promise<string[]> {
  const base = scratch(t);
  const ours = join(base, "ours");
  const gnu = join(base, "gnu");
  mkdirSync(ours);
  mkdirSync(gnu);
  for (const layer of layers) {
    await apply(layer, ours);
    gnuTar(layer, gnu, gnuArgs);
  }
  const a = listing(ours);
  assert.deepEqual(a, listing(gnu));
  return a;
}

function pseudoRandom(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let block = Buffer.from(String(seed));
  for (let off = 0; off < n; off += 32) {
    block = createHash("sha256").update(block).digest();
    block.copy(out, off);
  }
  return out;
}

// cap_net_raw+ep, as VFS_CAP_REVISION_2.
const CAP_NET_RAW = Buffer.from("0100000200200000000000000000000000000000", "hex");

const RICH: CraftEntry[] = [
  { name: "./", type: "dir", mode: 0o700 },
  { name: "etc/", type: "dir", mode: 0o755, pax: [["mtime", "1600000000.5"]] },
  {
    name: "etc/passwd",
    content: "root:x:0:0:root:/root:/bin/sh\n",
    pax: [["mtime", "1700000000.123456789"]],
  },
  { name: "etc/localtime", type: "symlink", linkname: "/usr/share/zoneinfo/UTC", mtime: 1650000000 },
  { name: "etc/shadow", content: "root:*:19000::::::\n", mode: 0o640, gid: 42 },
  { name: "home/", type: "dir" },
  { name: "home/user/", type: "dir", mode: 0o700, uid: 1000, gid: 1000 },
  { name: "home/user/.profile", content: "export A=1\n", uid: 1000, gid: 1000, mode: 0o600 },
  { name: "tmp/", type: "dir", mode: 0o1777 },
  { name: "srv/", type: "dir", mode: 0o2775, gid: 50 },
  { name: "usr/", type: "dir" },
  { name: "usr/bin/", type: "dir" },
  { name: "usr/bin/su", content: "#!su", mode: 0o4755 },
  { name: "usr/bin/wall", content: "#!wall", mode: 0o2755, gid: 5 },
  {
    name: "usr/bin/ping",
    content: "#!ping",
    mode: 0o755,
    pax: [["SCHILY.xattr.security.capability", CAP_NET_RAW]],
  },
  { name: "usr/bin/ping6", type: "link", linkname: "usr/bin/ping", mode: 0o755 },
  { name: "usr/bin/su-again", type: "link", linkname: "usr/bin/su", mode: 0o4755 },
  { name: "usr/lib/", type: "dir" },
  { name: "usr/lib/big.bin", content: pseudoRandom(3 * 1024 * 1024 + 17, 1), mode: 0o644 },
  { name: "usr/lib/empty", content: "" },
  {
    name: "usr/lib/xattrs",
    content: "x",
    pax: [
      ["SCHILY.xattr.user.binary", Buffer.from([0xff, 0x00, 0x80, 0x0a, 0x3d])],
      ["SCHILY.xattr.user.text", "hello=world"],
      ["atime", "1800000000.1"],
    ],
  },
  { name: "lib", type: "symlink", linkname: "usr/lib" },
  { name: "dangling", type: "symlink", linkname: "../../nowhere" },
  { name: "secret", content: "s", mode: 0o000 },
  { name: "readonly", content: "r", mode: 0o400, uid: 3000000, gid: 3000001 },
  {
    name: "paxids",
    content: "p",
    pax: [
      ["uid", "70000"],
      ["gid", "70001"],
    ],
  },
  { name: "dev/", type: "dir" },
  { name: "dev/null", type: "char", devmajor: 1, devminor: 3, mode: 0o666 },
  { name: "dev/loop0", type: "block", devmajor: 7, devminor: 0, mode: 0o660, gid: 6 },
  { name: "dev/big", type: "char", devmajor: 259, devminor: 70000, mode: 0o600 },
  { name: "dev/fifo", type: "fifo", mode: 0o620 },
  { name: "long/", type: "dir" },
  { name: "long/pax", pax: [["path", `long/${"p".repeat(150)}`]], content: "pax path" },
  { name: "long/gnu", longName: `long/${"g".repeat(140)}`, content: "gnu long name" },
  { name: "n".repeat(90), prefix: "long", content: "ustar prefix" },
  { name: "long/paxlink", type: "symlink", linkname: "x", pax: [["linkpath", "t".repeat(200)]] },
  { name: "long/gnulink", type: "symlink", linkname: "x", longLink: "k".repeat(180) },
  { name: "v7file", content: "old", format: "v7" },
  { name: "olddir/", type: "\0", mode: 0o751 },
  { name: "contiguous", type: "7", content: "c" },
];

void test("every entry type and attribute comes out as GNU tar extracts it", async (t) => {
  const lines = await compareWithGnuTar(t, [craftTar(RICH)]);
  // Spot checks that the comparison saw what it should.
  const find = (p: string) => lines.find((l) => l.startsWith(`${p} `)) ?? "";
  assert.match(find("usr/bin/ping"), /xattr\.security\.capability=0100000200200000/);
  assert.match(find("usr/bin/su"), /mode=4755/);
  assert.match(find("usr/lib/xattrs"), /xattr\.user\.binary=ff00800a3d/);
  assert.match(find("etc/passwd"), /mtime=1700000000123456789/);
  assert.match(find("dev/big"), /rdev=259:70000/);
  assert.match(find("readonly"), /uid=3000000 gid=3000001/);
  assert.match(find("usr/bin/ping6"), /link="usr\/bin\/ping"|xattr/);
  assert.ok(lines.some((l) => l.startsWith(`long/${"p".repeat(150)} file`)));
  assert.ok(lines.some((l) => l.startsWith(`long/${"n".repeat(90)} file`)));
  assert.match(find("olddir"), /^olddir dir mode=0751/);
});

void test("chunk boundaries do not matter", async (t) => {
  const tar = craftTar(RICH);
  const base = scratch(t);
  mkdirSync(join(base, "whole"));
  mkdirSync(join(base, "pieces"));
  const whole = await apply(tar, join(base, "whole"));
  const pieces = await applyTar(Readable.from(chunked(tar)), join(base, "pieces"), { whiteouts: "delete" });
  assert.deepEqual(pieces, whole);
  assert.equal(whole.entries, RICH.length);
  assert.deepEqual(listing(join(base, "pieces")), listing(join(base, "whole")));
});

void test("a gzip stream through decompressStream applies the same", async (t) => {
  const tar = craftTar(RICH);
  const base = scratch(t);
  mkdirSync(join(base, "a"));
  mkdirSync(join(base, "b"));
  await apply(tar, join(base, "a"));
  const stream = Readable.from([gzipSync(tar)]).pipe(decompressStream("gzip"));
  await applyTar(stream, join(base, "b"), { whiteouts: "delete" });
  assert.deepEqual(listing(join(base, "b")), listing(join(base, "a")));
});

void test("existing directories are kept and get the new metadata", async (t) => {
  const lower = craftTar([
    { name: "d/", type: "dir", mode: 0o755, mtime: 1000 },
    { name: "d/old", content: "old", mtime: 1000 },
    { name: "d/sub/", type: "dir", mode: 0o755, mtime: 1000 },
  ]);
  const upper = craftTar([
    { name: "d/", type: "dir", mode: 0o711, uid: 7, gid: 8, mtime: 2000 },
    { name: "d/new", content: "new", mtime: 2000 },
    { name: "d/sub/", type: "dir", mode: 0o700, mtime: 2000, pax: [["SCHILY.xattr.user.d", "v"]] },
  ]);
  const lines = await compareWithGnuTar(t, [lower, upper]);
  assert.deepEqual(lines, [
    "d dir mode=0711 uid=7 gid=8 mtime=2000000000000",
    "d/new file mode=0644 uid=0 gid=0 size=3 sha256=11507a0e2f5e69d5 mtime=2000000000000",
    "d/old file mode=0644 uid=0 gid=0 size=3 sha256=cba06b5736faf67e mtime=1000000000000",
    "d/sub dir mode=0700 uid=0 gid=0 xattr.user.d=76 mtime=2000000000000",
  ]);
});

void test("duplicate entries: the last one wins", async (t) => {
  const tar = craftTar(
    [
      { name: "f", content: "first", mode: 0o600 },
      { name: "f", content: "second", mode: 0o644, uid: 3 },
      { name: "s", type: "symlink", linkname: "a" },
      { name: "s", content: "now a file" },
      { name: "g", content: "a file first" },
      { name: "g", type: "symlink", linkname: "then a link" },
      { name: "d/", type: "dir", mode: 0o700 },
      { name: "d/", type: "dir", mode: 0o755 },
    ],
    {},
  );
  const lines = await compareWithGnuTar(t, [tar]);
  assert.equal(lines.length, 4);
  assert.match(lines.find((l) => l.startsWith("f "))!, /uid=3 gid=0 size=6/);
  assert.match(lines.find((l) => l.startsWith("g "))!, /symlink/);
  assert.match(lines.find((l) => l.startsWith("s "))!, /file/);
});

void test("a file replaces a directory tree, a directory replaces a file", async (t) => {
  const lower = craftTar([
    { name: "d/", type: "dir" },
    { name: "d/sub/", type: "dir" },
    { name: "d/sub/f", content: "deep" },
    { name: "f", content: "file" },
    { name: "l", type: "symlink", linkname: "d" },
  ]);
  const upper = craftTar([
    { name: "d", content: "now a file" },
    { name: "f/", type: "dir", mode: 0o750 },
    { name: "f/inside", content: "x" },
    { name: "l/", type: "dir" },
  ]);
  // GNU tar only removes a non-empty directory with --recursive-unlink; containerd always does.
  const lines = await compareWithGnuTar(t, [lower, upper], ["--recursive-unlink"]);
  assert.deepEqual(
    lines.map((l) => l.split(" ").slice(0, 2).join(" ")),
    ["d file", "f dir", "f/inside file", "l dir"],
  );
});

void test("a hardlink to a file from a previous layer", async (t) => {
  const lower = craftTar([
    { name: "bin/", type: "dir" },
    { name: "bin/busybox", content: "bb", mode: 0o755 },
  ]);
  // bin/ comes last: GNU tar sets an already existing directory's times at once, not after its
  // children as containerd (and applyTar) do, so only this order compares equal.
  const upper = craftTar(
    [
      { name: "sbin/", type: "dir" },
      { name: "sbin/init", type: "link", linkname: "bin/busybox", mode: 0o755 },
      { name: "bin/sh", type: "link", linkname: "/bin/busybox", mode: 0o755 },
      { name: "bin/", type: "dir" },
    ],
    {},
  );
  const lines = await compareWithGnuTar(t, [lower, upper]);
  assert.match(lines.find((l) => l.startsWith("sbin/init "))!, /link="bin\/busybox"/);
  assert.match(lines.find((l) => l.startsWith("bin/sh "))!, /link="bin\/busybox"/);
});

void test("implicit parents are created 0755 and filled from parent layers", async (t) => {
  const base = scratch(t);
  const lowerDir = join(base, "lower");
  const root = join(base, "upper");
  mkdirSync(join(lowerDir, "a", "b"), { recursive: true });
  mkdirSync(root);
  chownSync(join(lowerDir, "a"), 11, 12);
  chmodSync(join(lowerDir, "a"), 0o710);
  utimesSync(join(lowerDir, "a"), 1234, 1234);
  const lfd = openat(AT.FDCWD, join(lowerDir, "a"), O.RDONLY | O.DIRECTORY);
  fsetxattr(lfd, "user.copied", Buffer.from("up"));
  fsetxattr(lfd, "trusted.not.copied", Buffer.from("no"));
  close(lfd);
  await apply(craftTar([{ name: "a/b/c/file", content: "x" }]), root, {
    whiteouts: "overlay",
    parents: [lowerDir],
  });
  const st = lstatSync(join(root, "a"));
  assert.equal(st.mode & 0o7777, 0o710);
  assert.equal(st.uid, 11);
  assert.equal(st.gid, 12);
  const fd = openat(AT.FDCWD, join(root, "a"), O.RDONLY | O.DIRECTORY);
  try {
    assert.equal(fgetxattr(fd, "user.copied").toString(), "up");
    assert.throws(() => fgetxattr(fd, "trusted.not.copied"));
  } finally {
    close(fd);
  }
  // b exists below too (default 0755 from it), c does not (plain 0755, root-owned).
  assert.equal(lstatSync(join(root, "a", "b")).mode & 0o7777, 0o755);
  assert.equal(lstatSync(join(root, "a", "b", "c")).mode & 0o7777, 0o755);
  assert.equal(readFileSync(join(root, "a", "b", "c", "file"), "utf8"), "x");
});

void test("directory mtimes are set after their children; out-of-range times become the epoch", async (t) => {
  const root = scratch(t);
  await apply(
    craftTar([
      { name: "d/", type: "dir", mtime: 1000 },
      { name: "d/f", content: "x", mtime: 2000 },
      { name: "d/e/", type: "dir", mtime: 3000 },
      { name: "d/e/g", content: "y", mtime: 4000 },
      { name: "old", content: "z", mtime: -5 },
      { name: "atime", content: "a", mtime: 100, pax: [["atime", "50"]] },
      { name: "atime2", content: "a", mtime: 100, pax: [["atime", "150.25"]] },
    ]),
    root,
  );
  assert.equal(lstatSync(join(root, "d")).mtimeMs, 1000_000);
  assert.equal(lstatSync(join(root, "d", "e")).mtimeMs, 3000_000);
  assert.equal(lstatSync(join(root, "old")).mtimeMs, 0);
  // containerd's latestTime(atime, mtime).
  assert.equal(lstatSync(join(root, "atime")).atimeMs, 100_000);
  assert.equal(lstatSync(join(root, "atime2"), { bigint: true }).atimeNs, 150_250_000_000n);
});

void test("a directory replaced by a symlink gets no times, its symlink's target keeps its own", async (t) => {
  const root = scratch(t);
  await apply(
    craftTar([
      { name: "real/", type: "dir", mtime: 2000 },
      { name: "a/", type: "dir", mtime: 1000 },
      { name: "a/inside", content: "gone with a" },
      // Replaces the directory a; a/x then resolves through the link, into real.
      { name: "a", type: "symlink", linkname: "real" },
      { name: "a/x", content: "x", mtime: 3000 },
      { name: "b/", type: "dir", mode: 0o711, uid: 0, gid: 0, mtime: 4000 },
      { name: "b/", type: "dir", mode: 0o700, uid: 5, gid: 6, mtime: 5000 },
    ]),
    root,
  );
  assert.ok(lstatSync(join(root, "a")).isSymbolicLink());
  assert.equal(readFileSync(join(root, "real", "x"), "utf8"), "x");
  // a's recorded times belong to the directory that was removed, not to what a leads to now.
  assert.equal(lstatSync(join(root, "real")).mtimeMs, 2000_000);
  // A directory met twice: the second header's owner, mode and times.
  const b = lstatSync(join(root, "b"));
  assert.deepEqual([b.mode & 0o7777, b.uid, b.gid, b.mtimeMs], [0o700, 5, 6, 5000_000]);
});

void test("files get the header's owner and mode whatever their directory gives new files", async (t) => {
  const root = scratch(t);
  // A set-group-ID directory: what is created in it gets its group (50), not the creator's.
  mkdirSync(join(root, "sg"));
  chownSync(join(root, "sg"), 0, 50);
  chmodSync(join(root, "sg"), 0o2775);
  // A default ACL (others: nothing): new files' modes follow it, not the umask.
  mkdirSync(join(root, "acl"));
  const acl = Buffer.alloc(4 + 3 * 8);
  acl.writeUInt32LE(2, 0); // POSIX_ACL_XATTR_VERSION
  [
    [0x01, 7], // ACL_USER_OBJ rwx
    [0x04, 5], // ACL_GROUP_OBJ r-x
    [0x20, 0], // ACL_OTHER ---
  ].forEach(([tag, perm], i) => {
    acl.writeUInt16LE(tag!, 4 + i * 8);
    acl.writeUInt16LE(perm!, 6 + i * 8);
    acl.writeUInt32LE(0xffffffff, 8 + i * 8);
  });
  const afd = openat(AT.FDCWD, join(root, "acl"), O.RDONLY | O.DIRECTORY);
  try {
    fsetxattr(afd, "system.posix_acl_default", acl);
  } finally {
    close(afd);
  }
  // A plain directory whose group and set-group-ID bit change between two files.
  mkdirSync(join(root, "m"));
  symlinkSync("m", join(root, "alias"));
  await apply(
    craftTar([
      { name: "sg/a", content: "a", gid: 0, mode: 0o644 },
      { name: "sg/b", content: "b", gid: 50, mode: 0o644 },
      { name: "sg/c", content: "c", uid: 0, gid: 0, mode: 0o640 },
      // Symlinks get the owner the directory gives too: 0:50 here, so these need their chown.
      { name: "sg/l", type: "symlink", linkname: "a" },
      { name: "sg/l50", type: "symlink", linkname: "a", gid: 50 },
      // 0640 comes out as asked under the ACL too; 0644 and 0755 do not.
      { name: "acl/first", content: "1", mode: 0o640 },
      { name: "acl/second", content: "2", mode: 0o644 },
      { name: "acl/third", content: "3", mode: 0o755 },
      // Learnt under the name alias, then m changes: alias must not be trusted either.
      { name: "alias/zero", content: "0" },
      { name: "m/one", content: "1" },
      { name: "m/", type: "dir", mode: 0o2755, gid: 60 },
      { name: "m/two", content: "2" },
      { name: "alias/three", content: "3" },
      { name: "plain/", type: "dir" },
      { name: "plain/x", content: "x", mode: 0o600 },
      { name: "plain/y", content: "y", mode: 0o666 },
      { name: "plain/z", content: "z", mode: 0o4755 },
      { name: "plain/w", content: "w", mode: 0o755, uid: 1000, gid: 1000 },
      { name: "plain/l", type: "symlink", linkname: "x" },
      { name: "plain/l1000", type: "symlink", linkname: "x", uid: 1000, gid: 1001 },
    ]),
    root,
  );
  const got = (p: string) => {
    const st = lstatSync(join(root, p));
    return `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
  };
  assert.deepEqual(["sg/a", "sg/b", "sg/c", "acl/first", "acl/second", "acl/third"].map(got), [
    "644 0:0",
    "644 0:50",
    "640 0:0",
    "640 0:0",
    "644 0:0",
    "755 0:0",
  ]);
  assert.deepEqual(["m/zero", "m/one", "m/two", "m/three"].map(got), [
    "644 0:0",
    "644 0:0",
    "644 0:0",
    "644 0:0",
  ]);
  assert.equal(got("m"), "2755 0:60");
  const owner = (p: string) => {
    const st = lstatSync(join(root, p));
    return `${st.isSymbolicLink() ? "link" : "?"} ${st.uid}:${st.gid}`;
  };
  assert.deepEqual(["sg/l", "sg/l50", "plain/l", "plain/l1000"].map(owner), [
    "link 0:0",
    "link 0:50",
    "link 0:0",
    "link 1000:1001",
  ]);
  assert.deepEqual(["plain/x", "plain/y", "plain/z", "plain/w"].map(got), [
    "600 0:0",
    "666 0:0",
    "4755 0:0",
    "755 1000:1000",
  ]);
});

function lowerTree(root: string): void {
  for (const d of ["keep", "gone", "opq/sub", "opq/kept-dir"]) mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, "keep", "a"), "a");
  writeFileSync(join(root, "keep", "b"), "b");
  writeFileSync(join(root, "gone", "x"), "x");
  writeFileSync(join(root, "file"), "f");
  writeFileSync(join(root, "opq", "lower-file"), "l");
  writeFileSync(join(root, "opq", "sub", "deep"), "d");
  writeFileSync(join(root, "opq", "kept-dir", "lower-inside"), "l");
  symlinkSync("/keep", join(root, "link"));
}

const WHITEOUT_LAYER = craftTar([
  { name: "keep/.wh.a", content: "" },
  { name: ".wh.gone", content: "" },
  { name: ".wh.file", content: "" },
  { name: ".wh.link", content: "" },
  { name: ".wh.missing", content: "" },
  { name: "new/dir/.wh.nothing", content: "" },
  { name: "opq/", type: "dir", mode: 0o750 },
  { name: "opq/kept-dir/", type: "dir" },
  { name: "opq/before", content: "written before the marker" },
  { name: "opq/.wh..wh..opq", content: "" },
  { name: "opq/after", content: "written after the marker" },
  { name: ".wh..wh.plnk/", type: "dir" },
]);

void test("delete mode: whiteouts remove, opaque directories keep only this layer's entries", async (t) => {
  const root = scratch(t);
  lowerTree(root);
  const warnings: string[] = [];
  await apply(WHITEOUT_LAYER, root, { onWarning: (w) => warnings.push(w) });
  const paths = snapshotTree(root).map((e) => `${e.path} ${e.type}`);
  assert.deepEqual(paths, [
    "keep dir",
    "keep/b file",
    "new dir",
    "new/dir dir",
    "opq dir",
    "opq/after file",
    "opq/before file",
    "opq/kept-dir dir",
  ]);
  assert.equal(lstatSync(join(root, "opq")).mode & 0o777, 0o750);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /\.wh\.\.wh\.plnk/);
});

void test("overlay mode: whiteouts are 0:0 devices, opaque is an xattr, and overlayfs agrees", async (t) => {
  const base = scratch(t);
  const lower = join(base, "lower");
  const upper = join(base, "upper");
  const work = join(base, "work");
  const merged = join(base, "merged");
  for (const d of [lower, upper, work, merged]) mkdirSync(d);
  lowerTree(lower);
  await apply(
    craftTar([
      { name: "keep/.wh.a", content: "", uid: 5, gid: 6 },
      { name: ".wh.gone", content: "" },
      { name: "opq/", type: "dir", mode: 0o750 },
      { name: "opq/.wh..wh..opq", content: "" },
      { name: "opq/after", content: "new" },
      { name: "smuggled", content: "s", pax: [["SCHILY.xattr.trusted.overlay.opaque", "y"]] },
    ]),
    upper,
    { whiteouts: "overlay", parents: [lower] },
  );
  const wh = lstatSync(join(upper, "keep", "a"));
  assert.ok(wh.isCharacterDevice());
  assert.equal(wh.rdev, 0);
  assert.equal(wh.uid, 5);
  assert.equal(wh.gid, 6);
  assert.ok(lstatSync(join(upper, "gone")).isCharacterDevice());
  const fd = openat(AT.FDCWD, join(upper, "opq"), O.RDONLY | O.DIRECTORY);
  try {
    assert.equal(fgetxattr(fd, "trusted.overlay.opaque").toString(), "y");
  } finally {
    close(fd);
  }
  assert.throws(() => lgetxattrAt(openat(AT.FDCWD, upper, O.PATH), "smuggled", "trusted.overlay.opaque"));
  // The parent "keep" was created in the upper from the lower's metadata.
  assert.equal(lstatSync(join(upper, "keep")).mode, lstatSync(join(lower, "keep")).mode);

  execFileSync("mount", [
    "-t",
    "overlay",
    "overlay",
    "-o",
    `lowerdir=${lower},upperdir=${upper},workdir=${work}`,
    merged,
  ]);
  try {
    assert.deepEqual(readdirSync(join(merged, "keep")).sort(), ["b"]);
    assert.equal(existsSync(join(merged, "gone")), false);
    assert.deepEqual(readdirSync(join(merged, "opq")).sort(), ["after"]);
    assert.equal(readFileSync(join(merged, "file"), "utf8"), "f");
  } finally {
    execFileSync("umount", [merged]);
  }
});

void test("trusted.* xattrs are skipped with a warning, as containerd does", async (t) => {
  const root = scratch(t);
  const warnings: string[] = [];
  await apply(
    craftTar([
      {
        name: "f",
        content: "x",
        pax: [
          ["SCHILY.xattr.trusted.x", "1"],
          ["SCHILY.xattr.user.ok", "2"],
        ],
      },
    ]),
    root,
    { onWarning: (w) => warnings.push(w) },
  );
  const fd = openat(AT.FDCWD, join(root, "f"), O.RDONLY);
  try {
    assert.equal(fgetxattr(fd, "user.ok").toString(), "2");
    assert.throws(() => fgetxattr(fd, "trusted.x"));
  } finally {
    close(fd);
  }
  assert.deepEqual(warnings, ["f: ignored xattr trusted.x in archive"]);
});

void test("reader rules: checksums, base-256, global headers, end of archive, trailing data", async (t) => {
  const root = scratch(t);
  const signed = tarEntry({ name: "caf\u00e9", content: "x" }); // non-ASCII: signed and unsigned sums differ
  let sum = 0;
  signed.fill(0x20, 148, 156);
  for (let i = 0; i < 512; i++) sum += signed[i]! < 0x80 ? signed[i]! : signed[i]! - 256;
  signed.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  const global = tarEntry({
    name: "pax_global_header",
    type: "g",
    content: paxRecords([
      ["comment", "abcdef"],
      ["path", "ignored"],
    ]),
  });
  const tar = Buffer.concat([
    global,
    signed,
    tarEntry({ name: "after", content: "y" }),
    TAR_END,
    Buffer.from("trailing junk"),
  ]);
  const iterator = (async function* () {
    yield tar;
    yield Buffer.from("more junk");
  })();
  const result = await applyTar(iterator, root, { whiteouts: "delete" });
  assert.deepEqual(result, { entries: 2, bytes: 2 });
  assert.deepEqual(readdirSync(root).sort(), ["after", "caf\u00e9"]);
  // applyTar stopped at the end blocks: what follows is still in the input.
  assert.deepEqual(await iterator.next(), { value: Buffer.from("more junk"), done: false });

  // A single zero block before EOF is an end too (Go reads it so).
  const one = scratch(t);
  await applyTar(
    Readable.from([Buffer.concat([tarEntry({ name: "f", content: "1" }), Buffer.alloc(512)])]),
    one,
    {
      whiteouts: "delete",
    },
  );
  assert.ok(existsSync(join(one, "f")));
});

void test("malformed archives are refused with InvalidArgument", async (t) => {
  const cases: Array<[string, Buffer, RegExp]> = [
    ["bad checksum", craftTar([{ name: "f", content: "x", badChecksum: true }]), /checksum/],
    ["not a tar", Buffer.concat([Buffer.from("hello world".repeat(100)), TAR_END]), /checksum|octal/],
    [
      "zero block then data",
      Buffer.concat([Buffer.alloc(512), tarEntry({ name: "f", content: "x" }), TAR_END]),
      /zero block followed by a non-zero block/,
    ],
    ["sparse file", craftTar([{ name: "s", type: "S", content: "x" }]), /sparse files are not supported/],
    ["PAX sparse", craftTar([{ name: "s", content: "x", pax: [["GNU.sparse.major", "1"]] }]), /sparse/],
    ["volume label", craftTar([{ name: "vol", type: "V" }]), /unhandled tar header type 86/],
    [
      "bad PAX record",
      Buffer.concat([tarEntry({ name: "x", type: "x", content: "99 path=a\n" }), TAR_END]),
      /PAX record/,
    ],
    ["bad PAX time", craftTar([{ name: "f", pax: [["mtime", "12x"]] }]), /PAX time/],
    ["negative size", craftTar([{ name: "f", size: -1 }]), /negative size/],
    ["uid out of range", craftTar([{ name: "f", uid: 2 ** 32 }]), /uid\/gid 4294967296\/0 out of range/],
    ["hardlink to nothing", craftTar([{ name: "l", type: "link", linkname: "nope" }]), /does not exist/],
    ["hardlink to a directory", craftTar([{ name: "l", type: "link", linkname: "a/.." }]), /is a directory/],
  ];
  for (const [name, tar, message] of cases) {
    const root = scratch(t);
    await assert.rejects(apply(tar, root), (err) => {
      assert.ok(isCode(err, "invalid-argument"), `${name}: ${String(err)}`);
      assert.match((err as Error).message, message, name);
      return true;
    });
  }
});
