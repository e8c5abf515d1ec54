// Checks how bench knobs are read (run: node --import tsx --test bench/env-config.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { envInt } from "./env-config.js";

void test("unset or empty takes the default; integers at or above the minimum pass", () => {
  assert.equal(envInt({}, "X", 5), 5);
  assert.equal(envInt({ X: "" }, "X", 5), 5);
  assert.equal(envInt({ X: "64" }, "X", 5), 64);
  assert.equal(envInt({ X: "0" }, "X", 5, 0), 0);
});

void test("typos and out-of-range values are refused, naming the variable", () => {
  for (const bad of ["abc", "1.5", "0", "-3", "1e400"]) {
    assert.throws(() => envInt({ BENCH_X: bad }, "BENCH_X", 5), /BENCH_X must be an integer of at least 1/);
  }
});
