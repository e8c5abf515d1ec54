import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readdir, rmdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { removeCgroupParents } from "./cgroups.js";

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

void test("removeCgroupParents removes an empty parent cgroup and leaves one with a child", async (t) => {
  // cgroup v1 (a hybrid host like this one): the cpu hierarchy; cgroup v2: its single root.
  const h = (await readdir("/sys/fs/cgroup")).includes("cpu") ? "cpu" : "";
  const empty = `berth-harness-empty-${process.pid}`;
  const busy = `berth-harness-busy-${process.pid}`;
  const made = [join("/sys/fs/cgroup", h, empty), join("/sys/fs/cgroup", h, busy, "child")];
  try {
    for (const d of made) await mkdir(d, { recursive: true });
  } catch (err) {
    t.skip(`cannot make cgroups here: ${String(err)}`);
    return;
  }
  try {
    await removeCgroupParents([`/${empty}`, busy]);
    assert.equal(await exists(made[0] ?? ""), false, "the empty parent is gone");
    assert.equal(await exists(join("/sys/fs/cgroup", h, busy)), true, "a parent with a child stays");
    await assert.rejects(removeCgroupParents(["../etc"]), /not a parent cgroup/);
    await assert.rejects(removeCgroupParents(["/"]), /not a parent cgroup/);
  } finally {
    await rmdir(made[1] ?? "").catch(() => undefined);
    await rmdir(join("/sys/fs/cgroup", h, busy)).catch(() => undefined);
    await rmdir(made[0] ?? "").catch(() => undefined);
  }
});
