// Direct tests of the quoted-token decoder, including inputs the scanner never lets through.
import { test } from "node:test";
import assert from "node:assert/strict";
import { unquote } from "./unquote.js";

const decoded: Array<[string, string]> = [
  ['""', ""],
  ['"plain"', "plain"],
  ["/a|b/", "a|b"],
  ["|a/b|", "a/b"],
  ['"\\a\\b\\f\\n\\r\\t\\v\\\\"', "\x07\b\f\n\r\t\v\\"],
  ['"\\""', '"'],
  ["/\\//", "/"],
  ["|\\||", "|"],
  ['"\\x41\\101\\u0041\\U00000041"', "AAAA"],
  ['"\\xe2\\x82\\xac"', "€"],
  ['"\\u20ac"', "€"],
  ['"é€\u{1F600}"', "é€\u{1F600}"],
  ['"a\\u00e9b"', "aéb"],
  // A leading BOM is data, not something to strip.
  ['"\\ufeffx"', "\ufeffx"],
  // Surrogate halves encode as U+FFFD in Go.
  ['"\\ud800"', "\ufffd"],
  // A lone byte that is not UTF-8 decodes to U+FFFD.
  ['"\\xff"', "\ufffd"],
];

for (const [quoted, text] of decoded) {
  void test(`unquote(${JSON.stringify(quoted)})`, () => {
    assert.equal(unquote(quoted), text);
  });
}

const rejected = [
  "",
  '"',
  '"abc',
  "\"abc'",
  "'a'",
  "`abc`",
  '"a"b"',
  '"a\nb"',
  '"\\q"',
  '"\\/"',
  '/\\"/',
  '"\\x4"',
  '"\\x4g"',
  '"\\u004"',
  '"\\18"',
  '"\\400"',
  '"\\U00110000"',
  '"\\"',
];

for (const quoted of rejected) {
  void test(`unquote(${JSON.stringify(quoted)}) is a syntax error`, () => {
    assert.equal(unquote(quoted), undefined);
  });
}
