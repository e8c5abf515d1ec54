// Runs a shim v2 binary's command lines as containerd 1.6 does: `start` (prints the shim's ttrpc
// address; the shim forks its long-lived server) and `delete` (cleans up after a dead shim and
// prints a DeleteResponse). Also owns the bundle's `log` FIFO, through which a shim logs.
import { spawn } from "node:child_process";
import { openSync, constants as fsConstants, closeSync } from "node:fs";
import { Socket } from "node:net";
import { join } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { DeleteResponseSchema, type DeleteResponse } from "../gen/containerd/runtime/v2/task/shim_pb.js";
import { BerthError } from "../errdefs/errors.js";
import type { AnyValue } from "../core/any-value.js";
import { AT, S, mknodat } from "../sys/fs-at.js";
import { hasCode } from "../sys/errno.js";
import type { Bundle } from "./bundle.js";

export interface ShimCommand {
  binary: string;
  bundle: Bundle;
  /** The daemon's gRPC socket (`-address`). */
  grpcAddress: string;
  /** The daemon's ttrpc socket, passed as TTRPC_ADDRESS for Events/Forward. */
  ttrpcAddress: string;
  /** `-publish-binary`: the legacy way back for events (`<bin> publish`). */
  publishBinary: string;
  debug?: boolean;
  /** More environment for the shim (e.g. where Berth shims put their sockets). */
  env?: Record<string, string>;
}

const maxOutput = 64 * 1024;

function shimArgs(c: ShimCommand, extra: string[]): string[] {
  return [
    "-namespace",
    c.bundle.namespace,
    "-address",
    c.grpcAddress,
    "-publish-binary",
    c.publishBinary,
    "-id",
    c.bundle.id,
    ...(c.debug ? ["-debug"] : []),
    ...extra,
  ];
}

function shimEnv(c: ShimCommand): NodeJS.ProcessEnv {
  return { ...process.env, GOMAXPROCS: "2", TTRPC_ADDRESS: c.ttrpcAddress, ...c.env };
}

/** Runs the shim with args in the bundle; resolves with stdout (and stderr, combined when asked). */
function run(
  c: ShimCommand,
  args: string[],
  stdin: Uint8Array,
  combine: boolean,
  timeoutMs: number,
): Promise<{ code: number | null; signal: string | null; out: Buffer; err: Buffer }> {
  return new Promise((resolve, reject) => {
    const child = spawn(c.binary, shimArgs(c, args), {
      cwd: c.bundle.path,
      env: shimEnv(c),
      stdio: ["pipe", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      if (size >= maxOutput) return;
      size += chunk.length;
      into.push(chunk);
    };
    child.stdout.on("data", collect(out));
    child.stderr.on("data", collect(combine ? out : err));
    child.stdin.on("error", () => undefined);
    child.stdin.end(stdin);
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(new BerthError("unknown", `failed to run shim ${c.binary}: ${e.message}`, { cause: e }));
    });
    // 'close' waits for stdout and stderr to close too, as containerd's CombinedOutput does.
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out: Buffer.concat(out), err: Buffer.concat(err) });
    });
  });
}

/** Runs `<shim> ... start` and returns the shim's ttrpc address (e.g. `unix:///run/...`). */
export async function startShimProcess(c: ShimCommand, options: AnyValue | undefined): Promise<string> {
  const stdin = options
    ? toBinary(AnySchema, create(AnySchema, { typeUrl: options.typeUrl, value: options.value }))
    : new Uint8Array();
  const r = await run(c, ["start"], stdin, true, 60_000);
  const output = r.out.toString("utf8").trim();
  if (r.code !== 0) {
    const how = r.code === null ? `signal: ${r.signal}` : `exit status ${r.code}`;
    throw new BerthError("unknown", `start failed: ${output}: ${how}`);
  }
  return parseAddress(output);
}

/** The shim's answer to `start`: a bare address, or 1.7's JSON bootstrap (version 2, ttrpc). */
export function parseAddress(output: string): string {
  if (output.startsWith("{")) {
    let params: { version?: number; address?: string; protocol?: string };
    try {
      params = JSON.parse(output) as typeof params;
    } catch {
      throw new BerthError("unknown", `unexpected shim bootstrap output: ${output}`);
    }
    if (params.version !== undefined && params.version > 2)
      throw new BerthError("unknown", `unsupported shim version (${params.version})`);
    if (params.protocol !== undefined && params.protocol !== "ttrpc")
      throw new BerthError("unknown", `unsupported shim protocol ${JSON.stringify(params.protocol)}`);
    return params.address ?? "";
  }
  if (output === "") throw new BerthError("unknown", "shim printed no address");
  return output;
}

/** Runs `<shim> ... -bundle B delete` after a shim died; returns what it reports of the task. */
export async function deleteShimProcess(c: ShimCommand): Promise<DeleteResponse> {
  const r = await run(c, ["-bundle", c.bundle.path, "delete"], new Uint8Array(), false, 30_000);
  if (r.code !== 0)
    throw new BerthError(
      "unknown",
      `${c.binary} delete: ${r.err.toString("utf8").trim() || `exit status ${r.code}`}`,
    );
  return fromBinary(DeleteResponseSchema, r.out);
}

/**
 * Creates the bundle's `log` FIFO (shims open it write-only and fail when it is missing) and reads
 * it line by line into onLine until closed. Opened read-write so that no writer means no EOF.
 */
export function openShimLog(bundle: Bundle, onLine: (line: string) => void): { close: () => void } {
  const path = join(bundle.path, "log");
  try {
    mknodat(AT.FDCWD, path, S.IFIFO | 0o700);
  } catch (err) {
    if (!hasCode(err, "EEXIST")) throw err;
  }
  const fd = openSync(path, fsConstants.O_RDWR | fsConstants.O_NONBLOCK);
  let sock: Socket;
  try {
    sock = new Socket({ fd, readable: true, writable: false });
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  let rest = "";
  sock.setEncoding("utf8");
  sock.on("data", (chunk: string) => {
    const lines = (rest + chunk).split("\n");
    rest = lines.pop() ?? "";
    for (const line of lines) if (line !== "") onLine(line);
  });
  sock.on("error", () => undefined);
  return { close: () => sock.destroy() };
}
