"""YAML of run and experiment files, and `--set KEY=VALUE` overrides: one line per problem.

The loader is PyYAML's SafeLoader with three changes:
- numbers as YAML 1.2 reads them: `1e-4` and `3e-3` are floats (YAML 1.1 wants a dot: `1.0e-4`);
- a key repeated in one mapping is an error naming the key and the line (PyYAML keeps the last);
- a tag that names a Python object (`!!python/object:...`) is refused by name, not as a syntax error;
- a document whose aliases (`*name`) would expand it past EXPANDED_LIMIT values is refused before it is
  built (a 438-byte "billion laughs" file took 62 s of validation before its one line).
"""

import copy
import re
from pathlib import Path

import yaml

from adapters_geo.errors import AdaptersGeoError

YAML_TAG = "tag:yaml.org,2002:"
FLOAT_12 = re.compile(r"""^(?:[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+
                        |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?)$""", re.X)  # what YAML 1.1's float pattern misses
EXPANDED_LIMIT = 100_000  # values a config may expand to; the largest shipped file has a few hundred
KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class Refused(yaml.YAMLError):
    """Well-formed YAML that a config file may not hold."""

    def __init__(self, what: str, mark, fix: str):
        super().__init__(what)
        self.what, self.line, self.fix = what, mark.line + 1, fix


class StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats, no duplicate keys and no Python tags."""

    def construct_document(self, node):
        sizes: dict[int, int] = {}

        def expanded(n) -> int:  # values the node stands for once every alias is written out (memoised: linear time)
            if id(n) not in sizes:
                children = n.value if isinstance(n, yaml.SequenceNode) else [x for pair in n.value for x in pair] \
                    if isinstance(n, yaml.MappingNode) else []
                sizes[id(n)] = 1 + sum(expanded(c) for c in children)
            return sizes[id(n)]

        if expanded(node) > EXPANDED_LIMIT:
            raise Refused(f"expands through its aliases to more than {EXPANDED_LIMIT:,} values", node.start_mark,
                          "write the values out (a config needs no &anchors / *aliases of that reach)")
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == YAML_TAG + "merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: SafeLoader reports it
                continue
            if repeated:
                raise Refused(f"repeats the key '{key}'", key_node.start_mark, "keep one of the two lines")
            seen.add(key)
        return super().construct_mapping(node, deep)


def _refuse_tag(loader, node):
    tag = node.tag.replace(YAML_TAG, "!!")
    raise Refused(f"uses a YAML tag that is not allowed ({tag})", node.start_mark, "write plain values: numbers, text, lists, mappings")


StrictLoader.add_implicit_resolver(YAML_TAG + "float", FLOAT_12, list("-+0123456789."))
StrictLoader.add_constructor(None, _refuse_tag)


def read_yaml(path):
    """Parse a YAML file; a syntax error, a repeated key or a Python tag is one line naming the file and the line."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AdaptersGeoError(f"{path} is not UTF-8 text (byte {exc.start})", "save it as UTF-8") from None
    try:
        return yaml.load(text, Loader=StrictLoader)
    except Refused as exc:
        raise AdaptersGeoError(f"{path} {exc.what} at line {exc.line}", exc.fix) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise AdaptersGeoError(f"{path} is not valid YAML{where}", "fix the syntax (indentation, colons, quotes)") from None


def read_mapping(path) -> dict:
    """A YAML file that must hold a mapping of sections (a run or experiment file)."""
    data = read_yaml(path)
    if data is None:
        raise AdaptersGeoError(f"{path} is empty", "write its sections as `key: value` lines (see examples/ and experiments/)")
    if not isinstance(data, dict):
        raise AdaptersGeoError(f"{path} does not hold a mapping of sections (it holds a {type(data).__name__})",
                               "write its sections as `key: value` lines (see examples/ and experiments/)")
    return data


def parse_overrides(items) -> dict[str, str]:
    """{dotted key: value text} from ['train.lr=1e-5', ...]; a malformed item is one line."""
    out = {}
    for item in items or ():
        key, eq, text = item.partition("=")
        if not eq or not KEY.match(key.strip()):
            raise AdaptersGeoError(f"--set {item!r} is not KEY=VALUE", "write e.g. --set train.lr=1e-5 (a dotted key, =, a YAML value)")
        out[key.strip()] = text.strip()
    return out


def apply_overrides(data, overrides: dict[str, str]):
    """A copy of `data` with each dotted key set to its value, read as YAML (`1e-5`, `[0, 1]`, `null`)."""
    if not isinstance(data, dict):
        return data  # not a mapping: validation says so, naming the file
    out = copy.deepcopy(data)
    for key, text in overrides.items():
        *parents, last = key.split(".")
        node = out
        for depth, part in enumerate(parents):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                section = ".".join(parents[: depth + 1])
                raise AdaptersGeoError(f"--set {key}={text}: {section} is {child!r}, not a section", f"set {section} itself")
            node = child
        try:
            node[last] = yaml.load(text, Loader=StrictLoader)
        except yaml.YAMLError:
            raise AdaptersGeoError(f"--set {key}={text}: the value is not valid YAML", "quote it, e.g. --set 'task.path=my file.jsonl'") from None
    return out
