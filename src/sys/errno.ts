// Errors from system calls, shaped like Node's own fs errors (code, errno, syscall, path) so that
// callers can treat both the same way.
import { constants } from "node:os";

const names = new Map<number, string>(Object.entries(constants.errno).map(([name, value]) => [value, name]));

export class SysError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly syscall: string;
  readonly path?: string;

  constructor(errno: number, syscall: string, path?: string) {
    const code = names.get(errno) ?? `E${errno}`;
    super(`${syscall}${path === undefined ? "" : ` ${path}`}: ${code}`);
    this.name = "SysError";
    this.code = code;
    this.errno = errno;
    this.syscall = syscall;
    if (path !== undefined) this.path = path;
  }
}

/** True when err is a SysError or a Node fs error with the given code ("ENOENT", ...). */
export function hasCode(err: unknown, code: string): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === code;
}
