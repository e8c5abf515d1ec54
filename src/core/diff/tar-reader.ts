// A synchronous, push-fed tar parser that reads headers the way Go's archive/tar does (the reader
// containerd applies layers with): ustar/GNU/PAX formats, signed or unsigned checksums, base-256
// numbers, PAX records kept as raw bytes (xattr values are binary), nanosecond PAX times, GNU long
// names, and the two-zero-block end of archive. It owns no file system state: it hands each
// entry's header, data slices and end to a sink, all synchronously within push().
import { isUtf8 } from "node:buffer";
import { invalidArgument } from "../../errdefs/errors.js";

export type TarEntryType = "file" | "link" | "symlink" | "char" | "block" | "dir" | "fifo";

export interface TarTime {
  sec: number;
  nsec: number;
}

export interface TarHeader {
  /** The entry name after PAX path / GNU long name merging (UTF-8, never contains NUL). */
  name: string;
  linkname: string;
  /** "unsupported": a typeflag this reader does not know (GNU volume labels, dumpdirs, ...). */
  type: TarEntryType | "unsupported";
  /** The raw typeflag byte, for messages about unsupported types. */
  typeflag: number;
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of data that follow the header (0 for header-only types, as Go reads them). */
  size: number;
  mtime: TarTime;
  /** From PAX atime or a GNU header's atime field, when present. */
  atime?: TarTime;
  devmajor: number;
  devminor: number;
  /** SCHILY.xattr.* records, in archive order, values as raw bytes. */
  xattrs: Array<[string, Buffer]>;
  /** The entry used GNU or PAX sparse-file encoding (its data is a sparse map, not the file). */
  sparse: boolean;
}

export interface TarSink {
  entry(header: TarHeader): void;
  data(chunk: Buffer): void;
  entryEnd(): void;
}

/** Go's maxSpecialFileSize: PAX and GNU long-name data larger than this is refused. */
export const MAX_META_SIZE = 1 << 20;
/** Meta headers (PAX, GNU long names) allowed in a row before one real entry. */
const MAX_META_RUN = 64;

const BLOCK = 512;

const enum State {
  Header,
  Data,
  Meta,
  Skip,
  Pad,
  SecondZero,
  Done,
}

const HEADER_ONLY = new Set(["link", "symlink", "char", "block", "dir", "fifo"]);

function badHeader(why: string): Error {
  return invalidArgument(`invalid tar header: ${why}`);
}

/** Bytes of a NUL-terminated field. */
function cstr(block: Buffer, start: number, len: number): Buffer {
  const end = block.indexOf(0, start);
  return block.subarray(start, end === -1 || end > start + len ? start + len : end);
}

function utf8(bytes: Buffer, what: string): string {
  if (!isUtf8(bytes))
    throw invalidArgument(`tar entry ${what} ${JSON.stringify(bytes.toString("latin1"))} is not valid UTF-8`);
  return bytes.toString("utf8");
}

/** Go's parseOctal: trims spaces and NULs around, then strict base 8. */
function parseOctal(field: Buffer, what: string): number {
  let s = 0;
  let e = field.length;
  while (s < e && (field[s] === 0x20 || field[s] === 0)) s++;
  while (e > s && (field[e - 1] === 0x20 || field[e - 1] === 0)) e--;
  if (s === e) return 0;
  const nul = field.indexOf(0, s);
  if (nul !== -1 && nul < e) e = nul;
  let v = 0;
  for (let i = s; i < e; i++) {
    const c = field[i]! - 0x30;
    if (c < 0 || c > 7) throw badHeader(`invalid octal number in ${what}`);
    v = v * 8 + c;
  }
  if (v > Number.MAX_SAFE_INTEGER) throw badHeader(`${what} out of range`);
  return v;
}

/** Go's parseNumeric: base-256 (two's complement) when the high bit is set, else octal. */
function parseNumeric(field: Buffer, what: string): number {
  if (field.length > 0 && (field[0]! & 0x80) !== 0) {
    const inv = (field[0]! & 0x40) !== 0 ? 0xff : 0;
    let x = 0n;
    for (let i = 0; i < field.length; i++) {
      let c = field[i]! ^ inv;
      if (i === 0) c &= 0x7f;
      if (x >> 56n > 0n) throw badHeader(`${what} overflows`);
      x = (x << 8n) | BigInt(c);
    }
    if (x >> 63n > 0n) throw badHeader(`${what} overflows`);
    const v = inv === 0xff ? -x - 1n : x;
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER))
      throw badHeader(`${what} out of range`);
    return Number(v);
  }
  return parseOctal(field, what);
}

/** strconv.ParseInt(s, 10, 64) for PAX values, kept to the safe-integer range. */
function parseDecimal(s: string, what: string): number {
  if (!/^[+-]?[0-9]+$/.test(s)) throw badHeader(`invalid PAX ${what} ${JSON.stringify(s)}`);
  const v = Number(s);
  if (!Number.isSafeInteger(v)) throw badHeader(`PAX ${what} out of range`);
  return v;
}

/** Go's parsePAXTime: seconds, optionally "." and up to nine significant fraction digits. */
function parsePaxTime(s: string): TarTime {
  const dot = s.indexOf(".");
  const ss = dot === -1 ? s : s.slice(0, dot);
  const sn = dot === -1 ? "" : s.slice(dot + 1);
  const sec = parseDecimal(ss, "time");
  if (sn === "") return { sec, nsec: 0 };
  if (!/^[0-9]+$/.test(sn)) throw badHeader(`invalid PAX time ${JSON.stringify(s)}`);
  const nsec = Number(sn.padEnd(9, "0").slice(0, 9));
  // time.Unix(secs, -nsecs) for negative times: normalise to a non-negative nsec.
  if (ss.startsWith("-") && nsec > 0) return { sec: sec - 1, nsec: 1e9 - nsec };
  return { sec, nsec };
}

interface PaxRecords {
  records: Map<string, Buffer>;
  order: string[];
}

/** Go's parsePAX/parsePAXRecord: "%d %s=%s\n" records, strictly. */
function parsePax(buf: Buffer): PaxRecords {
  const records = new Map<string, Buffer>();
  const order: string[] = [];
  let off = 0;
  while (off < buf.length) {
    const sp = buf.indexOf(0x20, off);
    if (sp === -1) throw badHeader("PAX record without a length");
    const lenStr = buf.toString("latin1", off, sp);
    if (!/^[0-9]+$/.test(lenStr)) throw badHeader("PAX record with a bad length");
    const n = Number(lenStr);
    if (n < 5 || off + n > buf.length || n <= lenStr.length + 1)
      throw badHeader("PAX record with a bad length");
    const end = off + n;
    if (buf[end - 1] !== 0x0a) throw badHeader("PAX record not ended by a newline");
    const rec = buf.subarray(sp + 1, end - 1);
    const eq = rec.indexOf(0x3d);
    if (eq === -1) throw badHeader("PAX record without '='");
    const keyBytes = rec.subarray(0, eq);
    const value = Buffer.from(rec.subarray(eq + 1));
    if (keyBytes.length === 0) throw badHeader("PAX record with an empty key");
    if (keyBytes.includes(0)) throw badHeader("PAX record key contains NUL");
    const key = utf8(keyBytes, "PAX key");
    if ((key === "path" || key === "linkpath" || key === "uname" || key === "gname") && value.includes(0))
      throw badHeader(`PAX ${key} contains a NUL byte`);
    if (!records.has(key)) order.push(key);
    records.set(key, value);
    off = end;
  }
  return { records, order };
}

function isZeroBlock(b: Buffer): boolean {
  for (let i = 0; i < BLOCK; i += 8) {
    if (b.readBigUInt64LE(i) !== 0n) return false;
  }
  return true;
}

const ENC_USTAR = Buffer.from("ustar\x0000", "latin1");
const ENC_GNU = Buffer.from("ustar  \x00", "latin1");

export class TarReader {
  private state = State.Header;
  private readonly hdrBuf = Buffer.alloc(BLOCK);
  private hdrFill = 0;
  private remaining = 0;
  private pad = 0;
  private metaBuf: Buffer = Buffer.alloc(0);
  private metaFill = 0;
  private metaType = 0;
  private metaRun = 0;
  private pax: PaxRecords | null = null;
  private longName: Buffer | null = null;
  private longLink: Buffer | null = null;
  /** Bytes of tar stream consumed so far (headers, data, padding, end blocks). */
  offset = 0;

  constructor(private readonly sink: TarSink) {}

  /** True once the end-of-archive blocks have been read. */
  get done(): boolean {
    return this.state === State.Done;
  }

  /**
   * Feeds the next chunk; returns the number of bytes of it that belonged to the archive (less
   * than its length only when the end of archive is inside this chunk).
   */
  push(chunk: Buffer): number {
    let off = 0;
    const len = chunk.length;
    while (off < len && this.state !== State.Done) {
      switch (this.state) {
        case State.Header:
        case State.SecondZero: {
          let block: Buffer;
          if (this.hdrFill === 0 && len - off >= BLOCK) {
            block = chunk.subarray(off, off + BLOCK);
            off += BLOCK;
          } else {
            const n = Math.min(BLOCK - this.hdrFill, len - off);
            chunk.copy(this.hdrBuf, this.hdrFill, off, off + n);
            this.hdrFill += n;
            off += n;
            if (this.hdrFill < BLOCK) break;
            this.hdrFill = 0;
            block = this.hdrBuf;
          }
          this.offset += BLOCK;
          if (this.state === State.SecondZero) {
            if (!isZeroBlock(block)) throw badHeader("a zero block followed by a non-zero block");
            this.state = State.Done;
          } else {
            this.header(block);
          }
          break;
        }
        case State.Data: {
          const n = Math.min(this.remaining, len - off);
          this.sink.data(chunk.subarray(off, off + n));
          off += n;
          this.offset += n;
          this.remaining -= n;
          if (this.remaining === 0) {
            this.sink.entryEnd();
            this.state = this.pad > 0 ? State.Pad : State.Header;
          }
          break;
        }
        case State.Meta: {
          const n = Math.min(this.remaining, len - off);
          chunk.copy(this.metaBuf, this.metaFill, off, off + n);
          this.metaFill += n;
          off += n;
          this.offset += n;
          this.remaining -= n;
          if (this.remaining === 0) {
            this.meta();
            this.state = this.pad > 0 ? State.Pad : State.Header;
          }
          break;
        }
        case State.Skip: {
          const n = Math.min(this.remaining, len - off);
          off += n;
          this.offset += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = this.pad > 0 ? State.Pad : State.Header;
          break;
        }
        case State.Pad: {
          const n = Math.min(this.pad, len - off);
          off += n;
          this.offset += n;
          this.pad -= n;
          if (this.pad === 0) this.state = State.Header;
          break;
        }
      }
    }
    return off;
  }

  /** The input ended: anything but a complete archive is an error. */
  end(): void {
    if (this.state === State.Done) return;
    // Go stops at EOF after a single zero block too.
    if (this.state === State.SecondZero && this.hdrFill === 0) {
      this.state = State.Done;
      return;
    }
    if (this.state === State.Header && this.hdrFill === 0 && this.offset > 0 && this.metaRun === 0)
      throw invalidArgument(
        `truncated tar: the stream ended after ${this.offset} bytes without the end-of-archive blocks`,
      );
    throw invalidArgument(`truncated tar: unexpected end of stream after ${this.offset} bytes`);
  }

  private header(block: Buffer): void {
    if (isZeroBlock(block)) {
      if (this.metaRun > 0) throw badHeader("end of archive right after an extended header");
      this.state = State.SecondZero;
      return;
    }
    // Checksum: the stored value may be the unsigned or the (historic) signed byte sum.
    let unsigned = 0;
    let signed = 0;
    for (let i = 0; i < BLOCK; i++) {
      const c = i >= 148 && i < 156 ? 0x20 : block[i]!;
      unsigned += c;
      signed += c < 0x80 ? c : c - 256;
    }
    const stored = parseOctal(block.subarray(148, 156), "checksum");
    if (stored !== unsigned && stored !== signed)
      throw badHeader("checksum mismatch (corrupt or not a tar stream)");

    const magic = block.subarray(257, 265);
    const ustar = magic.equals(ENC_USTAR);
    const gnu = !ustar && magic.equals(ENC_GNU);
    const star = ustar && block.toString("latin1", 508, 512) === "tar\x00";

    const typeflag = block[156]!;
    let size = parseNumeric(block.subarray(124, 136), "size");
    if (size < 0) throw badHeader("negative size");

    // Meta headers: their data describes the next real entry.
    if (
      typeflag === 0x78 /* x */ ||
      typeflag === 0x67 /* g */ ||
      typeflag === 0x4c /* L */ ||
      typeflag === 0x4b /* K */
    ) {
      if (typeflag !== 0x67) {
        this.metaRun++;
        if (this.metaRun > MAX_META_RUN)
          throw badHeader(`more than ${MAX_META_RUN} extended headers in a row`);
      }
      if (size > MAX_META_SIZE)
        throw badHeader(`extended header of ${size} bytes is larger than the ${MAX_META_SIZE}-byte limit`);
      this.metaType = typeflag;
      this.metaBuf = Buffer.alloc(size);
      this.metaFill = 0;
      this.remaining = size;
      this.pad = (BLOCK - (size % BLOCK)) % BLOCK;
      if (size === 0) {
        this.meta();
        this.state = State.Header;
      } else {
        this.state = State.Meta;
      }
      return;
    }

    const nameBytes = cstr(block, 0, 100);
    const linkBytes = cstr(block, 157, 100);
    let prefix: Buffer | null = null;
    if (ustar) prefix = cstr(block, 345, star ? 131 : 155);
    let atime: TarTime | undefined;
    if (star) {
      atime = { sec: parseNumeric(block.subarray(476, 488), "atime"), nsec: 0 };
    } else if (gnu && block[345] !== 0) {
      try {
        atime = { sec: parseNumeric(block.subarray(345, 357), "atime"), nsec: 0 };
      } catch {
        // Go reads GNU atime skeptically (old Go wrote a prefix there); ignore what does not parse.
      }
    }
    const mode = parseNumeric(block.subarray(100, 108), "mode");
    let uid = parseNumeric(block.subarray(108, 116), "uid");
    let gid = parseNumeric(block.subarray(116, 124), "gid");
    let mtime: TarTime = { sec: parseNumeric(block.subarray(136, 148), "mtime"), nsec: 0 };
    let devmajor = 0;
    let devminor = 0;
    if (ustar || gnu) {
      devmajor = parseNumeric(block.subarray(329, 337), "devmajor");
      devminor = parseNumeric(block.subarray(337, 345), "devminor");
    }

    let name: string;
    let linkname: string;
    const xattrs: Array<[string, Buffer]> = [];
    let sparse = typeflag === 0x53; /* S */
    let paxPath: Buffer | undefined;
    let paxLink: Buffer | undefined;
    if (this.pax !== null) {
      const { records, order } = this.pax;
      for (const key of order) {
        const v = records.get(key)!;
        if (key.startsWith("SCHILY.xattr.")) {
          // Empty values still reach containerd (it reads PAXRecords), so they are kept.
          xattrs.push([key.slice("SCHILY.xattr.".length), v]);
          continue;
        }
        if (key.startsWith("GNU.sparse.")) {
          sparse = true;
          continue;
        }
        if (v.length === 0) continue; // Go: an empty value keeps the ustar field
        const s = () => v.toString("latin1");
        switch (key) {
          case "path":
            paxPath = v;
            break;
          case "linkpath":
            paxLink = v;
            break;
          case "uid":
            uid = parseDecimal(s(), "uid");
            break;
          case "gid":
            gid = parseDecimal(s(), "gid");
            break;
          case "size":
            size = parseDecimal(s(), "size");
            if (size < 0) throw badHeader("negative PAX size");
            break;
          case "mtime":
            mtime = parsePaxTime(s());
            break;
          case "atime":
            atime = parsePaxTime(s());
            break;
          case "ctime":
            parsePaxTime(s());
            break;
          default:
            break;
        }
      }
    }
    if (this.longName !== null) name = utf8(this.longName, "name");
    else if (paxPath !== undefined) name = utf8(paxPath, "name");
    else
      name = utf8(
        prefix !== null && prefix.length > 0
          ? Buffer.concat([prefix, Buffer.from("/"), nameBytes])
          : nameBytes,
        "name",
      );
    if (this.longLink !== null) linkname = utf8(this.longLink, "link name");
    else if (paxLink !== undefined) linkname = utf8(paxLink, "link name");
    else linkname = utf8(linkBytes, "link name");
    this.pax = null;
    this.longName = null;
    this.longLink = null;
    this.metaRun = 0;

    let type: TarHeader["type"];
    switch (typeflag) {
      case 0x30: /* 0 */
      case 0x37 /* 7: contiguous, extracted as a regular file as GNU tar does */:
        type = "file";
        break;
      case 0x00:
        type = name.endsWith("/") ? "dir" : "file";
        break;
      case 0x31:
        type = "link";
        break;
      case 0x32:
        type = "symlink";
        break;
      case 0x33:
        type = "char";
        break;
      case 0x34:
        type = "block";
        break;
      case 0x35:
        type = "dir";
        break;
      case 0x36:
        type = "fifo";
        break;
      default:
        type = "unsupported";
    }
    if (HEADER_ONLY.has(type)) size = 0;

    const header: TarHeader = {
      name,
      linkname,
      type,
      typeflag,
      mode,
      uid,
      gid,
      size,
      mtime,
      devmajor,
      devminor,
      xattrs,
      sparse,
    };
    if (atime !== undefined) header.atime = atime;
    this.remaining = size;
    this.pad = (BLOCK - (size % BLOCK)) % BLOCK;
    this.sink.entry(header);
    if (size === 0) {
      this.sink.entryEnd();
      this.state = State.Header;
    } else {
      this.state = State.Data;
    }
  }

  private meta(): void {
    const data = this.metaBuf;
    switch (this.metaType) {
      case 0x78:
        // Go replaces (does not merge) the local PAX records of an earlier 'x' header.
        this.pax = parsePax(data);
        break;
      case 0x67:
        parsePax(data); // validated, then ignored: Go does not apply global records to entries
        break;
      case 0x4c:
      case 0x4b: {
        const nul = data.indexOf(0);
        if (nul !== -1 && data.subarray(nul).some((b) => b !== 0))
          throw badHeader("GNU long name contains a NUL byte");
        const value = nul === -1 ? data : data.subarray(0, nul);
        if (this.metaType === 0x4c) this.longName = value;
        else this.longLink = value;
        break;
      }
    }
    this.metaBuf = Buffer.alloc(0);
  }
}
