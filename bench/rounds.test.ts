// Checks the round-robin of bench measurements (run: node --import tsx --test bench/rounds.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { errorText, interleavedRounds, mapOutcomes } from "./rounds.js";

void test("warm-ups daemon after daemon, then timed rounds taking turns, A B then B A", async () => {
  const calls: string[] = [];
  const out = await interleavedRounds(["a", "b"], { warmups: 2, rounds: 3 }, async (name, round) => {
    calls.push(`${name}${round}`);
    return `${name}:${round}`;
  });
  assert.deepEqual(calls, ["a-2", "a-1", "b-2", "b-1", "a0", "b0", "b1", "a1", "a2", "b2"]);
  assert.deepEqual(out, {
    a: { ok: true, value: ["a:0", "a:1", "a:2"] },
    b: { ok: true, value: ["b:0", "b:1", "b:2"] },
  });
});

void test("a daemon that fails is not asked again; the other goes on", async () => {
  const calls: string[] = [];
  const errors: string[] = [];
  const out = await interleavedRounds(
    ["a", "b"],
    { warmups: 0, rounds: 3 },
    async (name, round) => {
      calls.push(`${name}${round}`);
      if (name === "a" && round === 1) throw new Error("broke\nstack and more");
      return round;
    },
    (name, round, error) => errors.push(`${name}${round}: ${error}`),
  );
  assert.deepEqual(calls, ["a0", "b0", "b1", "a1", "b2"]);
  assert.deepEqual(errors, ["a1: broke"]);
  assert.deepEqual(out.a, { ok: false, error: "broke" });
  assert.deepEqual(out.b, { ok: true, value: [0, 1, 2] });
});

void test("a failed warm-up counts as the daemon's failure", async () => {
  const out = await interleavedRounds(["a", "b"], { warmups: 1, rounds: 1 }, async (name) => {
    if (name === "b") throw new Error("no");
    return 1;
  });
  assert.deepEqual(out, { a: { ok: true, value: [1] }, b: { ok: false, error: "no" } });
});

void test("mapOutcomes maps values and keeps errors", () => {
  const out = mapOutcomes(
    { a: { ok: true, value: [1, 2, 3] }, b: { ok: false, error: "x" } } as const,
    (v: readonly number[]) => v.length,
  );
  assert.deepEqual(out, { a: { ok: true, value: 3 }, b: { ok: false, error: "x" } });
  assert.equal(errorText("plain"), "plain");
});
