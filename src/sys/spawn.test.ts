import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, readdirSync, readlinkSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { posixSpawn } from "./spawn.js";
import { pipe2 } from "./pipe.js";
import { closeFd, kill, reapPid, type WaitResult } from "./process.js";
import { hasCode } from "./errno.js";

async function waitExit(pid: number): Promise<WaitResult> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = reapPid(pid);
    if (r !== null) return r;
    if (Date.now() > deadline) throw new Error(`pid ${pid} did not exit`);
    await sleep(5);
  }
}

/** Runs sh -c script with stdout on a pipe; returns what it printed and how it ended. */
async function sh(script: string, env: string[] = []): Promise<{ out: string; exit: WaitResult }> {
  const [r, w] = pipe2();
  let pid: number;
  try {
    pid = posixSpawn("/bin/sh", ["sh", "-c", script], env, [null, w, null]);
  } finally {
    closeFd(w);
  }
  const exit = await waitExit(pid);
  const out = readFileSync(`/proc/self/fd/${r}`, "utf8");
  closeFd(r);
  return { out, exit };
}

void test("posixSpawn runs the program with argv, env and its stdout on our descriptor", async () => {
  const { out, exit } = await sh('echo "$0 $1 $FOO"; exit 3', ["FOO=bar"]);
  assert.equal(out, "sh  bar\n");
  assert.equal(exit.exited, true);
  assert.equal(exit.status, 3);
});

void test("the child starts with every signal at its default and none blocked or ignored", async () => {
  // Node ignores SIGPIPE; an ignored signal would survive the exec (libuv resets them too).
  const { out } = await sh("grep -E '^Sig(Blk|Ign):' /proc/self/status");
  assert.match(out, /^SigBlk:\s+0+$/m);
  assert.match(out, /^SigIgn:\s+0+$/m);
  const { exit } = await sh("kill -PIPE $$; exit 0");
  assert.equal(exit.exited, false);
  assert.equal(exit.signal, 13);
});

const busybox = ["/usr/bin/busybox", "/bin/busybox"].find((p) => existsSync(p));

void test(
  "the child gets fds 0-2 and nothing of ours (as child_process), /dev/null for those not given",
  { skip: busybox === undefined && "needs busybox" },
  async () => {
    if (busybox === undefined) return;
    // The descriptors of a `sleep` once it sleeps (the exec is over: the kernel lets a vfork
    // parent go a moment before it closes the close-on-exec descriptors), read from here. A static
    // busybox: a dynamic binary's loader holds descriptors of its own for a moment.
    const fdsOf = async (pid: number) => {
      const deadline = Date.now() + 10_000;
      while (!/^\d+ \(.*\) S /.test(readFileSync(`/proc/${pid}/stat`, "utf8"))) {
        if (Date.now() > deadline) throw new Error(`pid ${pid} does not sleep`);
        await sleep(2);
      }
      return readdirSync(`/proc/${pid}/fd`)
        .sort((a, b) => Number(a) - Number(b))
        .map((fd) => [fd, readlinkSync(`/proc/${pid}/fd/${fd}`)] as const);
    };
    // Descriptors this test process inherited without close-on-exec reach every child.
    const cp = spawn(busybox, ["sleep", "100"], { stdio: "ignore" });
    const inherited = (await fdsOf(cp.pid as number)).map(([fd]) => fd).filter((fd) => Number(fd) > 2);
    cp.kill("SIGKILL");
    const [r, w] = pipe2(); // close-on-exec: must not reach the child
    const pid = posixSpawn(busybox, ["sleep", "100"], [], [null, w, null]);
    try {
      const fds = await fdsOf(pid);
      assert.deepEqual(
        fds.map(([fd]) => fd),
        ["0", "1", "2", ...inherited],
      );
      assert.equal(fds[0]?.[1], "/dev/null");
      assert.equal(fds[2]?.[1], "/dev/null");
      assert.equal(fds[1]?.[1], readlinkSync(`/proc/self/fd/${w}`));
    } finally {
      kill(pid, 9);
      await waitExit(pid);
      closeFd(r);
      closeFd(w);
    }
  },
);

void test("a program that cannot be run is an error of the call (ENOENT), not a child", () => {
  assert.throws(
    () => posixSpawn("/nonexistent/berth-no-such-binary", ["x"], [], [null, null, null]),
    (err: unknown) => hasCode(err, "ENOENT"),
  );
});

void test("stdio descriptors 0-2 are refused (an earlier dup2 could clobber them)", () => {
  assert.throws(
    () => posixSpawn("/bin/true", ["true"], [], [0, null, null]),
    (err: unknown) => hasCode(err, "EINVAL"),
  );
});
