import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { createServer } from "node:net";
import { join } from "node:path";
import { pidsWithArgs } from "../test/harness/process-tree.js";
import { burstScript, ctrBurst } from "./ctr-burst.js";

void test("burstScript quotes every argument and starts each ctr in the background", () => {
  const script = burstScript("/run/a b.sock", "ns", [["run", "it's"], ["version"]], "/tmp/d");
  assert.match(
    script,
    /^run 0 '\/usr\/bin\/ctr' '--address' '\/run\/a b\.sock' '--namespace' 'ns' 'run' 'it'\\''s' &$/m,
  );
  assert.match(script, /^run 1 '\/usr\/bin\/ctr' .* 'version' &$/m);
  assert.match(script, /^echo launched\nwait$/m);
});

void test("ctrBurst runs every ctr, reports each exit code and stderr, in order", async () => {
  const dir = await mkdtemp(join(tmpdir(), "burst-"));
  try {
    // None of these needs a daemon: ctr answers --version, and refuses the others before dialing.
    const argsList = [["--version"], ["no-such-command"], ["images", "ls", "--bogus-flag"], ["--version"]];
    const r = await ctrBurst(join(dir, "absent.sock"), "ns", argsList, dir, 30_000);
    assert.deepEqual(
      r.exits.map((e) => e.code === 0),
      [true, false, false, true],
    );
    for (const e of r.exits) assert.ok(e.exitedMs >= r.launchedMs, `${e.exitedMs} >= ${r.launchedMs}`);
    assert.match(r.exits[1]?.stderr ?? "", /no-such-command/);
    assert.match(r.exits[2]?.stderr ?? "", /bogus-flag/);
    assert.equal(r.exits[0]?.stderr, "");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

void test("ctrBurst kills them all and rejects after the timeout", async () => {
  const dir = await mkdtemp(join(tmpdir(), "burst-"));
  try {
    // A socket that accepts and never answers: ctr waits on it until killed.
    const server = createServer(() => undefined);
    const sock = join(dir, "silent.sock");
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    const started = performance.now();
    try {
      await assert.rejects(
        ctrBurst(sock, "ns", [["version"], ["version"]], dir, 500),
        /did not all exit within 500 ms/,
      );
      assert.ok(performance.now() - started < 5_000);
      let left = await pidsWithArgs("--address", sock);
      for (let i = 0; i < 50 && left.length > 0; i++) {
        await new Promise((r) => setTimeout(r, 20));
        left = await pidsWithArgs("--address", sock);
      }
      assert.deepEqual(left, [], "every ctr of the burst is gone");
    } finally {
      server.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
