// Parses one filter string into its selectors (containerd's filters/parser.go grammar):
//   selectors := selector ("," selector)*    selector := fieldpath [operator value]
//   fieldpath := field ("." field)*          operator := "==" | "!=" | "~="
import { invalidArgument, type BerthError } from "../../errdefs/errors.js";
import { EOF, FilterScanner, type Token } from "./scanner.js";
import { unquote } from "./unquote.js";

export type Operator = "present" | "==" | "!=" | "~=";

export interface Selector {
  /** Each element is one field, already unquoted: `labels."a.b"` is ["labels", "a.b"]. */
  readonly fieldpath: readonly string[];
  readonly operator: Operator;
  /** Empty for "present". */
  readonly value: string;
}

const COMMA = 0x2c;
const DOT = 0x2e;

/** Formats errors exactly as containerd does, e.g. `filters: parse error: [id >|=|< x]: unsupported operator "="`. */
function parseError(input: string, pos: number, message: string): BerthError {
  let where: string;
  if (pos < input.length) {
    const width = (input.codePointAt(pos) ?? 0) > 0xffff ? 2 : 1;
    where = `[${input.slice(0, pos)} >|${input.slice(pos, pos + width)}|< ${input.slice(pos + width)}]`;
  } else {
    where = `[${input}]`;
  }
  return invalidArgument(`filters: parse error: ${where}: ${message}`);
}

class Parser {
  private readonly scanner: FilterScanner;

  constructor(private readonly input: string) {
    this.scanner = new FilterScanner(input);
  }

  selectors(): Selector[] {
    const out = [this.selector()];
    for (;;) {
      const ch = this.scanner.peek();
      if (ch === EOF) return out;
      if (ch !== COMMA) {
        // Note that whitespace before a comma lands here too, as in containerd.
        const shown = ch >= 0 ? String.fromCodePoint(ch) : "\ufffd";
        throw this.error(this.scanner.offset, `unexpected input: ${shown}`);
      }
      const separator = this.scanner.scan();
      if (separator.kind !== "separator") throw this.error(separator.pos, "expected a separator");
      out.push(this.selector());
    }
  }

  private selector(): Selector {
    const fieldpath = Object.freeze(this.fieldpath());
    const next = this.scanner.peek();
    if (next === COMMA || next === EOF) return { fieldpath, operator: "present", value: "" };
    const operator = this.operator();
    // Only regular expressions may use the / and | quotes, so `topic==/tasks/exit` is an error.
    const value = this.value(operator === "~=");
    return { fieldpath, operator, value };
  }

  private fieldpath(): string[] {
    const fields = [this.field()];
    while (this.scanner.peek() === DOT) {
      const separator = this.scanner.scan();
      if (separator.kind !== "separator") throw this.error(separator.pos, "expected a field separator (`.`)");
      fields.push(this.field());
    }
    return fields;
  }

  private field(): string {
    const token = this.scanner.scan();
    switch (token.kind) {
      case "field":
        return token.text;
      case "quoted":
        return this.unquote(token, false);
      case "illegal":
        throw this.error(token.pos, this.scanner.error);
      default:
        throw this.error(token.pos, "expected field or quoted");
    }
  }

  private operator(): Exclude<Operator, "present"> {
    const token = this.scanner.scan();
    if (token.kind === "operator") {
      if (token.text === "==" || token.text === "!=" || token.text === "~=") return token.text;
      throw this.error(token.pos, `unsupported operator "${token.text}"`);
    }
    if (token.kind === "illegal") throw this.error(token.pos, this.scanner.error);
    throw this.error(token.pos, 'expected an operator ("=="|"!="|"~=")');
  }

  private value(allowRegexpQuotes: boolean): string {
    const token = this.scanner.scan();
    switch (token.kind) {
      case "value":
      case "field":
        return token.text;
      case "quoted":
        return this.unquote(token, allowRegexpQuotes);
      case "illegal":
        throw this.error(token.pos, this.scanner.error);
      default:
        throw this.error(token.pos, "expected value or quoted");
    }
  }

  private unquote(token: Token, allowRegexpQuotes: boolean): string {
    if (!allowRegexpQuotes && !token.text.startsWith('"')) {
      throw this.error(token.pos, "invalid quote encountered");
    }
    const text = unquote(token.text);
    if (text === undefined) throw this.error(token.pos, "unquoting failed: quote syntax error");
    return text;
  }

  private error(pos: number, message: string): BerthError {
    return parseError(this.input, pos, message);
  }
}

/**
 * The selectors of one filter string; all of them must match. The empty string has none and so
 * matches everything. Throws BerthError invalid-argument with containerd's message on bad input.
 */
export function parseSelectors(input: string): Selector[] {
  if (input === "") return [];
  return new Parser(input).selectors();
}
