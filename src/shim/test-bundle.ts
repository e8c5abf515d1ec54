// TEST HELPER (used only by *.test.ts): builds OCI bundles with a busybox rootfs for real runc,
// each in its own temp dir with its own runc --root, so tests never see each other's containers.
import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";

const BUSYBOX = ["/bin/busybox", "/usr/bin/busybox"].find((p) => existsSync(p));
const APPLETS = [
  "sh",
  "sleep",
  "echo",
  "cat",
  "ls",
  "ps",
  "true",
  "false",
  "kill",
  "env",
  "stty",
  "tty",
  "id",
];

/** True when runc and a static busybox are here and we are root: the runc tests need all three. */
export function canRunContainers(): boolean {
  if (process.getuid?.() !== 0 || BUSYBOX === undefined) return false;
  try {
    execFileSync("runc", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

let baseSpec: Record<string, unknown> | undefined;

function defaultSpec(): Record<string, unknown> {
  if (baseSpec === undefined) {
    const dir = mkdtempSync(join(tmpdir(), "berth-spec-"));
    try {
      execFileSync("runc", ["spec", "--bundle", dir]);
      baseSpec = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return structuredClone(baseSpec);
}

export interface TestBundleOptions {
  /** process.args, e.g. ["sh", "-c", "exit 3"]. */
  args: string[];
  terminal?: boolean;
  /** Share the host PID namespace (no pid namespace): orphans then reparent to the subreaper. */
  hostPid?: boolean;
  env?: string[];
}

export interface TestBundle {
  /** A fresh container id. */
  id: string;
  /** The bundle directory (config.json and rootfs/). */
  bundle: string;
  /** A private runc --root for this test. */
  runcRoot: string;
  /** A scratch directory for pid files, logs and sockets. */
  work: string;
  /** Removes everything (call after the container is deleted). */
  cleanup(): void;
}

export function makeTestBundle(opts: TestBundleOptions): TestBundle {
  if (BUSYBOX === undefined) throw new Error("busybox not found");
  const dir = mkdtempSync(join(tmpdir(), "berth-bundle-"));
  const id = `berth-test-${randomBytes(4).toString("hex")}`;
  const bundle = join(dir, "bundle");
  const rootfs = join(bundle, "rootfs");
  for (const d of ["bin", "proc", "dev", "sys", "tmp", "etc"])
    mkdirSync(join(rootfs, d), { recursive: true });
  copyFileSync(BUSYBOX, join(rootfs, "bin", "busybox"));
  for (const a of APPLETS) symlinkSync("busybox", join(rootfs, "bin", a));

  const spec = defaultSpec() as {
    process: { args: string[]; terminal: boolean; env: string[] };
    root: { readonly: boolean };
    hostname?: string;
    linux: { cgroupsPath?: string; namespaces: { type: string }[] };
  };
  spec.process.args = opts.args;
  spec.process.terminal = opts.terminal ?? false;
  if (opts.env !== undefined) spec.process.env = [...spec.process.env, ...opts.env];
  spec.root.readonly = false;
  spec.linux.cgroupsPath = `/berth-test/${id}`;
  if (opts.hostPid === true) spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== "pid");
  writeFileSync(join(bundle, "config.json"), JSON.stringify(spec, null, 2));

  const runcRoot = join(dir, "runc");
  const work = join(dir, "work");
  mkdirSync(runcRoot);
  mkdirSync(work);
  return {
    id,
    bundle,
    runcRoot,
    work,
    cleanup: () => {
      // A container left behind by a failed test: remove it so its cgroup does not leak.
      try {
        execFileSync("runc", ["--root", runcRoot, "delete", "--force", id], { stdio: "ignore" });
      } catch {
        // not there
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
