// Matching semantics of parseFilter/parseFilters over a small corpus, in the manner of containerd's
// filters/filter_test.go: each case lists which corpus entries a filter (or filter list) selects.
import { test } from "node:test";
import assert from "node:assert/strict";
import { BerthError } from "../../errdefs/errors.js";
import { alwaysMatch, parseFilter, parseFilters, type Adaptor } from "./filter.js";

type Tree = { [key: string]: string | Tree };

/** Walks nested records one field at a time, so ["labels","a.b"] and ["labels","a","b"] differ. */
function treeAdaptor(tree: Tree): Adaptor {
  return (fieldpath) => {
    let node: string | Tree = tree;
    for (const field of fieldpath) {
      if (typeof node === "string" || !Object.hasOwn(node, field)) return { value: "", present: false };
      node = node[field] as string | Tree;
    }
    return typeof node === "string" ? { value: node, present: true } : { value: "", present: false };
  };
}

const corpus: Tree[] = [
  /* 0 */ {
    name: "foo",
    other: "bar",
    topic: "/tasks/exit",
    labels: { foo: "bar", "foo.bar": "dotted", empty: "" },
  },
  /* 1 */ { name: "bar", other: "foo", topic: "/tasks/start", labels: { bar: "true" } },
  /* 2 */ { name: "foo", topic: "/containers/create", labels: { "a b": "c d", 'quo"te': "|pipe|" } },
  /* 3 */ { name: "fooer", meta: { version: "1.2.3" }, "with-dash": "yes" },
  /* 4 */ { other: "nameless" },
];

function selected(filters: string[]): number[] {
  const filter = parseFilters(filters);
  return corpus.flatMap((entry, i) => (filter.match(treeAdaptor(entry)) ? [i] : []));
}

const cases: Array<[string[], number[]]> = [
  // Nothing to filter on selects everything.
  [[], [0, 1, 2, 3, 4]],
  [[""], [0, 1, 2, 3, 4]],
  ["name".split(" "), [0, 1, 2, 3]],
  [["name==foo"], [0, 2]],
  [['name=="foo"'], [0, 2]],
  [['"name"==foo'], [0, 2]],
  // != compares the value whatever its presence: an entry without a name has "" there.
  [["name!=foo"], [1, 3, 4]],
  [['name!=""'], [0, 1, 2, 3]],
  [['name==""'], []],
  [["name~=^foo"], [0, 2, 3]],
  [["name~=/^fo+$/"], [0, 2]],
  [["name~=|^fo+$|"], [0, 2]],
  [['name~="er$"'], [3]],
  [["name~=(?i)^FOO$"], [0, 2]],
  [['name~=""'], [0, 1, 2, 3, 4]],
  // A pattern Go cannot compile never matches (containerd 1.6 only logs it).
  [["name~=/fo[/"], []],
  [["name!=x,name~=("], []],
  [["labels.foo"], [0]],
  [["labels.foo==bar"], [0]],
  [["labels.foo!=bar"], [1, 2, 3, 4]],
  [['labels."foo.bar"'], [0]],
  [['labels."foo.bar"==dotted'], [0]],
  [["labels.foo.bar"], []],
  // Present with an empty value.
  [["labels.empty"], [0]],
  [['labels.empty==""'], [0]],
  [['labels."a b"=="c d"'], [2]],
  [['labels."quo\\"te"=="|pipe|"'], [2]],
  // Inside |…| an escaped pipe is a plain pipe, so this regex is `^|pipe|$` and matches anything…
  [['labels."quo\\"te"~=|^\\|pipe\\|$|'], [0, 1, 2, 3, 4]],
  // …while `\\\|` gives the regex a literal pipe.
  [['labels."quo\\"te"~=|^\\\\\\|pipe\\\\\\|$|'], [2]],
  [['"with-dash"==yes'], [3]],
  [["meta.version==1.2.3"], [3]],
  [["meta.version~=^1\\.2\\."], [3]],
  [["meta"], []],
  [['topic=="/tasks/exit"'], [0]],
  [["topic~=|^/tasks/|"], [0, 1]],
  [["topic~=/^\\/tasks\\//"], [0, 1]],
  [['topic~="^/containers/"'], [2]],
  // Selectors in one string are ANDed.
  [["name==foo,labels.foo"], [0]],
  [["name==foo,labels.foo==baz"], []],
  [["name~=foo,name!=fooer"], [0, 2]],
  [["name,other"], [0, 1]],
  [["name==foo, topic~=|containers|"], [2]],
  // Separate strings are ORed.
  [
    ["name==bar", "name==fooer"],
    [1, 3],
  ],
  [
    ["labels.foo", "labels.bar", "other==nameless"],
    [0, 1, 4],
  ],
  [
    ["name==foo,labels.foo", "name==bar"],
    [0, 1],
  ],
  [
    ["name==nobody", ""],
    [0, 1, 2, 3, 4],
  ],
  [["name==nobody", "other==nobody"], []],
];

for (const [filters, expected] of cases) {
  void test(`${JSON.stringify(filters)} selects ${JSON.stringify(expected)}`, () => {
    assert.deepEqual(selected(filters), expected);
  });
}

void test("parseFilter of the empty string and parseFilters([]) are alwaysMatch", () => {
  assert.equal(parseFilter(""), alwaysMatch);
  assert.equal(parseFilters([]), alwaysMatch);
  assert.equal(
    alwaysMatch.match(() => ({ value: "", present: false })),
    true,
  );
});

void test("the adaptor receives the parsed fieldpath, quoted fields unquoted", () => {
  const asked: string[][] = [];
  parseFilter('labels."a.b".c,"x y"==z').match((fieldpath) => {
    asked.push([...fieldpath]);
    return { value: "z", present: true };
  });
  assert.deepEqual(asked, [["labels", "a.b", "c"], ["x y"]]);
});

void test("AND stops at the first selector that fails", () => {
  const asked: string[] = [];
  const matched = parseFilter("a==1,b==2,c==3").match((fieldpath) => {
    asked.push(fieldpath.join("."));
    return { value: fieldpath[0] === "b" ? "nope" : fieldpath[0] === "a" ? "1" : "3", present: true };
  });
  assert.equal(matched, false);
  assert.deepEqual(asked, ["a", "b"]);
});

function assertInvalid(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof BerthError);
    assert.equal(err.code, "invalid-argument");
    assert.equal(err.message, message);
    return true;
  });
}

void test("parse errors throw invalid-argument with containerd's text", () => {
  assertInvalid(
    () => parseFilter("topic==/tasks/exit"),
    "filters: parse error: [topic== >|/|< tasks/exit]: invalid quote encountered: invalid argument",
  );
  assertInvalid(
    () => parseFilter('labels."foo'),
    'filters: parse error: [labels. >|"|< foo]: quoted literal not terminated: invalid argument',
  );
});

void test("one bad string fails the whole list", () => {
  assertInvalid(
    () => parseFilters(["name==foo", "bad==", ""]),
    "filters: parse error: [bad==]: expected value or quoted: invalid argument",
  );
});
