// Decodes a quoted filter token ("…", /…/ or |…|) with Go string-literal escapes, as containerd's
// filters/quote.go does. Works in bytes because Go's \x and octal escapes produce single bytes.

const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

const simpleEscapes: Record<string, number> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, "\\": 0x5c };
const quoteChars = new Set(['"', "/", "|"]);

function pushUtf8(out: number[], codePoint: number): void {
  // Go encodes surrogate halves as U+FFFD rather than failing.
  const safe = codePoint >= 0xd800 && codePoint <= 0xdfff ? 0xfffd : codePoint;
  for (const b of Buffer.from(String.fromCodePoint(safe), "utf8")) out.push(b);
}

function parseHex(digits: string): number | undefined {
  return /^[0-9a-fA-F]+$/.test(digits) ? Number.parseInt(digits, 16) : undefined;
}

/**
 * Returns the decoded text, or undefined for what Go calls a "quote syntax error" (mismatched
 * quotes, a raw newline, an unknown escape, an octal escape above \377, a code point past U+10FFFF).
 */
export function unquote(quoted: string): string | undefined {
  if (quoted.length < 2) return undefined;
  const quote = quoted[0] ?? "";
  if (!quoteChars.has(quote) || quoted[quoted.length - 1] !== quote) return undefined;
  const body = quoted.slice(1, -1);
  if (body.includes("\n")) return undefined;
  if (!body.includes("\\") && !body.includes(quote)) return body;

  const bytes: number[] = [];
  let i = 0;
  while (i < body.length) {
    const c = body[i] ?? "";
    if (c === quote) return undefined;
    if (c !== "\\") {
      const cp = body.codePointAt(i) ?? 0;
      pushUtf8(bytes, cp);
      i += cp > 0xffff ? 2 : 1;
      continue;
    }
    const e = body[i + 1];
    if (e === undefined) return undefined;
    i += 2;
    const simple = simpleEscapes[e];
    if (simple !== undefined) {
      bytes.push(simple);
    } else if (e === "x" || e === "u" || e === "U") {
      const width = e === "x" ? 2 : e === "u" ? 4 : 8;
      const digits = body.slice(i, i + width);
      const value = digits.length === width ? parseHex(digits) : undefined;
      if (value === undefined) return undefined;
      i += width;
      if (e === "x") {
        bytes.push(value); // a raw byte, possibly not valid UTF-8 on its own
      } else {
        if (value > 0x10ffff) return undefined;
        pushUtf8(bytes, value);
      }
    } else if (e >= "0" && e <= "7") {
      const digits = e + body.slice(i, i + 2);
      if (!/^[0-7]{3}$/.test(digits)) return undefined;
      const value = Number.parseInt(digits, 8);
      if (value > 255) return undefined;
      i += 2;
      bytes.push(value);
    } else if (e === quote) {
      bytes.push(e.charCodeAt(0));
    } else {
      return undefined;
    }
  }
  return decoder.decode(Uint8Array.from(bytes));
}
