// The memory a group of processes keeps resident, each physical page counted once, whoever else
// maps it: the distinct page frames behind the group's resident pages (/proc/<pid>/pagemap, which
// gives frame numbers to root only). On a host where the group runs alone this is what its PSS sum
// comes to. On a shared machine PSS is lower by the pages shared with outsiders, and that discount
// is uneven: node's text is shared with every other Node process running (the bench itself, test
// daemons), containerd's with a second containerd, and so on. This figure has no such discount.
import { open, readFile } from "node:fs/promises";

const PAGE = 4096;

export interface Mapping {
  start: number;
  end: number;
  rssKiB: number;
}

/** The mappings of a /proc/<pid>/smaps with their Rss (mappings with no resident page included). */
export function parseSmapsMappings(text: string): Mapping[] {
  const out: Mapping[] = [];
  let current: Mapping | undefined;
  for (const line of text.split("\n")) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (header !== null) {
      current = {
        start: parseInt(header[1] as string, 16),
        end: parseInt(header[2] as string, 16),
        rssKiB: 0,
      };
      out.push(current);
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB$/.exec(line);
    if (rss !== null && current !== undefined) current.rssKiB = Number(rss[1]);
  }
  return out;
}

/**
 * Page frame numbers of the present pages in a run of pagemap entries (8 bytes each, little-endian:
 * bit 63 present, bits 0-54 the frame). Throws when a present page has frame 0: the kernel hides
 * frames from unprivileged readers.
 */
export function presentFrames(entries: Buffer, into: Set<number> = new Set()): Set<number> {
  for (let off = 0; off + 8 <= entries.length; off += 8) {
    const lo = entries.readUInt32LE(off);
    const hi = entries.readUInt32LE(off + 4);
    if ((hi & 0x80000000) === 0) continue; // not present (or swapped)
    const frame = (hi & 0x7fffff) * 2 ** 32 + lo;
    if (frame === 0) throw new Error("pagemap hides page frames (not root?)");
    into.add(frame);
  }
  return into;
}

/** Adds the frames of one process's resident pages to `into`. */
export async function addResidentFrames(pid: number, into: Set<number>): Promise<void> {
  const mappings = parseSmapsMappings(await readFile(`/proc/${pid}/smaps`, "utf8"));
  const fh = await open(`/proc/${pid}/pagemap`, "r");
  try {
    const chunkPages = 64 * 1024;
    const buf = Buffer.alloc(chunkPages * 8);
    for (const m of mappings) {
      if (m.rssKiB === 0) continue; // reserved address space (V8's cage, Go's arenas) costs nothing
      for (let page = m.start / PAGE; page < m.end / PAGE; page += chunkPages) {
        const n = Math.min(chunkPages, m.end / PAGE - page);
        const { bytesRead } = await fh.read(buf, 0, n * 8, page * 8);
        presentFrames(buf.subarray(0, bytesRead), into);
      }
    }
  } finally {
    await fh.close();
  }
}

/** KiB of distinct physical pages resident in any of the processes. */
export async function distinctResidentKiB(pids: readonly number[]): Promise<number> {
  const frames = new Set<number>();
  for (const pid of pids) await addResidentFrames(pid, frames);
  return (frames.size * PAGE) / 1024;
}
