import { test } from "node:test";
import assert from "node:assert/strict";
import { huffmanCode, huffmanDecode, huffmanEncode, HuffmanError } from "./huffman.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

void test("the RFC 7541 Appendix C.4 strings decode and encode", () => {
  const cases: [string, string][] = [
    ["f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"],
    ["a8eb 1064 9cbf", "no-cache"],
    ["25a8 49e9 5ba9 7d7f", "custom-key"],
    ["25a8 49e9 5bb8 e8b4 bf", "custom-value"],
  ];
  for (const [encoded, text] of cases) {
    assert.equal(huffmanDecode(hex(encoded)), text);
    assert.deepEqual(huffmanEncode(text), hex(encoded));
  }
});

void test("every byte value round-trips, alone and in runs", () => {
  for (let b = 0; b < 256; b++) {
    const s = String.fromCharCode(b);
    assert.equal(huffmanDecode(huffmanEncode(s)), s, `byte ${b}`);
    assert.equal(huffmanDecode(huffmanEncode(s.repeat(7) + "a")), s.repeat(7) + "a", `run of ${b}`);
  }
  const all = Array.from({ length: 256 }, (_, i) => String.fromCharCode(i)).join("");
  assert.equal(huffmanDecode(huffmanEncode(all)), all);
});

void test("bad padding and an encoded EOS are refused", () => {
  // 'a' is 00011: padding with zeros instead of ones.
  assert.throws(() => huffmanDecode(Buffer.from([0b00011000])), HuffmanError);
  // A whole byte of padding (8 one bits) is too long.
  assert.throws(() => huffmanDecode(Buffer.from([0b00011111, 0xff])), HuffmanError);
  // EOS: thirty one bits.
  assert.throws(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff])), HuffmanError);
});

/** The obvious decoder: bit by bit through the table of code strings (slow, no tricks); null: refused. */
function referenceDecode(input: Uint8Array): string | null {
  const bySymbolCode = new Map<string, number>();
  for (let sym = 0; sym <= 256; sym++) bySymbolCode.set(huffmanCode(sym), sym);
  const bits = [...input].map((b) => b.toString(2).padStart(8, "0")).join("");
  let out = "";
  let code = "";
  for (const bit of bits) {
    code += bit;
    const sym = bySymbolCode.get(code);
    if (sym === undefined) continue;
    if (sym === 256) return null;
    out += String.fromCharCode(sym);
    code = "";
  }
  return code.length < 8 && /^1*$/.test(code) ? out : null;
}

/** A small deterministic PRNG, so that a failure names an input that can be replayed. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

void test("random strings round-trip, and every prefix of their codes decodes or is refused as the reference says", () => {
  const random = prng(7541);
  for (let i = 0; i < 300; i++) {
    const length = Math.floor(random() * 40);
    // Half header-like text (short codes), half any byte (long codes).
    const text = Array.from({ length }, () =>
      String.fromCharCode(random() < 0.5 ? 32 + Math.floor(random() * 95) : Math.floor(random() * 256)),
    ).join("");
    const encoded = huffmanEncode(text);
    assert.equal(huffmanDecode(encoded), text);
    for (let cut = 0; cut < encoded.length; cut++) {
      const prefix = encoded.subarray(0, cut);
      const expected = referenceDecode(prefix);
      if (expected === null)
        assert.throws(() => huffmanDecode(prefix), HuffmanError, `${prefix.toString("hex")}`);
      else assert.equal(huffmanDecode(prefix), expected, prefix.toString("hex"));
    }
  }
});

void test("arbitrary bytes decode or are refused exactly as the reference decoder says", () => {
  const random = prng(2);
  for (let i = 0; i < 3000; i++) {
    const input = Buffer.from(
      Array.from({ length: Math.floor(random() * 12) }, () => Math.floor(random() * 256)),
    );
    // Bias towards long runs of ones (the long codes and EOS all start with them).
    if (random() < 0.5) for (let j = 0; j < input.length; j++) if (random() < 0.7) input[j] = 0xff - (j % 3);
    const expected = referenceDecode(input);
    if (expected === null) assert.throws(() => huffmanDecode(input), HuffmanError, input.toString("hex"));
    else assert.equal(huffmanDecode(input), expected, input.toString("hex"));
  }
});
