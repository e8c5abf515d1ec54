// The behaviour every Snapshotter must show (the overlayfs and native backends, the namespaced
// metadata layer over them), derived from containerd's snapshots/testsuite: node:test cases
// registered by runSnapshotterConformance against a factory. Everything goes through the
// Snapshotter interface and real mounts of the mounts it returns; nothing here knows a backend.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  existsSync,
  lchownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { describe, it } from "node:test";
import { isCode, type ErrorCode } from "../../errdefs/errors.js";
import { hasCode } from "../../sys/errno.js";
import { AT, O, S, close, lgetxattrAt, lsetxattrAt, makedev, mknodat, openat } from "../../sys/fs-at.js";
import { MNT } from "../../sys/mount.js";
import type { Mount } from "../mount/mount-types.js";
import { mountAll, mountPointsUnder, unmountAll } from "../mount/mount.js";
import type { SnapshotInfo, Snapshotter } from "./snapshotter.js";

export type SnapshotterFactory = (
  root: string,
) => Promise<{ snapshotter: Snapshotter; cleanup?: () => Promise<void> }>;

export interface ConformanceOptions {
  /**
   * Active snapshots hold a full copy of their parent (native), so their usage counts the
   * parent's files too. Otherwise a child's usage must leave its parents out.
   */
  copiesParent?: boolean;
}

const MiB = 1 << 20;

/** The labels containerd's suite passes to every call. */
const gcRoot = () => ({ "containerd.io/gc.root": new Date().toISOString() });

async function rejectsWith(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isCode(err, code), `expected ${code}, got ${err instanceof Error ? err.stack : String(err)}`);
    return true;
  });
}

/** One test's world: a snapshotter on a fresh root, a scratch dir for mount points, cleanup. */
class Subject {
  snapshotter!: Snapshotter;
  readonly root: string;
  readonly work: string;
  #cleanups: (() => Promise<void>)[] = [];
  #seq = 0;

  constructor(
    readonly dir: string,
    private readonly make: SnapshotterFactory,
  ) {
    this.root = join(dir, "root");
    this.work = join(dir, "work");
    mkdirSync(this.root);
    mkdirSync(this.work);
  }

  async open(): Promise<Snapshotter> {
    const { snapshotter, cleanup } = await this.make(this.root);
    this.snapshotter = snapshotter;
    this.#cleanups.push(async () => {
      await snapshotter.close();
      await cleanup?.();
    });
    return snapshotter;
  }

  /** Closes the snapshotter and opens a new one on the same root, as a daemon restart does. */
  async reopen(): Promise<Snapshotter> {
    await this.snapshotter.close();
    return this.open();
  }

  /** Mounts mounts on a new directory of the scratch area. */
  mount(mounts: Mount[]): string {
    assert.ok(mounts.length >= 1, "expected mounts to have entries");
    const target = join(this.work, `m${++this.#seq}`);
    mkdirSync(target);
    mountAll(mounts, target);
    return target;
  }

  unmount(target: string): void {
    unmountAll(target);
  }

  async dispose(): Promise<void> {
    for (const p of mountPointsUnder(this.dir)) {
      try {
        unmountAll(p, MNT.DETACH);
      } catch {
        // Reported below by the leftover check.
      }
    }
    for (const c of this.#cleanups.reverse()) await c().catch(() => undefined);
    const left = mountPointsUnder(this.dir);
    // Never delete through a mount: leave the directory behind rather than the data.
    if (left.length === 0) rmSync(this.dir, { recursive: true, force: true });
    assert.deepEqual(left, [], "mounts left behind");
  }
}

/** A test body run against a fresh subject that is always cleaned up, mounts first. */
function withSubject(
  name: string,
  make: SnapshotterFactory,
  fn: (s: Subject, sn: Snapshotter) => Promise<void>,
) {
  return async () => {
    const s = new Subject(mkdtempSync(join(tmpdir(), `berth-snapshot-suite-${name}-`)), make);
    try {
      await fn(s, await s.open());
    } finally {
      await s.dispose();
    }
  };
}

/** A mounted tree as "path -> what": "dir", "file:<content>", "link:<target>", or the type. */
function tree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const rel = relative(root, p);
      const st = lstatSync(p);
      if (st.isDirectory()) {
        out[rel] = "dir";
        walk(p);
      } else if (st.isFile()) out[rel] = `file:${readFileSync(p, "utf8")}`;
      else if (st.isSymbolicLink()) out[rel] = `link:${readlinkSync(p)}`;
      else out[rel] = `mode:${(st.mode & S.IFMT).toString(8)}`;
    }
  };
  walk(root);
  return out;
}

/** Prepares key on parent, runs change in its mount, unmounts and commits it as name. */
async function layer(
  s: Subject,
  name: string,
  parent: string,
  change: (dir: string) => void,
  key = `${name}-active`,
): Promise<void> {
  const dir = s.mount(await s.snapshotter.prepare(key, parent, { labels: gcRoot() }));
  try {
    change(dir);
  } finally {
    s.unmount(dir);
  }
  await s.snapshotter.commit(name, key, { labels: gcRoot() });
}

/** containerd's baseTestSnapshots: c1 <- c2 <- a1, a2, v1 (on c2), v2 (on nothing). */
async function baseSnapshots(sn: Snapshotter): Promise<void> {
  const labels = gcRoot();
  await sn.prepare("c1-a", "", { labels });
  await sn.commit("c1", "c1-a", { labels });
  await sn.prepare("c2-a", "c1", { labels });
  await sn.commit("c2", "c2-a", { labels });
  await sn.prepare("a1", "c2", { labels });
  await sn.prepare("a2", "", { labels });
  await sn.view("v1", "c2", { labels });
  await sn.view("v2", "", { labels });
}

async function walkAll(sn: Snapshotter, filters?: string[]): Promise<SnapshotInfo[]> {
  const out: SnapshotInfo[] = [];
  await sn.walk((info) => {
    out.push(info);
  }, filters);
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

const names = (infos: SnapshotInfo[]) => infos.map((i) => i.name);

function assertReadOnly(dir: string): void {
  assert.throws(
    () => writeFileSync(join(dir, "testfile"), "testcontent"),
    (e) => hasCode(e, "EROFS"),
    `a write to ${dir} should fail with EROFS`,
  );
}

export function runSnapshotterConformance(
  name: string,
  make: SnapshotterFactory,
  options: ConformanceOptions = {},
): void {
  const t = (title: string, fn: (s: Subject, sn: Snapshotter) => Promise<void>) =>
    void it(title, withSubject(name, make, fn));

  void describe(`${name} snapshotter conformance`, () => {
    t("prepare, commit, child and view show the layers through real mounts", async (s, sn) => {
      const preparing = s.mount(await sn.prepare("preparing", "", { labels: gcRoot() }));
      writeFileSync(join(preparing, "foo"), "foo\n", { mode: 0o777 });
      mkdirSync(join(preparing, "a/b/c"), { recursive: true });
      s.unmount(preparing);
      await sn.commit("committed", "preparing", { labels: gcRoot() });

      const si = await sn.stat("committed");
      assert.equal(si.name, "committed");
      assert.equal(si.parent, "");
      assert.equal(si.kind, "committed");
      await rejectsWith(sn.stat("preparing"), "not-found");

      const next = s.mount(await sn.prepare("nextlayer", "committed", { labels: gcRoot() }));
      assert.deepEqual(tree(next), { a: "dir", "a/b": "dir", "a/b/c": "dir", foo: "file:foo\n" });
      writeFileSync(join(next, "bar"), "bar\n");
      writeFileSync(join(next, "foo"), "bar\n");
      rmSync(join(next, "a/b"), { recursive: true });
      const ni = await sn.stat("nextlayer");
      assert.equal(ni.parent, "committed");
      assert.equal(ni.kind, "active");
      s.unmount(next);
      await sn.commit("committed-next", "nextlayer", { labels: gcRoot() });

      const si2 = await sn.stat("committed-next");
      assert.equal(si2.parent, "committed");
      assert.equal(si2.kind, "committed");
      await rejectsWith(sn.stat("nextlayer"), "not-found");
      const walked = new Map((await walkAll(sn)).map((i) => [i.name, i]));
      assert.deepEqual(walked.get("committed"), si);
      assert.deepEqual(walked.get("committed-next"), si2);

      const view = s.mount(await sn.view("nextnextlayer", "committed-next", { labels: gcRoot() }));
      assert.deepEqual(tree(view), { a: "dir", bar: "file:bar\n", foo: "file:bar\n" });
      assertReadOnly(view);
      s.unmount(view);

      await sn.remove("nextnextlayer");
      await rejectsWith(sn.remove("committed"), "failed-precondition");
      await sn.remove("committed-next");
      await sn.remove("committed");
      assert.deepEqual(await walkAll(sn), []);
    });

    t("stat reports name, parent, kind and equal created/updated times of each kind", async (_s, sn) => {
      const t1 = Date.now();
      await baseSnapshots(sn);
      const t2 = Date.now();
      const want: [string, string, string][] = [
        ["c1", "committed", ""],
        ["c2", "committed", "c1"],
        ["a1", "active", "c2"],
        ["a2", "active", ""],
        ["v1", "view", "c2"],
        ["v2", "view", ""],
      ];
      for (const [key, kind, parent] of want) {
        const st = await sn.stat(key);
        assert.deepEqual([st.name, st.kind, st.parent], [key, kind, parent]);
        assert.ok(
          st.createdAt.getTime() >= t1 && st.createdAt.getTime() <= t2,
          `${key} created ${st.createdAt.toISOString()}`,
        );
        assert.equal(st.updatedAt.getTime(), st.createdAt.getTime());
        assert.ok(Object.hasOwn(st.labels, "containerd.io/gc.root"));
      }
      await rejectsWith(sn.stat("missing"), "not-found");
    });

    t("update replaces labels, copies field paths and refuses immutable fields", async (_s, sn) => {
      await baseSnapshots(sn);
      for (const key of ["c1", "c2", "a1", "a2", "v1", "v2"]) {
        const before = await sn.stat(key);
        const root = new Date().toISOString();
        let expected: Record<string, string> = {
          l1: "v1",
          l2: "v2",
          l3: "v3",
          "containerd.io/gc.root": root,
        };
        const u1 = Date.now();
        let st = await sn.update({ name: key, labels: expected });
        const u2 = Date.now();
        assert.equal(st.createdAt.getTime(), before.createdAt.getTime());
        assert.ok(st.updatedAt.getTime() >= u1 && st.updatedAt.getTime() <= u2);
        assert.deepEqual([st.name, st.kind, st.parent], [key, before.kind, before.parent]);
        assert.deepEqual(st.labels, expected);

        // labels.l1 copies the new value, labels.l2 (absent from the request) removes it, l4 is not asked for.
        expected = { l1: "updated", l3: "v3", "containerd.io/gc.root": root };
        st = await sn.update({ name: key, labels: { l1: "updated", l4: "v4" } }, ["labels.l1", "labels.l2"]);
        assert.deepEqual(st.labels, expected);

        expected = { l4: "v4", "containerd.io/gc.root": root };
        st = await sn.update({ name: key, labels: expected }, ["labels"]);
        assert.deepEqual(st.labels, expected);
        assert.deepEqual((await sn.stat(key)).labels, expected);

        await rejectsWith(sn.update({ name: key, labels: {} }, ["parent"]), "invalid-argument");
        assert.deepEqual((await sn.stat(key)).labels, expected);
      }
      await rejectsWith(sn.update({ name: "missing", labels: { a: "b" } }), "not-found");
    });

    t(
      "remove refuses parents with children, frees keys for reuse, and reports missing keys",
      async (s, sn) => {
        await sn.prepare("committed-a", "", { labels: gcRoot() });
        await sn.commit("committed-1", "committed-a", { labels: gcRoot() });
        await sn.prepare("reuse-1", "committed-1", { labels: gcRoot() });
        await rejectsWith(sn.remove("committed-1"), "failed-precondition");
        await sn.remove("reuse-1");
        await sn.view("reuse-1", "committed-1", { labels: gcRoot() });
        await sn.remove("reuse-1");
        await sn.prepare("reuse-1", "", { labels: gcRoot() });
        await sn.remove("committed-1");
        await sn.commit("committed-1", "reuse-1", { labels: gcRoot() });
        await rejectsWith(sn.remove("committed-a"), "not-found");
        await rejectsWith(sn.remove("reuse-1"), "not-found");

        // An intermediate layer goes only after its children, top down.
        await sn.prepare("inter-a", "committed-1");
        await sn.commit("inter", "inter-a");
        await sn.prepare("top", "inter");
        await rejectsWith(sn.remove("inter"), "failed-precondition");
        await rejectsWith(sn.remove("committed-1"), "failed-precondition");
        await sn.remove("top");
        await sn.remove("inter");
        await sn.remove("committed-1");
        assert.deepEqual(await walkAll(sn), []);

        // A removed snapshot's files never show up under the reused key.
        const a = s.mount(await sn.prepare("again", ""));
        writeFileSync(join(a, "old"), "old");
        s.unmount(a);
        await sn.remove("again");
        const b = s.mount(await sn.prepare("again", ""));
        assert.deepEqual(tree(b), {});
        s.unmount(b);
      },
    );

    t("walk filters by kind, name, parent and labels, and may stat inside", async (_s, sn) => {
      await baseSnapshots(sn);
      await sn.update({ name: "a2", labels: { team: "x", "a.b": "dotted" } });
      await sn.update({ name: "c2", labels: { team: "y" } });
      const all = await walkAll(sn);
      assert.deepEqual(names(all), ["a1", "a2", "c1", "c2", "v1", "v2"]);
      for (const info of all) assert.deepEqual(info, await sn.stat(info.name));
      await sn.walk(async (info) => {
        assert.deepEqual(await sn.stat(info.name), info);
      });

      assert.deepEqual(names(await walkAll(sn, ["kind==committed"])), ["c1", "c2"]);
      assert.deepEqual(names(await walkAll(sn, ["kind==view"])), ["v1", "v2"]);
      assert.deepEqual(names(await walkAll(sn, ["name==a1"])), ["a1"]);
      assert.deepEqual(names(await walkAll(sn, ["parent==c2"])), ["a1", "v1"]);
      assert.deepEqual(names(await walkAll(sn, ['labels."team"==x'])), ["a2"]);
      assert.deepEqual(names(await walkAll(sn, ['labels."a.b"==dotted'])), ["a2"]);
      assert.deepEqual(names(await walkAll(sn, ["labels.team"])), ["a2", "c2"]);
      assert.deepEqual(names(await walkAll(sn, ["kind==active,parent==c2"])), ["a1"]);
      assert.deepEqual(names(await walkAll(sn, ["name==a1", "name==v2"])), ["a1", "v2"]);
      assert.deepEqual(names(await walkAll(sn, ["name~=^c"])), ["c1", "c2"]);
      assert.deepEqual(names(await walkAll(sn, ["name==nothing"])), []);
      await rejectsWith(walkAll(sn, ["name=="]), "invalid-argument");
    });

    t("commit refuses missing keys, non-active snapshots and taken names", async (_s, sn) => {
      await baseSnapshots(sn);
      await rejectsWith(sn.commit("x", "missing"), "not-found");
      await rejectsWith(sn.commit("x", "v1"), "failed-precondition");
      await rejectsWith(sn.commit("x", "v2"), "failed-precondition");
      await rejectsWith(sn.commit("x", "c2"), "failed-precondition");
      await rejectsWith(sn.commit("c1", "a1"), "already-exists");
      await rejectsWith(sn.commit("a2", "a1"), "already-exists");
      await rejectsWith(sn.commit("a1", "a1"), "already-exists");
      // Nothing changed on the way.
      assert.equal((await sn.stat("a1")).kind, "active");
      assert.equal((await sn.stat("v1")).kind, "view");
      await rejectsWith(sn.stat("x"), "not-found");
      await sn.commit("c3", "a1", { labels: { fresh: "yes" } });
      const c3 = await sn.stat("c3");
      assert.deepEqual([c3.kind, c3.parent], ["committed", "c2"]);
      // The commit's labels replace the active snapshot's.
      assert.equal(c3.labels.fresh, "yes");
      assert.equal(Object.hasOwn(c3.labels, "containerd.io/gc.root"), false);
      await rejectsWith(sn.stat("a1"), "not-found");
    });

    t("prepare and view refuse duplicate keys and missing or uncommitted parents", async (_s, sn) => {
      await baseSnapshots(sn);
      const before = await walkAll(sn);
      await rejectsWith(sn.prepare("a1", ""), "already-exists");
      await rejectsWith(sn.prepare("a1", "c2"), "already-exists");
      await rejectsWith(sn.view("a1", "c2"), "already-exists");
      await rejectsWith(sn.prepare("v1", "c2"), "already-exists");
      await rejectsWith(sn.prepare("c1", ""), "already-exists");
      await rejectsWith(sn.prepare("new", "missing"), "not-found");
      await rejectsWith(sn.view("new", "missing"), "not-found");
      await rejectsWith(sn.prepare("new", "a1"), "invalid-argument");
      await rejectsWith(sn.prepare("new", "v1"), "invalid-argument");
      await rejectsWith(sn.view("new", "a2"), "invalid-argument");
      assert.deepEqual(await walkAll(sn), before);
      // Nothing was left half-made under the key.
      await sn.prepare("new", "c1");
      assert.equal((await sn.stat("new")).parent, "c1");
    });

    t("mounts returns the mounts of active and view snapshots only", async (_s, sn) => {
      const labels = gcRoot();
      const first = await sn.prepare("c1-a", "", { labels });
      assert.deepEqual(await sn.mounts("c1-a"), first);
      await sn.commit("c1", "c1-a");
      await sn.prepare("c2-a", "c1");
      await sn.commit("c2", "c2-a");
      for (const parent of ["", "c1", "c2"]) {
        const active = await sn.prepare(`a-${parent}`, parent);
        assert.deepEqual(await sn.mounts(`a-${parent}`), active);
        const view = await sn.view(`v-${parent}`, parent);
        assert.deepEqual(await sn.mounts(`v-${parent}`), view);
      }
      await rejectsWith(sn.mounts("c1"), "failed-precondition");
      await rejectsWith(sn.mounts("missing"), "not-found");
    });

    t("views are read-only mounts at every depth and can never be committed", async (s, sn) => {
      await layer(s, "l1", "", (d) => writeFileSync(join(d, "one"), "1"));
      await layer(s, "l2", "l1", (d) => writeFileSync(join(d, "two"), "2"));
      const cases: [string, Record<string, string>][] = [
        ["", {}],
        ["l1", { one: "file:1" }],
        ["l2", { one: "file:1", two: "file:2" }],
      ];
      for (const [parent, want] of cases) {
        const key = `view-${parent}`;
        const dir = s.mount(await sn.view(key, parent, { labels: gcRoot() }));
        assert.deepEqual(tree(dir), want);
        assertReadOnly(dir);
        s.unmount(dir);
        await rejectsWith(sn.commit(`committed-${key}`, key), "failed-precondition");
        await sn.remove(key);
      }
      // The layers under the views are untouched.
      const check = s.mount(await sn.prepare("check", "l2"));
      assert.deepEqual(tree(check), { one: "file:1", two: "file:2" });
      s.unmount(check);
    });

    t("usage counts a snapshot's own bytes, measured live while active and kept at commit", async (s, sn) => {
      const a = s.mount(await sn.prepare("a", ""));
      writeFileSync(join(a, "big"), randomBytes(MiB));
      s.unmount(a);
      const active = await sn.usage("a");
      assert.ok(active.size >= MiB, `active usage ${active.size} < 1 MiB`);
      assert.ok(active.size < 2 * MiB, `active usage ${active.size} >= 2 MiB`);
      assert.ok(active.inodes >= 1 && active.inodes <= 3, `active inodes ${active.inodes}`);
      await sn.commit("c", "a");
      assert.deepEqual(await sn.usage("c"), active);

      const child = s.mount(await sn.prepare("child", "c"));
      const empty = await sn.usage("child");
      writeFileSync(join(child, "small"), randomBytes(256 * 1024));
      s.unmount(child);
      const grown = await sn.usage("child");
      assert.ok(grown.size >= empty.size + 256 * 1024, `child usage ${grown.size} did not grow by 256 KiB`);
      assert.equal(grown.inodes, empty.inodes + 1);
      if (options.copiesParent) {
        assert.ok(empty.size >= MiB, "a full copy counts its parent's files");
      } else {
        assert.ok(empty.size < MiB / 4, `the parent's bytes leaked into the child: ${empty.size}`);
        assert.ok(grown.size < MiB, `the parent's bytes leaked into the child: ${grown.size}`);
      }
      await sn.view("v", "c");
      assert.deepEqual(await sn.usage("v"), { size: 0, inodes: 0 });
      await rejectsWith(sn.usage("missing"), "not-found");
    });

    t("a chain of 20 layers stacks nearest first", async (s, sn) => {
      let parent = "";
      for (let i = 0; i < 20; i++) {
        await layer(s, `layer-${i}`, parent, (d) => {
          writeFileSync(join(d, `file-${i}`), String(i));
          writeFileSync(join(d, "common"), String(i));
          if (i % 5 === 4) rmSync(join(d, `file-${i - 1}`));
        });
        parent = `layer-${i}`;
      }
      const want: Record<string, string> = { common: "file:19" };
      for (let i = 0; i < 20; i++) if (i % 5 !== 3) want[`file-${i}`] = `file:${i}`;
      const mounts = await sn.view("top-view", "layer-19");
      for (const m of mounts)
        if (m.type === "overlay") {
          const lower = m.options.find((o) => o.startsWith("lowerdir="));
          assert.equal(lower?.split(":").length, 20);
        }
      const view = s.mount(mounts);
      assert.deepEqual(tree(view), want);
      s.unmount(view);
      const top = s.mount(await sn.prepare("top", "layer-19"));
      assert.deepEqual(tree(top), want);
      writeFileSync(join(top, "common"), "top");
      s.unmount(top);
      const chain: string[] = [];
      for (let key = "top"; key !== ""; key = (await sn.stat(key)).parent) chain.push(key);
      assert.equal(chain.length, 21);
      await sn.remove("top");
      await sn.remove("top-view");
      for (let i = 19; i >= 0; i--) await sn.remove(`layer-${i}`);
      assert.deepEqual(await walkAll(sn), []);
    });

    t("layered changes: deletions, renames and directory removals stay visible above", async (s, sn) => {
      await layer(s, "l1", "", (d) => {
        writeFileSync(join(d, "foo"), "foo\n");
        writeFileSync(join(d, "foobar"), "foobar\n");
        mkdirSync(join(d, "dir1"), { mode: 0o700 });
        writeFileSync(join(d, "dir1/f1"), "Hello");
        mkdirSync(join(d, "dir2"), { mode: 0o700 });
        writeFileSync(join(d, "dir2/f2"), "...");
        mkdirSync(join(d, "lib/deep/er"), { recursive: true });
        writeFileSync(join(d, "lib/deep/er/x"), "x");
      });
      await layer(s, "l2", "l1", (d) => {
        rmSync(join(d, "foobar"));
        mkdirSync(join(d, "dir3"), { mode: 0o700 });
        writeFileSync(join(d, "dir3/f1"), "Hello");
        rmSync(join(d, "dir1"), { recursive: true });
        linkSync(join(d, "dir2/f2"), join(d, "dir3/f2"));
        rmSync(join(d, "dir2/f2"));
        renameSync(join(d, "foo"), join(d, "foo.moved"));
        rmSync(join(d, "lib/deep"), { recursive: true });
      });
      await layer(s, "l3", "l2", (d) => {
        // A directory removed below and made again is a new, empty directory.
        mkdirSync(join(d, "dir1"));
        writeFileSync(join(d, "foo.moved"), "foo again\n");
      });
      const view = s.mount(await sn.view("v", "l3"));
      assert.deepEqual(tree(view), {
        dir1: "dir",
        dir2: "dir",
        dir3: "dir",
        "dir3/f1": "file:Hello",
        "dir3/f2": "file:...",
        "foo.moved": "file:foo again\n",
        lib: "dir",
      });
      s.unmount(view);
      const l2 = s.mount(await sn.view("v2", "l2"));
      assert.equal(readFileSync(join(l2, "foo.moved"), "utf8"), "foo\n");
      assert.equal(existsSync(join(l2, "dir1")), false);
      s.unmount(l2);
    });

    t("permissions, owners, links, devices, xattrs and times survive across layers", async (s, sn) => {
      const mtime = new Date("2001-02-03T04:05:06Z");
      await layer(s, "base", "", (d) => {
        mkdirSync(join(d, "d"));
        chmodSync(join(d, "d"), 0o750);
        chownSync(join(d, "d"), 1000, 1000);
        writeFileSync(join(d, "d/f"), "data");
        chownSync(join(d, "d/f"), 1234, 5678);
        chmodSync(join(d, "d/f"), 0o640);
        writeFileSync(join(d, "suid"), "#!/bin/sh\n");
        chownSync(join(d, "suid"), 0, 0);
        chmodSync(join(d, "suid"), 0o4755);
        symlinkSync("d/f", join(d, "link"));
        lchownSync(join(d, "link"), 7, 8);
        linkSync(join(d, "d/f"), join(d, "hard"));
        const fd = openat(AT.FDCWD, d, O.PATH | O.DIRECTORY);
        try {
          mknodat(fd, "null", S.IFCHR | 0o666, makedev(1, 3));
          mknodat(fd, "fifo", S.IFIFO | 0o600);
          lsetxattrAt(fd, "hard", "user.berth", Buffer.from("xattr-value"));
        } finally {
          close(fd);
        }
        utimesSync(join(d, "d/f"), mtime, mtime);
        mkdirSync(join(d, "open"));
        chmodSync(join(d, "open"), 0o1777);
      });
      const check = (dir: string) => {
        const st = (p: string) => lstatSync(join(dir, p));
        assert.deepEqual([st("d").mode & 0o7777, st("d").uid, st("d").gid], [0o750, 1000, 1000]);
        assert.deepEqual([st("d/f").mode & 0o7777, st("d/f").uid, st("d/f").gid], [0o640, 1234, 5678]);
        assert.equal(st("d/f").mtime.getTime(), mtime.getTime());
        assert.equal(st("suid").mode & 0o7777, 0o4755);
        assert.ok(st("link").isSymbolicLink());
        assert.equal(readlinkSync(join(dir, "link")), "d/f");
        assert.deepEqual([st("link").uid, st("link").gid], [7, 8]);
        assert.equal(st("hard").ino, st("d/f").ino);
        assert.equal(st("hard").nlink, 2);
        assert.ok(st("null").isCharacterDevice());
        assert.equal(st("null").rdev, lstatSync("/dev/null").rdev);
        assert.ok(st("fifo").isFIFO());
        assert.equal(st("open").mode & 0o7777, 0o1777);
        const fd = openat(AT.FDCWD, dir, O.PATH | O.DIRECTORY);
        try {
          assert.equal(lgetxattrAt(fd, "hard", "user.berth").toString(), "xattr-value");
        } finally {
          close(fd);
        }
      };
      const child = s.mount(await sn.prepare("child", "base"));
      check(child);
      // Changing an owner and adding to a directory in the child keeps the directory's mode.
      chownSync(join(child, "d/f"), 42, 43);
      writeFileSync(join(child, "d/new"), "new");
      s.unmount(child);
      await sn.commit("child-c", "child");
      const grandchild = s.mount(await sn.view("grandchild", "child-c"));
      const st = (p: string) => lstatSync(join(grandchild, p));
      assert.deepEqual([st("d/f").uid, st("d/f").gid, st("d/f").mode & 0o7777], [42, 43, 0o640]);
      assert.deepEqual([st("d").mode & 0o7777, st("d").uid], [0o750, 1000]);
      assert.equal(readFileSync(join(grandchild, "d/new"), "utf8"), "new");
      assert.equal(st("suid").mode & 0o7777, 0o4755);
      s.unmount(grandchild);
    });

    t("close and reopen on the same root keeps every snapshot, label and file", async (s, sn) => {
      await layer(s, "c1", "", (d) => writeFileSync(join(d, "f1"), "one"));
      await layer(s, "c2", "c1", (d) => writeFileSync(join(d, "f2"), "two"));
      const a1Mounts = await sn.prepare("a1", "c2", { labels: { keep: "me" } });
      const a1 = s.mount(a1Mounts);
      writeFileSync(join(a1, "f3"), "three");
      s.unmount(a1);
      const v1Mounts = await sn.view("v1", "c2");
      await sn.update({ name: "c1", labels: { updated: "yes" } });
      const before = await walkAll(sn);
      const usage = await sn.usage("c2");

      const again = await s.reopen();
      assert.deepEqual(await walkAll(again), before);
      for (const info of before) assert.deepEqual(await again.stat(info.name), info);
      assert.deepEqual(await again.mounts("a1"), a1Mounts);
      assert.deepEqual(await again.mounts("v1"), v1Mounts);
      assert.deepEqual(await again.usage("c2"), usage);
      const a1Again = s.mount(await again.mounts("a1"));
      assert.deepEqual(tree(a1Again), { f1: "file:one", f2: "file:two", f3: "file:three" });
      s.unmount(a1Again);
      // New snapshots after the restart get fresh, empty storage and the chain still works.
      const fresh = s.mount(await again.prepare("fresh", ""));
      assert.deepEqual(tree(fresh), {});
      s.unmount(fresh);
      await again.commit("c3", "a1");
      assert.equal((await again.stat("c3")).parent, "c2");
      await rejectsWith(again.remove("c2"), "failed-precondition");
    });

    t("close twice is fine", async (_s, sn) => {
      await sn.prepare("p", "");
      await sn.commit("c", "p");
      await sn.remove("c");
      await sn.close();
      await sn.close();
    });

    t("concurrent prepares of distinct keys all succeed; of one key, exactly one", async (s, sn) => {
      await layer(s, "base", "", (d) => writeFileSync(join(d, "base"), "base"));
      const keys = Array.from({ length: 16 }, (_, i) => `k${i}`);
      const all = await Promise.all(
        keys.map((k, i) => (i % 4 === 3 ? sn.view(k, "base") : sn.prepare(k, i % 2 === 0 ? "base" : ""))),
      );
      const activeMounts = all.filter((_, i) => i % 4 !== 3).map((m) => JSON.stringify(m));
      assert.equal(new Set(activeMounts).size, activeMounts.length, "two active snapshots share a mount");
      assert.deepEqual(names(await walkAll(sn, ["kind!=committed"])).sort(), [...keys].sort());
      const actives = keys.filter((_, i) => i % 4 !== 3);
      for (const k of actives) {
        const dir = s.mount(await sn.mounts(k));
        writeFileSync(join(dir, "own"), k);
        s.unmount(dir);
      }
      await Promise.all(actives.map((k) => sn.commit(`${k}-c`, k)));
      for (const [i, k] of keys.entries()) {
        if (i % 4 === 3) continue;
        const st = await sn.stat(`${k}-c`);
        assert.deepEqual([st.kind, st.parent], ["committed", i % 2 === 0 ? "base" : ""]);
        const dir = s.mount(await sn.view(`${k}-v`, `${k}-c`));
        assert.equal(readFileSync(join(dir, "own"), "utf8"), k);
        assert.equal(existsSync(join(dir, "base")), i % 2 === 0);
        s.unmount(dir);
      }

      const results = await Promise.allSettled(Array.from({ length: 6 }, () => sn.prepare("same", "base")));
      assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
      for (const r of results)
        if (r.status === "rejected") assert.ok(isCode(r.reason, "already-exists"), String(r.reason));
    });
  });
}
