import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket } from "node:net";
import { Reaper, type ExitEvent } from "./reaper.js";
import { forgetLookups, lookPath, reaperSpawner, type Spawner } from "./spawner.js";
import { Runc, RuncError } from "./runc.js";
import { listChildren } from "../sys/process.js";

const text = (s: Socket | null): Promise<string> =>
  new Promise((resolve) => {
    let out = "";
    if (s === null) return resolve(out);
    s.setEncoding("utf8").on("data", (d: string) => (out += d));
    s.once("close", () => resolve(out));
  });

function tempDir(): { dir: string; [Symbol.dispose](): void } {
  const dir = mkdtempSync(join(tmpdir(), "berth-spawner-"));
  return { dir, [Symbol.dispose]: () => rmSync(dir, { recursive: true, force: true }) };
}

void test("lookPath finds a name on PATH as execvp would, remembers it, and takes a path as it is", () => {
  const t = tempDir();
  try {
    const a = join(t.dir, "a");
    const b = join(t.dir, "b");
    for (const d of [a, b]) {
      mkdirSync(d);
      writeFileSync(join(d, "tool"), "#!/bin/sh\n");
    }
    // a/tool is not executable, b/tool is: execvp skips the first.
    chmodSync(join(b, "tool"), 0o755);
    forgetLookups();
    assert.equal(lookPath("tool", `${a}:${b}`), join(b, "tool"));
    // Remembered: found again on a PATH that no longer has it.
    assert.equal(lookPath("tool", "/nonexistent"), join(b, "tool"));
    assert.equal(lookPath("./x/y", "/nonexistent"), "./x/y");
    forgetLookups();
    assert.equal(lookPath("tool", "/nonexistent"), undefined);
  } finally {
    t[Symbol.dispose]();
    forgetLookups();
  }
});

void test("reaperSpawner: output on pipes, the exit code, a kill; the reaper reaps it quietly", async () => {
  const reaper = new Reaper();
  const events: ExitEvent[] = [];
  reaper.on("exit", (e) => events.push(e));
  try {
    const spawn = reaperSpawner(reaper);
    const p = spawn("sh", ["-c", "echo out; echo err >&2; exit 4"], ["ignore", "pipe", "pipe"]);
    assert.ok(p !== undefined);
    const [out, err, closed] = await Promise.all([text(p.stdout), text(p.stderr), p.closed]);
    assert.deepEqual({ out, err, closed }, { out: "out\n", err: "err\n", closed: { code: 4, signal: null } });

    const q = spawn("sleep", ["100"], ["ignore", "ignore", "ignore"]);
    assert.ok(q !== undefined);
    assert.equal(q.stdout, null);
    q.kill();
    assert.deepEqual(await q.closed, { code: null, signal: "SIGKILL" });
    assert.ok(!listChildren().includes(p.pid) && !listChildren().includes(q.pid), "both reaped");
    assert.deepEqual(events, [], "the shim's own processes are not reported as exits");
  } finally {
    reaper.close();
  }
});

void test("reaperSpawner leaves to child_process what it does not do", () => {
  const reaper = new Reaper();
  try {
    const spawn = reaperSpawner(reaper);
    assert.equal(spawn("sh", ["-c", "cat"], ["pipe", "ignore", "ignore"]), undefined, "data for stdin");
    assert.equal(spawn("sh", [], ["ignore", "ignore", "ignore", 7]), undefined, "more descriptors");
    assert.equal(spawn("berth-no-such-binary", [], ["ignore", "ignore", "ignore"]), undefined, "not on PATH");
    assert.equal(spawn("/nonexistent/runc", [], ["ignore", "ignore", "ignore"]), undefined, "cannot be run");
  } finally {
    reaper.close();
  }
});

void test("Runc through the spawner: runc's output and runc's own error, as with child_process", async () => {
  const t = tempDir();
  const reaper = new Reaper();
  try {
    // A stand-in runc: `state` prints JSON, `kill` fails with a JSON log line, `pause` on stderr.
    const fake = join(t.dir, "runc");
    writeFileSync(
      fake,
      [
        "#!/bin/sh",
        'log=""; while [ $# -gt 0 ]; do case "$1" in --log) log="$2"; shift 2;; --log-format|--root) shift 2;; *) break;; esac; done',
        'case "$1" in',
        '  state) echo \'{"id":"c1","pid":42,"status":"running"}\';;',
        '  kill) echo \'{"level":"error","msg":"container not running"}\' >> "$log"; exit 1;;',
        "  pause) echo 'cannot pause: frozen' >&2; exit 2;;",
        "esac",
      ].join("\n"),
      { mode: 0o755 },
    );
    const fast = reaperSpawner(reaper);
    let spawned = 0;
    const counting: Spawner = (...a) => {
      const p = fast(...a);
      if (p !== undefined) spawned++;
      return p;
    };
    for (const log of [join(t.dir, "log.json"), undefined]) {
      const runc = new Runc({
        command: fake,
        root: t.dir,
        log,
        spawner: counting,
        onSpawn: () => assert.fail("forked"),
      });
      assert.equal((await runc.state("c1")).pid, 42);
      await assert.rejects(runc.kill("c1", 9), (e: unknown) => {
        assert.ok(e instanceof RuncError);
        assert.equal(e.message, "container not running");
        assert.equal(e.code, "failed-precondition");
        assert.equal(e.exitCode, 1);
        return true;
      });
      await assert.rejects(runc.pause("c1"), { message: "cannot pause: frozen", exitCode: 2 });
    }
    assert.equal(spawned, 6);
  } finally {
    reaper.close();
    t[Symbol.dispose]();
  }
});
