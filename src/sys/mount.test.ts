import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MS, mount, unmount, unmountOffThread } from "./mount.js";
import { hasCode } from "./errno.js";

void test("bind mount read-only, then unmount", () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-mount-"));
  try {
    mkdirSync(join(dir, "src"));
    mkdirSync(join(dir, "dst"));
    writeFileSync(join(dir, "src", "f"), "hello");
    mount(join(dir, "src"), join(dir, "dst"), null, MS.BIND | MS.REC, null);
    try {
      mount(null, join(dir, "dst"), null, MS.REMOUNT | MS.BIND | MS.RDONLY, null);
      assert.equal(readFileSync(join(dir, "dst", "f"), "utf8"), "hello");
      assert.throws(
        () => writeFileSync(join(dir, "dst", "g"), "x"),
        (e) => hasCode(e, "EROFS"),
      );
    } finally {
      unmount(join(dir, "dst"));
    }
    assert.deepEqual(readdirSync(join(dir, "dst")), []);
    assert.throws(
      () => unmount(join(dir, "dst")),
      (e) => hasCode(e, "EINVAL"),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test("overlay mount of two lower dirs, nearest first", () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-mount-"));
  try {
    for (const d of ["l1", "l2", "upper", "work", "merged"]) mkdirSync(join(dir, d));
    writeFileSync(join(dir, "l1", "f"), "near");
    writeFileSync(join(dir, "l2", "f"), "far");
    writeFileSync(join(dir, "l2", "g"), "only-far");
    const data = `lowerdir=${join(dir, "l1")}:${join(dir, "l2")},upperdir=${join(dir, "upper")},workdir=${join(dir, "work")}`;
    mount("overlay", join(dir, "merged"), "overlay", 0, data);
    try {
      assert.equal(readFileSync(join(dir, "merged", "f"), "utf8"), "near");
      assert.equal(readFileSync(join(dir, "merged", "g"), "utf8"), "only-far");
    } finally {
      unmount(join(dir, "merged"));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test("unmountOffThread: 0 for an unmount made on a worker thread, -1 when nothing is mounted there", async () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-mount-"));
  try {
    mkdirSync(join(dir, "src"));
    mkdirSync(join(dir, "dst"));
    writeFileSync(join(dir, "src", "f"), "hello");
    mount(join(dir, "src"), join(dir, "dst"), null, MS.BIND, null);
    assert.deepEqual(readdirSync(join(dir, "dst")), ["f"]);
    assert.equal(await unmountOffThread(join(dir, "dst")), 0);
    assert.deepEqual(readdirSync(join(dir, "dst")), []);
    assert.equal(await unmountOffThread(join(dir, "dst")), -1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
