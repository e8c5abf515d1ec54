// Launching a serving Berth shim: which group a task belongs to, the group's socket path, and
// starting `main.js -socket S` detached, waiting until it listens. Used by the shim's `start` and
// by berthd's pool of ready shims. No side effects on import.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { connect } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The shim's entry script beside this file (dist/shim/main.js in a build). */
export const shimMainScript = fileURLToPath(
  new URL(`./main${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url),
);

export interface ServerFlags {
  namespace: string;
  address: string;
  publishBinary: string;
  id?: string;
  debug?: boolean;
}

/** The group a task's shim serves: containerd's grouping annotations, else its namespace. */
export function shimGroup(annotations: Record<string, string>, namespace: string): string {
  return (
    annotations["io.containerd.runc.v2.group"] ??
    annotations["io.kubernetes.cri.sandbox-id"] ??
    `ns:${namespace}`
  );
}

export function groupSocket(dir: string, address: string, namespace: string, group: string): string {
  const h = createHash("sha256").update(`${address}\0${namespace}\0${group}`).digest("hex");
  return join(dir, h.slice(0, 32));
}

export function canConnect(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Starts `main.js ... -socket S` detached and waits until it listens (it says so on fd 3). */
export function spawnServer(flags: ServerFlags, socket: string, env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const args = [
      // A shim allocates little: a small young generation keeps its resident memory down.
      "--max-semi-space-size=1",
      shimMainScript,
      "-namespace",
      flags.namespace,
      "-address",
      flags.address,
      "-publish-binary",
      flags.publishBinary,
      "-socket",
      socket,
      ...(flags.id ? ["-id", flags.id] : []),
      ...(flags.debug ? ["-debug"] : []),
    ];
    const child = spawn(process.execPath, args, {
      detached: true,
      stdio: ["ignore", "ignore", "ignore", "pipe"],
      env,
      cwd: "/",
    });
    const ready = child.stdio[3] as NodeJS.ReadableStream | null;
    let said = "";
    const timer = setTimeout(() => fail(new Error("shim did not start listening within 20 s")), 20_000);
    const fail = (err: Error) => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(err);
    };
    child.once("error", fail);
    child.once("exit", (code, signal) => {
      if (!said.includes("\n")) fail(new Error(`shim exited before listening (${code ?? signal})`));
    });
    ready?.on("data", (d: Buffer) => {
      said += d.toString();
      if (said.includes("\n")) {
        clearTimeout(timer);
        (ready as unknown as { destroy(): void }).destroy();
        child.unref();
        resolve(child.pid ?? 0);
      }
    });
  });
}
