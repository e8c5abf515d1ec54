// containerd's readonlyMounts: the same mounts, made safe to mount read-only for a diff. An overlay
// loses its upper and work dirs (the upper becomes the nearest lower dir); everything else gets "ro".
import type { Mount } from "./mount-types.js";

export function readonlyMounts(mounts: readonly Mount[]): Mount[] {
  return mounts.map((m) => {
    if (m.type !== "overlay") {
      const options = m.options.filter((o) => o !== "rw");
      if (!options.includes("ro")) options.push("ro");
      return { ...m, options };
    }
    let upper: string | undefined;
    const rest: string[] = [];
    for (const o of m.options) {
      if (o.startsWith("upperdir=")) upper = o.slice("upperdir=".length);
      else if (!o.startsWith("workdir=")) rest.push(o);
    }
    if (upper === undefined) return { ...m, options: [...m.options] };
    const options = rest.map((o) =>
      o.startsWith("lowerdir=") ? `lowerdir=${upper}:${o.slice("lowerdir=".length)}` : o,
    );
    if (!options.some((o) => o.startsWith("lowerdir="))) options.push(`lowerdir=${upper}`);
    return { ...m, options };
  });
}
