// Checks the ratio and verdict logic of the bench table (run: node --import tsx --test bench/report.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { checkTargets, ratio, renderTable, renderTargets, verdict, type Row } from "./report.js";

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

void test("targets: a ratio ceiling or a floor on berthd's value, unmeasured when a value is missing", () => {
  const rows: Row[] = [
    { ...row("lower", 12, 10), metric: "pull", target: { ratioAtMost: 1 } },
    { ...row("lower", 9, 10), metric: "pull2", target: { ratioAtMost: 1 } },
    { ...row("higher", 300, 100), metric: "apply", unit: "MB/s", target: { berthdAtLeast: 250 } },
    { ...row("higher", null, 100), metric: "apply2", target: { berthdAtLeast: 250 } },
    row("higher", 1, 1),
  ];
  const checks = checkTargets(rows);
  assert.deepEqual(
    checks.map((c) => [c.metric, c.met]),
    [
      ["pull", false],
      ["pull2", true],
      ["apply", true],
      ["apply2", null],
    ],
  );
  assert.equal(checks[0]?.actual, 1.2);
  const text = renderTargets(checks);
  assert.match(text, /^target MISSED: pull: berthd\/containerd <= 1\.00 \(measured 1\.20\)$/m);
  assert.match(text, /^target met: apply: berthd >= 250 MB\/s \(measured 300\)$/m);
  assert.match(text, /^target not measured: apply2: berthd >= 250 u \(measured n\/a\)$/m);
});
