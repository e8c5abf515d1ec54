// HPACK's Huffman code (RFC 7541, Appendix B). The code is canonical: each symbol's code follows
// from the code lengths alone (shorter codes first, then by symbol), so the table here is the 257
// lengths, and huffman.test.ts checks the codes built from them against strings encoded by another
// HPACK implementation (Node's nghttp2) and against the RFC's own examples.

/** Code length in bits of each symbol: bytes 0-255, then EOS (256). */
// prettier-ignore
const CODE_LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];

const EOS = 256;
const MAX_LENGTH = 30;

interface Canonical {
  /** first[L]: the numerically first code of length L. */
  first: Int32Array;
  /** count[L]: how many codes have length L. */
  count: Int32Array;
  /** offset[L]: index into symbols of the first symbol of length L. */
  offset: Int32Array;
  /** Symbols ordered by (length, symbol). */
  symbols: Uint16Array;
  /** code[sym] and length[sym], for the encoder. */
  code: Uint32Array;
}

function buildCanonical(): Canonical {
  const count = new Int32Array(MAX_LENGTH + 1);
  for (const len of CODE_LENGTHS) count[len]!++;
  const first = new Int32Array(MAX_LENGTH + 1);
  const offset = new Int32Array(MAX_LENGTH + 1);
  let code = 0;
  let index = 0;
  for (let len = 1; len <= MAX_LENGTH; len++) {
    code = (code + count[len - 1]!) << 1;
    first[len] = code;
    offset[len] = index;
    index += count[len]!;
  }
  const symbols = new Uint16Array(CODE_LENGTHS.length);
  const next = Int32Array.from(offset);
  const byCode = new Uint32Array(CODE_LENGTHS.length);
  for (let sym = 0; sym < CODE_LENGTHS.length; sym++) {
    const len = CODE_LENGTHS[sym]!;
    const i = next[len]!++;
    symbols[i] = sym;
    byCode[sym] = first[len]! + (i - offset[len]!);
  }
  return { first, count, offset, symbols, code: byCode };
}

const canonical = buildCanonical();

/**
 * For each value of the next 8 bits: (symbol << 4) | length when the code of some symbol of at most
 * 8 bits is their prefix (the common header characters: letters, digits, "-", "/", "."), else 0.
 */
function buildShortCodes(): Uint16Array {
  const table = new Uint16Array(256);
  for (let sym = 0; sym < EOS; sym++) {
    const len = CODE_LENGTHS[sym]!;
    if (len > 8) continue;
    const startValue = canonical.code[sym]! << (8 - len);
    for (let v = startValue; v < startValue + (1 << (8 - len)); v++) table[v] = (sym << 4) | len;
  }
  return table;
}

const shortCodes = buildShortCodes();

export class HuffmanError extends Error {}

/**
 * Decodes a Huffman-coded HPACK string literal (RFC 7541, section 5.2). Codes of up to 8 bits are
 * read with one look-up of the next 8 bits; longer ones bit by bit through the canonical code.
 * The bit buffer stays within 31 bits, so all of it is 32-bit integer arithmetic.
 */
export function huffmanDecode(input: Uint8Array): string {
  const { first, count, offset, symbols } = canonical;
  // The shortest code has 5 bits: at most 8/5 symbols per byte.
  const out = Buffer.allocUnsafe(Math.ceil((input.length * 8) / 5));
  let n = 0;
  let acc = 0; // the `bits` bits not yet consumed, right-aligned
  let bits = 0;
  let pos = 0;
  for (;;) {
    while (bits <= 23 && pos < input.length) {
      acc = (acc << 8) | input[pos++]!;
      bits += 8;
    }
    if (bits === 0) break;
    const next8 = bits >= 8 ? (acc >>> (bits - 8)) & 0xff : (acc << (8 - bits)) & 0xff;
    const short = shortCodes[next8]!;
    if (short !== 0 && (short & 15) <= bits) {
      out[n++] = short >>> 4;
      bits -= short & 15;
      acc &= (1 << bits) - 1;
      continue;
    }
    // A longer code, or the end: walk the canonical code one bit at a time.
    let code = 0;
    let len = 0;
    let sym = -1;
    while (len < MAX_LENGTH) {
      if (bits === 0) {
        if (pos >= input.length) break;
        acc = input[pos++]!;
        bits = 8;
      }
      bits--;
      code = (code << 1) | ((acc >>> bits) & 1);
      acc &= (1 << bits) - 1;
      len++;
      const rel = code - first[len]!;
      if (rel >= 0 && rel < count[len]!) {
        sym = symbols[offset[len]! + rel]!;
        break;
      }
    }
    if (sym === EOS) throw new HuffmanError("Huffman string contains EOS");
    if (sym < 0) {
      // What was left must be padding: fewer than 8 bits, all ones (a prefix of EOS).
      if (len >= 8 || pos < input.length || bits !== 0 || code !== (1 << len) - 1) {
        throw new HuffmanError("invalid Huffman padding");
      }
      break;
    }
    out[n++] = sym;
  }
  return out.toString("latin1", 0, n);
}

/** Huffman-encodes s (latin1 bytes); for tests and for callers that want the shorter form. */
export function huffmanEncode(s: string): Buffer {
  const { code } = canonical;
  const bytes = Buffer.from(s, "latin1");
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    const len = CODE_LENGTHS[b]!;
    acc = acc * 2 ** len + code[b]!;
    bits += len;
    while (bits >= 8) {
      const byte = Math.floor(acc / 2 ** (bits - 8));
      out.push(byte);
      bits -= 8;
      acc = acc % 2 ** bits;
    }
  }
  if (bits > 0) out.push(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) & 0xff);
  return Buffer.from(out);
}

/** The code of sym as a bit string (tests). */
export function huffmanCode(sym: number): string {
  return canonical.code[sym]!.toString(2).padStart(CODE_LENGTHS[sym]!, "0");
}
