import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import tty from "node:tty";
import { setTimeout as sleep } from "node:timers/promises";
import { Runc, RuncError, readPidFile } from "./runc.js";
import { canRunContainers, makeTestBundle, type TestBundle } from "./test-bundle.js";
import { setChildSubreaper, reapPid, type WaitResult } from "../sys/process.js";
import { ConsoleSocket } from "../sys/socket.js";
import { isCode } from "../errdefs/errors.js";

const skip = !canRunContainers() && "needs root, runc and busybox";

function criuWorks(): boolean {
  try {
    execFileSync("criu", ["check"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** The test process is the subreaper: container inits are reparented to it and reaped here. */
async function waitExit(pid: number, ms = 10_000): Promise<WaitResult> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = reapPid(pid);
    if (r !== null) return r;
    if (Date.now() > deadline) throw new Error(`pid ${pid} did not exit`);
    await sleep(10);
  }
}

function driver(b: TestBundle, spawned?: ChildProcess[]): Runc {
  return new Runc({
    root: b.runcRoot,
    log: join(b.work, "log.json"),
    onSpawn: spawned === undefined ? undefined : (c) => spawned.push(c),
  });
}

void test("create, start, state, ps, pause, resume, update, stats, kill, delete", { skip }, async () => {
  setChildSubreaper(true);
  const b = makeTestBundle({ args: ["sh", "-c", "echo out; echo err >&2; exec sleep 100"] });
  const spawned: ChildProcess[] = [];
  const runc = driver(b, spawned);
  const outPath = join(b.work, "stdout");
  const errPath = join(b.work, "stderr");
  try {
    const stdout = openSync(outPath, "w");
    const stderr = openSync(errPath, "w");
    const pidFile = join(b.work, "init.pid");
    try {
      await runc.create(b.id, b.bundle, { pidFile, io: { stdout, stderr } });
    } finally {
      closeSync(stdout);
      closeSync(stderr);
    }
    assert.ok(spawned.length === 1 && spawned[0]?.pid !== undefined, "onSpawn saw the runc process");
    const pid = await readPidFile(pidFile);
    let st = await runc.state(b.id);
    assert.equal(st.status, "created");
    assert.equal(st.pid, pid);
    assert.equal(st.bundle, b.bundle);

    await runc.start(b.id);
    st = await runc.state(b.id);
    assert.equal(st.status, "running");
    assert.deepEqual(await runc.ps(b.id), [pid]);
    assert.deepEqual(
      (await runc.list()).map((c) => c.id),
      [b.id],
    );

    await runc.pause(b.id);
    assert.equal((await runc.state(b.id)).status, "paused");
    await runc.resume(b.id);
    assert.equal((await runc.state(b.id)).status, "running");

    await runc.update(b.id, { pids: { limit: 42 } });
    const stats = await runc.stats(b.id);
    assert.equal(stats.pids?.limit, 42);
    assert.equal(stats.pids?.current, 1);
    assert.ok((stats.cpu?.usage?.total ?? 0) > 0, "cpu usage counted");
    assert.ok((stats.memory?.usage?.usage ?? 0) > 0, "memory usage counted");

    await runc.kill(b.id, "KILL");
    const exit = await waitExit(pid);
    assert.equal(exit.signal, 9);
    assert.equal((await runc.state(b.id)).status, "stopped");
    await runc.delete(b.id);
    assert.equal(readFileSync(outPath, "utf8"), "out\n");
    assert.equal(readFileSync(errPath, "utf8"), "err\n");
  } finally {
    b.cleanup();
  }
});

void test(
  "start with initExited goes through the exec fifo: no runc start process, init runs",
  { skip },
  async () => {
    setChildSubreaper(true);
    const b = makeTestBundle({ args: ["sh", "-c", "echo started; exec sleep 100"] });
    const spawned: ChildProcess[] = [];
    const runc = driver(b, spawned);
    const outPath = join(b.work, "stdout");
    try {
      const stdout = openSync(outPath, "w");
      try {
        await runc.create(b.id, b.bundle, { pidFile: join(b.work, "init.pid"), io: { stdout } });
      } finally {
        closeSync(stdout);
      }
      assert.equal(existsSync(join(b.runcRoot, b.id, "exec.fifo")), true);
      await runc.start(b.id, { initExited: new Promise(() => undefined) });
      assert.deepEqual(
        spawned.map((c) => c.spawnargs.find((a) => a === "create" || a === "start")),
        ["create"],
      );
      assert.equal(existsSync(join(b.runcRoot, b.id, "exec.fifo")), false);
      assert.equal((await runc.state(b.id)).status, "running");
      const deadline = Date.now() + 5000;
      while (readFileSync(outPath, "utf8") === "" && Date.now() < deadline) await sleep(10);
      assert.equal(readFileSync(outPath, "utf8"), "started\n");
      await runc.delete(b.id, { force: true });
    } finally {
      b.cleanup();
    }
  },
);

void test(
  "exec --detach: process.json, pid file, stdio fds; the process is reparented to us",
  { skip },
  async () => {
    setChildSubreaper(true);
    const b = makeTestBundle({ args: ["sleep", "100"] });
    const runc = driver(b);
    try {
      const initPid = join(b.work, "init.pid");
      await runc.create(b.id, b.bundle, { pidFile: initPid });
      await runc.start(b.id);

      const outPath = join(b.work, "exec.out");
      const out = openSync(outPath, "w");
      const pidFile = join(b.work, "exec.pid");
      try {
        await runc.exec(
          b.id,
          {
            args: ["sh", "-c", "echo exec-$MARK; exit 6"],
            cwd: "/",
            env: ["PATH=/bin", "MARK=ok"],
            terminal: false,
          },
          { pidFile, io: { stdout: out } },
        );
      } finally {
        closeSync(out);
      }
      const r = await waitExit(await readPidFile(pidFile));
      assert.equal(r.status, 6);
      assert.equal(readFileSync(outPath, "utf8"), "exec-ok\n");

      await runc.kill(b.id, 9, { all: true });
      await waitExit(await readPidFile(initPid));
      await runc.delete(b.id);
    } finally {
      b.cleanup();
    }
  },
);

void test("exec with a terminal: the pty master comes over the console socket", { skip }, async () => {
  setChildSubreaper(true);
  const b = makeTestBundle({ args: ["sleep", "100"] });
  const runc = driver(b);
  const sock = ConsoleSocket.listen(join(b.work, "c.sock"));
  try {
    await runc.create(b.id, b.bundle, { pidFile: join(b.work, "init.pid") });
    await runc.start(b.id);
    const master = sock.receiveMaster({ timeoutMs: 10_000 });
    const pidFile = join(b.work, "exec.pid");
    await runc.exec(
      b.id,
      { args: ["sh", "-c", "tty; exit 2"], cwd: "/", env: ["PATH=/bin"], terminal: true },
      { pidFile, consoleSocket: sock.path },
    );
    const term = new tty.ReadStream((await master).fd);
    let out = "";
    term.on("data", (d: Buffer) => (out += d.toString()));
    await new Promise<void>((resolve) => {
      term.on("error", () => resolve()); // EIO once the process has gone
      term.on("end", () => resolve());
    });
    term.destroy();
    assert.match(out, /\/dev\/pts\/\d+/);
    assert.equal((await waitExit(await readPidFile(pidFile))).status, 2);
    await runc.delete(b.id, { force: true });
    await waitExit(await readPidFile(join(b.work, "init.pid")));
  } finally {
    sock.close();
    b.cleanup();
  }
});

void test("errors carry runc's own message (from its JSON log) and a code", { skip }, async () => {
  const b = makeTestBundle({ args: ["no-such-binary"] });
  const runc = driver(b);
  try {
    await assert.rejects(runc.state("missing"), (e) => {
      assert.ok(e instanceof RuncError);
      assert.equal(e.message, "container does not exist");
      assert.ok(isCode(e, "not-found"));
      assert.equal(e.exitCode, 1);
      assert.deepEqual(e.args, ["state", "missing"]);
      return true;
    });
    await assert.rejects(runc.create(b.id, b.bundle), (e) => {
      assert.ok(e instanceof RuncError);
      assert.match(e.message, /exec: "no-such-binary": executable file not found/);
      return true;
    });
    await runc.delete(b.id, { force: true }).catch(() => undefined);
    // Without a configured log, each call gets a private one: the message is the same.
    const noLog = new Runc({ root: b.runcRoot });
    await assert.rejects(noLog.kill("missing", 9), /container does not exist/);
    const missingRunc = new Runc({ command: join(b.work, "no-runc"), root: b.runcRoot });
    await assert.rejects(missingRunc.state("x"), (e) => e instanceof RuncError && /ENOENT/.test(e.message));
    await assert.rejects(noLog.state("x", { signal: AbortSignal.abort() }), RuncError);
  } finally {
    b.cleanup();
  }
});

void test("version", { skip }, async () => {
  const v = await new Runc().version();
  assert.match(v.runc, /^\d+\.\d+/);
  assert.match(v.spec, /^\d+\.\d+/);
});

void test(
  "checkpoint and restore",
  { skip: skip || (!criuWorks() && "criu is absent or `criu check` fails on this kernel") },
  async () => {
    setChildSubreaper(true);
    const b = makeTestBundle({ args: ["sh", "-c", "i=0; while true; do i=$((i+1)); sleep 0.05; done"] });
    const runc = driver(b);
    try {
      await runc.create(b.id, b.bundle, { pidFile: join(b.work, "init.pid") });
      await runc.start(b.id);
      const imagePath = join(b.work, "image");
      const workPath = join(b.work, "criu-work");
      mkdirSync(imagePath);
      mkdirSync(workPath);
      await runc.checkpoint(b.id, { imagePath, workPath });
      await waitExit(await readPidFile(join(b.work, "init.pid")));
      await runc.delete(b.id);
      await runc.restore(b.id, b.bundle, { imagePath, workPath, pidFile: join(b.work, "restored.pid") });
      assert.equal((await runc.state(b.id)).status, "running");
      await runc.kill(b.id, 9);
      await waitExit(await readPidFile(join(b.work, "restored.pid")));
      await runc.delete(b.id);
    } finally {
      b.cleanup();
    }
  },
);
