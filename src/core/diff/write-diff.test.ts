import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { gunzipSync } from "node:zlib";
import { extract, type Headers } from "tar-stream";
import {
  AT,
  O,
  S,
  close,
  lgetxattrAt,
  lsetxattrAt,
  makedev,
  mknodat,
  openat,
  utimensat,
} from "../../sys/fs-at.js";
import { MNT, MS, mount, unmount } from "../../sys/mount.js";
import { hasCode } from "../../sys/errno.js";
import {
  MEDIA_TYPE_LAYER,
  MEDIA_TYPE_LAYER_GZIP,
  TYPE,
  type TarHeader,
  diffTar,
  encodeHeader,
  writeDiff,
} from "./write-diff.js";

const CAP = Buffer.from("0100000200040000000000000000000000000000", "hex"); // cap_net_bind_service=ep
const WHITEOUT_TIME = new Date(1_700_000_123_400);

function tempTrees(): { dir: string; lower: string; upper: string } {
  const dir = mkdtempSync(join(tmpdir(), "berth-writediff-"));
  const lower = join(dir, "lower");
  const upper = join(dir, "upper");
  mkdirSync(lower);
  return { dir, lower, upper };
}

/** Copies a tree keeping modes, owners, nanosecond times, hard links and xattrs. */
function copyTree(from: string, to: string): void {
  rmSync(to, { recursive: true, force: true });
  execFileSync("cp", ["-a", from, to]);
}

function atDir<T>(path: string, fn: (dirFd: number, name: string) => T): T {
  const slash = path.lastIndexOf("/");
  const dirFd = openat(AT.FDCWD, path.slice(0, slash), O.RDONLY | O.DIRECTORY);
  try {
    return fn(dirFd, path.slice(slash + 1));
  } finally {
    close(dirFd);
  }
}

/** mknod, then chmod, so that the process umask cannot change the mode. */
const mknod = (path: string, mode: number, dev = 0n): void => {
  atDir(path, (fd, name) => mknodat(fd, name, mode, dev));
  if ((mode & S.IFMT) !== S.IFSOCK) chmodSync(path, mode & 0o7777);
};
const setXattr = (path: string, key: string, value: Buffer): void =>
  atDir(path, (fd, name) => lsetxattrAt(fd, name, key, value));
const getXattr = (path: string, key: string): Buffer | null =>
  atDir(path, (fd, name) => {
    try {
      return lgetxattrAt(fd, name, key);
    } catch (err) {
      if (hasCode(err, "ENODATA")) return null;
      throw err;
    }
  });

function setMtime(path: string, sec: number, nsec = 0): void {
  utimensat(AT.FDCWD, path, { sec, nsec }, { sec, nsec });
}

async function diffBytes(
  lower: string,
  upper: string,
  opts: Parameters<typeof writeDiff>[3] = {},
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await writeDiff(lower, upper, (c) => void chunks.push(c), { whiteoutTime: WHITEOUT_TIME, ...opts });
  return Buffer.concat(chunks);
}

interface Listed {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname?: string;
  dev?: string;
  pax?: string[];
  data?: string;
}

async function listTar(tar: Buffer): Promise<{ entries: Listed[]; contents: Map<string, Buffer> }> {
  const ex = extract();
  ex.end(tar);
  const entries: Listed[] = [];
  const contents = new Map<string, Buffer>();
  for await (const entry of ex) {
    const h = entry.header as Headers & { pax?: Record<string, string> };
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c);
    assert.equal(h.uname, "", `uname of ${h.name}`);
    assert.equal(h.gname, "", `gname of ${h.name}`);
    const e: Listed = {
      name: h.name,
      type: h.type ?? "?",
      mode: h.mode ?? -1,
      uid: h.uid ?? -1,
      gid: h.gid ?? -1,
      size: h.size ?? -1,
      mtime: Math.round((h.mtime?.getTime() ?? 0) / 1000),
    };
    if (h.linkname) e.linkname = h.linkname;
    if (h.type === "character-device" || h.type === "block-device") e.dev = `${h.devmajor}:${h.devminor}`;
    if (h.pax) e.pax = Object.keys(h.pax).sort();
    const data = Buffer.concat(chunks);
    if (data.length > 0 && data.length <= 16) e.data = data.toString();
    contents.set(h.name, data);
    entries.push(e);
  }
  return { entries, contents };
}

const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

function header(h: Partial<TarHeader> & { name: string; typeflag: number; mtime: number }): TarHeader {
  return {
    linkname: "",
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    uname: "",
    gname: "",
    devmajor: 0,
    devminor: 0,
    ...h,
  };
}

void test("headers are byte-identical to containerd 1.6.20's (sha256 of the blocks it wrote)", () => {
  const p60 = "p".repeat(60);
  const cases: [TarHeader, number, string][] = [
    [
      header({ typeflag: TYPE.REG, name: ".wh.d", mode: 0, mtime: 1795361480 }),
      512,
      "2be2d6fc991120443b61ec383687ebca46876b6ad11402062bb575252bc0bf64",
    ],
    [
      header({ typeflag: TYPE.DIR, name: "a/", mode: 0o755, mtime: 1795361478 }),
      512,
      "68d712030c92fcdc535645a9ee9ea6e734e1aff057e5a229b3e837d1b3310029",
    ],
    [
      header({
        typeflag: TYPE.REG,
        name: "capfile",
        size: 4,
        mtime: 1795361477,
        records: new Map([["SCHILY.xattr.security.capability", CAP]]),
      }),
      1536,
      "09e8b4f86a6fbc7cf8714cf3d5afe6a41fc108fdd3ad5e62f5b269ef2ab7ff1b",
    ],
    [
      header({ typeflag: TYPE.CHAR, name: "chr", mtime: 1795361479, devmajor: 1, devminor: 5 }),
      512,
      "cea69f29335e9cce4ccaa3df356994d2cbf4fae62b21671a6388c30f21dd300b",
    ],
    [
      header({ typeflag: TYPE.BLOCK, name: "blk", mtime: 1795361479, devmajor: 8, devminor: 1 }),
      512,
      "11c2b744cac98e949e1510215ecec3cb34eeae20872710f1ebf5520a8ac71c31",
    ],
    [
      header({
        typeflag: TYPE.REG,
        name: "owned",
        mode: 0o755,
        uid: 1234,
        gid: 5678,
        size: 6,
        mtime: 1795361477,
      }),
      512,
      "3ecfdba886d1e6331cbd225c45a64ae4cb21d3bf590fd58c1e797596cfc6edf6",
    ],
    [
      header({ typeflag: TYPE.SYMLINK, name: "sl2", linkname: "ot22", mode: 0o777, mtime: 1795361478 }),
      512,
      "123d445a0f7258a37928cb6baec728ce608ae8ac7fef34c7938ac8d339b17614",
    ],
    [
      header({ typeflag: TYPE.LINK, name: "hl1", linkname: "a/hl3", mtime: 1795361478 }),
      512,
      "7e37aefc47eb7addb49255eee8eab4987b220bb66cf1f5a9d5f8f5502c878d6c",
    ],
    [
      header({ typeflag: TYPE.DIR, name: "sticky/", mode: 0o1777, mtime: 1795361479 }),
      512,
      "fe33e656fe2576f30a312d287e38112e0fb69b4c82a0686d269172ebbcf8ba25",
    ],
    [
      header({ typeflag: TYPE.REG, name: `long/${"L".repeat(120)}`, size: 5, mtime: 1795361479 }),
      1536,
      "39dbd948175a37d6aedaafec32a66db64b7ce02c777052307c95566364fe69b7",
    ],
    [
      header({ typeflag: TYPE.REG, name: "ünï", size: 3, mtime: 1795361479 }),
      1536,
      "7d83c50215b33c18e21bc3884e812c071109badbff399331932425136f98127b",
    ],
    // 122 and 183 bytes: USTAR with the name split into prefix and name.
    [
      header({ typeflag: TYPE.DIR, name: `${p60}/${p60}/`, mode: 0o755, mtime: 1795361479 }),
      512,
      "bccde143cdd499682e5384aa89ecdd6e1761b16ecb80394b6740359907caff6f",
    ],
    [
      header({ typeflag: TYPE.DIR, name: `${p60}/${p60}/${p60}/`, mode: 0o755, mtime: 1795361479 }),
      512,
      "c5451ec30e6ae9ca207256d592ec2654a073db76d369872743cbebd0cbd0271e",
    ],
    // 244 bytes: too long to split, PAX path.
    [
      header({ typeflag: TYPE.DIR, name: `${p60}/${p60}/${p60}/${p60}/`, mode: 0o755, mtime: 1795361479 }),
      1536,
      "3c3d0938c5e647ef9510264093877b3715da89cc8f591d7b73462ffc062ef343",
    ],
    [
      header({
        typeflag: TYPE.REG,
        name: `${p60}/${p60}/${p60}/${p60}/${p60}/${"q".repeat(110)}`,
        size: 5,
        mtime: 1795361479,
      }),
      1536,
      "e6176fb32ffe614a68ed8ff43881c57188eee1a664306614bd9d4e5c14ac7524",
    ],
  ];
  for (const [h, length, digest] of cases) {
    const b = encodeHeader(h);
    assert.equal(b.length, length, h.name);
    assert.equal(sha(b), digest, h.name);
  }
});

void test("headers that do not fit USTAR fall back to PAX records as Go's writer does", () => {
  const b = encodeHeader(
    header({
      typeflag: TYPE.REG,
      name: "big",
      uid: 3_000_000,
      gid: 5,
      size: 1,
      mtime: -5,
      uname: "x".repeat(40),
    }),
  );
  assert.equal(b[156], TYPE.XHEADER);
  assert.equal(b.subarray(0, 15).toString(), "PaxHeaders.0/bi");
  const records = b.subarray(512, 512 + 200).toString("latin1");
  assert.match(records, /^\d+ mtime=-5\n\d+ uid=3000000\n\d+ uname=x{40}\n/);
  const main = b.subarray(b.length - 512);
  // Fields that do not fit are written as zero in the main header.
  assert.equal(main.subarray(108, 116).toString("latin1"), "0000000\0");
  assert.equal(main.subarray(136, 148).toString("latin1"), "00000000000\0");
  assert.throws(() =>
    encodeHeader(
      header({ typeflag: TYPE.REG, name: "x", mtime: 0, records: new Map([["SCHILY.xattr.a=b", CAP]]) }),
    ),
  );
});

/** lower and upper trees exercising every kind of entry; returns the expected listing. */
function buildTrees(lower: string, upper: string): void {
  mkdirSync(join(lower, "a/b/c"), { recursive: true });
  writeFileSync(join(lower, "a/b/c/keep"), "keep");
  mkdirSync(join(lower, "gone/sub"), { recursive: true });
  writeFileSync(join(lower, "gone/sub/x"), "x");
  writeFileSync(join(lower, "gone-file"), "g");
  writeFileSync(join(lower, "mod"), "old");
  writeFileSync(join(lower, "owner"), "o");
  mkdirSync(join(lower, "todir"));
  writeFileSync(join(lower, "todir/inner"), "i");
  writeFileSync(join(lower, "single"), "s");
  symlinkSync("old-target", join(lower, "link"));
  mkdirSync(join(lower, "wh"));
  writeFileSync(join(lower, "wh/rm"), "r");
  writeFileSync(join(lower, "wh/stay"), "s");
  for (const p of readdirSync(lower, { recursive: true, encoding: "utf8" }))
    setMtime(join(lower, p), 1600000000, 1);
  setMtime(lower, 1600000000, 1);
  copyTree(lower, upper);

  writeFileSync(join(upper, "a/b/c/new"), "new");
  rmSync(join(upper, "gone"), { recursive: true });
  unlinkSync(join(upper, "gone-file"));
  writeFileSync(join(upper, "mod"), "newer");
  setMtime(join(upper, "mod"), 1650000000, 999);
  chownSync(join(upper, "owner"), 1000, 1001);
  chmodSync(join(upper, "owner"), 0o4750);
  rmSync(join(upper, "todir"), { recursive: true });
  writeFileSync(join(upper, "todir"), "file now");
  // "single" is unchanged but gains a second name: containerd relinks it to the new name.
  linkSync(join(upper, "single"), join(upper, "twin"));
  rmSync(join(upper, "link"));
  symlinkSync("new-target", join(upper, "link"));
  mkdirSync(join(upper, "dev"));
  mknod(join(upper, "dev/null"), S.IFCHR | 0o666, makedev(1, 3));
  mknod(join(upper, "dev/sda"), S.IFBLK | 0o660, makedev(8, 0));
  mknod(join(upper, "dev/fifo"), S.IFIFO | 0o600);
  mknod(join(upper, "dev/sock"), S.IFSOCK | 0o755);
  writeFileSync(join(upper, "capped"), "bin");
  setXattr(join(upper, "capped"), "security.capability", CAP);
  writeFileSync(join(upper, "noted"), "n");
  setXattr(join(upper, "noted"), "user.note", Buffer.from("not exported"));
  unlinkSync(join(upper, "wh/rm"));
  writeFileSync(join(upper, "new1"), "1");
  linkSync(join(upper, "new1"), join(upper, "new2"));
  for (const p of [
    "a/b/c/new",
    "todir",
    "link",
    "dev",
    "dev/null",
    "dev/sda",
    "dev/fifo",
    "capped",
    "noted",
    "new1",
  ])
    setMtime(join(upper, p), 1700000000, 5);
}

void test("the entry list: whiteouts, parents first, links, devices, capabilities, no sockets", async () => {
  const { dir, lower, upper } = tempTrees();
  try {
    buildTrees(lower, upper);
    const tar = await diffBytes(lower, upper);
    assert.equal(tar.length % 512, 0);
    assert.ok(tar.subarray(tar.length - 1024).equals(Buffer.alloc(1024)));
    const { entries } = await listTar(tar);
    const W = 1700000123; // WHITEOUT_TIME rounded to the second
    const T = 1700000000;
    const dirT = Math.floor(lstatSync(join(upper, "a/b/c")).mtimeMs / 1000);
    const whT = Math.floor(lstatSync(join(upper, "wh")).mtimeMs / 1000);
    const rootless = { uid: 0, gid: 0 };
    assert.deepEqual(entries, [
      { name: "a/", type: "directory", mode: 0o755, ...rootless, size: 0, mtime: 1600000000 },
      { name: "a/b/", type: "directory", mode: 0o755, ...rootless, size: 0, mtime: 1600000000 },
      { name: "a/b/c/", type: "directory", mode: 0o755, ...rootless, size: 0, mtime: dirT },
      { name: "a/b/c/new", type: "file", mode: 0o644, ...rootless, size: 3, mtime: T, data: "new" },
      {
        name: "capped",
        type: "file",
        mode: 0o644,
        ...rootless,
        size: 3,
        mtime: T,
        pax: ["SCHILY.xattr.security.capability"],
        data: "bin",
      },
      { name: "dev/", type: "directory", mode: 0o755, ...rootless, size: 0, mtime: T },
      { name: "dev/fifo", type: "fifo", mode: 0o600, ...rootless, size: 0, mtime: T },
      { name: "dev/null", type: "character-device", mode: 0o666, ...rootless, size: 0, mtime: T, dev: "1:3" },
      { name: "dev/sda", type: "block-device", mode: 0o660, ...rootless, size: 0, mtime: T, dev: "8:0" },
      { name: ".wh.gone", type: "file", mode: 0, ...rootless, size: 0, mtime: W },
      { name: ".wh.gone-file", type: "file", mode: 0, ...rootless, size: 0, mtime: W },
      { name: "link", type: "symlink", mode: 0o777, ...rootless, size: 0, mtime: T, linkname: "new-target" },
      { name: "mod", type: "file", mode: 0o644, ...rootless, size: 5, mtime: 1650000000, data: "newer" },
      { name: "new1", type: "file", mode: 0o644, ...rootless, size: 1, mtime: T, data: "1" },
      { name: "new2", type: "link", mode: 0o644, ...rootless, size: 0, mtime: T, linkname: "new1" },
      { name: "noted", type: "file", mode: 0o644, ...rootless, size: 1, mtime: T, data: "n" },
      {
        name: "owner",
        type: "file",
        mode: 0o4750,
        uid: 1000,
        gid: 1001,
        size: 1,
        mtime: 1600000000,
        data: "o",
      },
      { name: "todir", type: "file", mode: 0o644, ...rootless, size: 8, mtime: T, data: "file now" },
      { name: "twin", type: "file", mode: 0o644, ...rootless, size: 1, mtime: 1600000000, data: "s" },
      {
        name: "single",
        type: "link",
        mode: 0o644,
        ...rootless,
        size: 0,
        mtime: 1600000000,
        linkname: "twin",
      },
      { name: "wh/", type: "directory", mode: 0o755, ...rootless, size: 0, mtime: whT },
      { name: "wh/.wh.rm", type: "file", mode: 0, ...rootless, size: 0, mtime: W },
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

interface NodeInfo {
  type: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  rdev: number;
  ino: number;
  content?: string;
  cap?: string;
}

function snapshot(root: string): Map<string, NodeInfo> {
  const out = new Map<string, NodeInfo>();
  for (const rel of readdirSync(root, { recursive: true, encoding: "utf8" }).sort()) {
    const p = join(root, rel);
    const st = lstatSync(p, { bigint: true });
    const type = Number(st.mode) & S.IFMT;
    const info: NodeInfo = {
      type,
      mode: Number(st.mode) & 0o7777,
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtime: Number(st.mtimeNs / 1_000_000_000n),
      rdev: Number(st.rdev),
      ino: Number(st.ino),
    };
    if (type === S.IFREG) info.content = sha(readFileSync(p));
    if (type === S.IFLNK) info.content = readlinkSync(p);
    const cap = getXattr(p, "security.capability");
    if (cap !== null) info.cap = cap.toString("hex");
    out.set(rel, info);
  }
  return out;
}

/** Applies a layer onto dir with GNU tar, handling whiteouts and replacements by hand. */
async function applyWithGnuTar(tarFile: string, tar: Buffer, dir: string): Promise<void> {
  const { entries } = await listTar(tar);
  for (const e of entries) {
    const name = e.name.replace(/\/$/, "");
    const slash = name.lastIndexOf("/");
    const base = name.slice(slash + 1);
    if (base.startsWith(".wh.")) {
      rmSync(join(dir, name.slice(0, slash + 1) + base.slice(4)), { recursive: true, force: true });
      continue;
    }
    const target = join(dir, name);
    let existing: ReturnType<typeof lstatSync> | undefined;
    try {
      existing = lstatSync(target);
    } catch {
      existing = undefined;
    }
    if (existing !== undefined && !(existing.isDirectory() && e.type === "directory"))
      rmSync(target, { recursive: true });
  }
  execFileSync("tar", [
    "-x",
    "-f",
    tarFile,
    "-C",
    dir,
    "--numeric-owner",
    "--same-permissions",
    "--xattrs",
    "--xattrs-include=*",
    "--exclude=.wh.*",
  ]);
}

void test("applying the layer with GNU tar onto a copy of lower gives upper", async () => {
  const { dir, lower, upper } = tempTrees();
  try {
    buildTrees(lower, upper);
    // A large file across many chunks, written with a small chunk size.
    const big = randomBytes(3 * 1024 * 1024 + 123);
    writeFileSync(join(upper, "big"), big);
    const tar = await diffBytes(lower, upper, { chunkSize: 64 * 1024 + 7 });
    const tarFile = join(dir, "layer.tar");
    writeFileSync(tarFile, tar);
    const applied = join(dir, "applied");
    copyTree(lower, applied);
    await applyWithGnuTar(tarFile, tar, applied);

    const want = snapshot(upper);
    const got = snapshot(applied);
    want.delete("dev/sock"); // sockets are not archived
    // GNU tar does not restore a symlink's mtime.
    const strip = (m: Map<string, NodeInfo>): Map<string, Omit<NodeInfo, "ino">> =>
      new Map(
        [...m].map(([k, { ino: _ino, ...v }]) => [k, v.type === S.IFLNK ? { ...v, mtime: 0 } : v] as const),
      );
    assert.deepEqual(strip(got), strip(want));
    // Names that share an inode in upper share one in the result.
    const groups = (m: Map<string, NodeInfo>): string[][] => {
      const by = new Map<number, string[]>();
      for (const [k, v] of m) if (v.type === S.IFREG) by.set(v.ino, [...(by.get(v.ino) ?? []), k]);
      return [...by.values()].filter((g) => g.length > 1).sort();
    };
    assert.deepEqual(groups(got), groups(want));
    assert.deepEqual(groups(want), [
      ["new1", "new2"],
      ["single", "twin"],
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test("gzip: the compressed stream holds the same tar; digests and media types", async () => {
  const { dir, lower, upper } = tempTrees();
  try {
    buildTrees(lower, upper);
    const plain: Buffer[] = [];
    const r1 = await writeDiff(lower, upper, (c) => void plain.push(c), { whiteoutTime: WHITEOUT_TIME });
    const gz: Buffer[] = [];
    const r2 = await writeDiff(lower, upper, (c) => void gz.push(c), {
      whiteoutTime: WHITEOUT_TIME,
      compression: "gzip",
    });
    const tar = Buffer.concat(plain);
    const compressed = Buffer.concat(gz);
    assert.ok(gunzipSync(compressed).equals(tar));
    assert.equal(r1.mediaType, MEDIA_TYPE_LAYER);
    assert.equal(r1.digest, `sha256:${sha(tar)}`);
    assert.equal(r1.uncompressedDigest, r1.digest);
    assert.equal(r1.size, tar.length);
    assert.equal(r2.mediaType, MEDIA_TYPE_LAYER_GZIP);
    assert.equal(r2.digest, `sha256:${sha(compressed)}`);
    assert.equal(r2.size, compressed.length);
    assert.equal(r2.uncompressedDigest, r1.digest);
    assert.equal(r2.uncompressedSize, tar.length);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test("output: a slow stream gets backpressure and is not ended; an async sink is awaited; abort stops", async () => {
  const { dir, lower, upper } = tempTrees();
  try {
    buildTrees(lower, upper);
    writeFileSync(join(upper, "big"), randomBytes(4 * 1024 * 1024));
    const expected = Buffer.concat([...diffTar(lower, upper, { whiteoutTime: WHITEOUT_TIME })]);

    const got: Buffer[] = [];
    const slow = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _enc, cb) {
        got.push(chunk);
        setTimeout(cb, 1);
      },
    });
    await writeDiff(lower, upper, slow, { whiteoutTime: WHITEOUT_TIME, chunkSize: 256 * 1024 });
    assert.equal(slow.writableEnded, false);
    assert.ok(Buffer.concat(got).equals(expected));

    const viaAsync: Buffer[] = [];
    await writeDiff(
      lower,
      upper,
      async (c) => {
        await new Promise((r) => setImmediate(r));
        viaAsync.push(c);
      },
      { whiteoutTime: WHITEOUT_TIME },
    );
    assert.ok(Buffer.concat(viaAsync).equals(expected));

    const ac = new AbortController();
    let seen = 0;
    await assert.rejects(
      writeDiff(
        lower,
        upper,
        (c) => {
          seen += c.length;
          ac.abort();
        },
        { chunkSize: 64 * 1024, signal: ac.signal },
      ),
      (e: Error) => e.name === "AbortError",
    );
    assert.ok(seen < expected.length);

    await assert.rejects(
      writeDiff(lower, upper, () => {
        throw new Error("sink failed");
      }),
      /sink failed/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test("overlay: diffing a read-only view of lower against the merged view shows whiteouts", async () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-writediff-ovl-"));
  const p = (s: string): string => join(dir, s);
  const mounted: string[] = [];
  try {
    for (const d of ["lower", "upper", "work", "merged", "lowview"]) mkdirSync(p(d));
    mkdirSync(p("lower/d/e"), { recursive: true });
    writeFileSync(p("lower/d/e/x"), "x");
    writeFileSync(p("lower/a"), "a");
    writeFileSync(p("lower/keep"), "k");
    writeFileSync(p("lower/same"), "s");
    mkdirSync(p("lower/opq"));
    writeFileSync(p("lower/opq/o1"), "1");
    writeFileSync(p("lower/opq/o2"), "2");
    mount(
      "overlay",
      p("merged"),
      "overlay",
      0,
      `lowerdir=${p("lower")},upperdir=${p("upper")},workdir=${p("work")}`,
    );
    mounted.push(p("merged"));

    unlinkSync(p("merged/a"));
    rmSync(p("merged/d"), { recursive: true });
    writeFileSync(p("merged/keep"), "changed");
    rmSync(p("merged/opq"), { recursive: true });
    mkdirSync(p("merged/opq"));
    writeFileSync(p("merged/opq/new"), "n");
    writeFileSync(p("merged/added"), "+");

    // The upper dir holds overlay's own markers, which must not leak into the layer.
    assert.equal(lstatSync(p("upper/a")).isCharacterDevice(), true);
    assert.equal(lstatSync(p("upper/a")).rdev, 0);
    assert.equal(getXattr(p("upper/opq"), "trusted.overlay.opaque")?.toString(), "y");

    mount(p("lower"), p("lowview"), null, MS.BIND, null);
    mounted.push(p("lowview"));
    mount(null, p("lowview"), null, MS.REMOUNT | MS.BIND | MS.RDONLY, null);

    const { entries } = await listTar(await diffBytes(p("lowview"), p("merged")));
    assert.deepEqual(
      entries.map((e) => `${e.type} ${e.name}`),
      [
        "file .wh.a",
        "file added",
        "file .wh.d",
        "file keep",
        "directory opq/",
        "file opq/new",
        "file opq/.wh.o1",
        "file opq/.wh.o2",
      ],
    );
  } finally {
    for (const m of mounted.reverse()) unmount(m, MNT.DETACH);
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(existsSync(dir), false);
});
