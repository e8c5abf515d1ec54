// Checks the ratio and verdict logic of the bench table (run: node --import tsx --test bench/report.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { ratio, renderTable, verdict, type Row } from "./report.js";

const row = (better: Row["better"], berthd: number | null, containerd: number | null): Row => ({
  metric: "m",
  unit: "u",
  better,
  berthd,
  containerd,
});

void test("the verdict follows the metric's direction", () => {
  assert.equal(ratio(row("lower", 20, 10)), 2);
  assert.equal(verdict(row("lower", 20, 10)), "containerd 2.00x better");
  assert.equal(verdict(row("lower", 10, 20)), "berthd 2.00x better");
  assert.equal(verdict(row("higher", 20, 10)), "berthd 2.00x better");
  assert.equal(verdict(row("higher", 10, 40)), "containerd 4.00x better");
  assert.equal(verdict(row("higher", 100, 102)), "about equal");
});

void test("missing values get no ratio and a footnote with the error", () => {
  const r: Row = { ...row("higher", null, 5), berthdError: "not implemented" };
  assert.equal(ratio(r), null);
  assert.equal(verdict(r), "-");
  const table = renderTable([r]);
  assert.match(table, /n\/a \[1\]/);
  assert.match(table, /^\[1\] berthd: not implemented$/m);
});
