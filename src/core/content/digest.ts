// Content digests: the one accepted form ("sha256:" + 64 lowercase hex) and its validation, and
// go-digest's view of any digest (digestProblem), whose texts containerd's errors carry.
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

// go-digest's algorithms and their hex lengths; a Map so that "constructor" is not an algorithm.
const digestHexLength = new Map([
  ["sha256", 64],
  ["sha384", 96],
  ["sha512", 128],
]);
const digestGrammar = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/** What go-digest's Digest.Validate would say about d, or undefined when d is valid. */
export function digestProblem(d: string): string | undefined {
  const colon = d.indexOf(":");
  if (colon <= 0 || colon + 1 === d.length) return "invalid checksum digest format";
  const length = digestHexLength.get(d.slice(0, colon));
  if (length === undefined)
    return digestGrammar.test(d) ? "unsupported digest algorithm" : "invalid checksum digest format";
  const hex = d.slice(colon + 1);
  if (hex.length !== length) return "invalid checksum digest length";
  return /^[a-f0-9]+$/.test(hex) ? undefined : "invalid checksum digest format";
}
