// Tokenizer for containerd's filter grammar: fields, operators, bare values, separators and the
// three quote styles (" / |). Mirrors containerd 1.6's scanner, quirks included, so errors line up.

/** Pseudo-characters returned by peek() next to real code points. */
export const EOF = -1;
export const ILLEGAL = -2;

export type TokenKind = "eof" | "illegal" | "quoted" | "value" | "field" | "separator" | "operator" | "other";

export interface Token {
  /** Offset in the input where the token starts (where the error marker goes). */
  pos: number;
  kind: TokenKind;
  /** The raw text; quoted tokens keep their quotes and escapes. */
  text: string;
}

const whiteSpace = /\p{White_Space}/u;
// Go's unicode.IsGraphic minus spaces: letters, marks, numbers, punctuation, symbols.
const graphic = /[\p{L}\p{M}\p{N}\p{P}\p{S}]/u;

const BACKSLASH = 0x5c;
const NEWLINE = 0x0a;
const COMMA = 0x2c;
const DOT = 0x2e;

function isSpace(ch: number): boolean {
  return ch >= 0 && whiteSpace.test(String.fromCodePoint(ch));
}

function isQuote(ch: number): boolean {
  return ch === 0x22 /* " */ || ch === 0x2f /* / */ || ch === 0x7c /* | */;
}

function isOperatorChar(ch: number): boolean {
  return ch === 0x3d /* = */ || ch === 0x21 /* ! */ || ch === 0x7e /* ~ */;
}

// containerd 1.6 does not allow '-' in a bare field: `label-s` fails at the '-'.
function isFieldChar(ch: number): boolean {
  return (
    ch === 0x5f /* _ */ ||
    (ch >= 0x41 && ch <= 0x5a) ||
    (ch >= 0x61 && ch <= 0x7a) ||
    (ch >= 0x30 && ch <= 0x39)
  );
}

// A bare value runs until a comma, whitespace or anything unprintable, so `a:b/c"d` is one value.
function isValueChar(ch: number): boolean {
  return ch >= 0 && ch !== COMMA && !isSpace(ch) && graphic.test(String.fromCodePoint(ch));
}

function digitValue(ch: number): number {
  if (ch >= 0x30 && ch <= 0x39) return ch - 0x30;
  if (ch >= 0x61 && ch <= 0x66) return ch - 0x61 + 10;
  if (ch >= 0x41 && ch <= 0x46) return ch - 0x41 + 10;
  return 16; // larger than any digit in any base we use
}

const simpleEscapes = new Set([..."abfnrtv\\"].map((c) => c.codePointAt(0)));

export class FilterScanner {
  /** Start of the character last read. */
  private pos = 0;
  /** Just past the character last read; where "unexpected input" errors point. */
  private ppos = 0;
  /** Set after an operator so that the next token is read as a bare value, not a field. */
  private expectValue = false;
  private firstError = "";

  constructor(readonly input: string) {}

  /** The first lexical error seen (containerd reports only the first). */
  get error(): string {
    return this.firstError;
  }

  get offset(): number {
    return this.ppos;
  }

  /** The next character without consuming it (EOF or ILLEGAL for the pseudo ones). */
  peek(): number {
    const { pos, ppos } = this;
    const ch = this.next();
    this.pos = pos;
    this.ppos = ppos;
    return ch;
  }

  scan(): Token {
    let ch = this.next();
    let start = this.pos;
    while (isSpace(ch)) {
      ch = this.next();
      start = this.pos;
    }
    if (ch === EOF) return { pos: this.pos, kind: "eof", text: "" };
    if (ch === ILLEGAL) return { pos: this.pos, kind: "illegal", text: "" };
    if (isQuote(ch)) {
      const ok = this.scanQuoted(ch);
      return { pos: start, kind: ok ? "quoted" : "illegal", text: this.input.slice(start, this.ppos) };
    }
    if (ch === COMMA || ch === DOT) {
      this.expectValue = false;
      return { pos: start, kind: "separator", text: this.input.slice(start, this.ppos) };
    }
    if (isOperatorChar(ch)) {
      this.skipWhile(isOperatorChar);
      this.expectValue = true;
      return { pos: start, kind: "operator", text: this.input.slice(start, this.ppos) };
    }
    if (this.expectValue) {
      // The first character of a value only has to be none of the above (containerd quirk).
      this.skipWhile(isValueChar);
      this.expectValue = false;
      return { pos: start, kind: "value", text: this.input.slice(start, this.ppos) };
    }
    if (isFieldChar(ch)) {
      this.skipWhile(isFieldChar);
      return { pos: start, kind: "field", text: this.input.slice(start, this.ppos) };
    }
    return { pos: this.pos, kind: "other", text: "" };
  }

  private next(): number {
    if (this.ppos >= this.input.length) {
      this.pos = this.input.length;
      return EOF;
    }
    this.pos = this.ppos;
    const ch = this.input.codePointAt(this.ppos) ?? 0;
    this.ppos += ch > 0xffff ? 2 : 1;
    // A lone surrogate is JavaScript's version of the invalid UTF-8 containerd rejects.
    if (ch >= 0xd800 && ch <= 0xdfff) {
      this.fail("rune error");
      return ILLEGAL;
    }
    if (ch === 0) {
      this.fail("unexpected null");
      return ILLEGAL;
    }
    return ch;
  }

  private skipWhile(accept: (ch: number) => boolean): void {
    while (accept(this.peek())) this.next();
  }

  private fail(message: string): void {
    if (this.firstError === "") this.firstError = message;
  }

  // Validates escapes while finding the closing quote; the decoding itself is unquote()'s job.
  private scanQuoted(quote: number): boolean {
    let legal = true;
    let ch = this.next();
    while (ch !== quote) {
      if (ch === NEWLINE || ch < 0) {
        this.fail("quoted literal not terminated");
        return false;
      }
      if (ch === BACKSLASH) {
        const escape = this.scanEscape(quote);
        ch = escape.ch;
        if (!escape.legal) legal = false;
      } else {
        ch = this.next();
      }
    }
    return legal;
  }

  private scanEscape(quote: number): { ch: number; legal: boolean } {
    const ch = this.next();
    if (simpleEscapes.has(ch) || ch === quote) return { ch: this.next(), legal: true };
    if (ch >= 0x30 && ch <= 0x37) return this.scanDigits(ch, 8, 3);
    if (ch === 0x78 /* x */) return this.scanDigits(this.next(), 16, 2);
    if (ch === 0x75 /* u */) return this.scanDigits(this.next(), 16, 4);
    if (ch === 0x55 /* U */) return this.scanDigits(this.next(), 16, 8);
    this.fail("illegal escape sequence");
    return { ch, legal: false };
  }

  private scanDigits(first: number, base: number, count: number): { ch: number; legal: boolean } {
    let ch = first;
    let n = count;
    while (n > 0 && digitValue(ch) < base) {
      ch = this.next();
      n--;
    }
    if (n > 0) {
      this.fail("illegal numeric escape sequence");
      return { ch, legal: false };
    }
    return { ch, legal: true };
  }
}
