import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { constants } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import {
  setChildSubreaper,
  isChildSubreaper,
  pidfdOpen,
  pidfdSendSignal,
  kill,
  closeFd,
  reapPid,
  reapPidfd,
  waitid,
  exitStatus,
  listChildren,
  anyChildExited,
  P,
  W,
  CLD,
  PIDFD_NONBLOCK,
  type WaitResult,
} from "./process.js";
import { hasCode } from "./errno.js";

const { SIGKILL, SIGTERM } = constants.signals;
const run = promisify(execFile);

/** Runs a shell that backgrounds `script` and prints its pid; returns that (grand)child pid. */
async function orphan(script: string): Promise<number> {
  const { stdout } = await run("sh", ["-c", `(${script}) >/dev/null 2>&1 & echo $!; exit 0`]);
  return Number(stdout.trim());
}

async function until(reap: () => WaitResult | null, ms = 5000): Promise<WaitResult> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = reap();
    if (r !== null) return r;
    if (Date.now() > deadline) throw new Error("timed out waiting for exit");
    await sleep(10);
  }
}

void test("subreaper: a double-forked grandchild is reparented to us and reaped by waitid", async () => {
  setChildSubreaper(true);
  assert.equal(isChildSubreaper(), true);

  const pid = await orphan("sleep 0.2; exit 7");
  // The shell has exited and libuv reaped it; its background child is now ours.
  assert.ok(listChildren().includes(pid), `pid ${pid} should be among our children`);
  assert.equal(reapPid(pid), null, "still running: WNOHANG gives null");
  const r = await until(() => reapPid(pid));
  assert.equal(r.pid, pid);
  assert.equal(r.exited, true);
  assert.equal(r.code, CLD.EXITED);
  assert.equal(r.status, 7);
  assert.equal(r.signal, 0);
  assert.equal(exitStatus(r), 7);
  assert.ok(!listChildren().includes(pid), "reaped: no zombie left");
  assert.throws(
    () => reapPid(pid),
    (e) => hasCode(e, "ECHILD"),
  );
});

void test("anyChildExited peeks: true while an exited child waits, reaps nothing, false once it is reaped", async () => {
  setChildSubreaper(true);
  const pid = await orphan("sleep 0.2; exit 3"); // outlives the shell, so it is reparented to us
  assert.equal(anyChildExited(), false, "running: nothing to reap");
  // Polls the peek itself: it must turn true without anything reaping the child.
  const deadline = Date.now() + 5000;
  while (!anyChildExited()) {
    if (Date.now() > deadline) throw new Error("anyChildExited never saw the exited child");
    await sleep(10);
  }
  assert.ok(listChildren().includes(pid), "the peek left the zombie in place");
  assert.equal(anyChildExited(), true, "peeking twice still finds it");
  const r = reapPid(pid);
  assert.equal(r?.status, 3);
  assert.equal(anyChildExited(), false, "nothing left to reap");
});

void test("a signal is reported as signal (and 128+signal), not as an exit code", async () => {
  setChildSubreaper(true);
  const pid = await orphan("exec sleep 30");
  kill(pid, SIGKILL);
  const r = await until(() => reapPid(pid));
  assert.equal(r.exited, false);
  assert.equal(r.code, CLD.KILLED);
  assert.equal(r.signal, SIGKILL);
  assert.equal(r.status, 0);
  assert.equal(exitStatus(r), 137);
});

void test("pidfd: signal and reap through the pidfd; ESRCH after exit", async () => {
  setChildSubreaper(true);
  const pid = await orphan("exec sleep 30");
  const fd = pidfdOpen(pid);
  try {
    assert.equal(reapPidfd(fd), null);
    pidfdSendSignal(fd, SIGTERM);
    const r = await until(() => reapPidfd(fd));
    assert.equal(r.pid, pid);
    assert.equal(r.signal, SIGTERM);
    assert.equal(exitStatus(r), 128 + SIGTERM);
    assert.throws(
      () => pidfdSendSignal(fd, 0),
      (e) => hasCode(e, "ESRCH"),
    );
  } finally {
    closeFd(fd);
  }
});

void test("pidfd with PIDFD_NONBLOCK: waitid without WNOHANG gives null (EAGAIN) while running", async () => {
  setChildSubreaper(true);
  const pid = await orphan("sleep 0.1; exit 4");
  const fd = pidfdOpen(pid, PIDFD_NONBLOCK);
  try {
    assert.equal(waitid(P.PIDFD, fd, W.EXITED), null);
    const r = await until(() => waitid(P.PIDFD, fd, W.EXITED));
    assert.equal(r.status, 4);
  } finally {
    closeFd(fd);
  }
});

void test("errors: waitid on a process that is not our child, pidfd_open of no process", () => {
  assert.throws(
    () => reapPid(1),
    (e) => hasCode(e, "ECHILD"),
  );
  assert.throws(
    () => pidfdOpen(0x3ffffff),
    (e) => hasCode(e, "ESRCH"),
  );
  assert.throws(
    () => kill(0x3ffffff, 0),
    (e) => hasCode(e, "ESRCH"),
  );
});
