// berthd's command line, config, logs, metrics and plugin init errors, through the real binary and socket.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parse } from "smol-toml";
import { BERTHD_PATH, startBerthd } from "../harness/berthd.js";
import { runCtr, ctrOk, spawnCtr } from "../harness/ctr.js";
import { create, toBinary } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { TaskOOMSchema } from "../../src/gen/containerd/events/task_pb.js";
import { makeTempDir, removeTempDir } from "../harness/temp-dir.js";
import { freePort } from "../harness/free-port.js";

const run = promisify(execFile);

async function berthd(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(BERTHD_PATH, args);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

void test("`berthd config default` prints a complete TOML config; `config dump` merges file and flags", async () => {
  const def = await berthd(["config", "default"]);
  assert.equal(def.code, 0);
  const cfg = parse(def.stdout) as Record<string, Record<string, unknown>>;
  assert.equal(cfg.version, 2);
  assert.equal(cfg.root, "/var/lib/berth");
  assert.equal(cfg.grpc?.address, "/run/berth/berthd.sock");
  assert.ok(cfg.plugins?.["io.containerd.gc.v1.scheduler"]);

  const dir = await makeTempDir("config");
  try {
    const file = join(dir, "config.toml");
    await writeFile(file, `version = 2\nstate = "/srv/state"\n[debug]\nlevel = "warn"\n`);
    const dump = await berthd(["--config", file, "--root", "/srv/root", "config", "dump"]);
    assert.equal(dump.code, 0, dump.stderr);
    const eff = parse(dump.stdout) as Record<string, Record<string, unknown>>;
    assert.equal(eff.root, "/srv/root");
    assert.equal(eff.state, "/srv/state");
    assert.equal(eff.debug?.level, "warn");
    assert.equal((eff.ttrpc as { address: string }).address, "/run/berth/berthd.sock.ttrpc");

    await writeFile(file, `bogus = 1\n`);
    const bad = await berthd(["--config", file, "config", "dump"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /unknown config key "bogus"/);
  } finally {
    await removeTempDir(dir);
  }
});

void test("logs are JSON lines; metrics are served at /v1/metrics with the GC pause", async () => {
  const dir = await makeTempDir("metrics");
  const port = await freePort();
  const file = join(dir, "config.toml");
  await writeFile(file, `version = 2\n[metrics]\naddress = "127.0.0.1:${port}"\n`);
  const d = await startBerthd({ extraArgs: ["--config", file] });
  try {
    await ctrOk(d.address, ["leases", "create", "--id", "l1"], { namespace: "metrics" });
    await ctrOk(d.address, ["leases", "rm", "--sync", "l1"], { namespace: "metrics" });
    const res = await fetch(`http://127.0.0.1:${port}/v1/metrics`);
    assert.equal(res.status, 200);
    const body = await res.text();
    const pauses = /^berthd_gc_pause_seconds_count (\d+)/m.exec(body);
    assert.ok(pauses && Number(pauses[1]) >= 1, "a sync lease delete ran at least one GC");
    assert.match(
      body,
      /grpc_server_handled_total\{grpc_service="containerd.services.leases.v1.Leases",grpc_method="Delete",grpc_code="OK"\} 1/,
    );
    // Node's own metrics, the event-loop lag among them (sampled once a second).
    assert.match(body, /^berthd_nodejs_eventloop_lag_seconds \d/m);
    assert.equal((await fetch(`http://127.0.0.1:${port}/nope`)).status, 404);
  } finally {
    await d.stop();
    await removeTempDir(dir);
  }
  const lines = d
    .logs()
    .split("\n")
    .filter((l) => l.trim() !== "");
  assert.ok(lines.length > 0);
  for (const line of lines) {
    const entry = JSON.parse(line) as { level?: string; msg?: string };
    assert.ok(entry.level && entry.msg !== undefined, `log line has level and msg: ${line}`);
  }
  assert.ok(lines.some((l) => l.includes("garbage collected")));
});

void test("a plugin that fails to initialise is reported by `ctr plugins ls` with its error, and so are its dependants", async () => {
  const dir = await makeTempDir("plugin-error");
  const file = join(dir, "config.toml");
  await writeFile(
    file,
    `version = 2\n[plugins."io.containerd.metadata.v1.sqlite"]\ncontent_sharing_policy = "sideways"\n`,
  );
  const d = await startBerthd({ extraArgs: ["--config", file] });
  try {
    const ls = await ctrOk(d.address, ["plugins", "ls"]);
    assert.match(ls, /io\.containerd\.metadata\.v1\s+sqlite\s+-\s+error/);
    assert.match(ls, /io\.containerd\.grpc\.v1\s+images\s+-\s+error/);
    assert.match(ls, /io\.containerd\.content\.v1\s+content\s+-\s+ok/);
    const detail = await ctrOk(d.address, ["plugins", "ls", "-d", "id==sqlite"]);
    assert.match(detail, /content_sharing_policy must be "shared" or "isolated"/);
    // The services that failed are not served: the client gets Unimplemented, not a crash.
    const images = await runCtr(d.address, ["images", "ls"]);
    assert.notEqual(images.code, 0);
    assert.match(images.stderr, /not implemented|Unimplemented/i);
  } finally {
    await d.stop();
    await removeTempDir(dir);
  }
});

void test("a bad unpack-ahead setting fails the walking differ with a message that names it", async () => {
  const dir = await makeTempDir("differ-config");
  const file = join(dir, "config.toml");
  await writeFile(file, `version = 2\n[plugins."io.containerd.differ.v1.walking"]\nunpack_ahead = "yes"\n`);
  const d = await startBerthd({ extraArgs: ["--config", file] });
  try {
    const ls = await ctrOk(d.address, ["plugins", "ls"]);
    assert.match(ls, /io\.containerd\.differ\.v1\s+walking\s+-\s+error/);
    const detail = await ctrOk(d.address, ["plugins", "ls", "-d", "id==walking"]);
    assert.match(detail, /unpack_ahead must be true or false, not "yes"/);
  } finally {
    await d.stop();
    await removeTempDir(dir);
  }
});

void test("`berthd publish` (the shims' -publish-binary) delivers an Any from stdin as an event", async () => {
  const d = await startBerthd();
  const events = spawnCtr(d.address, ["events"], { namespace: "pub" });
  try {
    await new Promise((r) => setTimeout(r, 300));
    const oom = create(TaskOOMSchema, { containerId: "published-by-a-shim" });
    const any = toBinary(
      AnySchema,
      create(AnySchema, { typeUrl: TaskOOMSchema.typeName, value: toBinary(TaskOOMSchema, oom) }),
    );
    const child = execFile(BERTHD_PATH, [
      "--address",
      d.address,
      "publish",
      "--topic",
      "/tasks/oom",
      "--namespace",
      "pub",
    ]);
    child.stdin?.end(Buffer.from(any));
    const code = await new Promise((r) => child.on("exit", r));
    assert.equal(code, 0);
    await events.waitFor("published-by-a-shim", 10_000);
    assert.match(events.stdout(), /pub\s+\/tasks\/oom\s+\{"container_id":"published-by-a-shim"\}/);
    // Not an Any: a clear error, exit 1.
    const bad = await berthdWithInput(
      ["--address", d.address, "publish", "--topic", "/x", "--namespace", "pub"],
      "\xff\xff",
    );
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /not a protobuf Any/);
  } finally {
    await events.stop();
    await d.stop();
  }
});

function berthdWithInput(args: string[], input: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(BERTHD_PATH, args, (err, _stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
    );
    child.stdin?.end(Buffer.from(input, "latin1"));
  });
}
