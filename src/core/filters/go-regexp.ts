// Compiles a Go (RE2) regular expression, as used by containerd's `~=`, into a JavaScript RegExp.
// Only the cheap, common differences are translated; anything else that JS rejects counts as invalid.

const posixClasses: Record<string, string> = {
  alnum: "0-9A-Za-z",
  alpha: "A-Za-z",
  ascii: "\\x00-\\x7F",
  blank: "\\t ",
  cntrl: "\\x00-\\x1F\\x7F",
  digit: "0-9",
  graph: "\\x21-\\x7E",
  lower: "a-z",
  print: "\\x20-\\x7E",
  punct: "\\x21-\\x2F\\x3A-\\x40\\x5B-\\x60\\x7B-\\x7E",
  space: "\\t\\n\\v\\f\\r ",
  upper: "A-Z",
  word: "0-9A-Za-z_",
  xdigit: "0-9A-Fa-f",
};

// Unicode general categories Go accepts by name; any other \p{Name} is a script in Go.
const generalCategories = new Set(
  "C Cc Cf Co Cs L Ll Lm Lo Lt Lu M Mc Me Mn N Nd Nl No P Pc Pd Pe Pf Pi Po Ps S Sc Sk Sm So Z Zl Zp Zs Any".split(
    " ",
  ),
);

// Go's \s is ASCII-only, JavaScript's is Unicode.
const goSpace = "\\t\\n\\f\\r ";

// Internal signal for "Go syntax we do not translate"; compileGoRegexp catches it, it never escapes.
class Unsupported extends Error {}

function hexByte(ch: string): string {
  return `\\x${(ch.codePointAt(0) ?? 0).toString(16).padStart(2, "0")}`;
}

class Translator {
  private i = 0;
  private out = "";

  constructor(
    private readonly src: string,
    private readonly dotAll: boolean,
  ) {}

  run(): string {
    while (this.i < this.src.length) this.outside();
    return this.out;
  }

  private outside(): void {
    const rest = this.src.slice(this.i);
    const c = rest[0] ?? "";
    if (c === "\\") {
      this.escape(false);
    } else if (c === "[") {
      this.charClass();
    } else if (rest.startsWith("(?P<")) {
      this.out += "(?<";
      this.i += 4;
    } else if (/^\(\?[=!<]/.test(rest)) {
      // Lookarounds do not exist in RE2, nor does `(?<name>` in the Go that built containerd 1.6.
      throw new Unsupported(rest.slice(0, 4));
    } else if (c === ".") {
      this.out += this.dotAll ? "." : "[^\\n]"; // JS's '.' also stops at \r, \u2028 and \u2029
      this.i++;
    } else if (c === "{") {
      // Go reads '{' as a literal unless it starts a valid repeat; JS (with the u flag) refuses it.
      const repeat = /^\{\d+(,\d*)?\}/.exec(rest);
      this.out += repeat ? repeat[0] : "\\{";
      this.i += repeat ? repeat[0].length : 1;
    } else if (c === "}" || c === "]") {
      this.out += `\\${c}`;
      this.i++;
    } else {
      const cp = rest.codePointAt(0) ?? 0;
      this.out += String.fromCodePoint(cp);
      this.i += cp > 0xffff ? 2 : 1;
    }
  }

  private charClass(): void {
    this.out += "[";
    this.i++;
    if (this.src[this.i] === "^") {
      this.out += "^";
      this.i++;
    }
    // A ']' right after the opening bracket is a literal in Go; in JS it would close an empty class.
    if (this.src[this.i] === "]") {
      this.out += "\\]";
      this.i++;
    }
    for (;;) {
      const rest = this.src.slice(this.i);
      const c = rest[0];
      if (c === undefined) throw new Unsupported("missing closing ]");
      if (c === "]") {
        this.out += "]";
        this.i++;
        return;
      }
      const posix = /^\[:(\^?)([a-z]+):\]/.exec(rest);
      if (posix) {
        const range = posixClasses[posix[2] ?? ""];
        if (range === undefined || posix[1] === "^") throw new Unsupported(posix[0]);
        this.out += range;
        this.i += posix[0].length;
      } else if (c === "\\") {
        this.escape(true);
      } else if (c === "[") {
        this.out += "\\[";
        this.i++;
      } else {
        const cp = rest.codePointAt(0) ?? 0;
        this.out += String.fromCodePoint(cp);
        this.i += cp > 0xffff ? 2 : 1;
      }
    }
  }

  private escape(inClass: boolean): void {
    const rest = this.src.slice(this.i);
    const e = rest[1];
    if (e === undefined) throw new Unsupported("trailing backslash");
    this.i += 2;
    if ("dDwW".includes(e) || "fnrtv".includes(e)) {
      this.out += `\\${e}`;
    } else if (e === "a") {
      this.out += "\\x07";
    } else if (e === "s") {
      this.out += inClass ? goSpace : `[${goSpace}]`;
    } else if (e === "S") {
      // Inside a class JS's Unicode \S is the closest cheap stand-in.
      this.out += inClass ? "\\S" : `[^${goSpace}]`;
    } else if (e === "b" || e === "B") {
      if (inClass) throw new Unsupported("\\b in class");
      this.out += `\\${e}`;
    } else if (e === "A" && !inClass) {
      this.out += "(?<![\\s\\S])";
    } else if (e === "z" && !inClass) {
      this.out += "(?![\\s\\S])";
    } else if (e === "Q") {
      const end = this.src.indexOf("\\E", this.i);
      const literal = end < 0 ? this.src.slice(this.i) : this.src.slice(this.i, end);
      this.i = end < 0 ? this.src.length : end + 2;
      for (const ch of literal) this.out += /[A-Za-z0-9]/.test(ch) || ch > "\x7f" ? ch : hexByte(ch);
    } else if (e === "x") {
      const braced = /^\\x\{([0-9A-Fa-f]+)\}/.exec(rest);
      const short = /^\\x([0-9A-Fa-f]{2})/.exec(rest);
      if (braced) {
        this.out += `\\u{${braced[1]}}`;
        this.i += braced[0].length - 2;
      } else if (short) {
        this.out += short[0];
        this.i += 2;
      } else {
        throw new Unsupported("bad \\x");
      }
    } else if (e >= "0" && e <= "7") {
      // Go has no backreferences: \1 alone is an error, \0, \12, \123 are octal.
      const octal = /^\\([0-7]{1,3})/.exec(rest)?.[1] ?? e;
      if (e !== "0" && octal.length === 1) throw new Unsupported("backreference");
      this.out += `\\u{${Number.parseInt(octal, 8).toString(16)}}`;
      this.i += octal.length - 1;
    } else if (e === "p" || e === "P") {
      const m = /^\\[pP](?:\{(\^?)([A-Za-z_]+)\}|([A-Za-z]))/.exec(rest);
      if (!m) throw new Unsupported("bad \\p");
      const name = m[2] ?? m[3] ?? "";
      const negated = (e === "P") !== (m[1] === "^");
      const property = generalCategories.has(name) ? name : `Script=${name}`;
      this.out += `\\${negated ? "P" : "p"}{${property}}`;
      this.i += m[0].length - 2;
    } else if (e < "\x80" && !/[A-Za-z0-9]/.test(e)) {
      // Go: an escaped ASCII non-word character is always itself.
      this.out += hexByte(e);
    } else {
      throw new Unsupported(`\\${e}`);
    }
  }
}

/**
 * Returns undefined when the pattern is not valid (containerd 1.6 then logs and never matches).
 * Leading flag groups such as `(?i)` or `(?is)` are honoured; flags mid-pattern or scoped
 * `(?i:…)` groups are not (Node 20's RegExp has no modifiers), so such patterns never match.
 */
export function compileGoRegexp(pattern: string): RegExp | undefined {
  let goFlags = "";
  let body = pattern;
  for (let lead = /^\(\?([imsU]+)\)/.exec(body); lead; lead = /^\(\?([imsU]+)\)/.exec(body)) {
    goFlags += lead[1] ?? "";
    body = body.slice(lead[0].length);
  }
  // (?U) only swaps greediness, which cannot change whether something matches.
  const flags = [..."ims"].filter((f) => goFlags.includes(f)).join("") + "u";
  try {
    return new RegExp(new Translator(body, goFlags.includes("s")).run(), flags);
  } catch {
    return undefined;
  }
}
