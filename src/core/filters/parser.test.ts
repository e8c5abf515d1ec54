// Grammar tests: what each filter string parses into, and the exact errors containerd 1.6 gives.
// The expected error messages below are what a real containerd 1.6.20 returned (via `ctr leases ls`),
// except where a comment says otherwise.
import { test } from "node:test";
import assert from "node:assert/strict";
import { BerthError } from "../../errdefs/errors.js";
import { parseSelectors, type Selector } from "./parser.js";

const sel = (fieldpath: string[], operator: Selector["operator"] = "present", value = ""): Selector => ({
  fieldpath,
  operator,
  value,
});

const parses: Array<[string, Selector[]]> = [
  ["", []],
  ["name", [sel(["name"])]],
  ["name==foo", [sel(["name"], "==", "foo")]],
  ["name!=foo", [sel(["name"], "!=", "foo")]],
  ["name~=^fo+", [sel(["name"], "~=", "^fo+")]],
  ["labels.foo", [sel(["labels", "foo"])]],
  ["labels.foo.bar==x", [sel(["labels", "foo", "bar"], "==", "x")]],
  ['labels."foo.bar"==x', [sel(["labels", "foo.bar"], "==", "x")]],
  ['labels."a b"=="c d"', [sel(["labels", "a b"], "==", "c d")]],
  ['"name"==foo', [sel(["name"], "==", "foo")]],
  ["_id", [sel(["_id"])]],
  ["1id", [sel(["1id"])]],
  // Bare values run to the next comma or space and take almost any printable character.
  ["id==a.b", [sel(["id"], "==", "a.b")]],
  ["id==a=b", [sel(["id"], "==", "a=b")]],
  ["ref==b:a-r/x", [sel(["ref"], "==", "b:a-r/x")]],
  ['id==l1"', [sel(["id"], "==", 'l1"')]],
  ["id==l1|", [sel(["id"], "==", "l1|")]],
  ["digest==sha256:0123abcd", [sel(["digest"], "==", "sha256:0123abcd")]],
  ["id==é", [sel(["id"], "==", "é")]],
  // Double quotes work for any value; / and | only after ~=.
  ['topic=="/tasks/exit"', [sel(["topic"], "==", "/tasks/exit")]],
  ["topic~=|^/tasks/|", [sel(["topic"], "~=", "^/tasks/")]],
  ["topic~=/^\\/tasks/", [sel(["topic"], "~=", "^/tasks")]],
  ["x~=|b\\|r|", [sel(["x"], "~=", "b|r")]],
  ['x~="b\\x61r"', [sel(["x"], "~=", "bar")]],
  ['id==""', [sel(["id"], "==", "")]],
  ['labels.""', [sel(["labels", ""])]],
  // Go string escapes inside quotes.
  ['labels."\\x66oo"==bar', [sel(["labels", "foo"], "==", "bar")]],
  ['labels."\\u0066oo"', [sel(["labels", "foo"])]],
  ['x=="\\142ar"', [sel(["x"], "==", "bar")]],
  ['x=="\\xc3\\xa9"', [sel(["x"], "==", "é")]],
  ['x=="\\u00e9\\U0001F600"', [sel(["x"], "==", "é\u{1F600}")]],
  ['x=="a\\tb\\nc\\\\d\\"e"', [sel(["x"], "==", 'a\tb\nc\\d"e')]],
  ['labels."fo\\"o"', [sel(["labels", 'fo"o'])]],
  // An octal escape is one raw byte; alone, \351 is not valid UTF-8 and decodes to U+FFFD.
  ['x=="\\351"', [sel(["x"], "==", "\ufffd")]],
  // Whitespace is skipped before a token, never after a value.
  [" id == l1", [sel(["id"], "==", "l1")]],
  ["labels. foo", [sel(["labels", "foo"])]],
  ["id==l1, labels.foo", [sel(["id"], "==", "l1"), sel(["labels", "foo"])]],
  [
    'name==foo,labels."a.b"!=c,topic~=|x|',
    [sel(["name"], "==", "foo"), sel(["labels", "a.b"], "!=", "c"), sel(["topic"], "~=", "x")],
  ],
];

for (const [input, expected] of parses) {
  void test(`parses ${JSON.stringify(input)}`, () => {
    assert.deepEqual(parseSelectors(input), expected);
  });
}

const errors: Array<[string, string]> = [
  ["labels.x==/tasks/exit", "[labels.x== >|/|< tasks/exit]: invalid quote encountered"],
  ["topic==|/tasks/exit|", "[topic== >|||< /tasks/exit|]: invalid quote encountered"],
  ["labels.x~=/tasks/exit", "[labels.x~=/tasks/ >|e|< xit]: unexpected input: e"],
  ["labels./foo/", "[labels. >|/|< foo/]: invalid quote encountered"],
  ["labels.|foo|", "[labels. >|||< foo|]: invalid quote encountered"],
  ["|id|", "[ >|||< id|]: invalid quote encountered"],
  [",", "[ >|,|< ]: expected field or quoted"],
  ["id==", "[id==]: expected value or quoted"],
  ["id!=", "[id!=]: expected value or quoted"],
  ["id~=", "[id~=]: expected value or quoted"],
  ["labels.foo==bar,", "[labels.foo==bar,]: expected field or quoted"],
  ['labels."foo', '[labels. >|"|< foo]: quoted literal not terminated'],
  ['labels.foo=="bar', '[labels.foo== >|"|< bar]: quoted literal not terminated'],
  ['"id', '[ >|"|< id]: quoted literal not terminated'],
  ['id"abc', '[id >|"|< abc]: quoted literal not terminated'],
  ['labels.foo=="a\\"', '[labels.foo== >|"|< a\\"]: quoted literal not terminated'],
  ['x=="a\nb"', '[x== >|"|< a\nb"]: quoted literal not terminated'],
  ['id"abc"', '[id >|"|< abc"]: expected an operator ("=="|"!="|"~=")'],
  ["id=l1", '[id >|=|< l1]: unsupported operator "="'],
  ["id===l1", '[id >|=|< ==l1]: unsupported operator "==="'],
  ["id~~l1", '[id >|~|< ~l1]: unsupported operator "~~"'],
  ["id!l1", '[id >|!|< l1]: unsupported operator "!"'],
  ["id==!x", '[id >|=|< =!x]: unsupported operator "==!"'],
  ["id l1", '[id  >|l|< 1]: expected an operator ("=="|"!="|"~=")'],
  ["labels .foo", '[labels  >|.|< foo]: expected an operator ("=="|"!="|"~=")'],
  ["id ,x", '[id  >|,|< x]: expected an operator ("=="|"!="|"~=")'],
  ["labels.foo-x", '[labels.foo >|-|< x]: expected an operator ("=="|"!="|"~=")'],
  ["label-s", '[label >|-|< s]: expected an operator ("=="|"!="|"~=")'],
  ['labels."" ', '[labels."" ]: expected an operator ("=="|"!="|"~=")'],
  [" id == l1 ", "[ id == l1 >| |< ]: unexpected input:  "],
  ["id==l1 x", "[id==l1 >| |< x]: unexpected input:  "],
  ["id==l1 ,id", "[id==l1 >| |< ,id]: unexpected input:  "],
  ["id==l1\t", "[id==l1 >|\t|< ]: unexpected input: \t"],
  ['labels."a.b"==c d', '[labels."a.b"==c >| |< d]: unexpected input:  '],
  ['id=="l1".x', '[id=="l1" >|.|< x]: unexpected input: .'],
  ['id=="l1"==', '[id=="l1" >|=|< =]: unexpected input: ='],
  ["labels..foo", "[labels. >|.|< foo]: expected field or quoted"],
  [".foo", "[ >|.|< foo]: expected field or quoted"],
  ["id.", "[id.]: expected field or quoted"],
  ["id==l1,,id", "[id==l1, >|,|< id]: expected field or quoted"],
  ["labels.'f'", "[labels. >|'|< f']: expected field or quoted"],
  // containerd cuts the marker inside the UTF-8 bytes of é; we mark the whole character.
  ["labels.é", "[labels. >|é|< ]: expected field or quoted"],
  ["id==.x", "[id== >|.|< x]: expected value or quoted"],
  ['labels."fo\\o"', '[labels. >|"|< fo\\o"]: illegal escape sequence'],
  ['labels.x=="\\/tasks"', '[labels.x== >|"|< \\/tasks"]: illegal escape sequence'],
  ['labels.foo~=|a\\"|', '[labels.foo~= >|||< a\\"|]: illegal escape sequence'],
  ['labels.foo=="a\\', '[labels.foo== >|"|< a\\]: illegal escape sequence'],
  ['labels.foo=="\\x6"', '[labels.foo== >|"|< \\x6"]: illegal numeric escape sequence'],
  ['labels.foo=="\\19"', '[labels.foo== >|"|< \\19"]: illegal numeric escape sequence'],
  ['labels.foo=="\\400"', '[labels.foo== >|"|< \\400"]: unquoting failed: quote syntax error'],
  ['labels.foo=="\\U00110000"', '[labels.foo== >|"|< \\U00110000"]: unquoting failed: quote syntax error'],
  // Not reachable through a command line, but possible over gRPC.
  ["id==l1\0", "[id==l1 >|\0|< ]: unexpected input: \ufffd"],
  ["id\0", "[id >|\0|< ]: unexpected null"],
];

for (const [input, where] of errors) {
  void test(`rejects ${JSON.stringify(input)}`, () => {
    assert.throws(
      () => parseSelectors(input),
      (err: unknown) => {
        assert.ok(err instanceof BerthError);
        assert.equal(err.code, "invalid-argument");
        assert.equal(err.message, `filters: parse error: ${where}: invalid argument`);
        return true;
      },
    );
  });
}

void test("fieldpaths are frozen so an adaptor cannot change what later matches ask for", () => {
  const [first] = parseSelectors("labels.foo");
  assert.ok(first);
  assert.ok(Object.isFrozen(first.fieldpath));
});
