import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { Reaper, type ExitEvent } from "./reaper.js";
import { Runc, readPidFile } from "./runc.js";
import { canRunContainers, makeTestBundle, type TestBundle } from "./test-bundle.js";
import { listChildren } from "../sys/process.js";
import { isCode } from "../errdefs/errors.js";

const skip = !canRunContainers() && "needs root, runc and busybox";
const run = promisify(execFile);

function zombies(): number[] {
  return listChildren().filter((pid) => {
    try {
      // /proc/<pid>/stat: "pid (comm) S ..."; comm may hold spaces, so read after the last ')'.
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
    } catch {
      return false;
    }
  });
}

function setup(b: TestBundle): { reaper: Reaper; runc: Runc } {
  const reaper = new Reaper();
  const runc = new Runc({
    root: b.runcRoot,
    log: join(b.work, "log.json"),
    onSpawn: (c) => reaper.trackSpawned(c),
  });
  return { reaper, runc };
}

/** runc create + register the init pid + start, as the shim does. */
async function startContainer(
  b: TestBundle,
  reaper: Reaper,
  runc: Runc,
): Promise<{ pid: number; exit: Promise<ExitEvent> }> {
  const since = Date.now();
  const pidFile = join(b.work, "init.pid");
  await runc.create(b.id, b.bundle, { pidFile });
  const pid = await readPidFile(pidFile);
  const exit = reaper.register(pid, { since });
  await runc.start(b.id);
  return { pid, exit };
}

void test("a container's `exit 3` is reported as status 3, by promise and by event", { skip }, async () => {
  const b = makeTestBundle({ args: ["sh", "-c", "exit 3"] });
  const { reaper, runc } = setup(b);
  try {
    const events: ExitEvent[] = [];
    reaper.on("exit", (e) => events.push(e));
    const { pid, exit } = await startContainer(b, reaper, runc);
    const e = await exit;
    assert.equal(e.pid, pid);
    assert.equal(e.status, 3);
    assert.equal(e.signal, 0);
    assert.ok(e.exitedAt instanceof Date && Date.now() - e.exitedAt.getTime() < 10_000);
    assert.deepEqual(events, [e]);
    assert.equal(reaper.isRegistered(pid), false);
    await runc.delete(b.id);
    assert.deepEqual(zombies(), []);
  } finally {
    reaper.close();
    b.cleanup();
  }
});

void test(
  "`sleep 100` killed with SIGKILL is reported as 137; signal() goes through the pidfd",
  { skip },
  async () => {
    const b = makeTestBundle({ args: ["sleep", "100"] });
    const { reaper, runc } = setup(b);
    try {
      const { pid, exit } = await startContainer(b, reaper, runc);
      await runc.kill(b.id, "KILL");
      const e = await exit;
      assert.deepEqual([e.pid, e.status, e.signal], [pid, 137, 9]);
      await runc.delete(b.id);

      const b2 = makeTestBundle({ args: ["sleep", "100"] });
      try {
        const runc2 = new Runc({ root: b2.runcRoot, onSpawn: (c) => reaper.trackSpawned(c) });
        const c = await startContainer(b2, reaper, runc2);
        reaper.signal(c.pid, 9);
        assert.equal((await c.exit).status, 137);
        await runc2.delete(b2.id);
      } finally {
        b2.cleanup();
      }
    } finally {
      reaper.close();
      b.cleanup();
    }
  },
);

void test(
  "host pid namespace: the init's background children are reaped as orphans, no zombies",
  { skip },
  async () => {
    const b = makeTestBundle({ args: ["sh", "-c", "sleep 0.2 & sleep 0.3 & exit 0"], hostPid: true });
    const { reaper, runc } = setup(b);
    try {
      const orphans: ExitEvent[] = [];
      reaper.on("orphan", (e) => orphans.push(e));
      const { exit } = await startContainer(b, reaper, runc);
      assert.equal((await exit).status, 0);
      for (let i = 0; i < 200 && orphans.length < 2; i++) await sleep(10);
      assert.deepEqual(
        orphans.map((o) => o.status),
        [0, 0],
      );
      assert.deepEqual(zombies(), []);
      await runc.delete(b.id);
    } finally {
      reaper.close();
      b.cleanup();
    }
  },
);

void test(
  "an exec that exits before it is registered: the recorded exit is handed over",
  { skip },
  async () => {
    const b = makeTestBundle({ args: ["sleep", "100"] });
    const { reaper, runc } = setup(b);
    try {
      const init = await startContainer(b, reaper, runc);
      const since = Date.now();
      const pidFile = join(b.work, "exec.pid");
      await runc.exec(b.id, { args: ["sh", "-c", "exit 4"], cwd: "/", env: ["PATH=/bin"] }, { pidFile });
      const pid = await readPidFile(pidFile);
      // Let it exit and be reaped as an unregistered orphan first.
      for (let i = 0; i < 500 && listChildren().includes(pid); i++) await sleep(10);
      assert.ok(!listChildren().includes(pid), "already reaped");
      // A recorded exit older than `since` is not this process's: refused.
      await assert.rejects(reaper.register(pid, { since: Date.now() + 60_000 }), (e) =>
        isCode(e, "not-found"),
      );
      const e = await reaper.register(pid, { since });
      assert.deepEqual([e.pid, e.status], [pid, 4]);
      await assert.rejects(reaper.register(pid), (err) => isCode(err, "not-found"), "handed over once");

      await runc.kill(b.id, 9);
      assert.equal((await init.exit).status, 137);
      await runc.delete(b.id);
    } finally {
      reaper.close();
      b.cleanup();
    }
  },
);

void test("libuv keeps its own children: child_process exits are never stolen", async () => {
  const reaper = new Reaper();
  try {
    const orphans: ExitEvent[] = [];
    reaper.on("orphan", (e) => orphans.push(e));
    // Untracked execFile children (the active-handle safety net) and tracked ones, with exit codes.
    const untracked = Array.from({ length: 10 }, (_, i) =>
      run("sh", ["-c", `exit ${i % 3}`]).then(
        () => 0,
        (e: { code?: number }) => e.code,
      ),
    );
    const tracked = Array.from({ length: 10 }, (_, i) => {
      const child = execFile("sh", ["-c", `sleep 0.0${i}; exit 5`]);
      reaper.trackSpawned(child);
      return new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    });
    assert.deepEqual(await Promise.all(untracked), [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]);
    assert.deepEqual(await Promise.all(tracked), Array(10).fill(5));
    assert.deepEqual(orphans, []);
  } finally {
    reaper.close();
  }
});

void test("register: a pid that never existed is NotFound (a rejected promise, not a throw)", async () => {
  const reaper = new Reaper();
  try {
    await assert.rejects(reaper.register(0x3ffffff), (e) => isCode(e, "not-found"));
  } finally {
    reaper.close();
  }
});
