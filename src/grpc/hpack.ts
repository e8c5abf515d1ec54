// HPACK (RFC 7541): the header decoder of berthd's HTTP/2 server, and the few encodings its
// responses need. The decoder keeps the connection's dynamic table; the encoder never indexes
// (every response field is a literal "without indexing" or a static-table index), so it has no
// state and the peer's SETTINGS_HEADER_TABLE_SIZE does not concern it.
import { huffmanDecode, HuffmanError } from "./huffman.js";

// prettier-ignore
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [":authority", ""], [":method", "GET"], [":method", "POST"], [":path", "/"],
  [":path", "/index.html"], [":scheme", "http"], [":scheme", "https"], [":status", "200"],
  [":status", "204"], [":status", "206"], [":status", "304"], [":status", "400"],
  [":status", "404"], [":status", "500"], ["accept-charset", ""], ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""], ["accept-ranges", ""], ["accept", ""], ["access-control-allow-origin", ""],
  ["age", ""], ["allow", ""], ["authorization", ""], ["cache-control", ""],
  ["content-disposition", ""], ["content-encoding", ""], ["content-language", ""], ["content-length", ""],
  ["content-location", ""], ["content-range", ""], ["content-type", ""], ["cookie", ""],
  ["date", ""], ["etag", ""], ["expect", ""], ["expires", ""],
  ["from", ""], ["host", ""], ["if-match", ""], ["if-modified-since", ""],
  ["if-none-match", ""], ["if-range", ""], ["if-unmodified-since", ""], ["last-modified", ""],
  ["link", ""], ["location", ""], ["max-forwards", ""], ["proxy-authenticate", ""],
  ["proxy-authorization", ""], ["range", ""], ["referer", ""], ["refresh", ""],
  ["retry-after", ""], ["server", ""], ["set-cookie", ""], ["strict-transport-security", ""],
  ["transfer-encoding", ""], ["user-agent", ""], ["vary", ""], ["via", ""],
  ["www-authenticate", ""],
];

/** An entry's size as RFC 7541 section 4.1 counts it. */
const entrySize = (name: string, value: string) => name.length + value.length + 32;

export class HpackError extends Error {}

export type HeaderList = [name: string, value: string][];

export interface HpackDecoderOptions {
  /** SETTINGS_HEADER_TABLE_SIZE we advertise: the most the peer may make the table. */
  maxTableSize: number;
  /** Refuse (HpackError) once the decoded list exceeds this many bytes (RFC 7540 6.5.2 size). */
  maxHeaderListSize: number;
}

/** Decodes header blocks of one connection; the dynamic table persists between blocks. */
export class HpackDecoder {
  private readonly table: [string, string][] = []; // newest first
  private tableSize = 0;
  private maxSize: number;

  constructor(private readonly opts: HpackDecoderOptions) {
    this.maxSize = opts.maxTableSize;
  }

  /**
   * Decodes a complete header block. Throws HpackError on a malformed block: a connection
   * error (COMPRESSION_ERROR), since the table can no longer be trusted. A list over the size
   * limit is still decoded to the end (the table must stay in step) and reported as oversize.
   */
  decode(block: Uint8Array): { headers: HeaderList; oversize: boolean } {
    const headers: HeaderList = [];
    let listSize = 0;
    let pos = 0;
    let fieldSeen = false;
    const readInt = (prefixBits: number): number => {
      const max = (1 << prefixBits) - 1;
      let value = block[pos++]! & max;
      if (value < max) return value;
      let shift = 0;
      for (;;) {
        if (pos >= block.length) throw new HpackError("truncated integer");
        const b = block[pos++]!;
        value += (b & 0x7f) * 2 ** shift;
        shift += 7;
        if ((b & 0x80) === 0) break;
        if (shift > 28) throw new HpackError("integer too large");
      }
      return value;
    };
    const readString = (): string => {
      if (pos >= block.length) throw new HpackError("truncated string");
      const huffman = (block[pos]! & 0x80) !== 0;
      const len = readInt(7);
      if (pos + len > block.length) throw new HpackError("truncated string");
      const bytes = block.subarray(pos, pos + len);
      pos += len;
      if (!huffman) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
      try {
        return huffmanDecode(bytes);
      } catch (err) {
        if (err instanceof HuffmanError) throw new HpackError(err.message);
        throw err;
      }
    };
    const emit = (name: string, value: string) => {
      fieldSeen = true;
      listSize += entrySize(name, value);
      if (listSize <= this.opts.maxHeaderListSize) headers.push([name, value]);
    };
    while (pos < block.length) {
      const b = block[pos]!;
      if (b & 0x80) {
        // Indexed header field.
        const [name, value] = this.entry(readInt(7));
        emit(name, value);
      } else if (b & 0x40) {
        // Literal with incremental indexing.
        const index = readInt(6);
        const name = index === 0 ? readString() : this.entry(index)[0];
        const value = readString();
        this.insert(name, value);
        emit(name, value);
      } else if (b & 0x20) {
        // Dynamic table size update: only at the start of a block.
        if (fieldSeen) throw new HpackError("table size update after a header field");
        const size = readInt(5);
        if (size > this.opts.maxTableSize)
          throw new HpackError("table size update above the advertised limit");
        this.maxSize = size;
        this.evict(0);
      } else {
        // Literal without indexing (0000) or never indexed (0001).
        const index = readInt(4);
        const name = index === 0 ? readString() : this.entry(index)[0];
        const value = readString();
        emit(name, value);
      }
    }
    return { headers, oversize: listSize > this.opts.maxHeaderListSize };
  }

  private entry(index: number): readonly [string, string] {
    if (index === 0) throw new HpackError("index 0");
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1]!;
    const e = this.table[index - STATIC_TABLE.length - 1];
    if (e === undefined) throw new HpackError(`index ${index} out of range`);
    return e;
  }

  private insert(name: string, value: string): void {
    const size = entrySize(name, value);
    this.evict(size);
    // An entry larger than the whole table empties it and is not added (RFC 7541 4.4).
    if (size <= this.maxSize) {
      this.table.unshift([name, value]);
      this.tableSize += size;
    }
  }

  private evict(incoming: number): void {
    while (this.table.length > 0 && this.tableSize + incoming > this.maxSize) {
      const [n, v] = this.table.pop()!;
      this.tableSize -= entrySize(n, v);
    }
  }
}

function encodeInt(out: number[], value: number, prefixBits: number, firstByteFlags: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(firstByteFlags | value);
    return;
  }
  out.push(firstByteFlags | max);
  value -= max;
  while (value >= 128) {
    out.push(value % 128 | 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
}

function encodeString(out: number[], s: string): void {
  const bytes = Buffer.from(s, "latin1");
  encodeInt(out, bytes.length, 7, 0);
  for (const b of bytes) out.push(b);
}

/** `:status: 200` (static index 8). */
export const STATUS_200 = 0x88;

/** Encodes fields as literals without indexing (new names); ":status" 200 as its static index. */
export function encodeHeaderBlock(fields: readonly (readonly [string, string])[]): Buffer {
  const out: number[] = [];
  for (const [name, value] of fields) {
    if (name === ":status" && value === "200") {
      out.push(STATUS_200);
      continue;
    }
    out.push(0x00);
    encodeString(out, name);
    encodeString(out, value);
  }
  return Buffer.from(out);
}
