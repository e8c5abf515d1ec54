// Parent cgroups that container starts leave behind. ctr puts a container in /<namespace>/<id>
// unless told otherwise (`--cgroup`); runc creates the missing parents in every hierarchy and, on
// delete, removes only the container's own cgroup. So each test run with a namespace (or parent) of
// its own would leave one empty cgroup per hierarchy on the host for good (about 800 per hierarchy
// had piled up on the development VM). Suites remove theirs when they end, with whatever their
// containers left below them (a suite that ends by killing the shims never deletes its tasks).
import { readdir, rmdir } from "node:fs/promises";
import { join } from "node:path";

const CGROUP_ROOT = "/sys/fs/cgroup";

/** rmdir of dir's descendant cgroups, deepest first, then of dir; each one that is busy stays. */
async function removeTree(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) if (e.isDirectory()) await removeTree(join(dir, e.name));
  await rmdir(dir).catch(() => undefined);
}

/**
 * Removes each parent ("/name" or "name", relative to the root of every hierarchy, cgroup v1 and v2)
 * and the cgroups below it: rmdir only, so a cgroup that still holds a process stays, with the
 * cgroups above it.
 */
export async function removeCgroupParents(parents: Iterable<string>): Promise<void> {
  const hierarchies = await readdir(CGROUP_ROOT).catch(() => [] as string[]);
  for (const parent of parents) {
    const rel = parent.replace(/^\/+/, "");
    if (rel === "" || rel.split("/").includes("..")) throw new Error(`not a parent cgroup: ${parent}`);
    for (const h of ["", ...hierarchies]) await removeTree(join(CGROUP_ROOT, h, rel));
  }
}
