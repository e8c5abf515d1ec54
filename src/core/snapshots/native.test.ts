import { test } from "node:test";
import assert from "node:assert/strict";
import {
  chmodSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isCode, type ErrorCode } from "../../errdefs/errors.js";
import { AT, O, S, close, lgetxattrAt, lsetxattrAt, mknodat, openat, utimensat } from "../../sys/fs-at.js";
import { MNT } from "../../sys/mount.js";
import { mountPointsUnder, unmountAll } from "../mount/mount.js";
import { createNativeSnapshotter } from "./native.js";
import { runSnapshotterConformance } from "./snapshotter-conformance.js";
import type { Snapshotter } from "./snapshotter.js";

runSnapshotterConformance(
  "native",
  async (root) => ({ snapshotter: await createNativeSnapshotter({ root }) }),
  {
    copiesParent: true,
  },
);

async function withRoot(fn: (root: string, sn: Snapshotter) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "berth-native-test-"));
  const root = join(dir, "root");
  const sn = await createNativeSnapshotter({ root });
  try {
    await fn(root, sn);
  } finally {
    for (const p of mountPointsUnder(dir)) unmountAll(p, MNT.DETACH);
    await sn.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function rejectsWith(p: Promise<unknown>, code: ErrorCode, message: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isCode(err, code), `expected ${code}, got ${String(err)}`);
    assert.equal((err as Error).message, message);
    return true;
  });
}

void test("mounts are binds of the snapshot's own copy, or of the parent for a view", async () => {
  await withRoot(async (root, sn) => {
    const dir = (id: number) => join(root, "snapshots", String(id));
    assert.deepEqual(await sn.prepare("a", ""), [{ type: "bind", source: dir(1), options: ["rbind", "rw"] }]);
    assert.deepEqual(await sn.view("v0", ""), [{ type: "bind", source: dir(2), options: ["rbind", "ro"] }]);
    await sn.commit("c", "a");
    assert.deepEqual(await sn.prepare("b", "c"), [
      { type: "bind", source: dir(3), options: ["rbind", "rw"] },
    ]);
    // A view of a parent makes no copy: it has no directory of its own.
    assert.deepEqual(await sn.view("v1", "c"), [{ type: "bind", source: dir(1), options: ["rbind", "ro"] }]);
    assert.deepEqual(readdirSync(join(root, "snapshots")).sort(), ["1", "2", "3"]);
    await sn.remove("v1");
    assert.deepEqual(readdirSync(join(root, "snapshots")).sort(), ["1", "2", "3"]);
    assert.equal(statSync(dir(2)).mode & 0o7777, 0o755);
  });
});

void test("a copy keeps hard links, xattrs, special files and nanosecond times", async () => {
  await withRoot(async (root, sn) => {
    await sn.prepare("a", "");
    const src = join(root, "snapshots", "1");
    mkdirSync(join(src, "x/y"), { recursive: true });
    writeFileSync(join(src, "x/f"), "linked");
    linkSync(join(src, "x/f"), join(src, "x/y/g"));
    linkSync(join(src, "x/f"), join(src, "h"));
    symlinkSync("/etc/passwd", join(src, "abs"));
    chmodSync(join(src, "x"), 0o700);
    const times = {
      atime: { sec: 1000000000, nsec: 123456789 },
      mtime: { sec: 1100000000, nsec: 987654321 },
    };
    const fd = openat(AT.FDCWD, src, O.PATH | O.DIRECTORY);
    try {
      mknodat(fd, "sock", S.IFSOCK | 0o755);
      lsetxattrAt(fd, "h", "user.one", Buffer.from("1"));
      lsetxattrAt(fd, "h", "trusted.two", Buffer.from("2"));
      utimensat(fd, "abs", times.atime, times.mtime);
      utimensat(fd, "h", times.atime, times.mtime);
    } finally {
      close(fd);
    }
    // Directory times last, as the copy must leave them after filling the directory.
    utimensat(AT.FDCWD, join(src, "x"), times.atime, times.mtime);
    await sn.commit("c", "a");
    await sn.prepare("b", "c");
    const dst = join(root, "snapshots", "2");
    const st = (p: string) => lstatSync(join(dst, p), { bigint: true });
    assert.equal(st("h").ino, st("x/f").ino);
    assert.equal(st("h").ino, st("x/y/g").ino);
    assert.equal(st("h").nlink, 3n);
    assert.notEqual(st("h").ino, lstatSync(join(src, "h"), { bigint: true }).ino);
    assert.ok(st("sock").isSocket());
    assert.equal(st("x").mode & 0o7777n, 0o700n);
    for (const p of ["abs", "h", "x"]) assert.equal(st(p).mtimeNs, 1100000000987654321n, p);
    assert.equal(st("h").atimeNs, 1000000000123456789n);
    const dfd = openat(AT.FDCWD, dst, O.PATH | O.DIRECTORY);
    try {
      assert.equal(lgetxattrAt(dfd, "h", "user.one").toString(), "1");
      assert.equal(lgetxattrAt(dfd, "h", "trusted.two").toString(), "2");
    } finally {
      close(dfd);
    }
    // Hard links are one inode in the usage, as in containerd's DiskUsage.
    const usage = await sn.usage("b");
    assert.equal(usage.inodes, 6); // root, x, x/y, abs, sock and one for x/f = x/y/g = h
  });
});

void test("errors carry containerd's kinds and texts", async () => {
  await withRoot(async (_root, sn) => {
    await sn.prepare("a", "");
    await sn.view("v", "");
    await sn.prepare("p", "");
    await sn.commit("c", "p");
    await rejectsWith(sn.stat("x"), "not-found", "snapshot does not exist: not found");
    await rejectsWith(
      sn.prepare("a", ""),
      "already-exists",
      "failed to create snapshot: snapshot a: already exists",
    );
    await rejectsWith(
      sn.prepare("n", "x"),
      "not-found",
      'failed to create snapshot: missing parent "x" bucket: not found',
    );
    await rejectsWith(
      sn.prepare("n", "v"),
      "invalid-argument",
      'failed to create snapshot: parent "v" is not committed snapshot: invalid argument',
    );
    await rejectsWith(
      sn.mounts("x"),
      "not-found",
      "failed to get snapshot mount: snapshot does not exist: not found",
    );
    await rejectsWith(
      sn.mounts("c"),
      "failed-precondition",
      "failed to get snapshot mount: requested snapshot c not active or view: failed precondition",
    );
    await rejectsWith(
      sn.commit("c", "a"),
      "already-exists",
      "failed to commit snapshot: committed snapshot c: already exists",
    );
    await rejectsWith(
      sn.commit("n", "v"),
      "failed-precondition",
      'failed to commit snapshot: snapshot "v" is not active: failed precondition',
    );
    await sn.prepare("child", "c");
    await rejectsWith(
      sn.remove("c"),
      "failed-precondition",
      "failed to remove: cannot remove snapshot with child: failed precondition",
    );
    await rejectsWith(sn.remove("x"), "not-found", "failed to remove: snapshot x: not found");
  });
});

void test("cleanup sweeps temp and removal leftovers", async () => {
  await withRoot(async (root, sn) => {
    await sn.prepare("a", "");
    const snapshots = join(root, "snapshots");
    for (const d of ["new-abcdef", "rm-7", "12"]) mkdirSync(join(snapshots, d));
    await sn.cleanup?.();
    assert.deepEqual(readdirSync(snapshots), ["1"]);
  });
});
