// Token streams from the filter scanner, including its context-dependent value mode.
import { test } from "node:test";
import assert from "node:assert/strict";
import { FilterScanner, type TokenKind } from "./scanner.js";

function tokens(input: string): Array<[TokenKind, string, number]> {
  const scanner = new FilterScanner(input);
  const out: Array<[TokenKind, string, number]> = [];
  for (;;) {
    const t = scanner.scan();
    out.push([t.kind, t.text, t.pos]);
    if (t.kind === "eof" || t.kind === "illegal" || t.kind === "other") return out;
  }
}

void test("fields, separators, operator and a bare value", () => {
  assert.deepEqual(tokens('labels."a.b"==x:y/z.w'), [
    ["field", "labels", 0],
    ["separator", ".", 6],
    ["quoted", '"a.b"', 7],
    ["operator", "==", 12],
    ["value", "x:y/z.w", 14],
    ["eof", "", 21],
  ]);
});

void test("after an operator the next token is a value even if it looks like a field", () => {
  assert.deepEqual(tokens("a==b,c"), [
    ["field", "a", 0],
    ["operator", "==", 1],
    ["value", "b", 3],
    ["separator", ",", 4],
    ["field", "c", 5],
    ["eof", "", 6],
  ]);
});

void test("whitespace is skipped before tokens and positions point past it", () => {
  assert.deepEqual(tokens("  a  ~=  |x|"), [
    ["field", "a", 2],
    ["operator", "~=", 5],
    ["quoted", "|x|", 9],
    ["eof", "", 12],
  ]);
});

void test("a value starts with any character that is not a quote, separator, operator or space", () => {
  assert.deepEqual(tokens("a==\x01b"), [
    ["field", "a", 0],
    ["operator", "==", 1],
    ["value", "\x01b", 3],
    ["eof", "", 5],
  ]);
});

void test("unknown characters come back as 'other' at their position", () => {
  assert.deepEqual(tokens("a-b"), [
    ["field", "a", 0],
    ["other", "", 1],
  ]);
});

void test("the first lexical error is kept", () => {
  const scanner = new FilterScanner('"a\\q\n');
  assert.equal(scanner.scan().kind, "illegal");
  assert.equal(scanner.error, "illegal escape sequence");
});

void test("a lone surrogate is a rune error", () => {
  const scanner = new FilterScanner("a\ud800");
  assert.equal(scanner.scan().kind, "field");
  const t = scanner.scan();
  assert.deepEqual([t.kind, t.pos], ["illegal", 1]);
  assert.equal(scanner.error, "rune error");
});

void test("peek does not consume", () => {
  const scanner = new FilterScanner("ab");
  assert.equal(scanner.peek(), 0x61);
  assert.equal(scanner.peek(), 0x61);
  assert.equal(scanner.scan().text, "ab");
});
