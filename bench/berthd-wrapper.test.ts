// Checks the berthd wrapper and the log summary (run: node --import tsx --test bench/berthd-wrapper.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { summarizeLog, summarizeLogFile, writeBerthdWrapper } from "./berthd-wrapper.js";

void test("Node warnings are grouped by kind, numbers masked, most frequent first", () => {
  const log = [
    '{"level":"info","msg":"serving"}',
    "(node:383) Warning: File descriptor 37 closed but not opened in unmanaged mode",
    "(Use `node --trace-warnings ...` to show where the warning was created)",
    "(node:383) Warning: File descriptor 38 closed but not opened in unmanaged mode",
    "(node:383) [DEP0005] DeprecationWarning: Buffer() is deprecated",
    "",
  ].join("\n");
  assert.deepEqual(summarizeLog(log), {
    lines: 5,
    warnings: [
      { message: "Warning: File descriptor N closed but not opened in unmanaged mode", count: 2 },
      { message: "DeprecationWarning: Buffer() is deprecated", count: 1 },
    ],
  });
  assert.deepEqual(summarizeLog(""), { lines: 0, warnings: [] });
});

void test("the wrapper appends the daemon's output to the log file and passes its arguments", async () => {
  const dir = await mkdtemp(join(tmpdir(), "bench-wrapper-"));
  try {
    const logFile = join(dir, "berthd.log");
    await writeFile(logFile, "earlier\n");
    const path = await writeBerthdWrapper(dir, { logFile, name: "w'x" });
    const script = await readFile(path, "utf8");
    assert.match(script, /^#!\/bin\/sh\nexec >>'.*berthd\.log' 2>&1\nexec '.*bin\/berthd' "\$@"\n$/);
    assert.ok(!script.includes("--cpu-prof"));
    // Run it with node swapped for a stand-in that prints its arguments on both streams.
    const bin = join(dir, "bin");
    await writeFile(join(dir, "node"), '#!/bin/sh\necho "out $*"\necho "err $#" >&2\n', { mode: 0o755 });
    const { stdout, stderr } = await promisify(execFile)(path, ["--root", "a b"], {
      env: { ...process.env, PATH: `${dir}:${process.env.PATH ?? ""}` },
    });
    assert.equal(stdout + stderr, "");
    const logged = await readFile(logFile, "utf8");
    // bin/berthd's own node flags come first, then main.js and the arguments as given.
    assert.match(logged, /^earlier\nout (?:--\S+ )*\S*main\.js --root a b\nerr \d\n$/);
    assert.equal((await summarizeLogFile(join(bin, "absent.log"))).lines, 0);
    const profiledPath = await writeBerthdWrapper(dir, { logFile, cpuProfileDir: "/p", name: "profiled" });
    const profiled = await readFile(profiledPath, "utf8");
    assert.ok(!profiled.includes("NODE_OPTIONS"), "node refuses --cpu-prof in NODE_OPTIONS");
    await promisify(execFile)(profiledPath, ["--root", "a b"], {
      env: { ...process.env, PATH: `${dir}:${process.env.PATH ?? ""}` },
    });
    // The flags reach node itself, ahead of bin/berthd's main.js.
    assert.match(
      await readFile(logFile, "utf8"),
      /\nout --cpu-prof --cpu-prof-dir=\/p (?:--\S+ )*\S*\/dist\/daemon\/main\.js --root a b\n/,
    );
    const other = await readFile(
      await writeBerthdWrapper(dir, { berthdPath: "/x/bin/berthd", name: "other" }),
      "utf8",
    );
    assert.match(other, /\nexec '\/x\/bin\/berthd' "\$@"\n$/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
