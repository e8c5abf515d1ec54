// The cgroup-attach warm-up: where it writes (parsed from mountinfo and /proc/self/cgroup), that it
// never writes anywhere that does not already hold the shim, and, on this machine's real cgroup
// v2 mount, that the write leaves the process where it was.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { CgroupAttachWarmup, unifiedCgroupPath, unifiedMountPoint } from "./cgroup-attach-warmup.js";

const hybridMountinfo = [
  "25 1 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
  "26 25 0:23 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset",
  "35 25 0:32 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
].join("\n");

void test("the cgroup v2 mount point is found among v1 mounts, with octal escapes undone", () => {
  assert.equal(unifiedMountPoint(hybridMountinfo), "/sys/fs/cgroup/unified");
  assert.equal(
    unifiedMountPoint("40 1 0:40 / /mnt/cg\\040two rw shared:5 - cgroup2 none rw,nsdelegate"),
    "/mnt/cg two",
  );
  // Only v1 hierarchies: nothing to use.
  assert.equal(unifiedMountPoint(hybridMountinfo.split("\n").slice(0, 2).join("\n")), undefined);
  // A mount of a sub-tree (a container's view) does not show the paths /proc/self/cgroup gives.
  assert.equal(
    unifiedMountPoint("41 1 0:40 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw"),
    undefined,
  );
});

void test("the cgroup v2 path is the 0:: line, and only a plain absolute one", () => {
  assert.equal(
    unifiedCgroupPath("4:memory:/a\n0::/system.slice/berthd.service\n"),
    "/system.slice/berthd.service",
  );
  assert.equal(unifiedCgroupPath("0::/\n"), "/");
  assert.equal(unifiedCgroupPath("3:cpuset:/\n"), undefined);
  assert.equal(unifiedCgroupPath("0::/gone (deleted)\n"), undefined);
  assert.equal(unifiedCgroupPath("0::/a/../../b\n"), undefined);
  assert.equal(unifiedCgroupPath("0::relative\n"), undefined);
});

/**
 * A warm-up over a fake /proc and cgroup tree. Writes are recorded; with hold, each finishes only
 * when released.
 */
function fake(files: Record<string, string>, { pid = 4242, hold = false } = {}) {
  const writes: Array<{ path: string; data: string }> = [];
  let release: () => void = () => undefined;
  const warmup = new CgroupAttachWarmup({
    pid,
    read: (path) => {
      const text = files[path];
      if (text === undefined) throw new Error(`ENOENT: ${path}`);
      return text;
    },
    write: (path, data) => {
      writes.push({ path, data });
      return hold ? new Promise<void>((r) => (release = r)) : Promise.resolve();
    },
  });
  return { warmup, writes, files, release: () => release() };
}

void test("kick writes 0 into the cgroup.procs that lists the shim, one write at a time", async () => {
  const f = fake(
    {
      "/proc/self/mountinfo": hybridMountinfo,
      "/proc/self/cgroup": "3:cpuset:/\n0::/berth\n",
      "/sys/fs/cgroup/unified/berth/cgroup.procs": "17\n4242\n",
    },
    { hold: true },
  );
  const first = f.warmup.kick();
  const second = f.warmup.kick();
  assert.deepEqual(f.writes, [{ path: "/sys/fs/cgroup/unified/berth/cgroup.procs", data: "0" }]);
  f.release();
  await Promise.all([first, second]);
  const third = f.warmup.kick();
  f.release();
  await third;
  assert.equal(f.writes.length, 2, "a new kick after the first finished writes again");
});

void test("a cgroup that does not list the shim is never written, and the warm-up turns off", async () => {
  const f = fake({
    "/proc/self/mountinfo": hybridMountinfo,
    "/proc/self/cgroup": "0::/elsewhere\n",
    "/sys/fs/cgroup/unified/elsewhere/cgroup.procs": "17\n42420\n",
  });
  await f.warmup.kick();
  assert.deepEqual(f.writes, []);
  f.files["/sys/fs/cgroup/unified/elsewhere/cgroup.procs"] = "4242\n";
  await f.warmup.kick();
  assert.deepEqual(f.writes, [], "off for good once the check failed");
});

void test("a shim moved by someone else is written where it now is", async () => {
  const f = fake({
    "/proc/self/mountinfo": hybridMountinfo,
    "/proc/self/cgroup": "0::/a\n",
    "/sys/fs/cgroup/unified/a/cgroup.procs": "4242\n",
    "/sys/fs/cgroup/unified/b/cgroup.procs": "4242\n",
  });
  await f.warmup.kick();
  f.files["/proc/self/cgroup"] = "0::/b\n";
  await f.warmup.kick();
  assert.deepEqual(
    f.writes.map((w) => w.path),
    ["/sys/fs/cgroup/unified/a/cgroup.procs", "/sys/fs/cgroup/unified/b/cgroup.procs"],
  );
});

void test("no cgroup v2 mount, or a failing write: nothing thrown, nothing written", async () => {
  const f = fake({
    "/proc/self/mountinfo": hybridMountinfo.split("\n")[1] ?? "",
    "/proc/self/cgroup": "0::/\n",
  });
  await f.warmup.kick();
  assert.deepEqual(f.writes, []);
  const failing = new CgroupAttachWarmup({
    pid: 1,
    read: (p) =>
      ({ "/proc/self/mountinfo": hybridMountinfo, "/proc/self/cgroup": "0::/\n" })[p] ??
      (p === "/sys/fs/cgroup/unified/cgroup.procs" ? "1\n" : ""),
    write: () => Promise.reject(new Error("EBUSY")),
  });
  await failing.kick();
});

void test("on this machine: the real write is made and leaves the process in its cgroup", async (t) => {
  const warmup = new CgroupAttachWarmup();
  const target = warmup.target();
  if (target === undefined) {
    t.skip("no cgroup v2 hierarchy mounted here");
    return;
  }
  const before = readFileSync("/proc/self/cgroup", "utf8");
  assert.ok(readFileSync(target, "utf8").split("\n").includes(String(process.pid)));
  let wrote = false;
  const real = new CgroupAttachWarmup({
    write: async (path, data) => {
      const { writeFile } = await import("node:fs/promises");
      await writeFile(path, data); // rejects if the kernel refuses it
      wrote = true;
    },
  });
  await real.kick();
  assert.ok(wrote, "the kernel took the write");
  assert.equal(readFileSync("/proc/self/cgroup", "utf8"), before);
});
