// containerd's identifier rules: namespaces and container ids are dotted/dashed alphanumerics, <= 76 chars.
import { invalidArgument } from "../../errdefs/errors.js";

const maxLength = 76;
const identifierRe = /^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$/;

/** Throws InvalidArgument unless s is a valid containerd identifier (namespace, container id). */
export function validateIdentifier(s: string): void {
  if (s.length === 0) throw invalidArgument("identifier must not be empty");
  if (s.length > maxLength)
    throw invalidArgument(
      `identifier ${JSON.stringify(s)} greater than maximum length (${maxLength} characters)`,
    );
  if (!identifierRe.test(s))
    throw invalidArgument(`identifier ${JSON.stringify(s)} must match ${identifierRe.source}`);
}
