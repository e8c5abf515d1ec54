// releaseExecFifo against a real fifo and a real writer blocked in open(O_WRONLY), as runc init is.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { releaseExecFifo } from "./exec-fifo.js";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "berth-exec-fifo-"));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A process that opens path for writing (blocking until a reader comes), writes "0", exits 0. */
function blockedWriter(path: string): { exited: Promise<number | null> } {
  const child = spawn("sh", ["-c", 'printf 0 > "$1"', "writer", path], { stdio: "ignore" });
  return { exited: new Promise((r) => child.once("exit", (code) => r(code))) };
}

void test("the writer is released, its byte read, and the fifo removed", async () => {
  await withDir(async (dir) => {
    const fifo = join(dir, "exec.fifo");
    execFileSync("mkfifo", [fifo]);
    const writer = blockedWriter(fifo);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(await releaseExecFifo(fifo, writer.exited), true);
    assert.equal(await writer.exited, 0);
    assert.equal(existsSync(fifo), false);
  });
});

void test("a reader that comes first waits for the writer", async () => {
  await withDir(async (dir) => {
    const fifo = join(dir, "exec.fifo");
    execFileSync("mkfifo", [fifo]);
    let writer: { exited: Promise<number | null> } | undefined;
    const gone = new Promise<void>(() => undefined);
    const released = releaseExecFifo(fifo, gone);
    setTimeout(() => (writer = blockedWriter(fifo)), 50);
    assert.equal(await released, true);
    assert.equal(await writer!.exited, 0);
    assert.equal(existsSync(fifo), false);
  });
});

void test("no fifo, or a file that is not one: false, and nothing is touched", async () => {
  await withDir(async (dir) => {
    const never = new Promise<void>(() => undefined);
    assert.equal(await releaseExecFifo(join(dir, "missing"), never), false);
    const file = join(dir, "exec.fifo");
    await writeFile(file, "0");
    assert.equal(await releaseExecFifo(file, never), false);
    assert.equal(existsSync(file), true);
  });
});

void test("init gone without writing: false, and the fifo stays for runc start to judge", async () => {
  await withDir(async (dir) => {
    const fifo = join(dir, "exec.fifo");
    execFileSync("mkfifo", [fifo]);
    assert.equal(await releaseExecFifo(fifo, Promise.resolve()), false);
    assert.equal(existsSync(fifo), true);
  });
});
