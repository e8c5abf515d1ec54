// The layer tar of the changes between two trees, byte for byte as containerd 1.6 writes it
// (archive.WriteDiff with its ChangeWriter, over Go's archive/tar):
//
// - deletions are empty regular files named ".wh.<name>", mode 0, owner 0:0, no user/group
//   names, with the writer's start time rounded to the second (Go rounds because the header
//   leaves Format unset);
// - additions and modifications are full entries built like tar.FileInfoHeader: permission and
//   setuid/setgid/sticky bits, numeric uid/gid with empty user/group names (containerd 1.6.20 as
//   Debian ships it never fills them in: checked against it, it does not even read /etc/passwd),
//   mtime truncated to the second, no atime/ctime, directory names ending in "/", device numbers;
// - security.capability travels as a PAX record "SCHILY.xattr.security.capability" (the only
//   attribute containerd exports); sockets are skipped;
// - a file whose inode has several names is written once and every other changed (or
//   unchanged) name of that inode becomes a hard link to it;
// - the parent directories of every entry are written first, once, even when unchanged;
// - headers are USTAR unless a field needs PAX (long or non-ASCII names, big numbers, xattrs),
//   laid out as Go's writer lays them out (octal fields zero-padded with a NUL terminator, the
//   USTAR prefix split, "PaxHeaders.0" extended header names), and the archive ends with two
//   zero blocks and no record padding.
import { type BigIntStats, fstatSync, readSync } from "node:fs";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { O, S, close, openInRoot, readlinkat } from "../../sys/fs-at.js";
import { BerthError } from "../../errdefs/errors.js";
import {
  type ChangeKind,
  type ChangesOptions,
  type TreeEntry,
  type XattrPolicy,
  diffTrees,
  entryXattr,
  entryXattrNames,
  fdXattr,
  fdXattrNames,
  fileType,
  mtimeParts,
  openTreeRoot,
} from "./changes.js";

export const MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar";
export const MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";

export type DiffCompression = "none" | "gzip";

export function mediaTypeFor(compression: DiffCompression): string {
  return compression === "gzip" ? MEDIA_TYPE_LAYER_GZIP : MEDIA_TYPE_LAYER;
}

export interface DiffTarOptions extends ChangesOptions {
  /**
   * The mtime of whiteout entries (containerd uses the time its writer was created, rounded to
   * the second). Default: now.
   */
  whiteoutTime?: Date;
  /** Size of the chunks produced (default 1 MiB). */
  chunkSize?: number;
}

export interface WriteDiffOptions extends DiffTarOptions {
  /**
   * "none" (the default) writes the tar itself, "gzip" compresses it (containerd's default media
   * type for Compare; the bytes differ from Go's compressor, the tar inside does not).
   */
  compression?: DiffCompression;
  /** zlib level for gzip (default: zlib's default, 6, like Go's DefaultCompression). */
  gzipLevel?: number;
  signal?: AbortSignal;
}

export interface WriteDiffResult {
  mediaType: string;
  /** Bytes written to out. */
  size: number;
  /** sha256 of what was written to out. */
  digest: string;
  /** sha256 of the tar before compression (containerd.io/uncompressed, the layer's diff ID). */
  uncompressedDigest: string;
  uncompressedSize: number;
}

// ---------------------------------------------------------------------------------------------
// Tar headers, encoded as Go's archive/tar Writer encodes them.

export const TYPE = {
  REG: 0x30, // '0'
  LINK: 0x31, // '1'
  SYMLINK: 0x32, // '2'
  CHAR: 0x33, // '3'
  BLOCK: 0x34, // '4'
  DIR: 0x35, // '5'
  FIFO: 0x36, // '6'
  XHEADER: 0x78, // 'x'
} as const;

export interface TarHeader {
  typeflag: number;
  name: string;
  linkname: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Whole seconds since the epoch. */
  mtime: number;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  /** Extra PAX records (keys like "SCHILY.xattr.security.capability"), raw values. */
  records?: Map<string, Buffer>;
}

const BLOCK = 512;
const NAME_SIZE = 100;
const PREFIX_SIZE = 155;
const MAX_SPECIAL_FILE_SIZE = 1 << 20;
const BASIC_KEYS = new Set([
  "path",
  "linkpath",
  "size",
  "uid",
  "gid",
  "uname",
  "gname",
  "mtime",
  "atime",
  "ctime",
]);

// Field offsets of the USTAR header.
const F = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  chksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  devmajor: [329, 8],
  devminor: [337, 8],
  prefix: [345, 155],
} as const;

function isASCII(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c >= 0x80 || c === 0) return false;
  }
  return true;
}

/** Go's toASCII: drops every non-ASCII character (all bytes of a UTF-8 sequence) and NULs. */
function toASCII(b: Buffer): Buffer {
  return isASCII(b) ? b : Buffer.from(b.filter((c) => c < 0x80 && c !== 0));
}

function fitsInOctal(n: number, x: number): boolean {
  return x >= 0 && (n >= 22 || x < 8 ** (n - 1));
}

function splitUSTARPath(name: Buffer): [Buffer, Buffer] | null {
  let length = name.length;
  if (length <= NAME_SIZE || !isASCII(name)) return null;
  if (length > PREFIX_SIZE + 1) length = PREFIX_SIZE + 1;
  else if (name[length - 1] === 0x2f) length--;
  const i = name.lastIndexOf(0x2f, length - 1);
  const nlen = name.length - i - 1;
  if (i <= 0 || nlen > NAME_SIZE || nlen === 0 || i > PREFIX_SIZE) return null;
  return [name.subarray(0, i), name.subarray(i + 1)];
}

function putString(blk: Buffer, field: readonly [number, number], s: Buffer): void {
  const [off, len] = field;
  s.copy(blk, off, 0, Math.min(s.length, len));
  if (s.length < len) blk[off + s.length] = 0;
  // Go's writer: a truncated value must not end in "/" (some readers take it for a directory).
  if (s.length > len && blk[off + len - 1] === 0x2f) {
    let n = len;
    while (n > 0 && s[n - 1] === 0x2f) n--;
    blk[off + n] = 0;
  }
}

function putOctal(blk: Buffer, field: readonly [number, number], x: number): void {
  const [, len] = field;
  if (!fitsInOctal(len, x)) x = 0;
  const s = x.toString(8);
  putString(blk, field, Buffer.from(s.length < len - 1 ? "0".repeat(len - 1 - s.length) + s : s, "latin1"));
}

function finishBlock(blk: Buffer): void {
  blk.write("ustar\0", F.magic[0], "latin1");
  blk.write("00", F.version[0], "latin1");
  blk.fill(0x20, F.chksum[0], F.chksum[0] + F.chksum[1]);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += blk[i]!;
  putOctal(blk, [F.chksum[0], 7], sum);
  blk[F.chksum[0] + 7] = 0x20;
}

function template(
  blk: Buffer,
  h: TarHeader,
  name: Buffer,
  linkname: Buffer,
  uname: Buffer,
  gname: Buffer,
): void {
  blk[F.typeflag[0]] = h.typeflag;
  putString(blk, F.name, name);
  putString(blk, F.linkname, linkname);
  putOctal(blk, F.mode, h.mode);
  putOctal(blk, F.uid, h.uid);
  putOctal(blk, F.gid, h.gid);
  putOctal(blk, F.size, h.size);
  putOctal(blk, F.mtime, h.mtime);
  putString(blk, F.uname, uname);
  putString(blk, F.gname, gname);
  putOctal(blk, F.devmajor, h.devmajor);
  putOctal(blk, F.devminor, h.devminor);
}

function paxRecord(key: string, value: Buffer): Buffer {
  const k = Buffer.from(key, "utf8");
  let size = k.length + value.length + 3;
  size += String(size).length;
  let prefix = `${size} `;
  if (prefix.length + k.length + value.length + 2 !== size) {
    size = prefix.length + k.length + value.length + 2;
    prefix = `${size} `;
  }
  return Buffer.concat([Buffer.from(prefix, "latin1"), k, Buffer.from("="), value, Buffer.from("\n")]);
}

function validRecord(key: string, value: Buffer): boolean {
  if (key === "" || key.includes("=")) return false;
  if (key === "path" || key === "linkpath" || key === "uname" || key === "gname") return !value.includes(0);
  return !key.includes("\0");
}

function padding(n: number): number {
  return (BLOCK - (n % BLOCK)) % BLOCK;
}

/**
 * Encodes one entry's header blocks (a PAX extended header first when needed) as Go's
 * tar.Writer.WriteHeader does for the headers containerd builds. containerd asks for PAX on file
 * entries but, with whole-second mtimes and no atime/ctime, Go still prefers USTAR whenever every
 * field fits, so the choice depends only on the fields: USTAR when they fit, else PAX.
 */
export function encodeHeader(h: TarHeader): Buffer {
  const name = Buffer.from(h.name, "utf8");
  const linkname = Buffer.from(h.linkname, "utf8");
  const uname = Buffer.from(h.uname, "utf8");
  const gname = Buffer.from(h.gname, "utf8");
  let ustar = true;
  let pax = true;
  const paxHdrs = new Map<string, Buffer>();

  const verifyString = (s: Buffer, size: number, key: string): void => {
    if (!isASCII(s) || s.length > size) {
      if (key !== "path" || splitUSTARPath(s) === null) ustar = false;
      paxHdrs.set(key, s);
    }
  };
  const verifyNumeric = (n: number, size: number, key: string | null): void => {
    if (!fitsInOctal(size, n)) {
      ustar = false;
      if (key === null) pax = false;
      else paxHdrs.set(key, Buffer.from(String(n), "latin1"));
    }
  };
  verifyString(name, F.name[1], "path");
  verifyString(linkname, F.linkname[1], "linkpath");
  verifyString(uname, F.uname[1], "uname");
  verifyString(gname, F.gname[1], "gname");
  verifyNumeric(h.mode, F.mode[1], null);
  verifyNumeric(h.uid, F.uid[1], "uid");
  verifyNumeric(h.gid, F.gid[1], "gid");
  verifyNumeric(h.size, F.size[1], "size");
  verifyNumeric(h.devmajor, F.devmajor[1], null);
  verifyNumeric(h.devminor, F.devminor[1], null);
  verifyNumeric(h.mtime, F.mtime[1], "mtime");
  if (h.records !== undefined && h.records.size > 0) {
    for (const [k, v] of h.records) if (!paxHdrs.has(k) && !BASIC_KEYS.has(k)) paxHdrs.set(k, v);
    ustar = false;
  }
  for (const [k, v] of paxHdrs) {
    if (!validRecord(k, v))
      throw new BerthError("invalid-argument", `tar: invalid PAX record ${JSON.stringify(k)}`);
  }

  const blk = Buffer.alloc(BLOCK);
  if (ustar) {
    let main: Buffer = name;
    const split = splitUSTARPath(name);
    if (split !== null) main = split[1];
    template(blk, h, main, linkname, uname, gname);
    putString(blk, F.prefix, split === null ? Buffer.alloc(0) : split[0]);
    finishBlock(blk);
    return blk;
  }
  if (!pax)
    throw new BerthError("invalid-argument", `tar: cannot encode header for ${JSON.stringify(h.name)}`);

  const keys = [...paxHdrs.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const data = Buffer.concat(keys.map((k) => paxRecord(k, paxHdrs.get(k)!)));
  if (data.length > MAX_SPECIAL_FILE_SIZE)
    throw new BerthError("invalid-argument", "tar: PAX header too long");
  // path.Join(dir, "PaxHeaders.0", file) of the (clean) entry name.
  const slash = h.name.lastIndexOf("/");
  const file = h.name.slice(slash + 1);
  let xname = toASCII(
    Buffer.from(`${h.name.slice(0, slash + 1)}PaxHeaders.0${file === "" ? "" : `/${file}`}`),
  );
  if (xname.length > NAME_SIZE) xname = xname.subarray(0, NAME_SIZE);
  let end = xname.length;
  while (end > 0 && xname[end - 1] === 0x2f) end--;
  xname = xname.subarray(0, end);

  const xblk = Buffer.alloc(BLOCK);
  xblk[F.typeflag[0]] = TYPE.XHEADER;
  putString(xblk, F.name, xname);
  putOctal(xblk, F.mode, 0);
  putOctal(xblk, F.uid, 0);
  putOctal(xblk, F.gid, 0);
  putOctal(xblk, F.size, data.length);
  putOctal(xblk, F.mtime, 0);
  finishBlock(xblk);

  template(blk, h, toASCII(name), toASCII(linkname), toASCII(uname), toASCII(gname));
  finishBlock(blk);
  return Buffer.concat([xblk, data, Buffer.alloc(padding(data.length)), blk]);
}

// ---------------------------------------------------------------------------------------------
// The change writer.

/** What the writer needs of a file in the upper tree. */
interface SourceNode {
  stat: BigIntStats;
  xattrNames(): string[];
  xattr(key: string): Buffer | null;
  readlink(): string;
  openFile(): number;
}

function entryNode(e: TreeEntry): SourceNode {
  return {
    stat: e.stat,
    xattrNames: () => entryXattrNames(e.dirFd, e.name),
    xattr: (key) => entryXattr(e.dirFd, e.name, key),
    readlink: () => readlinkat(e.dirFd, e.name),
    openFile: () => openInRoot(e.dirFd, e.name, O.RDONLY | O.NOFOLLOW | O.NOCTTY),
  };
}

/** Linux's major()/minor() (as golang.org/x/sys/unix computes them). */
function devNumbers(rdev: bigint): [number, number] {
  const major = ((rdev & 0xfff00n) >> 8n) | ((rdev & 0xfffff00000000000n) >> 32n);
  const minor = (rdev & 0xffn) | ((rdev & 0xffffff00000n) >> 12n);
  return [Number(major), Number(minor)];
}

const CAPABILITY = "security.capability";
const XATTR_PREFIX = "SCHILY.xattr.";

/** Collects output into fixed-size chunks; full chunks are handed out by drain(). */
class Chunker {
  private buf: Buffer;
  private off = 0;
  private ready: Buffer[] = [];

  constructor(private readonly size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  write(data: Buffer): void {
    let p = 0;
    while (p < data.length) {
      const n = Math.min(data.length - p, this.size - this.off);
      data.copy(this.buf, this.off, p, p + n);
      this.advance(n);
      p += n;
    }
  }

  zeros(count: number): void {
    while (count > 0) {
      const n = Math.min(count, this.size - this.off);
      this.buf.fill(0, this.off, this.off + n);
      this.advance(n);
      count -= n;
    }
  }

  /** Free space of the current chunk, to read into directly. */
  space(): { buf: Buffer; off: number; free: number } {
    return { buf: this.buf, off: this.off, free: this.size - this.off };
  }

  advance(n: number): void {
    this.off += n;
    if (this.off === this.size) {
      this.ready.push(this.buf);
      this.buf = Buffer.allocUnsafe(this.size);
      this.off = 0;
    }
  }

  *drain(): Generator<Buffer> {
    if (this.ready.length === 0) return;
    const out = this.ready;
    this.ready = [];
    yield* out;
  }

  *finish(): Generator<Buffer> {
    yield* this.drain();
    if (this.off > 0) {
      const last = this.buf.subarray(0, this.off);
      this.buf = Buffer.allocUnsafe(0);
      this.off = 0;
      yield last;
    }
  }
}

/** containerd's ChangeWriter: turns changes into tar entries. */
class ChangeTarWriter {
  private readonly out: Chunker;
  private readonly whiteoutMtime: number;
  private readonly policy: XattrPolicy;
  private readonly addedDirs = new Set<string>();
  private readonly inodeSrc = new Map<bigint, string>();
  private readonly inodeRefs = new Map<bigint, string[]>();
  private readonly probe = Buffer.alloc(1);

  constructor(
    private readonly upperFd: number,
    opts: DiffTarOptions,
  ) {
    this.out = new Chunker(opts.chunkSize ?? 1 << 20);
    // Go rounds an unset-format header's ModTime to the nearest second.
    this.whiteoutMtime = Math.floor((opts.whiteoutTime ?? new Date()).getTime() / 1000 + 0.5);
    this.policy = opts.xattrs ?? "capability";
  }

  *handle(kind: ChangeKind | "unmodified", path: string, node: SourceNode | null): Generator<Buffer> {
    if (kind === "delete") {
      const slash = path.lastIndexOf("/");
      const name = `${path.slice(0, slash + 1)}.wh.${path.slice(slash + 1)}`.replace(/^\//, "");
      const hdr: TarHeader = {
        typeflag: TYPE.REG,
        name,
        linkname: "",
        mode: 0,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: this.whiteoutMtime,
        uname: "",
        gname: "",
        devmajor: 0,
        devminor: 0,
      };
      yield* this.includeParents(hdr);
      this.out.write(encodeHeader(hdr));
      yield* this.out.drain();
      return;
    }
    if (node === null) throw new BerthError("unknown", `diff: no file for ${path}`);
    const st = node.stat;
    const type = fileType(st);
    if (type === S.IFSOCK) return;

    let typeflag: number;
    let size = 0;
    let linkname = "";
    switch (type) {
      case S.IFREG:
        typeflag = TYPE.REG;
        size = Number(st.size);
        break;
      case S.IFDIR:
        typeflag = TYPE.DIR;
        break;
      case S.IFLNK:
        typeflag = TYPE.SYMLINK;
        linkname = node.readlink();
        break;
      case S.IFCHR:
        typeflag = TYPE.CHAR;
        break;
      case S.IFBLK:
        typeflag = TYPE.BLOCK;
        break;
      case S.IFIFO:
        typeflag = TYPE.FIFO;
        break;
      default:
        throw new BerthError(
          "unknown",
          `archive/tar: unknown file mode ${Number(st.mode).toString(8)} of ${path}`,
        );
    }
    let name = path.startsWith("/") ? path.slice(1) : path;
    if (type === S.IFDIR && !name.endsWith("/")) name += "/";
    const mode = Number(st.mode);
    const uid = Number(st.uid);
    const gid = Number(st.gid);
    // containerd's setHeaderForSpecialDevice tests S_IFBLK|S_IFCHR bits, so directories and
    // symlinks get their (normally zero) st_rdev too.
    const [devmajor, devminor] = (mode & 0o060000) !== 0 ? devNumbers(st.rdev) : [0, 0];
    const hdr: TarHeader = {
      typeflag,
      name,
      linkname,
      mode: mode & 0o7777,
      uid,
      gid,
      size,
      mtime: Number(mtimeParts(st).sec),
      uname: "",
      gname: "",
      devmajor,
      devminor,
    };

    let additionalLinks: string[] | undefined;
    if (type !== S.IFDIR && st.nlink > 1n) {
      const source = this.inodeSrc.get(st.ino);
      if (source !== undefined) {
        hdr.typeflag = TYPE.LINK;
        hdr.linkname = source;
        hdr.size = 0;
      } else {
        if (kind === "unmodified") {
          const refs = this.inodeRefs.get(st.ino);
          if (refs === undefined) this.inodeRefs.set(st.ino, [name]);
          else refs.push(name);
          return;
        }
        this.inodeSrc.set(st.ino, name);
        additionalLinks = this.inodeRefs.get(st.ino);
        this.inodeRefs.delete(st.ino);
      }
    } else if (kind === "unmodified") {
      return;
    }

    const records = this.xattrRecords(node);
    if (records !== undefined) hdr.records = records;

    yield* this.includeParents(hdr);
    this.out.write(encodeHeader(hdr));
    yield* this.out.drain();

    if (hdr.typeflag === TYPE.REG && hdr.size > 0) yield* this.copyContent(node, hdr.size, path);

    if (additionalLinks !== undefined) {
      const source = hdr.name;
      for (const extra of additionalLinks) {
        hdr.name = extra;
        hdr.typeflag = TYPE.LINK;
        hdr.linkname = source;
        hdr.size = 0;
        yield* this.includeParents(hdr);
        this.out.write(encodeHeader(hdr));
        yield* this.out.drain();
      }
    }
  }

  private xattrRecords(node: SourceNode): Map<string, Buffer> | undefined {
    const names = node.xattrNames();
    if (names.length === 0) return undefined;
    const records = new Map<string, Buffer>();
    if (this.policy === "capability") {
      if (!names.includes(CAPABILITY)) return undefined;
      const cap = node.xattr(CAPABILITY);
      if (cap === null || cap.length === 0) return undefined;
      records.set(XATTR_PREFIX + CAPABILITY, cap);
    } else {
      for (const key of names) {
        const value = node.xattr(key);
        if (value !== null) records.set(XATTR_PREFIX + key, value);
      }
    }
    return records.size > 0 ? records : undefined;
  }

  private *copyContent(node: SourceNode, size: number, path: string): Generator<Buffer> {
    const fd = node.openFile();
    try {
      let remaining = size;
      while (remaining > 0) {
        const { buf, off, free } = this.out.space();
        const n = readSync(fd, buf, off, Math.min(free, remaining), null);
        if (n === 0) throw new BerthError("unknown", `failed to copy ${path}: short write copying file`);
        this.out.advance(n);
        remaining -= n;
        yield* this.out.drain();
      }
      if (readSync(fd, this.probe, 0, 1, null) !== 0)
        throw new BerthError("unknown", `failed to copy ${path}: archive/tar: write too long`);
    } finally {
      close(fd);
    }
    this.out.zeros(padding(size));
    yield* this.out.drain();
  }

  /** Writes the entry's parent directory first, once per directory, unless it is the root. */
  private *includeParents(hdr: TarHeader): Generator<Buffer> {
    const name = hdr.name.replace(/\/+$/, "");
    const slash = name.lastIndexOf("/");
    const parent = slash < 0 ? "." : name.slice(0, slash);
    if (name !== "" && name !== "." && parent !== "." && parent !== "" && !this.addedDirs.has(parent)) {
      this.addedDirs.add(parent);
      const fd = openInRoot(this.upperFd, parent, O.RDONLY | O.DIRECTORY);
      try {
        const node: SourceNode = {
          stat: fstatSync(fd, { bigint: true }),
          xattrNames: () => fdXattrNames(fd),
          xattr: (key) => fdXattr(fd, key),
          readlink: () => {
            throw new BerthError("unknown", `diff: ${parent} is a directory`);
          },
          openFile: () => {
            throw new BerthError("unknown", `diff: ${parent} is a directory`);
          },
        };
        yield* this.handle("modify", parent, node);
      } finally {
        close(fd);
      }
    }
    if (hdr.typeflag === TYPE.DIR) this.addedDirs.add(name);
  }

  *finish(): Generator<Buffer> {
    this.out.zeros(2 * BLOCK);
    yield* this.out.finish();
  }
}

/**
 * The uncompressed layer tar of the changes from lower to upper, in chunks. Synchronous (meant
 * for a worker thread): the trees are read between chunks, so a chunk must be consumed before
 * the next is asked for only in the sense that the generator is not advanced concurrently.
 */
export function* diffTar(lower: string, upper: string, opts: DiffTarOptions = {}): Generator<Buffer> {
  const lowerFd = openTreeRoot(lower);
  try {
    const upperFd = openTreeRoot(upper);
    try {
      const writer = new ChangeTarWriter(upperFd, opts);
      for (const c of diffTrees(lowerFd, upperFd, opts)) {
        yield* writer.handle(c.kind, c.path, c.upper === undefined ? null : entryNode(c.upper));
      }
      yield* writer.finish();
    } finally {
      close(upperFd);
    }
  } finally {
    close(lowerFd);
  }
}

type Sink = Writable | ((chunk: Buffer) => void | Promise<void>);

function deliverTo(out: Sink): (chunk: Buffer) => Promise<void> {
  if (typeof out === "function") return async (chunk) => out(chunk);
  return async (chunk) => {
    if (out.destroyed) throw new BerthError("unavailable", "diff output closed");
    if (!out.write(chunk)) await once(out, "drain");
  };
}

/**
 * Writes the layer of the changes from lower to upper to out (a stream, which is not ended, or a
 * function called with each chunk and awaited) and reports its digests.
 */
export async function writeDiff(
  lower: string,
  upper: string,
  out: Sink,
  opts: WriteDiffOptions = {},
): Promise<WriteDiffResult> {
  const compression = opts.compression ?? "none";
  const tarHash = createHash("sha256");
  const outHash = createHash("sha256");
  let uncompressedSize = 0;
  let size = 0;
  const deliver = deliverTo(out);

  function* hashed(): Generator<Buffer> {
    for (const chunk of diffTar(lower, upper, opts)) {
      tarHash.update(chunk);
      uncompressedSize += chunk.length;
      yield chunk;
    }
  }
  const source = Readable.from(hashed(), { objectMode: true, highWaterMark: 2 });
  const sink = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      if (compression !== "none") outHash.update(chunk);
      deliver(chunk).then(() => cb(), cb);
    },
  });
  const signal = opts.signal;
  if (compression === "gzip") {
    const gz = opts.gzipLevel === undefined ? createGzip() : createGzip({ level: opts.gzipLevel });
    await (signal ? pipeline(source, gz, sink, { signal }) : pipeline(source, gz, sink));
  } else {
    await (signal ? pipeline(source, sink, { signal }) : pipeline(source, sink));
  }
  const tarDigest = `sha256:${tarHash.digest("hex")}`;
  return {
    mediaType: mediaTypeFor(compression),
    size,
    digest: compression === "none" ? tarDigest : `sha256:${outHash.digest("hex")}`,
    uncompressedDigest: tarDigest,
    uncompressedSize,
  };
}
