import { test } from "node:test";
import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MNT, MS } from "../../sys/mount.js";
import { hasCode } from "../../sys/errno.js";
import {
  compactLowerdirs,
  mountAll,
  mountPointsUnder,
  parseMountOptions,
  unmountAll,
  unmountAllOffThread,
  withTempMount,
} from "./mount.js";

/** A scratch dir; whatever the test leaves mounted under it is detached before it is deleted. */
async function withScratch(fn: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "berth-mount-test-"));
  try {
    await fn(dir);
  } finally {
    for (const p of mountPointsUnder(dir)) unmountAll(p, MNT.DETACH);
    assert.deepEqual(mountPointsUnder(dir), []);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The mountinfo line of mount point p (fields: options at index 5, optional fields after). */
function mountinfo(p: string): string[] {
  const line = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((l) => l.split(" ")[4] === p)
    .at(-1);
  assert.ok(line !== undefined, `${p} is not mounted`);
  return line.split(" ");
}

void test("options become flags and data the way containerd parses them", () => {
  assert.deepEqual(parseMountOptions(["rw", "rbind"]), { flags: MS.BIND | MS.REC, data: "" });
  assert.deepEqual(parseMountOptions(["ro", "rbind"]), { flags: MS.BIND | MS.REC | MS.RDONLY, data: "" });
  assert.deepEqual(parseMountOptions(["ro", "rw"]), { flags: 0, data: "" });
  assert.deepEqual(parseMountOptions(["nosuid", "nodev", "noexec", "remount", "defaults"]), {
    flags: MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.REMOUNT,
    data: "",
  });
  assert.deepEqual(parseMountOptions(["rprivate", "bind"]), {
    flags: MS.PRIVATE | MS.REC | MS.BIND,
    data: "",
  });
  assert.deepEqual(parseMountOptions(["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/a:/b"]), {
    flags: 0,
    data: "index=off,workdir=/w,upperdir=/u,lowerdir=/a:/b",
  });
  assert.deepEqual(parseMountOptions(["size=64k", "mode=755", "nosuid"]), {
    flags: MS.NOSUID,
    data: "size=64k,mode=755",
  });
});

void test("long overlay lowerdir lists are made relative to their common directory", () => {
  const dirs = ["/var/lib/x/snapshots/12/fs", "/var/lib/x/snapshots/3/fs", "/var/lib/x/snapshots/1/fs"];
  assert.deepEqual(compactLowerdirs(["index=off", `lowerdir=${dirs.join(":")}`, "upperdir=/u"]), {
    dir: "/var/lib/x/snapshots",
    options: ["index=off", "upperdir=/u", "lowerdir=12/fs:3/fs:1/fs"],
  });
  assert.equal(compactLowerdirs(["lowerdir=/a/fs"]).dir, "");
  assert.equal(compactLowerdirs(["lowerdir=/a:/b"]).dir, "");
});

void test("a bind mount shows the source, and unmountAll takes it away", async () => {
  await withScratch((dir) => {
    mkdirSync(join(dir, "src"));
    mkdirSync(join(dir, "dst"));
    writeFileSync(join(dir, "src", "f"), "hello");
    mountAll([{ type: "bind", source: join(dir, "src"), options: ["rw", "rbind"] }], join(dir, "dst"));
    assert.equal(readFileSync(join(dir, "dst", "f"), "utf8"), "hello");
    writeFileSync(join(dir, "dst", "g"), "through");
    assert.equal(readFileSync(join(dir, "src", "g"), "utf8"), "through");
    unmountAll(join(dir, "dst"));
    assert.deepEqual(readdirSync(join(dir, "dst")), []);
    unmountAll(join(dir, "dst")); // nothing mounted: EINVAL ends it quietly
    unmountAll(join(dir, "missing"));
    unmountAll("");
  });
});

void test("a read-only bind is really read-only (the second, remount call)", async () => {
  await withScratch((dir) => {
    mkdirSync(join(dir, "src"));
    mkdirSync(join(dir, "dst"));
    writeFileSync(join(dir, "src", "f"), "hello");
    mountAll([{ type: "bind", source: join(dir, "src"), options: ["ro", "rbind"] }], join(dir, "dst"));
    assert.equal(readFileSync(join(dir, "dst", "f"), "utf8"), "hello");
    assert.throws(
      () => writeFileSync(join(dir, "dst", "g"), "x"),
      (e) => hasCode(e, "EROFS"),
    );
    assert.match(mountinfo(join(dir, "dst"))[5] as string, /^ro\b/);
    // The source stays writable.
    writeFileSync(join(dir, "src", "g"), "x");
  });
});

void test("propagation options are applied after the mount", async () => {
  await withScratch((dir) => {
    mkdirSync(join(dir, "src"));
    mkdirSync(join(dir, "dst"));
    mountAll([{ type: "bind", source: join(dir, "src"), options: ["rbind", "rprivate"] }], join(dir, "dst"));
    // A private mount has no "shared:N" / "master:N" optional fields.
    const fields = mountinfo(join(dir, "dst"));
    const optional = fields.slice(6, fields.indexOf("-"));
    assert.deepEqual(
      optional.filter((f) => f.startsWith("shared:") || f.startsWith("master:")),
      [],
    );
  });
});

void test("stacked mounts on one target are all undone by unmountAll", async () => {
  await withScratch((dir) => {
    for (const d of ["a", "b", "dst"]) mkdirSync(join(dir, d));
    writeFileSync(join(dir, "a", "f"), "a");
    writeFileSync(join(dir, "b", "f"), "b");
    mountAll(
      [
        { type: "bind", source: join(dir, "a"), options: ["rbind"] },
        { type: "bind", source: join(dir, "b"), options: ["rbind"] },
      ],
      join(dir, "dst"),
    );
    assert.equal(readFileSync(join(dir, "dst", "f"), "utf8"), "b");
    unmountAll(join(dir, "dst"));
    assert.deepEqual(mountPointsUnder(join(dir, "dst")), []);
  });
});

void test("overlay with two lower dirs: nearest first, writes go up", async () => {
  await withScratch((dir) => {
    for (const d of ["l1", "l2", "upper", "work", "merged"]) mkdirSync(join(dir, d));
    writeFileSync(join(dir, "l1", "f"), "near");
    writeFileSync(join(dir, "l2", "f"), "far");
    writeFileSync(join(dir, "l2", "g"), "only-far");
    mountAll(
      [
        {
          type: "overlay",
          source: "overlay",
          options: [
            `workdir=${join(dir, "work")}`,
            `upperdir=${join(dir, "upper")}`,
            `lowerdir=${join(dir, "l1")}:${join(dir, "l2")}`,
          ],
        },
      ],
      join(dir, "merged"),
    );
    assert.equal(readFileSync(join(dir, "merged", "f"), "utf8"), "near");
    assert.equal(readFileSync(join(dir, "merged", "g"), "utf8"), "only-far");
    writeFileSync(join(dir, "merged", "h"), "new");
    assert.equal(readFileSync(join(dir, "upper", "h"), "utf8"), "new");
    assert.equal(existsSync(join(dir, "l1", "h")), false);
    unmountAll(join(dir, "merged"));
  });
});

void test("an overlay whose options exceed a page still mounts (lowerdir compaction)", async () => {
  await withScratch((dir) => {
    const base = join(dir, "a-rather-long-directory-name-to-fill-the-page", "snapshots");
    const lowers: string[] = [];
    for (let i = 0; i < 120; i++) {
      const d = join(base, String(i), "fs");
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, `f${i}`), String(i));
      writeFileSync(join(d, "top"), String(i));
      lowers.push(d);
    }
    const options = [`lowerdir=${lowers.reverse().join(":")}`];
    assert.ok(options[0]!.length > 4096);
    mkdirSync(join(dir, "merged"));
    mountAll([{ type: "overlay", source: "overlay", options }], join(dir, "merged"));
    assert.equal(readFileSync(join(dir, "merged", "top"), "utf8"), "119");
    assert.equal(readFileSync(join(dir, "merged", "f0"), "utf8"), "0");
    assert.equal(readdirSync(join(dir, "merged")).length, 121);
    unmountAll(join(dir, "merged"));
  });
});

void test("a mount's target subdirectory is resolved inside the root, read-only binds too", async () => {
  await withScratch((dir) => {
    for (const d of ["src", "root/sub", "root/outside", "outside"])
      mkdirSync(join(dir, d), { recursive: true });
    writeFileSync(join(dir, "src", "f"), "x");
    // An absolute symlink inside the root must land on root/outside, not on the host's dir/outside.
    symlinkSync(join(dir, "outside").replace(dir, ""), join(dir, "root", "escape"));
    mountAll(
      [
        { type: "bind", source: join(dir, "src"), target: "/sub", options: ["ro", "rbind"] },
        { type: "bind", source: join(dir, "src"), target: "escape", options: ["rbind"] },
      ],
      join(dir, "root"),
    );
    assert.equal(readFileSync(join(dir, "root", "sub", "f"), "utf8"), "x");
    assert.throws(
      () => writeFileSync(join(dir, "root", "sub", "g"), "y"),
      (e) => hasCode(e, "EROFS"),
    );
    assert.equal(readFileSync(join(dir, "root", "outside", "f"), "utf8"), "x");
    assert.deepEqual(readdirSync(join(dir, "outside")), []);
    unmountAll(join(dir, "root", "sub"));
    unmountAll(join(dir, "root", "outside"));
  });
});

void test("when a later mount fails, the earlier ones are undone", async () => {
  await withScratch((dir) => {
    mkdirSync(join(dir, "src"));
    mkdirSync(join(dir, "dst"));
    assert.throws(() =>
      mountAll(
        [
          { type: "bind", source: join(dir, "src"), options: ["rbind"] },
          { type: "bind", source: join(dir, "missing"), options: ["rbind"] },
        ],
        join(dir, "dst"),
      ),
    );
    assert.deepEqual(mountPointsUnder(join(dir, "dst")), []);
  });
});

void test("withTempMount unmounts and removes its directory, also when fn throws", async () => {
  await withScratch(async (dir) => {
    mkdirSync(join(dir, "src"));
    writeFileSync(join(dir, "src", "f"), "x");
    const tmp = join(dir, "tmp");
    mkdirSync(tmp);
    const bind = [{ type: "bind", source: join(dir, "src"), options: ["ro", "rbind"] }];
    const seen = await withTempMount(bind, tmp, async (root) => {
      assert.deepEqual(mountPointsUnder(tmp), [root]);
      return readFileSync(join(root, "f"), "utf8");
    });
    assert.equal(seen, "x");
    assert.deepEqual(readdirSync(tmp), []);
    await assert.rejects(
      withTempMount(bind, tmp, async () => {
        throw new Error("boom");
      }),
      /boom/,
    );
    assert.deepEqual(readdirSync(tmp), []);
    assert.deepEqual(mountPointsUnder(tmp), []);
    await assert.rejects(
      withTempMount([{ type: "bind", source: join(dir, "missing"), options: ["rbind"] }], tmp, async () => 1),
      /failed to mount/,
    );
    assert.deepEqual(readdirSync(tmp), []);
  });
});

void test("unmountAllOffThread takes a stack of mounts away, and is quiet when nothing is mounted", async () => {
  await withScratch(async (dir) => {
    for (const d of ["a", "b", "dst"]) mkdirSync(join(dir, d));
    writeFileSync(join(dir, "a", "f"), "a");
    writeFileSync(join(dir, "b", "f"), "b");
    mountAll([{ type: "bind", source: join(dir, "a"), options: ["rbind"] }], join(dir, "dst"));
    mountAll([{ type: "bind", source: join(dir, "b"), options: ["rbind"] }], join(dir, "dst"));
    assert.equal(readFileSync(join(dir, "dst", "f"), "utf8"), "b");
    await unmountAllOffThread(join(dir, "dst"));
    assert.deepEqual(readdirSync(join(dir, "dst")), []);
    assert.deepEqual(mountPointsUnder(dir), []);
    await unmountAllOffThread(join(dir, "dst"));
    await unmountAllOffThread(join(dir, "missing"));
  });
});

void test("unmountAllOffThread reports a busy mount (EBUSY) and leaves it for a later unmountAll", async () => {
  await withScratch(async (dir) => {
    mkdirSync(join(dir, "src"));
    mkdirSync(join(dir, "dst"));
    mountAll([{ type: "bind", source: join(dir, "src"), options: ["rbind"] }], join(dir, "dst"));
    // A mount below it makes it busy.
    mkdirSync(join(dir, "src", "sub"));
    mkdirSync(join(dir, "inner"));
    mountAll([{ type: "bind", source: join(dir, "inner"), options: ["rbind"] }], join(dir, "dst", "sub"));
    await assert.rejects(unmountAllOffThread(join(dir, "dst")), (e) => hasCode(e, "EBUSY"));
    assert.ok(mountPointsUnder(dir).includes(join(dir, "dst")), "still mounted");
    unmountAll(join(dir, "dst", "sub"));
    await unmountAllOffThread(join(dir, "dst"));
    assert.deepEqual(mountPointsUnder(dir), []);
  });
});
