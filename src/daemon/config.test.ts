import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "smol-toml";
import { configToToml, defaultConfig, loadConfig, parseDuration, ConfigError } from "./config.js";

function withConfigFile(text: string, fn: (path: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "berth-config-"));
  try {
    const path = join(dir, "config.toml");
    writeFileSync(path, text);
    fn(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

void test("defaults mirror containerd's layout under berth's own paths", () => {
  const cfg = loadConfig({});
  assert.equal(cfg.version, 2);
  assert.equal(cfg.root, "/var/lib/berth");
  assert.equal(cfg.state, "/run/berth");
  assert.equal(cfg.grpc.address, "/run/berth/berthd.sock");
  assert.equal(cfg.ttrpc.address, "/run/berth/berthd.sock.ttrpc");
  assert.equal(cfg.grpc.max_recv_message_size, 16 << 20);
});

void test("the file overrides defaults and flags override the file", () => {
  withConfigFile(
    `version = 2\nroot = "/srv/berth"\n[grpc]\naddress = "/srv/b.sock"\n[debug]\nlevel = "warn"\n` +
      `[plugins."io.containerd.gc.v1.scheduler"]\nstartup_delay = "1s"\n`,
    (path) => {
      const fromFile = loadConfig({ config: path });
      assert.equal(fromFile.root, "/srv/berth");
      assert.equal(fromFile.grpc.address, "/srv/b.sock");
      assert.equal(fromFile.ttrpc.address, "/srv/b.sock.ttrpc");
      assert.equal(fromFile.debug.level, "warn");
      assert.equal(fromFile.plugins["io.containerd.gc.v1.scheduler"]?.startup_delay, "1s");
      assert.equal(fromFile.plugins["io.containerd.gc.v1.scheduler"]?.pause_threshold, 0.02);
      const withFlags = loadConfig({
        config: path,
        root: "/flag/root",
        address: "/flag.sock",
        logLevel: "debug",
      });
      assert.equal(withFlags.root, "/flag/root");
      assert.equal(withFlags.grpc.address, "/flag.sock");
      assert.equal(withFlags.debug.level, "debug");
    },
  );
});

void test("unknown keys, wrong types, bad levels and unreadable files are refused with a clear message", () => {
  withConfigFile(`rooot = "/x"\n`, (path) =>
    assert.throws(() => loadConfig({ config: path }), /unknown config key "rooot"/),
  );
  withConfigFile(`[grpc]\nadress = "/x"\n`, (path) =>
    assert.throws(() => loadConfig({ config: path }), /unknown config key "grpc.adress"/),
  );
  withConfigFile(`[grpc]\nuid = "root"\n`, (path) =>
    assert.throws(() => loadConfig({ config: path }), /grpc.uid must be a number/),
  );
  withConfigFile(`root = [`, (path) =>
    assert.throws(() => loadConfig({ config: path }), /failed to parse config file/),
  );
  assert.throws(() => loadConfig({ logLevel: "loud" }), ConfigError);
  assert.throws(() => loadConfig({ config: "/nonexistent/berth.toml" }), /failed to load config file/);
});

void test("the default config round-trips through TOML", () => {
  const cfg = defaultConfig();
  assert.deepEqual(JSON.parse(JSON.stringify(parse(configToToml(cfg)))), JSON.parse(JSON.stringify(cfg)));
});

void test("durations parse as containerd writes them", () => {
  assert.equal(parseDuration("100ms"), 100);
  assert.equal(parseDuration("1m30s"), 90_000);
  assert.equal(parseDuration("0"), 0);
  assert.throws(() => parseDuration("soon"), /invalid duration/);
});
