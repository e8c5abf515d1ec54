import { test } from "node:test";
import assert from "node:assert/strict";
import { runLight } from "./light-spawn.js";

const env = { PATH: "/usr/bin:/bin", GREETING: "hi" };

void test("runLight returns the exit code, stdout and stderr, with the env given", async () => {
  const r = await runLight("/bin/sh", ["-c", 'echo "$GREETING out"; echo err >&2; exit 3'], env, 10_000);
  assert.deepEqual(r, { code: 3, stdout: "hi out\n", stderr: "err\n" });
});

void test("runLight gives stdin as /dev/null and reports a death by signal as 128 + n", async () => {
  const r = await runLight("/bin/sh", ["-c", 'cat; kill -9 "$$"'], env, 10_000);
  assert.deepEqual(r, { code: 137, stdout: "", stderr: "" });
});

void test("runLight rejects a program that cannot be started", async () => {
  await assert.rejects(runLight("/nonexistent/ctr", [], env, 10_000), /ENOENT/);
});

void test("runLight kills the program and rejects after the timeout", async () => {
  const started = performance.now();
  await assert.rejects(runLight("/bin/sleep", ["30"], env, 300), /did not exit within 300 ms/);
  assert.ok(performance.now() - started < 5_000);
});
