// Content digests: the one accepted form ("sha256:" + 64 lowercase hex) and its validation.
// Anything that turns a digest into a path must go through validateDigest first.
import { invalidArgument } from "../../errdefs/errors.js";

const digestRe = /^sha256:[0-9a-f]{64}$/;
const hexRe = /^[0-9a-f]{64}$/;

export function isDigest(s: string): boolean {
  return digestRe.test(s);
}

/** Returns the hex part of a valid digest; InvalidArgument otherwise. */
export function validateDigest(s: string): string {
  if (!digestRe.test(s)) throw invalidArgument(`invalid digest ${JSON.stringify(s)}`);
  return s.slice("sha256:".length);
}

/** True for a bare 64-char lowercase hex string (a blob file name). */
export function isSha256Hex(s: string): boolean {
  return hexRe.test(s);
}

export function sha256Digest(hex: string): string {
  return `sha256:${hex}`;
}
