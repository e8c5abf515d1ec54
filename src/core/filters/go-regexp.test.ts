// Go (RE2) patterns translated to JavaScript: each row is a pattern, a subject and whether Go's
// regexp.MatchString says it matches (checked against containerd 1.6 where a comment says so).
import { test } from "node:test";
import assert from "node:assert/strict";
import { compileGoRegexp } from "./go-regexp.js";

const rows: Array<[pattern: string, subject: string, matches: boolean]> = [
  ["", "", true],
  ["ba", "xbay", true],
  ["^ba$", "xbay", false],
  // Go's '.' stops only at \n; JavaScript's also stops at \r and \u2028 (checked with containerd).
  ["a.b", "a\nb", false],
  ["a.b", "a\rb", true],
  ["a.b", "a\u2028b", true],
  ["(?s)a.b", "a\nb", true],
  ["^.$", "é", true],
  ["^.$", "\u{1F600}", true],
  // Flags at the start, alone or stacked.
  ["(?i)abc", "ABC", true],
  ["(?i)(?s)a.c", "A\nC", true],
  ["(?is)a.c", "A\nC", true],
  ["(?m)^b", "a\nb", true],
  ["^b", "a\nb", false],
  ["(?m)a$", "a\nb", true],
  ["a$", "a\nb", false],
  ["(?U)A+", "AAA", true],
  // \s is ASCII in Go: a no-break space is not a space there.
  ["a\\sb", "a\u00a0b", false],
  ["a\\Sb", "a\u00a0b", true],
  ["a[\\s]b", "a\u00a0b", false],
  ["a\\sb", "a\tb", true],
  ["\\d+", "12", true],
  ["\\w+", "ABC", true],
  ["\\bABC\\b", "ABC", true],
  // \A and \z are the text's ends.
  ["\\AA", "ABC", true],
  ["\\AB", "ABC", false],
  ["C\\z", "ABC", true],
  ["\\z", "", true],
  // Escaped punctuation is always literal in Go, including characters JavaScript's u flag refuses.
  ["\\-", "a-b", true],
  ["\\#", "#", true],
  ["\\:", "a:b", true],
  ["\\.", "abc", false],
  ["\\.", "a.c", true],
  ["[\\-A]", "-", true],
  ["\\/", "/tasks", true],
  // Literal braces and brackets where they do not form syntax.
  ["l{", "l{", true],
  ["l{", "l", false],
  ["l{1}", "l", true],
  ["A{1,}B", "AAB", true],
  ["A{,1}B", "A{,1}B", true],
  ["}", "}", true],
  ["]", "]", true],
  ["[]l]1", "l1", true],
  ["[]l]1", "]1", true],
  ["[[]", "[", true],
  // POSIX classes.
  ["^[[:alpha:]]+$", "abcXYZ", true],
  ["^[[:alpha:]]$", "é", false],
  ["[[:upper:]]{3}", "ABC", true],
  ["[[:lower:]]", "ABC", false],
  ["[[:punct:]]", "a/b", true],
  ["^[[:xdigit:]]+$", "00fF", true],
  ["[^[:lower:]]", "ABC", true],
  // Hex, octal and Unicode escapes.
  ["\\x6c1", "l1", true],
  ["\\x{6c}", "l", true],
  ["\\xe9", "é", true],
  ["\\x{1F600}", "\u{1F600}", true],
  ["\\101", "ABC", true],
  ["[\\101-\\103]+", "ABC", true],
  ["\\0", "a\0b", true],
  ["\\0", "ab", false],
  ["\\a", "\x07", true],
  ["\\pL\\d", "l1", true],
  ["\\p{Lu}", "ABC", true],
  ["\\P{Ll}", "ABC", true],
  ["\\p{^Ll}", "abc", false],
  ["^\\p{Latin}$", "é", true],
  ["^\\p{Greek}+$", "αβγ", true],
  ["^\\p{Greek}+$", "abc", false],
  ["\\Q.*\\E", "a.*b", true],
  ["\\Q.*\\E", "ab", false],
  ["(?P<x>l)1", "l1", true],
  ["l|x", "x", true],
  ["^[ABC]{3}$", "ABC", true],
];

for (const [pattern, subject, matches] of rows) {
  void test(`${JSON.stringify(pattern)} ${matches ? "matches" : "does not match"} ${JSON.stringify(subject)}`, () => {
    const re = compileGoRegexp(pattern);
    assert.ok(re, "pattern should compile");
    assert.equal(re.test(subject), matches);
  });
}

// Patterns Go's regexp (as built into containerd 1.6) rejects, or that JavaScript cannot express.
const invalid = [
  "a[",
  "(",
  "a**",
  "A++",
  "\\1",
  "\\8",
  "\\C",
  "\\p{Nope}",
  "\\é",
  "(?=a)",
  "(?!a)",
  "(?<=a)b",
  "(?<n>l)",
  "[[:^alpha:]]",
  "[[:nope:]]",
  "(?i:abc)",
  "x\\",
];

for (const pattern of invalid) {
  void test(`${JSON.stringify(pattern)} does not compile`, () => {
    assert.equal(compileGoRegexp(pattern), undefined);
  });
}

void test("a compiled pattern is stateless across calls", () => {
  const re = compileGoRegexp("a");
  assert.ok(re);
  assert.equal(re.test("a"), true);
  assert.equal(re.test("a"), true);
});
