// Stock ctr `version` and `plugins ls` against berthd and a private containerd 1.6, plus the
// daemon's own lifecycle as a client sees it: socket and directory modes, a persistent server
// UUID, refusing a second daemon on a live socket, clearing a stale one, and a clean SIGTERM.
import assert from "node:assert/strict";
import { lstat, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { BERTHD_PATH, startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { startContainerd, type ContainerdHandle } from "../harness/containerd.js";
import { spawnDaemon } from "../harness/daemon-process.js";
import { ctrOk, runCtr } from "../harness/ctr.js";
import { normalizeCtrOutput } from "../harness/normalize.js";
import { makeTempDir, removeTempDir } from "../harness/temp-dir.js";
import { sideBySide } from "./side-by-side.js";

/** The "Server:" section of `ctr version`, as key -> value. */
function serverSection(out: string): Map<string, string> {
  const server = out.split("Server:\n")[1];
  assert.ok(server !== undefined, `no Server section in\n${out}`);
  const fields = new Map<string, string>();
  for (const line of server.split("\n").filter(Boolean)) {
    const m = /^ {2}([A-Za-z ]+):\s+(\S.*)$/.exec(line);
    assert.ok(m, `unexpected line ${JSON.stringify(line)} in\n${out}`);
    fields.set(m[1] ?? "", m[2] ?? "");
  }
  return fields;
}

/** Rows of `plugins ls` below the header, split on whitespace. */
function pluginRows(out: string): string[][] {
  const lines = out.split("\n").filter(Boolean);
  assert.deepEqual(lines[0]?.split(/\s+/).filter(Boolean), ["TYPE", "ID", "PLATFORMS", "STATUS"]);
  return lines.slice(1).map((l) => l.split(/\s+/).filter(Boolean));
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

void describe("ctr version and plugins: berthd vs containerd", () => {
  let berthd: BerthdHandle;
  let containerd: ContainerdHandle;
  let work: string;
  let root: string;
  let state: string;
  let address: string;

  const start = (): Promise<BerthdHandle> => startBerthd({ root, state, address });

  const { both, same } = sideBySide(() => ({ berthd, containerd }));

  void before(async () => {
    // Root, state and socket are ours so that berthd can be restarted on them.
    work = await makeTempDir("compat-version");
    root = join(work, "root");
    state = join(work, "state");
    address = join(work, "sock", "berthd.sock");
    [berthd, containerd] = await Promise.all([start(), startContainerd()]);
  });

  void after(async () => {
    await Promise.all([berthd?.stop(), containerd?.stop()]);
    await removeTempDir(work);
  });

  void test("version: same Client section, a Server section with Version, Revision and UUID", async () => {
    const { berthd: b, containerd: c } = await both(["version"]);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(c.code, 0, c.stderr);
    assert.equal(b.stdout.split("Server:")[0], c.stdout.split("Server:")[0]);
    for (const out of [b.stdout, c.stdout]) {
      const server = serverSection(out);
      assert.deepEqual([...server.keys()], ["Version", "Revision", "UUID"], out);
      assert.match(server.get("UUID") ?? "", UUID_RE);
    }
    // By design berthd's version is its own, so ctr warns (as it does for any other server).
    assert.notEqual(serverSection(b.stdout).get("Version"), serverSection(c.stdout).get("Version"));
    assert.equal(b.stderr, "WARNING: version mismatch\nWARNING: revision mismatch\n");
    assert.equal(c.stderr, "");
  });

  void test("version: the server UUID is the same on every call", async () => {
    for (const address of [berthd.address, containerd.address]) {
      const first = serverSection(await ctrOk(address, ["version"])).get("UUID");
      const second = serverSection(await ctrOk(address, ["version"])).get("UUID");
      assert.equal(first, second);
    }
  });

  void test("plugins ls: every plugin ok, the storage, event and service types present", async () => {
    const rows = pluginRows(await ctrOk(berthd.address, ["plugins", "ls"]));
    assert.ok(rows.length > 0);
    for (const row of rows) assert.equal(row[3], "ok", `plugin ${row.join(" ")} is not ok`);
    const ids = new Set(rows.map((r) => `${r[0]}.${r[1]}`));
    for (const type of [
      "io.containerd.content.v1",
      "io.containerd.metadata.v1",
      "io.containerd.gc.v1",
      "io.containerd.event.v1",
      "io.containerd.grpc.v1",
    ]) {
      assert.ok(
        rows.some((r) => r[0] === type),
        `no ${type} plugin`,
      );
    }
    for (const service of [
      "version",
      "introspection",
      "healthcheck",
      "events",
      "namespaces",
      "content",
      "images",
      "containers",
      "leases",
    ]) {
      assert.ok(ids.has(`io.containerd.grpc.v1.${service}`), `no grpc service ${service}`);
    }
    // containerd's own list, for comparison: the same ctr prints it the same way.
    const theirs = pluginRows(await ctrOk(containerd.address, ["plugins", "ls"]));
    for (const row of theirs) assert.equal(row.length, 4);
  });

  void test("plugins ls type==io.containerd.grpc.v1 lists only gRPC services", async () => {
    const all = pluginRows(await ctrOk(berthd.address, ["plugins", "ls"]));
    const grpcOnly = pluginRows(
      await ctrOk(berthd.address, ["plugins", "ls", "type==io.containerd.grpc.v1"]),
    );
    assert.deepEqual(
      grpcOnly,
      all.filter((r) => r[0] === "io.containerd.grpc.v1"),
    );
    const theirs = pluginRows(
      await ctrOk(containerd.address, ["plugins", "ls", "type==io.containerd.grpc.v1"]),
    );
    assert.ok(theirs.every((r) => r[0] === "io.containerd.grpc.v1"));
    // Every service containerd serves that berthd also registers shows the same row.
    for (const row of grpcOnly) {
      const twin = theirs.find((r) => r[1] === row[1]);
      if (twin) assert.deepEqual(row, twin);
    }
  });

  void test("plugins ls with filters both daemons answer alike (rows sorted: the order is each daemon's init order)", async () => {
    for (const filters of [
      ["type==io.containerd.grpc.v1,id==content", "id==exchange"],
      ["id==leases"],
      ["type==io.containerd.content.v1"],
      ["type==no.such.type"],
      ['id~="^(namespaces|leases)$"'],
    ]) {
      await same(["plugins", "ls", ...filters], { sortRows: true, succeed: true });
    }
  });

  void test("plugins ls with a bad filter fails as containerd's does", async () => {
    for (const filter of ["type==", "id!=", "type===x", ",", 'id=="unterminated']) {
      const r = await same(["plugins", "ls", filter]);
      assert.equal(r.code, 1);
    }
    const r = await runCtr(berthd.address, ["plugins", "ls", "type=="]);
    assert.equal(
      r.stderr,
      "ctr: filters: parse error: [type==]: expected value or quoted: invalid argument: invalid argument\n",
    );
  });

  void test("plugins ls -d: one block per plugin; the content plugin's block reads like containerd's", async () => {
    const [b, c] = await Promise.all([
      ctrOk(berthd.address, ["plugins", "ls", "-d"]),
      ctrOk(containerd.address, ["plugins", "ls", "-d"]),
    ]);
    const blocks = (out: string): string[] =>
      normalizeCtrOutput(out)
        .split(/\n(?=Type: )/)
        .map((s) => s.trim());
    const ours = blocks(b);
    assert.equal(ours.length, pluginRows(await ctrOk(berthd.address, ["plugins", "ls"])).length);
    for (const block of ours) assert.match(block, /^Type: \S+\nID: \S+/);
    const content = (bs: string[]) => bs.find((x) => x.startsWith("Type: io.containerd.content.v1\n"));
    assert.equal(
      content(ours),
      "Type: io.containerd.content.v1\nID: content\nExports:\nroot <TMP>/root/io.containerd.content.v1.content",
    );
    assert.equal(content(ours), content(blocks(c)));
    // No plugin reports an error (-d prints "Error:" lines for those).
    assert.doesNotMatch(b, /^\s*Error:/m);
    // Filters apply to -d as well.
    const filtered = blocks(await ctrOk(berthd.address, ["plugins", "ls", "-d", "id==leases"]));
    assert.equal(filtered.length, 1);
    assert.match(filtered[0] ?? "", /^Type: io\.containerd\.grpc\.v1\nID: leases\n/);
  });

  void test("the socket is 0660, root 0700, state 0711", async () => {
    const sock = await lstat(address);
    assert.ok(sock.isSocket());
    assert.equal(sock.mode & 0o7777, 0o660);
    assert.equal((await lstat(`${address}.ttrpc`)).mode & 0o7777, 0o660);
    assert.equal((await stat(root)).mode & 0o7777, 0o700);
    assert.equal((await stat(state)).mode & 0o7777, 0o711);
  });

  void test("a second berthd on the same socket refuses to start, exit code 1, and the first serves on", async () => {
    const other = await makeTempDir("compat-second");
    try {
      const second = spawnDaemon(BERTHD_PATH, [
        "--root",
        join(other, "root"),
        "--state",
        join(other, "state"),
        "--address",
        address,
      ]);
      const timer = setTimeout(() => second.child.kill("SIGKILL"), 20_000);
      const code = await second.exited;
      clearTimeout(timer);
      assert.equal(code, 1, second.logs());
      assert.match(
        second.logs(),
        new RegExp(`another daemon is serving on ${address.replace(/[.]/g, "\\.")}`),
      );
      assert.ok((await lstat(address)).isSocket(), "the live socket must stay");
      await ctrOk(berthd.address, ["version"]);
    } finally {
      await removeTempDir(other);
    }
  });

  void test("SIGTERM exits 0; a restart on the same root keeps the server UUID", async () => {
    const before = serverSection(await ctrOk(berthd.address, ["version"])).get("UUID");
    assert.equal(await berthd.stop(), 0, berthd.logs());
    berthd = await start();
    const afterRestart = serverSection(await ctrOk(berthd.address, ["version"])).get("UUID");
    assert.equal(afterRestart, before);
  });

  void test("a stale socket left by a SIGKILLed berthd is removed on restart", async () => {
    const uuid = serverSection(await ctrOk(berthd.address, ["version"])).get("UUID");
    await berthd.kill9();
    assert.ok((await lstat(address)).isSocket(), "SIGKILL leaves the socket file behind");
    berthd = await start();
    assert.equal(serverSection(await ctrOk(berthd.address, ["version"])).get("UUID"), uuid);
    assert.equal((await lstat(address)).mode & 0o7777, 0o660);
    assert.equal(await berthd.stop(), 0, berthd.logs());
    berthd = await start();
  });
});
