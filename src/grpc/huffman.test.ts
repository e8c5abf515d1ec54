import { test } from "node:test";
import assert from "node:assert/strict";
import { huffmanDecode, huffmanEncode, HuffmanError } from "./huffman.js";

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
