import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, readdir, rmdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { removeCgroupParents } from "./cgroups.js";

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

void test("removeCgroupParents removes a parent cgroup with the empty ones below it, and leaves a busy one", async (t) => {
  // cgroup v1 (a hybrid host like this one): the cpu hierarchy; cgroup v2: its single root.
  const root = join("/sys/fs/cgroup", (await readdir("/sys/fs/cgroup")).includes("cpu") ? "cpu" : "");
  const empty = `berth-harness-empty-${process.pid}`;
  const busy = `berth-harness-busy-${process.pid}`;
  const emptyChild = join(root, empty, "container");
  const busyChild = join(root, busy, "container");
  try {
    for (const d of [emptyChild, busyChild]) await mkdir(d, { recursive: true });
  } catch (err) {
    t.skip(`cannot make cgroups here: ${String(err)}`);
    return;
  }
  const sleeper = spawn("sleep", ["30"], { stdio: "ignore" });
  try {
    await writeFile(join(busyChild, "cgroup.procs"), `${sleeper.pid}\n`);
    await removeCgroupParents([`/${empty}`, busy]);
    assert.equal(await exists(join(root, empty)), false, "the parent and its empty child are gone");
    assert.equal(await exists(busyChild), true, "a cgroup holding a process stays");
    assert.equal(await exists(join(root, busy)), true, "and so does its parent");
    await assert.rejects(removeCgroupParents(["../etc"]), /not a parent cgroup/);
    await assert.rejects(removeCgroupParents(["/"]), /not a parent cgroup/);
  } finally {
    sleeper.kill("SIGKILL");
    await new Promise((resolve) => sleeper.once("exit", resolve));
    for (const d of [busyChild, join(root, busy), emptyChild, join(root, empty)])
      await rmdir(d).catch(() => undefined);
  }
});
