// The task bundle, laid out as containerd 1.6's runtime v2 does: `<state>/<ns>/<id>/` holds
// config.json (the container's OCI spec), rootfs/ (where the shim mounts the rootfs), a `work`
// symlink to `<root>/<ns>/<id>` (the shim's persistent scratch space) and what the shim writes
// itself (address, init.pid, ...). berthd also records the shim binary in `shim-binary-path`.
import { mkdirSync, readlinkSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { readFile, readdir, rm, rmdir } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { alreadyExists } from "../errdefs/errors.js";
import { validateIdentifier } from "../core/identifiers/identifiers.js";
import { unmountAll } from "../core/mount/mount.js";
import { hasCode } from "../sys/errno.js";

export interface Bundle {
  namespace: string;
  id: string;
  /** `<state>/<ns>/<id>`: the shim's cwd and `-bundle`. */
  path: string;
}

export interface BundleDirs {
  /** The runtime plugin's state dir (tmpfs: gone on reboot). */
  state: string;
  /** The runtime plugin's root dir (persistent). */
  root: string;
}

export const shimBinaryFile = "shim-binary-path";
export const addressFile = "address";

export function bundlePath(dirs: BundleDirs, namespace: string, id: string): string {
  return join(dirs.state, namespace, id);
}

/** Namespace dirs (by their state dir) created by this process. */
const madeNsDirs = new Set<string>();

/** Creates the bundle; AlreadyExists when one is there (a task of that id exists or leaked). */
export async function createBundle(
  dirs: BundleDirs,
  namespace: string,
  id: string,
  spec: Uint8Array,
): Promise<Bundle> {
  validateIdentifier(id);
  const path = bundlePath(dirs, namespace, id);
  const work = join(dirs.root, namespace, id);
  // Small metadata calls on local disk, made synchronously: a thread-pool round trip each would
  // cost more than the call, and they sit on every container start. The namespace's two dirs are
  // made once (and again should they have gone).
  const nsDirs = [join(dirs.state, namespace), join(dirs.root, namespace)] as const;
  const makeNsDirs = () => {
    for (const d of nsDirs) mkdirSync(d, { recursive: true, mode: 0o711 });
    madeNsDirs.add(nsDirs[0]);
  };
  const mkdirInNs = (dir: string, mode: number) => {
    try {
      mkdirSync(dir, { mode });
    } catch (err) {
      if (!hasCode(err, "ENOENT")) throw err;
      makeNsDirs();
      mkdirSync(dir, { mode });
    }
  };
  if (!madeNsDirs.has(nsDirs[0])) makeNsDirs();
  try {
    mkdirInNs(path, 0o700);
  } catch (err) {
    if (hasCode(err, "EEXIST")) throw alreadyExists(`bundle ${path}`);
    throw err;
  }
  const bundle: Bundle = { namespace, id, path };
  try {
    mkdirSync(join(path, "rootfs"), { mode: 0o711 });
    try {
      mkdirInNs(work, 0o711);
    } catch (err) {
      if (!hasCode(err, "EEXIST")) throw err;
      // A work dir left by an earlier task of this id may be large: removed off the event loop.
      await rm(work, { recursive: true, force: true });
      mkdirSync(work, { mode: 0o711 });
    }
    symlinkSync(work, join(path, "work"));
    writeFileSync(join(path, "config.json"), spec, { mode: 0o644 });
  } catch (err) {
    await deleteBundle(bundle);
    throw err;
  }
  return bundle;
}

/** Removals of retired bundles still under way. */
const removals = new Set<Promise<void>>();

/** Hidden names (no task id starts with a dot) of bundles and work dirs being removed. */
const retiredPrefix = ".retired-";

/**
 * Removes a retired bundle, but never through its rootfs: that goes first, by rmdir, so a rootfs
 * that is still mounted (in this mount namespace) or not empty keeps the whole bundle.
 */
async function removeRetired(path: string): Promise<void> {
  try {
    await rmdir(join(path, "rootfs"));
  } catch (err) {
    if (!hasCode(err, "ENOENT")) return;
  }
  await rm(path, { recursive: true, force: true });
}

/**
 * Unmounts the rootfs and removes the bundle and its work dir; tolerates a half-made one. Returns
 * once the rootfs is unmounted and the bundle and work dir are moved to hidden names, so that the
 * id is free again; the files go after that (bundleRemovals; the rootfs by rmdir first: one not
 * empty keeps the bundle), and a restart takes any left behind (removeRetiredBundles).
 */
export async function deleteBundle(bundle: Bundle): Promise<void> {
  let work: string | undefined;
  try {
    work = readlinkSync(join(bundle.path, "work"));
  } catch {
    work = undefined;
  }
  const rootfs = join(bundle.path, "rootfs");
  try {
    unmountAll(rootfs);
  } catch (err) {
    if (!hasCode(err, "ENOENT") && !hasCode(err, "EINVAL")) throw err;
  }
  const hidden = `${retiredPrefix}${bundle.id}-${randomBytes(4).toString("hex")}`;
  const retire = (path: string): string | undefined => {
    const to = join(dirname(path), hidden);
    try {
      renameSync(path, to);
      return to;
    } catch (err) {
      if (hasCode(err, "ENOENT")) return undefined;
      throw err;
    }
  };
  // The work dir first: a bundle found retired after a crash still names it (its `work` link).
  const oldWork = work === undefined ? undefined : retire(work);
  const oldBundle = retire(bundle.path);
  const removal = (async () => {
    // The bundle holds a few small files; the shim's scratch space (the work dir) may be large.
    if (oldWork !== undefined) await rm(oldWork, { recursive: true, force: true });
    if (oldBundle !== undefined) await removeRetired(oldBundle);
  })().catch(() => undefined);
  removals.add(removal);
  void removal.then(() => removals.delete(removal));
}

/** Settles once the removals of every bundle deleted so far have ended. */
export async function bundleRemovals(): Promise<void> {
  await Promise.all(removals);
}

/** Removes what retired bundles (and their work dirs) a previous run left behind. */
export async function removeRetiredBundles(dirs: BundleDirs): Promise<void> {
  for (const base of [dirs.state, dirs.root]) {
    const namespaces = await readdir(base).catch(() => [] as string[]);
    for (const namespace of namespaces) {
      if (namespace.startsWith(".")) continue;
      const names = await readdir(join(base, namespace)).catch(() => [] as string[]);
      for (const name of names) {
        if (!name.startsWith(retiredPrefix)) continue;
        if (base === dirs.state) await removeRetired(join(base, namespace, name));
        else await rm(join(base, namespace, name), { recursive: true, force: true });
      }
    }
  }
}

/** Every bundle under the state dir, by namespace (for restore after a restart). */
export async function listBundles(dirs: BundleDirs): Promise<Bundle[]> {
  const out: Bundle[] = [];
  const namespaces = await readdir(dirs.state).catch(() => [] as string[]);
  for (const namespace of namespaces) {
    // Hidden directories hold shim state (runc roots), not namespaces; containerd skips them too.
    if (namespace.startsWith(".")) continue;
    const ids = await readdir(join(dirs.state, namespace)).catch(() => [] as string[]);
    // Hidden entries are retired bundles being removed (no task id starts with a dot).
    for (const id of ids)
      if (!id.startsWith(".")) out.push({ namespace, id, path: join(dirs.state, namespace, id) });
  }
  return out;
}

export async function readBundleFile(bundle: Bundle, name: string): Promise<string | undefined> {
  try {
    return (await readFile(join(bundle.path, name), "utf8")).trim();
  } catch {
    return undefined;
  }
}

export function writeBundleFile(bundle: Bundle, name: string, value: string): void {
  writeFileSync(join(bundle.path, name), value, { mode: 0o600 });
}
