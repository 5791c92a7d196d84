"""The device's YANG schema: a YANG library (RFC 8525) and the yangson model built from it.

The module set is resolved once at start-up: each implemented module is looked up in the
deployer's folders, the project's ``yang/`` and pyang's installed IETF/IANA copies, and its
imports and includes are added as import-only modules, so a deployer names only the modules
they want implemented. Validation, XML conversion, NETCONF capabilities and the served
``ietf-yang-library`` data all derive from this one object, never rebuilt per request.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from operator import is_not
from pathlib import Path
from typing import Any

from yangson import DataModel
from yangson.datatype import (
    BinaryType,
    DataType,
    EmptyType,
    IdentityrefType,
    LeafrefType,
    LinkType,
    StringType,
    UnionType,
)
from yangson.enumerations import ContentType, ValidationScope
from yangson.exceptions import (
    RawDataError,
    RawTypeError,
    UnexpectedInput,
    ValidationError,
    YangsonException,
)
from yangson.instance import EntryKeys, EntryValue, InstanceRoute, ResourceIdParser
from yangson.schemanode import (
    DataNode,
    InternalNode,
    LeafListNode,
    ListNode,
    SchemaNode,
    SchemaTreeNode,
    TerminalNode,
)
from yangson.statement import ModuleParser, Statement

from zerotouch_plugin.artifacts.yang import prepared, pyang_module_dirs, yang_dir
from zerotouch_plugin.device.keyindex import entry_key, key_index
from zerotouch_plugin.errors import ConfigError, PayloadTooLarge, SchemaError

__all__ = [
    "DEFAULT_MODULES",
    "NOT_XML_CHAR",
    "DeviceSchema",
    "ModuleInfo",
    "entry_key",
    "key_members",
    "load_device_schema",
]

# Implemented modules of the reference device -> enabled features. zerotouch-bootstrap is
# added when its file is present in the project's yang/ folder.
DEFAULT_MODULES: Mapping[str, tuple[str, ...]] = {
    "ietf-system": ("timezone-name",),
    "ietf-interfaces": (),
    "iana-if-type": (),
    "ietf-yang-library": (),
    # RFC 6241 §8: the capabilities this server implements.
    "ietf-netconf": ("writable-running", "startup", "validate", "rollback-on-error", "xpath"),
    "ietf-netconf-monitoring": (),
    "ietf-netconf-notifications": (),
    # RFC 8040 §9.1: the RESTCONF server's capabilities (and streams, none yet).
    "ietf-restconf-monitoring": (),
}
_PROJECT_MODULES: Mapping[str, tuple[str, ...]] = {"zerotouch-bootstrap": ()}


@dataclass(frozen=True)
class ModuleInfo:
    """One module or submodule of the library, as RFC 8525 describes it."""

    name: str
    revision: str
    namespace: str
    prefix: str
    path: Path
    implemented: bool
    features: tuple[str, ...] = ()
    submodules: tuple[tuple[str, str, Path], ...] = ()

    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")


class _StatementParser(ModuleParser):  # type: ignore[misc]
    """yangson's module parser without its expected-revision check (we find the revision)."""

    def parse(self) -> Statement:
        self.opt_separator()
        return self.statement()


def _parse_file(path: Path) -> Statement:
    try:
        return _StatementParser(path.read_text(encoding="utf-8")).parse()
    except (OSError, YangsonException) as exc:
        raise ConfigError(f"{path}: cannot read YANG module: {exc}") from exc


def _revision(st: Statement) -> str:
    """The first revision statement, as yangson checks it (RFC 7950 §7.1.9: newest first)."""
    rev = st.find1("revision")
    return rev.argument if rev else ""


class _Finder:
    """Finds ``name[@revision].yang`` in the search folders (first folder wins)."""

    def __init__(self, dirs: Sequence[Path]) -> None:
        self.dirs = tuple(dirs)
        self._cache: dict[tuple[str, str | None], tuple[Path, Statement]] = {}

    def find(self, name: str, revision: str | None) -> tuple[Path, Statement]:
        key = (name, revision)
        if key in self._cache:
            return self._cache[key]
        for folder in self.dirs:
            candidates = (
                [folder / f"{name}@{revision}.yang", folder / f"{name}.yang"]
                if revision
                else [*sorted(folder.glob(f"{name}@*.yang"), reverse=True), folder / f"{name}.yang"]
            )
            for path in candidates:
                if not path.is_file():
                    continue
                st = _parse_file(path)
                if st.argument != name or (revision and _revision(st) != revision):
                    continue
                self._cache[key] = (path, st)
                return path, st
        wanted = f"{name}@{revision}" if revision else name
        raise ConfigError(
            f"YANG module {wanted} not found in {', '.join(str(d) for d in self.dirs)}"
        )


def _resolve(
    implemented: Mapping[tuple[str, str | None], tuple[str, ...]], finder: _Finder
) -> tuple[ModuleInfo, ...]:
    """Implemented modules plus the closure of their imports (import-only)."""
    found: dict[str, ModuleInfo] = {}
    pending: list[tuple[str, str | None, bool, tuple[str, ...]]] = [
        (name, rev, True, feats) for (name, rev), feats in implemented.items()
    ]
    while pending:
        name, rev, impl, feats = pending.pop(0)
        if name in found:
            if impl and not found[name].implemented:
                old = found[name]
                found[name] = ModuleInfo(
                    old.name, old.revision, old.namespace, old.prefix, old.path, True, feats,
                    old.submodules,
                )  # fmt: skip
            continue
        path, st = finder.find(name, rev)
        ns = st.find1("namespace", required=True).argument
        prefix = st.find1("prefix", required=True).argument
        subs: list[tuple[str, str, Path]] = []
        for inc in st.find_all("include"):
            rd = inc.find1("revision-date")
            spath, sst = finder.find(inc.argument, rd.argument if rd else None)
            subs.append((inc.argument, _revision(sst), spath))
            for imp in sst.find_all("import"):
                ird = imp.find1("revision-date")
                pending.append((imp.argument, ird.argument if ird else None, False, ()))
        found[name] = ModuleInfo(
            name, _revision(st), ns, prefix, path, impl, tuple(feats), tuple(subs)
        )
        for imp in st.find_all("import"):
            ird = imp.find1("revision-date")
            pending.append((imp.argument, ird.argument if ird else None, False, ()))
    return tuple(sorted(found.values(), key=lambda m: m.name))


class DeviceSchema:
    """The YANG library of the device and its compiled yangson ``DataModel``."""

    def __init__(self, modules: Sequence[ModuleInfo]) -> None:
        self.modules = tuple(modules)
        self.by_name: Mapping[str, ModuleInfo] = {m.name: m for m in self.modules}
        self.by_namespace: Mapping[str, ModuleInfo] = {m.namespace: m for m in self.modules}
        digest = hashlib.sha256()
        for m in self.modules:
            digest.update(f"{m.name}@{m.revision}:{m.implemented}:{','.join(m.features)};".encode())
        self.content_id = digest.hexdigest()[:16]
        dirs: list[str] = []
        for m in self.modules:
            for p in (m.path, *(s[2] for s in m.submodules)):
                if str(p.parent) not in dirs:
                    dirs.append(str(p.parent))
        try:
            self.data_model = prepared(DataModel(json.dumps(self._library_7895()), dirs))
        except YangsonException as exc:
            raise ConfigError(
                f"the YANG modules do not compile: {type(exc).__name__}: {exc}"
            ) from exc
        self.root: SchemaTreeNode = self.data_model.schema
        self._self_contained = {
            f"{node.ns}:{node.name}"
            for node in self.root.children
            if isinstance(node, DataNode) and not _refers_outside(node)
        }

    def _library_7895(self) -> dict[str, Any]:
        """The RFC 7895 form yangson reads (and the deprecated ``modules-state`` we serve)."""
        entries = []
        for m in self.modules:
            entry: dict[str, Any] = {
                "name": m.name,
                "revision": m.revision,
                "namespace": m.namespace,
                "conformance-type": "implement" if m.implemented else "import",
            }
            if m.features:
                entry["feature"] = list(m.features)
            if m.submodules:
                entry["submodule"] = [{"name": n, "revision": r} for n, r, _ in m.submodules]
            entries.append(entry)
        return {
            "ietf-yang-library:modules-state": {"module-set-id": self.content_id, "module": entries}
        }

    def yang_library(self) -> dict[str, Any]:
        """``ietf-yang-library`` operational data (RFC 8525 §3, plus the RFC 7895 subtree)."""
        implemented = []
        imported = []
        for m in self.modules:
            entry: dict[str, Any] = {
                "name": m.name,
                "revision": m.revision,
                "namespace": m.namespace,
            }
            if m.submodules:
                entry["submodule"] = [{"name": n, "revision": r} for n, r, _ in m.submodules]
            if m.implemented:
                if m.features:
                    entry["feature"] = list(m.features)
                implemented.append(entry)
            else:
                imported.append(entry)
        library = {
            "module-set": [
                {"name": "complete", "module": implemented, "import-only-module": imported}
            ],
            "schema": [{"name": "complete", "module-set": ["complete"]}],
            "datastore": [
                {"name": f"ietf-datastores:{ds}", "schema": "complete"}
                for ds in ("running", "startup", "operational")
            ],
            "content-id": self.content_id,
        }
        legacy = self._library_7895()
        return {"ietf-yang-library:yang-library": library, **legacy}

    def module_of_namespace(self, namespace: str) -> ModuleInfo:
        try:
            return self.by_namespace[namespace]
        except KeyError:
            raise SchemaError(f"unknown namespace {namespace!r}") from None

    def validate(
        self,
        tree: Mapping[str, Any],
        *,
        config: bool = True,
        previous: Mapping[str, Any] | None = None,
        budget: int | None = None,
    ) -> None:
        """Raise ``SchemaError`` (path, rule) unless ``tree`` is valid (RFC 7950 §8).

        ``previous`` is a tree known to be valid that ``tree`` was derived from without
        mutation (edits copy what they change and share the rest), so what is the very same
        object is known valid. When no node of the schema has a must, when, leafref or
        instance-identifier (validity that depends on other data), validity is local: yangson
        is given ``tree`` with every list cut down to its new or changed entries (one entry
        of an unchanged list), and the checks that need the whole list (unique keys,
        max-elements) are made here; lists with ``unique`` or ``min-elements`` above 1 stay
        whole. The cost then grows with the change, not with the datastore. Otherwise a
        top-level subtree that is the very same object skips the syntax checks, and the
        semantic ones too when nothing in it refers to other data; XPath checks see the
        whole tree.

        ``budget`` caps the list entries handed to yangson (whose cost per entry grows with
        the list's length): ``PayloadTooLarge`` (too-big) beyond it, before any is checked.
        """
        ctype = ContentType.config if config else ContentType.all
        try:
            if config and all(m in self._self_contained for m in (*tree, *(previous or ()))):
                reduced = _reduced(self.root, tree, previous, "", top=True)
                _check_budget(reduced, budget)
                _check_characters(reduced)
                for part in _parts(reduced):
                    self.data_model.from_raw(part).validate(ValidationScope.all, ctype)
                return
            unchanged = (
                set()
                if previous is None or not config or any(m not in tree for m in previous)
                else {m for m, v in tree.items() if previous.get(m) is v}
            )
            checked = {m: v for m, v in tree.items() if m not in unchanged}
            _check_characters(checked)
            _check_budget(
                {**checked, **{m: tree[m] for m in unchanged - self._self_contained}}, budget
            )
            inst = self.data_model.from_raw(dict(tree))
            if not unchanged:
                inst.validate(ValidationScope.all, ctype)
                return
            for member in tree:
                if member not in unchanged:
                    inst[member].validate(ValidationScope.all, ctype)
                elif member not in self._self_contained:
                    inst[member].validate(ValidationScope.semantics, ctype)
        except ValidationError as exc:
            path = str(exc.instance.instance_route()) or "/"
            detail = f"{exc.tag}: {exc.message}" if exc.message else str(exc.tag)
            raise SchemaError(detail, path=path) from None
        except RawTypeError as exc:
            raise SchemaError(exc.message, path=exc.path) from None
        except RawDataError as exc:
            raise SchemaError("unknown or misplaced data node", path=exc.path) from None
        except YangsonException as exc:
            raise SchemaError(f"{type(exc).__name__}: {exc}") from None

    def text_to_raw(
        self,
        node: TerminalNode,
        text: str,
        namespaces: Mapping[str | None, str] | None = None,
    ) -> Any:
        """A leaf's lexical value (XML text, a key in a path) as its RFC 7951 JSON value.

        ``namespaces`` maps XML prefixes to namespaces for identityref values (RFC 7950
        §9.10.3); without it the prefix is taken as a module name (RFC 8040 §3.5.3).
        """
        dtype: DataType[Any, Any] = node.type
        while isinstance(dtype, LeafrefType):
            dtype = dtype.ref_type
        if isinstance(dtype, IdentityrefType) and namespaces is not None:
            prefix, _, local = text.strip().rpartition(":")
            module = self.by_namespace.get(namespaces.get(prefix or None, ""))
            if module is None:
                raise SchemaError(f"identity {text.strip()!r}: prefix not bound to a module")
            return f"{module.name}:{local}"
        if isinstance(dtype, StringType):
            return text  # restrictions are checked by validation, with its message
        if not isinstance(dtype, (BinaryType, UnionType)):
            text = text.strip()
        cooked = dtype.parse_value(text)
        raw = None if cooked is None else dtype.to_raw(cooked)
        if raw is None:
            detail = getattr(dtype, "error_message", None) or f"type {_type_name(dtype)}"
            raise SchemaError(f"{text!r} is not a valid value: {detail}")
        return raw

    def raw_to_text(self, node: TerminalNode, raw: Any) -> str:
        """A leaf's RFC 7951 JSON value in lexical (XML) form; identities keep module names."""
        dtype: DataType[Any, Any] = node.type
        if isinstance(dtype, EmptyType):
            return ""
        cooked = dtype.from_raw(raw)
        text: str | None = None if cooked is None else dtype.canonical_string(cooked)
        if text is None:
            raise SchemaError(f"{raw!r} is not a valid value of type {_type_name(dtype)}")
        return text

    def parse_path(self, path: str) -> InstanceRoute:
        """An RFC 8040 §3.5.3 resource identifier (``/mod:a/b=key``) as an InstanceRoute."""
        try:
            return _ResourceIdParser(path, self.data_model.schema).parse()
        except YangsonException as exc:
            raise SchemaError(f"bad resource path: {exc}", path=path) from None
        except AttributeError:  # yangson looks for children of the leaf
            raise SchemaError("bad resource path: a leaf has no children", path=path) from None


class _ResourceIdParser(ResourceIdParser):  # type: ignore[misc]
    """yangson's parser, which refuses a zero-length value after ``=``: RFC 8040 §3.5.3 allows
    it (``interface=`` names the entry whose key is the empty string, as POST's Location may)."""

    def _key_values(self, sn: ListNode | LeafListNode) -> EntryKeys | EntryValue:
        if not self.at_end():
            if self.peek() != "/":
                return super()._key_values(sn)
            self.char("/")  # as yangson's: the "/" after the value is read with it
        if isinstance(sn, LeafListNode):
            return EntryValue("")
        if len(sn.keys) != 1:  # several keys: "list=," for two empty values
            raise UnexpectedInput(self, f"exactly {len(sn.keys)} keys")
        knode = sn.get_data_child(*sn.keys[0])
        return EntryKeys({(knode.name, None if knode.ns == sn.ns else knode.ns): ""})


class _Cut(list[Any]):
    """The kept entries of a list outside any list entry, which yangson is given ``_CHUNK``
    at a time (it walks a list's entries in time that grows with the square of its length)."""


_CHUNK = 500


def _reduced(
    sn: InternalNode, new: Mapping[str, Any], old: Any, path: str, *, top: bool = False
) -> dict[str, Any]:
    """``new`` with its lists cut to what changed since ``old`` (``DeviceSchema.validate``);
    SchemaError for what the cut would hide from yangson: a repeated key, too many entries.
    Only for schemas whose validity is local (no must, when, leafref). ``top``: not inside a
    list entry (its lists may be given to yangson in parts)."""
    out: dict[str, Any] = {}
    before = old if isinstance(old, Mapping) else {}
    for member, value in new.items():
        module, sep, name = member.partition(":")
        child = sn.get_data_child(name, module) if sep else sn.get_data_child(member, sn.ns)
        prior = before.get(member)
        if isinstance(child, ListNode) and isinstance(value, list):
            value = _reduced_list(child, value, prior, f"{path}/{member}")
            if top and len(value) > _CHUNK:
                value = _Cut(value)
        elif isinstance(child, InternalNode) and isinstance(value, Mapping):
            value = _reduced(child, value, prior, f"{path}/{member}", top=top)
        out[member] = value  # anything else (leaves, unknown members) yangson checks
    return out


def _reduced_list(sn: ListNode, new: list[Any], old: Any, path: str) -> list[Any]:
    if sn.unique or sn.min_elements > 1 or not sn.keys:
        return new  # yangson needs every entry
    if sn.max_elements is not None and len(new) > sn.max_elements:
        raise SchemaError("too-many-elements", path=path)
    names = key_members(sn)
    key = entry_key(names)
    prior = old if isinstance(old, list) else []
    changed = _changed_positions(new, prior)
    if changed is None:  # entries removed or moved: compare by key
        by_key = {key(e): e for e in prior}  # a valid list: every entry has its keys, once
        present = {id(e) for e in new}
        candidates = [e for e in new if by_key.get(_key_or_none(key, names, e)) is not e]
    else:
        by_key = {}
        present = set()
        candidates = [new[i] for i in changed]
    seen: set[Any] = set()
    kept: list[Any] = []
    for entry in candidates:
        k = _key_or_none(key, names, entry)
        if k is None:
            kept.append(entry)  # yangson reports what is wrong with it
            continue
        if changed is None:
            before = by_key.get(k)
            clash = before is not None and id(before) in present
        else:  # same places: a key is taken if an unchanged entry holds it
            at = key_index(prior, names).get(k)
            before = prior[at] if at is not None else None
            clash = at is not None and at < len(new) and new[at] is prior[at]
        if k in seen or clash:
            values = [entry[n] for n in names]
            shown = values[0] if len(values) == 1 else tuple(values)
            raise SchemaError(f"non-unique-key: {shown!r}", path=path)
        seen.add(k)
        where = f"{path}={','.join(str(entry[n]) for n in names)}"
        kept.append(_reduced(sn, entry, before, where))
    if not kept and new:  # an unchanged list: one entry for the checks around it
        kept.append(_reduced(sn, new[0], new[0], path))
    return kept


def _changed_positions(new: list[Any], prior: list[Any]) -> list[int] | None:
    """The positions of ``new`` not holding the very object ``prior`` holds there, when
    ``new`` is ``prior`` with entries replaced in place or added at the end; None otherwise
    (then entries are matched by key). The comparison runs in C, not a Python loop."""
    if len(new) < len(prior):
        return None
    shared = len(prior)
    changed = list(compress(range(shared), map(is_not, new, prior)))
    return [*changed, *range(shared, len(new))]


def _key_or_none(key: Callable[[Mapping[str, Any]], Hashable], names: Sequence[str], e: Any) -> Any:
    return key(e) if isinstance(e, Mapping) and all(n in e for n in names) else None


def _parts(tree: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``tree`` with each cut list given ``_CHUNK`` entries at a time, the others their first
    ones: every kept entry is in one part, with all that surrounds it."""
    yield _with_cuts(tree, None, 0)
    for chosen in _cuts(tree):
        for start in range(_CHUNK, len(chosen), _CHUNK):
            yield _with_cuts(tree, chosen, start)


def _cuts(obj: Mapping[str, Any]) -> Iterator[_Cut]:
    for value in obj.values():
        if isinstance(value, _Cut):
            yield value
        elif isinstance(value, Mapping):
            yield from _cuts(value)


def _with_cuts(obj: Mapping[str, Any], chosen: _Cut | None, start: int) -> dict[str, Any]:
    """``obj`` with ``chosen`` cut to the entries from ``start``, the other cuts to their
    first ones."""
    out: dict[str, Any] = {}
    for member, value in obj.items():
        if isinstance(value, _Cut):
            value = value[start : start + _CHUNK] if value is chosen else value[:_CHUNK]
        elif isinstance(value, Mapping):
            value = _with_cuts(value, chosen, start)
        out[member] = value
    return out


def key_members(sn: ListNode) -> list[str]:
    """The RFC 7951 member names of a list's keys, in key order."""
    return [k if ns == sn.ns else f"{ns}:{k}" for k, ns in sn.keys]


def _entries(value: Any) -> int:
    """The list entries (objects in arrays) in an RFC 7951 value."""
    count = 0
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, Mapping):
            pending += [v for v in item.values() if isinstance(v, (Mapping, list))]
        elif isinstance(item, list):
            objects = [v for v in item if isinstance(v, Mapping)]
            count += len(objects)
            pending += objects
    return count


# RFC 7950 §9.4: a string holds the characters of XML 1.0 (§2.2 Char) only. JSON can carry
# the others (RFC 7951), but a datastore holding one could no longer be sent over NETCONF.
NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _check_characters(tree: Mapping[str, Any]) -> None:
    """SchemaError for a member name or string value with a character XML cannot carry;
    the message names it by code point, so the error itself stays sendable."""
    stack: list[tuple[str, Any]] = [("", tree)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, Mapping):
            for member, child in value.items():
                if bad := NOT_XML_CHAR.search(member):
                    raise SchemaError(
                        f"a member name holds U+{ord(bad.group()):04X}, which YANG does not "
                        "allow (RFC 7950 §9.4)",
                        path=path or "/",
                    )
                stack.append((f"{path}/{member}", child))
        elif isinstance(value, list):
            stack.extend((path, item) for item in value)
        elif isinstance(value, str) and (bad := NOT_XML_CHAR.search(value)):
            raise SchemaError(
                f"the value holds U+{ord(bad.group()):04X}, which a YANG string cannot "
                "(RFC 7950 §9.4)",
                path=path,
            )


def _check_budget(tree: Mapping[str, Any], budget: int | None) -> None:
    if budget is None:
        return
    count = _entries(tree)
    if count > budget:
        raise PayloadTooLarge(
            f"this change needs {count} list entries validated, more than the device's "
            f"budget of {budget} (max_edit_entries in device.toml): split it into smaller "
            "edits"
        )


def _links(dtype: DataType[Any, Any]) -> bool:
    if isinstance(dtype, UnionType):
        return any(_links(t) for t in dtype.types)
    return isinstance(dtype, LinkType)


def _refers_outside(node: SchemaNode) -> bool:
    """Whether configuration under ``node`` has XPath-based constraints (must, when,
    leafref, instance-identifier), i.e. validity that may depend on other data."""
    if isinstance(node, DataNode) and not node.config:
        return False
    if getattr(node, "must", None) or getattr(node, "when", None):
        return True
    if isinstance(node, TerminalNode) and _links(node.type):
        return True
    return isinstance(node, InternalNode) and any(_refers_outside(c) for c in node.children)


def _type_name(dtype: DataType[Any, Any]) -> str:
    return str(getattr(dtype, "name", None) or type(dtype).__name__.removesuffix("Type").lower())


def load_device_schema(
    extra_dirs: Sequence[Path] = (),
    extra_modules: Sequence[tuple[str, str]] = (),
    *,
    features: Mapping[str, Sequence[str]] | None = None,
) -> DeviceSchema:
    """Build the device schema: the defaults plus the deployer's ``(name, revision)`` modules.

    ``extra_dirs`` are searched before the project's ``yang/`` and pyang's copies; an empty
    revision picks the newest file found. ``features`` overrides the enabled features per
    module.
    """
    project = yang_dir()
    finder = _Finder([*extra_dirs, project, *pyang_module_dirs()])
    wanted: dict[tuple[str, str | None], tuple[str, ...]] = {
        (name, None): feats for name, feats in DEFAULT_MODULES.items()
    }
    for name, feats in _PROJECT_MODULES.items():
        if any(project.glob(f"{name}@*.yang")):
            wanted[(name, None)] = feats
    for name, rev in extra_modules:
        wanted = {k: v for k, v in wanted.items() if k[0] != name}
        wanted[(name, rev or None)] = ()
    if features:
        wanted = {k: tuple(features.get(k[0], v)) for k, v in wanted.items()}
    return DeviceSchema(_resolve(wanted, finder))
