// The compat suites' one way of comparing: run the same ctr command (or API call) on berthd and
// on the private containerd, normalise what varies between daemons and runs, and assert equality
// with berthd as "actual" and containerd as "expected".
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { createClient, type BerthClient } from "../../src/client/index.js";
import { buildLayer } from "../fixtures/layer.js";
import { writeOciArchive, type ArchiveResult } from "../fixtures/oci-image.js";
import { runCtr, type CtrOptions, type CtrResult } from "../harness/ctr.js";
import { normalizeCtrOutput, sortRows } from "../harness/normalize.js";
import { makeTempDir } from "../harness/temp-dir.js";

export type Daemon = "berthd" | "containerd";
export const DAEMONS: readonly Daemon[] = ["berthd", "containerd"];

/** One value per daemon. */
export interface Both<T> {
  berthd: T;
  containerd: T;
}

/** A command's arguments, the same for both daemons or per daemon (e.g. paths in its own dir). */
export type Args = readonly string[] | ((daemon: Daemon) => readonly string[]);

export interface SameOptions extends CtrOptions {
  /** Sorts stdout's rows below its header before comparing: for listings without a set order. */
  sortRows?: boolean;
  /** Also requires exit code 0 (the assertion message is berthd's stderr). */
  succeed?: boolean;
}

/** Exit code, stdout and stderr, normalised, as one string that reads well in a diff. */
export function render(r: CtrResult, opts: { sortRows?: boolean } = {}): string {
  const out = normalizeCtrOutput(r.stdout);
  const stdout = opts.sortRows && out !== "" ? sortRows(out) : out;
  return `exit ${r.code}\n--- stdout\n${stdout}\n--- stderr\n${normalizeCtrOutput(r.stderr)}`;
}

/** The command for an assertion message, long arguments cut. */
export function shorten(args: readonly string[]): string {
  return args.map((a) => (a.length > 60 ? `${a.slice(0, 60)}...` : a)).join(" ");
}

/** Plain functions (no `this`), so that tests may destructure them. */
export interface SideBySide {
  address: (daemon: Daemon) => string;
  /** Runs ctr on both daemons at once. A string for opts is the namespace. */
  both: (args: Args, opts?: string | CtrOptions) => Promise<Both<CtrResult>>;
  /** Runs ctr on both, asserts equal rendered results (see render), returns berthd's. */
  same: (args: Args, opts?: string | SameOptions) => Promise<CtrResult>;
  /**
   * Runs a synchronous garbage collection on both daemons (a lease deleted with --sync), so that
   * none is pending from an earlier step: a collection that ran on one daemon and not yet on the
   * other would make their listings differ.
   */
  flushGc: () => Promise<void>;
  /** Makes the same API call on both daemons (for what ctr does not show), in namespace. */
  api: <T>(namespace: string, call: (client: BerthClient, daemon: Daemon) => Promise<T>) => Promise<Both<T>>;
}

/**
 * daemons() is read on every call, so the handles may be assigned in before() and a test may
 * restart a daemon. defaults apply to every same() (e.g. { succeed: true }).
 */
export function sideBySide(daemons: () => Both<{ address: string }>, defaults: SameOptions = {}): SideBySide {
  let flushes = 0;
  const address = (d: Daemon): string => daemons()[d].address;
  const options = (opts: string | SameOptions | undefined): SameOptions => ({
    ...defaults,
    ...(typeof opts === "string" ? { namespace: opts } : opts),
  });

  async function both(args: Args, opts?: string | CtrOptions): Promise<Both<CtrResult>> {
    const o = options(opts);
    const argsFor = typeof args === "function" ? args : () => args;
    const [berthd, containerd] = await Promise.all(DAEMONS.map((d) => runCtr(address(d), argsFor(d), o)));
    assert.ok(berthd && containerd);
    return { berthd, containerd };
  }

  async function same(args: Args, opts?: string | SameOptions): Promise<CtrResult> {
    const o = options(opts);
    const r = await both(args, o);
    const shown = shorten(typeof args === "function" ? args("berthd") : args);
    assert.equal(
      render(r.berthd, o),
      render(r.containerd, o),
      `ctr ${shown}: berthd (actual) vs containerd (expected)`,
    );
    if (o.succeed) assert.equal(r.berthd.code, 0, r.berthd.stderr);
    return r.berthd;
  }

  async function flushGc(): Promise<void> {
    const id = `flush-${++flushes}`;
    await same(["leases", "create", "--id", id], { namespace: "gcflush" });
    await same(["leases", "rm", "--sync", id], { namespace: "gcflush" });
  }

  async function api<T>(
    namespace: string,
    call: (client: BerthClient, daemon: Daemon) => Promise<T>,
  ): Promise<Both<T>> {
    const results = await Promise.all(
      DAEMONS.map(async (d) => {
        const client = createClient(address(d), { namespace });
        try {
          return await call(client, d);
        } finally {
          client.close();
        }
      }),
    );
    return { berthd: results[0] as T, containerd: results[1] as T };
  }

  return { address, both, same, flushGc, api };
}

export interface TinyWork {
  /** The temp dir holding the rest; the caller removes it (removeTempDir). */
  work: string;
  /** An empty directory for `ctr containers create --rootfs` (no image or snapshot needed). */
  rootfs: string;
  /** A one-file, one-layer OCI archive of "example.com/tiny:1". */
  image: ArchiveResult;
}

/** A temp work dir with an empty rootfs and a tiny image archive, for suites that need both. */
export async function makeTinyWork(name: string): Promise<TinyWork> {
  const work = await makeTempDir(name);
  const rootfs = join(work, "rootfs");
  await mkdir(rootfs);
  const layer = await buildLayer([{ path: "hello.txt", type: "file", content: "hello\n" }]);
  const image = await writeOciArchive(join(work, "tiny.tar"), {
    layers: [layer],
    name: "example.com/tiny:1",
  });
  return { work, rootfs, image };
}
