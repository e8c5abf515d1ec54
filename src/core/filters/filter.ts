// The Filter contract used by every List call and Events.Subscribe, with containerd's semantics:
// selectors in one string are ANDed, separate strings are ORed, no strings match everything.
import { compileGoRegexp } from "./go-regexp.js";
import { parseSelectors, type Selector } from "./parser.js";

/** Resolves a field path on one object: its value as a string, and whether the field is set at all. */
export type Adaptor = (fieldpath: string[]) => { value: string; present: boolean };

export interface Filter {
  match(adaptor: Adaptor): boolean;
}

export const alwaysMatch: Filter = { match: () => true };

const neverMatch: Filter = { match: () => false };

export function anyOf(filters: readonly Filter[]): Filter {
  return { match: (adaptor) => filters.some((f) => f.match(adaptor)) };
}

export function allOf(filters: readonly Filter[]): Filter {
  return { match: (adaptor) => filters.every((f) => f.match(adaptor)) };
}

function selectorFilter({ fieldpath, operator, value }: Selector): Filter {
  // The path is frozen at parse time, so an adaptor cannot alter what later matches ask for.
  const path = fieldpath as string[];
  switch (operator) {
    case "present":
      return { match: (adaptor) => adaptor(path).present };
    case "==":
      return {
        match: (adaptor) => {
          const field = adaptor(path);
          return field.present && field.value === value;
        },
      };
    case "!=":
      // Deliberately ignores presence, like containerd: a missing field compares as "".
      return { match: (adaptor) => adaptor(path).value !== value };
    case "~=": {
      // containerd 1.6 accepts a bad pattern at parse time and then never matches it.
      const re = compileGoRegexp(value);
      if (re === undefined) return neverMatch;
      return { match: (adaptor) => re.test(adaptor(path).value) };
    }
  }
}

/** Parses one filter string. Throws BerthError invalid-argument with containerd's message. */
export function parseFilter(s: string): Filter {
  const selectors = parseSelectors(s);
  if (selectors.length === 0) return alwaysMatch;
  return allOf(selectors.map(selectorFilter));
}

/** Parses a request's repeated filter strings, ORed; an empty list matches everything. */
export function parseFilters(filters: readonly string[]): Filter {
  if (filters.length === 0) return alwaysMatch;
  return anyOf(filters.map(parseFilter));
}
