import { test } from "node:test";
import assert from "node:assert/strict";
import {
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  readFileSync,
  lstatSync,
  mkdirSync,
  closeSync,
  existsSync,
  statSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AT,
  O,
  S,
  close,
  fchownat,
  fgetxattr,
  flistxattr,
  fsetxattr,
  futimens,
  lgetxattrAt,
  linkat,
  lsetxattrAt,
  makedev,
  mkdirat,
  mknodat,
  openInRoot,
  openat,
  readlinkat,
  renameat,
  symlinkat,
  unlinkat,
  utimensat,
} from "./fs-at.js";
import { hasCode } from "./errno.js";

function withTree(fn: (dir: string, rootfd: number) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "berth-sys-"));
  const root = join(dir, "root");
  mkdirSync(root);
  const rootfd = openat(AT.FDCWD, root, O.PATH | O.DIRECTORY);
  try {
    fn(dir, rootfd);
  } finally {
    close(rootfd);
    rmSync(dir, { recursive: true, force: true });
  }
}

void test("openInRoot clamps absolute and .. symlinks to the root", () => {
  withTree((dir, rootfd) => {
    writeFileSync(join(dir, "outside"), "host");
    writeFileSync(join(dir, "root", "outside"), "inside");
    symlinkSync("/outside", join(dir, "root", "abs"));
    symlinkSync(join(dir, "outside"), join(dir, "root", "abs-long"));
    symlinkSync("../../outside", join(dir, "root", "rel"));
    for (const name of ["abs", "rel", "../outside", "/outside"]) {
      const fd = openInRoot(rootfd, name, O.RDONLY);
      try {
        assert.equal(readFileSync(fd, "utf8"), "inside", name);
      } finally {
        closeSync(fd);
      }
    }
    // An absolute link to <dir>/outside means <root>/<dir>/outside, which does not exist.
    assert.throws(
      () => openInRoot(rootfd, "abs-long", O.RDONLY),
      (e) => hasCode(e, "ENOENT"),
    );
  });
});

void test("openInRoot refuses /proc magic links", () => {
  withTree((dir, rootfd) => {
    symlinkSync("/proc/self/root", join(dir, "root", "magic"));
    assert.throws(
      () => openInRoot(rootfd, "magic/etc/passwd", O.RDONLY),
      (e) => hasCode(e, "ENOENT"),
    );
  });
});

void test("dirfd-relative creation, links, rename and unlink", () => {
  withTree((dir, rootfd) => {
    const dfd = openInRoot(rootfd, "", O.PATH | O.DIRECTORY);
    try {
      mkdirat(dfd, "d", 0o750);
      assert.equal(statSync(join(dir, "root", "d")).mode & 0o777, 0o750 & ~process.umask());
      symlinkat("../target", dfd, "ln");
      assert.equal(readlinkat(dfd, "ln"), "../target");
      writeFileSync(join(dir, "root", "f"), "x");
      linkat(dfd, "f", dfd, "hard");
      assert.equal(lstatSync(join(dir, "root", "hard")).nlink, 2);
      renameat(dfd, "hard", dfd, "hard2");
      unlinkat(dfd, "hard2");
      unlinkat(dfd, "d", AT.REMOVEDIR);
      assert.equal(existsSync(join(dir, "root", "d")), false);
      assert.throws(
        () => unlinkat(dfd, "missing"),
        (e) => hasCode(e, "ENOENT"),
      );
    } finally {
      close(dfd);
    }
  });
});

void test("mknodat makes overlay whiteouts (char 0:0) and fifos", () => {
  withTree((dir, rootfd) => {
    mknodat(rootfd, "wh", S.IFCHR | 0o000, makedev(0, 0));
    const st = lstatSync(join(dir, "root", "wh"));
    assert.ok(st.isCharacterDevice());
    assert.equal(st.rdev, 0);
    mknodat(rootfd, "fifo", S.IFIFO | 0o644);
    assert.ok(lstatSync(join(dir, "root", "fifo")).isFIFO());
    assert.equal(makedev(1, 3), 0x103n);
    assert.equal(makedev(259, 70000), BigInt(statRdev(259, 70000)));
  });
});

function statRdev(major: number, minor: number): number {
  // glibc's makedev for reference values.
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

void test("chown, times and xattrs without following symlinks", () => {
  withTree((dir, rootfd) => {
    writeFileSync(join(dir, "target"), "t");
    symlinkSync(join(dir, "target"), join(dir, "root", "sl"));
    fchownat(rootfd, "sl", 1000, 1001);
    assert.equal(lstatSync(join(dir, "root", "sl")).uid, 1000);
    assert.equal(statSync(join(dir, "target")).uid, 0, "the symlink's target is not chowned");
    utimensat(rootfd, "sl", { sec: 1, nsec: 0 }, { sec: 1700000000, nsec: 123456789 });
    const st = lstatSync(join(dir, "root", "sl"), { bigint: true });
    assert.equal(st.mtimeNs, 1700000000123456789n);
    assert.notEqual(statSync(join(dir, "target"), { bigint: true }).mtimeNs, 1700000000123456789n);

    mkdirSync(join(dir, "root", "opq"));
    const fd = openInRoot(rootfd, "opq", O.RDONLY | O.DIRECTORY);
    try {
      fsetxattr(fd, "trusted.overlay.opaque", Buffer.from("y"));
      assert.deepEqual(flistxattr(fd), ["trusted.overlay.opaque"]);
      assert.equal(fgetxattr(fd, "trusted.overlay.opaque").toString(), "y");
    } finally {
      closeSync(fd);
    }
    lsetxattrAt(rootfd, "sl", "trusted.berth", Buffer.from("v"));
    assert.equal(lgetxattrAt(rootfd, "sl", "trusted.berth").toString(), "v");
    assert.throws(
      () => lsetxattrAt(rootfd, "../x", "trusted.a", Buffer.from("")),
      (e) => hasCode(e, "EINVAL"),
    );
  });
});

void test("futimens and utimensat set both times to the nanosecond, over the whole 64-bit range", () => {
  withTree((dir, rootfd) => {
    const file = join(dir, "root", "f");
    writeFileSync(file, "x");
    const fd = openat(AT.FDCWD, file, O.WRONLY);
    try {
      const cases: Array<[number | bigint, number, number | bigint, number]> = [
        [0, 0, 1, 1],
        [1700000000, 123456789, 1700000001, 999999999],
        [2 ** 32 + 5, 7, 2 ** 33 - 1, 8], // seconds past 32 bits (the high word)
        [-1, 5, -1_000_000_000, 6], // before the epoch (two's complement; ext4 stores back to 1901)
        [9223372036n, 854775807, 123n, 0], // bigint seconds, as copyParentInfo passes them
      ];
      for (const [as, an, ms, mn] of cases) {
        futimens(fd, { sec: as, nsec: an }, { sec: ms, nsec: mn });
        const st = statSync(file, { bigint: true });
        assert.equal(st.atimeNs, BigInt(as) * 1_000_000_000n + BigInt(an), `atime ${as}.${an}`);
        assert.equal(st.mtimeNs, BigInt(ms) * 1_000_000_000n + BigInt(mn), `mtime ${ms}.${mn}`);
        utimensat(rootfd, "f", { sec: ms, nsec: mn }, { sec: as, nsec: an });
        const st2 = statSync(file, { bigint: true });
        assert.equal(st2.atimeNs, BigInt(ms) * 1_000_000_000n + BigInt(mn));
        assert.equal(st2.mtimeNs, BigInt(as) * 1_000_000_000n + BigInt(an));
      }
      assert.throws(
        () => futimens(fd, { sec: 2 ** 60, nsec: 0 }, { sec: 0, nsec: 0 }),
        (e) => hasCode(e, "EINVAL"),
      );
    } finally {
      close(fd);
    }
  });
});
