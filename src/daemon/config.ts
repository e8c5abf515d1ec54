// berthd's configuration: containerd's config.toml (version 2) section names where the meaning is
// the same, defaults that mirror containerd's, and the flags that override them.
import { readFileSync } from "node:fs";
import { parse, stringify } from "smol-toml";

/**
 * The walking differ's settings: bounds on one layer apply (decompression bombs, inode floods),
 * and unpack-ahead (layers unpacked when their blobs arrive, up to so many compressed bytes).
 */
export const differDefaults = {
  max_layer_bytes: 64 * 2 ** 30,
  max_layer_entries: 4_000_000,
  unpack_ahead: true,
  unpack_ahead_max_bytes: 2 ** 30,
};

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "panic";

export interface Config {
  version: number;
  root: string;
  state: string;
  disabled_plugins: string[];
  grpc: {
    address: string;
    uid: number;
    gid: number;
    max_recv_message_size: number;
    max_send_message_size: number;
  };
  ttrpc: { address: string; uid: number; gid: number };
  debug: { level: LogLevel; format: "json" };
  metrics: { address: string };
  /** Per-plugin tables, keyed "<type>.<id>", as in containerd's `[plugins."<type>.<id>"]`. */
  plugins: Record<string, Record<string, unknown>>;
}

export function defaultConfig(): Config {
  return {
    version: 2,
    root: "/var/lib/berth",
    state: "/run/berth",
    disabled_plugins: [],
    grpc: {
      address: "/run/berth/berthd.sock",
      uid: 0,
      gid: 0,
      max_recv_message_size: 16 * 1024 * 1024,
      max_send_message_size: 16 * 1024 * 1024,
    },
    ttrpc: { address: "", uid: 0, gid: 0 },
    debug: { level: "info", format: "json" },
    metrics: { address: "" },
    plugins: {
      "io.containerd.gc.v1.scheduler": {
        pause_threshold: 0.02,
        deletion_threshold: 0,
        mutation_threshold: 100,
        schedule_delay: "0s",
        startup_delay: "100ms",
      },
      "io.containerd.metadata.v1.sqlite": { content_sharing_policy: "shared" },
      "io.containerd.differ.v1.walking": { ...differDefaults },
      "io.containerd.internal.v1.limits": { max_ingest_size: 0 },
    },
  };
}

const levels: LogLevel[] = ["trace", "debug", "info", "warn", "error", "fatal", "panic"];

export class ConfigError extends Error {}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Deep-merges a parsed TOML document onto the defaults, refusing unknown top-level keys and bad types. */
export function mergeConfig(base: Config, doc: Record<string, unknown>): Config {
  const out = structuredClone(base) as unknown as Record<string, unknown>;
  for (const [key, value] of Object.entries(doc)) {
    if (!(key in out)) throw new ConfigError(`unknown config key ${JSON.stringify(key)}`);
    const current = out[key];
    if (key === "plugins") {
      if (!isObject(value)) throw new ConfigError(`plugins must be a table`);
      const plugins = out.plugins as Record<string, Record<string, unknown>>;
      for (const [id, table] of Object.entries(value)) {
        if (!isObject(table)) throw new ConfigError(`plugins.${id} must be a table`);
        plugins[id] = { ...(plugins[id] ?? {}), ...table };
      }
    } else if (isObject(current)) {
      if (!isObject(value)) throw new ConfigError(`${key} must be a table`);
      for (const [k, v] of Object.entries(value)) {
        if (!(k in current)) throw new ConfigError(`unknown config key ${JSON.stringify(`${key}.${k}`)}`);
        if (typeof v !== typeof current[k])
          throw new ConfigError(`${key}.${k} must be a ${typeof current[k]}`);
        current[k] = v;
      }
    } else {
      if (typeof value !== typeof current && !(Array.isArray(current) && Array.isArray(value)))
        throw new ConfigError(`${key} must be a ${Array.isArray(current) ? "list" : typeof current}`);
      out[key] = value;
    }
  }
  const cfg = out as unknown as Config;
  if (!levels.includes(cfg.debug.level)) throw new ConfigError(`unknown log level ${cfg.debug.level}`);
  return cfg;
}

export interface ConfigOverrides {
  config?: string;
  root?: string;
  state?: string;
  address?: string;
  logLevel?: string;
}

/** Defaults, then the config file, then the flags, as containerd applies them. */
export function loadConfig(flags: ConfigOverrides): Config {
  let cfg = defaultConfig();
  if (flags.config) {
    let text: string;
    try {
      text = readFileSync(flags.config, "utf8");
    } catch (err) {
      throw new ConfigError(`failed to load config file ${flags.config}: ${(err as Error).message}`);
    }
    let doc: Record<string, unknown>;
    try {
      doc = parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(`failed to parse config file ${flags.config}: ${(err as Error).message}`);
    }
    cfg = mergeConfig(cfg, doc);
  }
  if (flags.root) cfg.root = flags.root;
  if (flags.state) cfg.state = flags.state;
  if (flags.address) cfg.grpc.address = flags.address;
  if (flags.logLevel) {
    if (!levels.includes(flags.logLevel as LogLevel))
      throw new ConfigError(`unknown log level ${flags.logLevel}`);
    cfg.debug.level = flags.logLevel as LogLevel;
  }
  if (!cfg.ttrpc.address) cfg.ttrpc.address = `${cfg.grpc.address}.ttrpc`;
  return cfg;
}

export function pluginConfig(cfg: Config, type: string, id: string): Record<string, unknown> {
  return cfg.plugins[`${type}.${id}`] ?? {};
}

export function configToToml(cfg: Config): string {
  return stringify(cfg as unknown as Record<string, unknown>);
}

/** Parses containerd-style durations ("100ms", "1s", "1m30s") into milliseconds. */
export function parseDuration(s: string): number {
  if (s === "0" || s === "") return 0;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000 };
  let total = 0;
  let matched = 0;
  for (const m of s.matchAll(re)) {
    total += Number(m[1]) * (unit[m[2] ?? "ms"] ?? 1);
    matched += m[0].length;
  }
  if (matched !== s.length) throw new ConfigError(`invalid duration ${JSON.stringify(s)}`);
  return total;
}
