// Checks the order statistics the bench reports (run: node --import tsx --test bench/stats.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { median, percentile, summarize } from "./stats.js";

void test("median of odd and even counts, independent of input order", () => {
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([7]), 7);
});

void test("p90 is the nearest-rank percentile", () => {
  const tenToHundred = Array.from({ length: 10 }, (_, i) => (10 - i) * 10);
  assert.equal(percentile(tenToHundred, 90), 90);
  assert.equal(percentile(tenToHundred, 100), 100);
  assert.equal(percentile(tenToHundred, 0), 10);
  const thirty = Array.from({ length: 30 }, (_, i) => i + 1);
  assert.equal(percentile(thirty, 90), 27);
});

void test("summarize and the empty case", () => {
  assert.deepEqual(summarize([3, 1, 2]), { n: 3, median: 2, p90: 3, min: 1, max: 3 });
  assert.throws(() => median([]), RangeError);
});
