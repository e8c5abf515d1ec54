// The directory a backend keeps its snapshots in (`<root>/snapshots`), one entry per metastore id.
// A snapshot is built in a temporary `new-*` directory and renamed to its id only when complete,
// and a removed one is renamed to `rm-<id>` before it is deleted, so no half-built or
// half-deleted tree ever sits under a live id, even after a crash. Anything whose name is not a
// live id is garbage and goes at the next sweep (the snapshotters' Cleanup).
import { mkdirSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { hasCode } from "../../sys/errno.js";

export class SnapshotDirs {
  /** Deletions under way (paths), which a sweep leaves alone and close waits for. */
  readonly #deleting = new Map<string, Promise<void>>();

  private constructor(readonly dir: string) {}

  /** Creates `<root>` and `<root>/snapshots` (0700) as needed. */
  static open(root: string): SnapshotDirs {
    mkdirSync(root, { recursive: true, mode: 0o700 });
    const dir = join(root, "snapshots");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return new SnapshotDirs(dir);
  }

  path(id: string): string {
    return join(this.dir, id);
  }

  /** A fresh, private (0700) directory to build a snapshot in. */
  /** A new temp directory (synchronous: one mkdir costs less than a threadpool round trip). */
  makeTemp(): Promise<string> {
    return Promise.resolve(mkdtempSync(join(this.dir, "new-")));
  }

  /**
   * Moves a finished temp directory to the snapshot's id. The id was just allocated, so anything
   * already there is debris of a crash before the metastore committed it.
   */
  install(temp: string, id: string): string {
    const target = this.path(id);
    try {
      renameSync(temp, target);
    } catch (err) {
      if (!hasCode(err, "ENOTEMPTY") && !hasCode(err, "EEXIST") && !hasCode(err, "ENOTDIR")) throw err;
      rmSync(target, { recursive: true, force: true });
      renameSync(temp, target);
    }
    return target;
  }

  /**
   * Takes the directory of a removed snapshot out of the way (to `rm-<id>`) and deletes it in the
   * background; returns the deletion. A missing directory (a view without its own) is fine.
   */
  retire(id: string): Promise<void> {
    const renamed = join(this.dir, `rm-${id}`);
    try {
      renameSync(this.path(id), renamed);
    } catch {
      // Not there (ENOENT), or cannot be moved: the next sweep takes it, its id is no longer live.
      return Promise.resolve();
    }
    return this.discard(renamed);
  }

  /** Deletes path recursively, never failing (what cannot go now goes at the next sweep). */
  discard(path: string): Promise<void> {
    const existing = this.#deleting.get(path);
    if (existing !== undefined) return existing;
    const done = rm(path, { recursive: true, force: true, maxRetries: 3 })
      .catch(() => undefined)
      .finally(() => this.#deleting.delete(path));
    this.#deleting.set(path, done);
    return done;
  }

  /** Entries whose names are not live ids (and not being deleted already). */
  async garbage(liveIds: ReadonlySet<string> | ReadonlyMap<string, unknown>): Promise<string[]> {
    const names = await readdir(this.dir);
    return names
      .map((n) => join(this.dir, n))
      .filter((p, i) => !liveIds.has(names[i] as string) && !this.#deleting.has(p));
  }

  /** Resolves once every deletion started so far has finished. */
  async idle(): Promise<void> {
    await Promise.all([...this.#deleting.values()]);
  }
}
