// When containers become RUNNING, as the daemon announces it: one long-lived `ctr events` that
// prints the /tasks/start events. Polling `ctr tasks ls` instead puts a ctr process (and a
// Tasks.List that asks every shim for its state) on the CPUs the starts are using, back to back,
// and the daemon that answers faster is polled more often: 9-17 polls per round against
// containerd's 3-5 on the 2-CPU bench machine, each one slowing down the round it measures.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

export interface TaskStart {
  namespace: string;
  id: string;
}

/**
 * One line of `ctr events` (1.6): `<date> <time> <offset> <zone> <namespace> <topic> <json>`;
 * undefined for anything but a /tasks/start event naming its container.
 */
export function parseTaskStart(line: string): TaskStart | undefined {
  const m = / (\S+) \/tasks\/start (\{.*\})\s*$/.exec(line);
  if (m === null) return undefined;
  try {
    const event = JSON.parse(m[2] as string) as { container_id?: unknown };
    if (typeof event.container_id !== "string") return undefined;
    return { namespace: m[1] as string, id: event.container_id };
  } catch {
    return undefined;
  }
}

export interface TaskStartWatch {
  /**
   * Resolves with the time (performance.now()) at which the last of ids was reported started;
   * rejects after timeoutMs, or when the watcher has stopped.
   */
  allStarted(namespace: string, ids: readonly string[], timeoutMs: number): Promise<number>;
  /** Stops the subscriber; resolves once it has exited. */
  close(): Promise<void>;
}

export function watchTaskStarts(address: string): TaskStartWatch {
  const child = spawn("ctr", ["-a", address, "events", 'topic=="/tasks/start"'], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const started = new Map<string, number>();
  const wakers = new Set<() => void>();
  let stopped: string | undefined;
  let stderr = "";
  const wakeAll = (): void => {
    for (const wake of wakers) wake();
  };
  createInterface({ input: child.stdout }).on("line", (line) => {
    const s = parseTaskStart(line);
    if (s === undefined) return;
    started.set(`${s.namespace}/${s.id}`, performance.now());
    wakeAll();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2000);
  });
  child.on("error", (err) => {
    stopped = `ctr events failed: ${err.message}`;
    wakeAll();
  });
  const exitedAt = new Promise<void>((resolve) => child.once("close", () => resolve()));
  child.on("exit", (code, signal) => {
    stopped ??= `ctr events exited (${signal ?? code}): ${stderr.trim()}`;
    wakeAll();
  });

  return {
    allStarted(namespace, ids, timeoutMs) {
      return new Promise<number>((resolve, reject) => {
        const check = (): void => {
          const times = ids.map((id) => started.get(`${namespace}/${id}`));
          if (times.every((t) => t !== undefined)) {
            done();
            resolve(Math.max(...times));
          } else if (stopped !== undefined) {
            done();
            reject(new Error(stopped));
          }
        };
        const timer = setTimeout(() => {
          done();
          const missing = ids.filter((id) => !started.has(`${namespace}/${id}`));
          reject(new Error(`no /tasks/start within ${timeoutMs} ms for ${missing.join(" ")}`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          wakers.delete(check);
        };
        wakers.add(check);
        check();
      });
    },
    close() {
      stopped ??= "closed";
      if (child.exitCode === null && child.signalCode === null) child.kill();
      wakeAll();
      return exitedAt;
    },
  };
}
