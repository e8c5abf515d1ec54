// Builds tar bytes header by header for tests of the applier: exact typeflags, PAX records with
// binary values, GNU long names, odd names (NUL, non-UTF-8, "..", absolute), wrong sizes and
// checksums, and archives cut short. Not for producing layers.

export type CraftType = "file" | "dir" | "symlink" | "link" | "char" | "block" | "fifo";

export interface CraftEntry {
  /** Name as stored (a Buffer for raw bytes); ignored in the header when longName is given. */
  name: string | Buffer;
  /** A CraftType or a raw typeflag character ("x", "L", "S", "V", "\0", ...). */
  type?: string;
  content?: Buffer | string;
  /** Header size field when it must differ from the content length. */
  size?: number;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch (default 1700000000). */
  mtime?: number;
  linkname?: string | Buffer;
  devmajor?: number;
  devminor?: number;
  /** PAX records sent in an 'x' header before this entry. */
  pax?: Array<[string, string | Buffer]>;
  /** A GNU 'L' header before this entry. */
  longName?: string | Buffer;
  /** A GNU 'K' header before this entry. */
  longLink?: string | Buffer;
  format?: "ustar" | "gnu" | "v7";
  /** The ustar prefix field (the name is prefix + "/" + name). */
  prefix?: string;
  /** Corrupt the checksum. */
  badChecksum?: boolean;
}

const TYPEFLAGS: Record<CraftType, string> = {
  file: "0",
  dir: "5",
  symlink: "2",
  link: "1",
  char: "3",
  block: "4",
  fifo: "6",
};

const DEFAULT_MODE: Record<CraftType, number> = {
  file: 0o644,
  dir: 0o755,
  symlink: 0o777,
  link: 0o644,
  char: 0o666,
  block: 0o660,
  fifo: 0o644,
};

function bytes(v: string | Buffer): Buffer {
  return typeof v === "string" ? Buffer.from(v, "utf8") : v;
}

function octal(buf: Buffer, off: number, len: number, value: number): void {
  if (value < 0 || value.toString(8).length > len - 1) {
    // base-256, as GNU tar and Go write large or negative numbers
    let v = BigInt(value);
    if (v < 0n) v = (1n << BigInt(len * 8)) + v;
    for (let i = len - 1; i >= 0; i--) {
      buf[off + i] = Number(v & 0xffn);
      v >>= 8n;
    }
    buf[off] = value < 0 ? buf[off]! | 0xc0 : 0x80;
    return;
  }
  buf.write(value.toString(8).padStart(len - 1, "0"), off, "latin1");
  buf[off + len - 1] = 0;
}

/** One 512-byte header block. */
export function tarHeader(e: CraftEntry & { typeflag: string; size: number }): Buffer {
  const block = Buffer.alloc(512);
  const name = bytes(e.name);
  if (name.length > 100) throw new Error(`name longer than 100 bytes: use pax or longName`);
  name.copy(block, 0);
  const kind = (e.type ?? "file") as CraftType;
  octal(block, 100, 8, e.mode ?? DEFAULT_MODE[kind] ?? 0o644);
  octal(block, 108, 8, e.uid ?? 0);
  octal(block, 116, 8, e.gid ?? 0);
  octal(block, 124, 12, e.size);
  octal(block, 136, 12, e.mtime ?? 1700000000);
  block.write(e.typeflag, 156, "latin1");
  if (e.linkname !== undefined) {
    const l = bytes(e.linkname);
    if (l.length > 100) throw new Error("linkname longer than 100 bytes: use pax or longLink");
    l.copy(block, 157);
  }
  const format = e.format ?? "ustar";
  if (format === "ustar") block.write("ustar\x0000", 257, "latin1");
  else if (format === "gnu") block.write("ustar  \x00", 257, "latin1");
  if (e.prefix !== undefined) Buffer.from(e.prefix).copy(block, 345);
  if (format !== "v7") {
    octal(block, 329, 8, e.devmajor ?? 0);
    octal(block, 337, 8, e.devminor ?? 0);
  }
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of block) sum += b;
  if (e.badChecksum === true) sum += 1;
  block.write(sum.toString(8).padStart(6, "0"), 148, "latin1");
  block[154] = 0;
  block[155] = 0x20;
  return block;
}

function padded(data: Buffer): Buffer {
  const pad = (512 - (data.length % 512)) % 512;
  return pad === 0 ? data : Buffer.concat([data, Buffer.alloc(pad)]);
}

/** The data of a PAX extended header: "%d %s=%s\n" records, binary values kept. */
export function paxRecords(records: Array<[string, string | Buffer]>): Buffer {
  const out: Buffer[] = [];
  for (const [key, value] of records) {
    const body = Buffer.concat([Buffer.from(` ${key}=`), bytes(value), Buffer.from("\n")]);
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    out.push(Buffer.from(String(len)), body);
  }
  return Buffer.concat(out);
}

/** An entry with its meta headers, data and padding. */
export function tarEntry(e: CraftEntry): Buffer {
  const parts: Buffer[] = [];
  if (e.pax !== undefined) {
    const data = paxRecords(e.pax);
    parts.push(tarHeader({ name: "PaxHeaders/x", typeflag: "x", size: data.length }), padded(data));
  }
  if (e.longLink !== undefined) {
    const data = Buffer.concat([bytes(e.longLink), Buffer.alloc(1)]);
    parts.push(
      tarHeader({ name: "././@LongLink", typeflag: "K", size: data.length, format: "gnu" }),
      padded(data),
    );
  }
  if (e.longName !== undefined) {
    const data = Buffer.concat([bytes(e.longName), Buffer.alloc(1)]);
    parts.push(
      tarHeader({ name: "././@LongLink", typeflag: "L", size: data.length, format: "gnu" }),
      padded(data),
    );
  }
  const type = e.type ?? "file";
  const typeflag = type in TYPEFLAGS ? TYPEFLAGS[type as CraftType] : type;
  const content = e.content === undefined ? Buffer.alloc(0) : bytes(e.content);
  parts.push(tarHeader({ ...e, typeflag, size: e.size ?? content.length }));
  if (content.length > 0) parts.push(padded(content));
  return Buffer.concat(parts);
}

/** The two zero blocks that end an archive. */
export const TAR_END = Buffer.alloc(1024);

/** A whole archive (with its end blocks unless end is false). */
export function craftTar(entries: readonly CraftEntry[], opts: { end?: boolean } = {}): Buffer {
  const parts = entries.map(tarEntry);
  if (opts.end !== false) parts.push(TAR_END);
  return Buffer.concat(parts);
}
