// Stock ctr `containers` commands against berthd and a private containerd 1.6: create --rootfs,
// ls and filters, info (and --spec), label, rm, and the error texts must match; the spec Any
// must come back byte for byte.
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Containers } from "../../src/client/index.js";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { startContainerd, type ContainerdHandle } from "../harness/containerd.js";
import { normalizeCtrOutput } from "../harness/normalize.js";
import { makeTempDir, removeTempDir } from "../harness/temp-dir.js";
import { sideBySide } from "./side-by-side.js";

void describe("ctr containers: berthd vs containerd", { timeout: 120_000 }, () => {
  let berthd: BerthdHandle;
  let containerd: ContainerdHandle;
  let work: string;
  let rootfs: string;
  let nsCounter = 0;
  const newNamespace = (): string => `ctrs-${++nsCounter}`;

  const { both, same, api } = sideBySide(() => ({ berthd, containerd }));

  /** `containers create --rootfs` on both; ctr needs no image or snapshot then. */
  async function createBoth(namespace: string, id: string, flags: string[] = [], cmd: string[] = []) {
    const r = await same(["containers", "create", ...flags, "--rootfs", rootfs, id, ...cmd], namespace);
    assert.equal(r.code, 0, r.stderr);
  }

  void before(async () => {
    work = await makeTempDir("compat-containers");
    rootfs = join(work, "rootfs");
    await mkdir(rootfs);
    // One after the other, so that after() can stop whichever started if the other fails.
    berthd = await startBerthd();
    containerd = await startContainerd();
  });

  void after(async () => {
    await Promise.all([berthd?.stop(), containerd?.stop()]);
    await removeTempDir(work);
  });

  void test("create --rootfs, then ls and ls -q", async () => {
    const ns = newNamespace();
    const created = await same(["containers", "create", "--rootfs", rootfs, "c1", "/bin/sh"], ns);
    assert.equal(created.code, 0);
    assert.equal(created.stdout + created.stderr, "");
    await createBoth(ns, "c2");
    const ls = await same(["containers", "ls"], ns);
    assert.equal(
      normalizeCtrOutput(ls.stdout),
      "CONTAINER IMAGE RUNTIME\nc1 - io.containerd.runc.v2\nc2 - io.containerd.runc.v2\n",
    );
    const q = await same(["containers", "ls", "-q"], ns);
    assert.equal(q.stdout, "c1\nc2\n");
  });

  void test("info and info --spec print the same record and spec", async () => {
    const ns = newNamespace();
    await createBoth(
      ns,
      "c1",
      ["--label", "a=b", "--env", "FOO=bar", "--cwd", "/tmp", "--annotation", "x.y/z=1", "--tty"],
      ["/bin/echo", "hi"],
    );
    const info = await same(["containers", "info", "c1"], ns);
    const record = JSON.parse(info.stdout) as {
      ID: string;
      Labels: Record<string, string>;
      Runtime: { Name: string };
      Spec: {
        process: { args: string[]; env: string[]; cwd: string; terminal: boolean };
        root: { path: string };
      };
    };
    assert.equal(record.ID, "c1");
    assert.deepEqual(record.Labels, { a: "b" });
    assert.equal(record.Runtime.Name, "io.containerd.runc.v2");
    assert.deepEqual(record.Spec.process.args, ["/bin/echo", "hi"]);
    assert.ok(record.Spec.process.env.includes("FOO=bar"));
    assert.equal(record.Spec.process.cwd, "/tmp");
    assert.equal(record.Spec.process.terminal, true);
    assert.equal(record.Spec.root.path, rootfs);

    // The spec alone: no timestamps in it, so the raw bytes must match.
    const { berthd: b, containerd: c } = await both(["containers", "info", "--spec", "c1"], ns);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(b.stdout, c.stdout);
    assert.deepEqual(JSON.parse(b.stdout), record.Spec);
  });

  void test("the spec Any is stored byte for byte", async () => {
    const ns = newNamespace();
    await createBoth(ns, "c1", ["--env", "A=1"], ["/bin/true"]);
    const { berthd: b, containerd: c } = await api(ns, (client) =>
      client.service(Containers).get({ id: "c1" }),
    );
    assert.equal(b.container?.spec?.typeUrl, "types.containerd.io/opencontainers/runtime-spec/1/Spec");
    assert.equal(b.container?.spec?.typeUrl, c.container?.spec?.typeUrl);
    assert.equal(
      Buffer.from(b.container?.spec?.value ?? []).toString(),
      Buffer.from(c.container?.spec?.value ?? []).toString(),
    );
    assert.equal(b.container?.runtime?.options?.typeUrl, c.container?.runtime?.options?.typeUrl);
    assert.deepEqual(b.container?.runtime?.options?.value, c.container?.runtime?.options?.value);
  });

  void test("info of a missing container", async () => {
    const ns = newNamespace();
    const r = await same(["containers", "info", "nothing"], ns);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `ctr: container "nothing" in namespace "${ns}": not found\n`);
  });

  void test("ls filters", async () => {
    const ns = newNamespace();
    await createBoth(ns, "web-1", ["--label", "app=web", "--label", "tier=front"]);
    await createBoth(ns, "web-2", ["--label", "app=web"]);
    await createBoth(ns, "db-1", ["--label", "app=db", "--runtime", "io.containerd.runc.v1"]);

    const cases: [string[], string][] = [
      [["id==web-1"], "web-1\n"],
      [["id~=^web-"], "web-1\nweb-2\n"],
      [["labels.app==web"], "web-1\nweb-2\n"],
      [["labels.tier"], "web-1\n"],
      [["labels.app!=web"], "db-1\n"],
      [["labels.app==web,labels.tier==front"], "web-1\n"],
      [["labels.tier==front", "id==db-1"], "db-1\nweb-1\n"],
      [["runtime.name==io.containerd.runc.v1"], "db-1\n"],
      [["image==nothing"], ""],
    ];
    for (const [filters, expected] of cases) {
      const r = await same(["containers", "ls", "-q", ...filters], ns);
      assert.equal(r.stdout, expected, filters.join(" "));
    }
    const table = await same(["containers", "ls", "labels.app==db"], ns);
    assert.equal(normalizeCtrOutput(table.stdout), "CONTAINER IMAGE RUNTIME\ndb-1 - io.containerd.runc.v1\n");
  });

  void test("ls with a malformed filter fails with containerd's text", async () => {
    const ns = newNamespace();
    const r = await same(["containers", "ls", "bad=="], ns);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      "ctr: filters: parse error: [bad==]: expected value or quoted: invalid argument: invalid argument\n",
    );
  });

  void test("label: set, replace, clear, and on a missing container", async () => {
    const ns = newNamespace();
    await createBoth(ns, "c1", ["--label", "keep=1"]);
    const set = await same(["containers", "label", "c1", "x=y", "z=w"], ns);
    assert.equal(normalizeCtrOutput(set.stdout), "keep=1,x=y,z=w\n");
    const replaced = await same(["containers", "label", "c1", "x=v"], ns);
    assert.equal(normalizeCtrOutput(replaced.stdout), "keep=1,x=v,z=w\n");
    const cleared = await same(["containers", "label", "c1", "x=", "keep="], ns);
    assert.equal(cleared.stdout, "z=w\n");
    const info = await same(["containers", "info", "c1"], ns);
    assert.deepEqual((JSON.parse(info.stdout) as { Labels: unknown }).Labels, { z: "w" });
    const missing = await same(["containers", "label", "nothing", "a=b"], ns);
    assert.equal(missing.code, 1);
  });

  void test("label: an oversized label fails with containerd's text", async () => {
    const ns = newNamespace();
    await createBoth(ns, "c1");
    const r = await same(["containers", "label", "c1", `${"k".repeat(4097)}=v`], ns);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      "ctr: update failed validation: containers.Labels: label key and value greater than maximum size " +
        "(4096 bytes), key: kkkkkkkkkk: invalid argument\n",
    );
  });

  void test("an empty label key fails in the write, as containerd's bolt store does", async () => {
    const ns = newNamespace();
    await createBoth(ns, "c1");
    const label = await same(["containers", "label", "c1", "=v"], ns);
    assert.equal(label.code, 1);
    assert.equal(
      label.stderr,
      'ctr: failed to write container "c1": failed to set label ""="v": key required: unknown\n',
    );
    const created = await same(["containers", "create", "--label", "=v", "--rootfs", rootfs, "c2"], ns);
    assert.equal(created.code, 1);
    assert.equal(
      created.stderr,
      'ctr: failed to write container "c2": failed to set label ""="v": key required: unknown\n',
    );
    const ls = await same(["containers", "ls", "-q"], ns);
    assert.equal(ls.stdout, "c1\n");
  });

  void test("rm: existing, again, several with a missing one", async () => {
    const ns = newNamespace();
    await createBoth(ns, "c1");
    await createBoth(ns, "c2");
    await createBoth(ns, "c3");
    // ctr asks Tasks.Get first and deletes the record whatever the answer.
    const rm = await same(["containers", "rm", "c1"], ns);
    assert.equal(rm.code, 0);
    assert.equal(rm.stdout + rm.stderr, "");
    const again = await same(["containers", "rm", "c1"], ns);
    assert.equal(again.code, 1);
    assert.equal(
      normalizeCtrOutput(again.stderr),
      `time="<TIME>" level=error msg="failed to delete container \\"c1\\"" ` +
        `error="container \\"c1\\" in namespace \\"${ns}\\": not found"\n` +
        `ctr: container "c1" in namespace "${ns}": not found\n`,
    );
    const several = await same(["containers", "rm", "nothing", "c2", "c3"], ns);
    assert.equal(several.code, 1);
    const ls = await same(["containers", "ls", "-q"], ns);
    assert.equal(ls.stdout, "");
  });

  void test("create with a duplicate id", async () => {
    const ns = newNamespace();
    await createBoth(ns, "c1");
    const dup = await same(["containers", "create", "--rootfs", rootfs, "c1"], ns);
    assert.equal(dup.code, 1);
    assert.equal(dup.stderr, 'ctr: container "c1": already exists\n');
  });

  void test("create with invalid ids", async () => {
    const ns = newNamespace();
    const pattern = "^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$";
    for (const id of ["a..b", "x_", ".dot", "sp ace", "ünï"]) {
      const r = await same(["containers", "create", "--rootfs", rootfs, id], ns);
      assert.equal(r.code, 1, id);
    }
    const slash = await same(["containers", "create", "--rootfs", rootfs, "bad/id"], ns);
    assert.equal(
      slash.stderr,
      `ctr: create container failed validation: container.ID: identifier "bad/id" must match ${pattern}: invalid argument\n`,
    );
    const long = await same(["containers", "create", "--rootfs", rootfs, "a".repeat(77)], ns);
    assert.equal(long.code, 1);
    assert.match(
      long.stderr,
      /identifier "a{77}" greater than maximum length \(76 characters\): invalid argument/,
    );
    const ls = await same(["containers", "ls", "-q"], ns);
    assert.equal(ls.stdout, "");
  });
});
