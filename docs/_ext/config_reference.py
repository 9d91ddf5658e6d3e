"""The Reference section's generated parts: the config reference, read from common/config.py
when the site is built, and the tables beside it that the code can give.

Directives:

``{config-reference} SECTION``
    A table of every key of one section: ``model``, ``optim``, ``data``, ``top`` (the keys
    outside the sections: ``preset``, ``seed``) or ``block`` (the keys of one layer-plan block,
    a ``[[model.generator]]`` or ``[[model.discriminator]]`` table). Each row gives the key,
    its type as a TOML value, the dataclass default, and its meaning followed by what
    ``validate`` accepts. Name, type and default come from ``dataclasses.fields``; the meaning is the
    field's trailing comment (or the comment lines just above it) read with ``tokenize``; the
    valid values are read with ``ast`` from ``validate`` and ``_validate_block``: the
    ``_one_of`` tuples (ACTIVATIONS, LATENT_DISTRIBUTIONS, ...), the ``_in_range`` texts,
    ``_positive_int``, and the texts of each ``raise ConfigError(key, value, valid)``. The
    class docstring, when there is one, comes first as a paragraph.

``{config-presets}``
    A table of the scalar keys some preset sets to a value other than the dataclass default,
    one column per preset (from ``common.presets.PRESETS``, before validation resolves
    ``data.image_size`` and ``data.channels``). The layer plans are left to ``dcgan describe``.

``{preset-differences}``
    Each preset's source and its deliberate differences from it, as ``common.presets.PRESETS``
    states them (what ``dcgan describe --preset P`` prints first).

``{command-reference}``
    sphinx-argparse's ``argparse`` directive, with the help texts kept as typed: Sphinx's
    smart quotes would turn ``--set`` into an en dash and ``"`` into curly quotes, which a
    reader then copies into a shell.

``{checkpoint-keys} PRESET``
    The tensors of a checkpoint of that preset, from ``common.canonical``: every network key
    with its shape and layout, then the optimizer keys as patterns.

Nothing in the tables is written by hand: rename a field, change a default or a comment, and
the page follows on the next build.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import io
import json
import re
import tokenize
import typing
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective
from sphinxarg.ext import ArgParseDirective

CONFIG_MODULE = "common.config"
SECTIONS = {"model": "ModelConfig", "optim": "OptimConfig", "data": "DataConfig", "top": "Config", "block": "Block"}
# validate()'s helpers: the `valid` text each one raises with (None: taken from the call's
# arguments), the config module's constants filled in.
HELPERS = {
    "_int": "an integer up to {INT_MAX}",
    "_positive_int": "a positive integer up to {INT_MAX}",
    "_one_of": None,
    "_in_range": None,
}
VALIDATORS = ("validate", "_validate_block")
DASH = "—"


# --------------------------------------------------------------------------- reading the source


def _module():
    return importlib.import_module(CONFIG_MODULE)


def _source_path() -> Path:
    return Path(inspect.getsourcefile(_module())).resolve()


def field_comments(source: str, class_name: str) -> dict[str, str]:
    """Field name -> its comment: the trailing one, else the comment lines right above it."""
    trailing: dict[int, str] = {}
    own_line: dict[int, str] = {}
    lines = source.splitlines()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            text = token.string.lstrip("#").strip()
            row = token.start[0]
            (own_line if lines[row - 1].lstrip().startswith("#") else trailing)[row] = text
    comments: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.ClassDef) and node.name == class_name):
            continue
        for statement in node.body:
            if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
                continue
            rows = range(statement.lineno, statement.end_lineno + 1)
            text = " ".join(trailing[row] for row in rows if row in trailing)
            if not text:
                above, row = [], statement.lineno - 1
                while row in own_line:
                    above.insert(0, own_line[row])
                    row -= 1
                text = " ".join(above)
            comments[statement.target.id] = text
    return comments


def _fstring(node: ast.JoinedStr, bound: dict[str, object]) -> str:
    """An f-string's text with the loop variables and the module's constants filled in; other
    values are left out, with an `=` before them (`kernel={block.kernel}` reads `kernel`)."""
    text = ""
    for part in node.values:
        if isinstance(part, ast.Constant):
            text += str(part.value)
        elif isinstance(part.value, ast.Name) and part.value.id in bound:
            text += str(bound[part.value.id])
        else:
            text = text.removesuffix("=")
    return text


def _text(node: ast.AST, bound: dict[str, object]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return _fstring(node, bound)
    return None


def _bindings(loop: ast.For) -> list[dict[str, object]]:
    """The values a `for` over a literal tuple binds, one dict per pass; [] if not literal."""
    if not isinstance(loop.iter, (ast.Tuple, ast.List)):
        return []
    passes = []
    for item in loop.iter.elts:
        if isinstance(loop.target, ast.Name) and isinstance(item, ast.Constant):
            passes.append({loop.target.id: item.value})
        elif isinstance(loop.target, ast.Tuple) and isinstance(item, ast.Tuple):
            passes.append(
                {
                    name.id: value.value
                    for name, value in zip(loop.target.elts, item.elts)
                    if isinstance(name, ast.Name) and isinstance(value, ast.Constant)
                }
            )
        else:
            return []
    return passes


def valid_values(source: str, namespace: dict) -> dict[str, list[str | tuple]]:
    """Dotted key -> what validation accepts, in source order: texts, and tuples of values.

    Keys of a plan block are given as `block.NAME` (`_validate_block`'s `key` is a block's).
    """
    found: dict[str, list[str | tuple]] = {}
    constants = {name: value for name, value in namespace.items() if name.isupper() and isinstance(value, int)}

    def add(key: str | None, valid) -> None:
        if key and valid is not None and valid not in found.setdefault(key, []):
            found[key].append(valid)

    def visit(node: ast.AST, bound: dict[str, object]) -> None:
        if isinstance(node, ast.For) and (passes := _bindings(node)):
            for values in passes:
                for child in node.body:
                    visit(child, {**bound, **values})
            return
        call = node if isinstance(node, ast.Call) else None
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            call = node.exc
        if call is not None and isinstance(call.func, ast.Name) and call.args:
            name, args = call.func.id, call.args
            key = _text(args[0], bound)
            if name == "ConfigError" and len(args) >= 3:
                add(key, _text(args[2], bound))
            elif name == "_one_of" and len(args) >= 3 and isinstance(args[2], ast.Name):
                add(key, tuple(namespace.get(args[2].id, ())) or None)
            elif name == "_in_range" and len(args) >= 5:
                add(key, _text(args[4], bound))
            elif name in HELPERS and HELPERS[name]:
                add(key, HELPERS[name].format_map(constants))
        for child in ast.iter_child_nodes(node):
            visit(child, bound)

    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name in VALIDATORS:
            visit(node, {**constants, "key": "block"} if node.name == "_validate_block" else constants)
    return found


# --------------------------------------------------------------------------- formatting


def toml_literal(value) -> str:
    """A value as `--set` and a TOML file write it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def toml_type(kind) -> str:
    """A field's annotation as the TOML value an override gives (what `_coerce` accepts)."""
    simple = {bool: "boolean", int: "integer", float: "float", str: "string"}
    if kind in simple:
        return simple[kind]
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        if args and args[-1] is Ellipsis:
            return f"array of {toml_type(args[0])}s"
        if len(set(args)) == 1:
            return f"array of {len(args)} {toml_type(args[0])}s"
        return "array"
    if dataclasses.is_dataclass(kind):
        return "table" if kind.__name__ != "Block" else "block table"
    return getattr(kind, "__name__", str(kind))


# What reads as code in a comment: `spans`, "quoted strings", --flags, CONSTANTS, file paths, section.keys.
CODE = re.compile(
    r"`(?P<span>[^`]+)`"
    r'|(?P<code>"[^"\s]*"'
    r"|\[\[[\w.]+\]\]"
    r"|(?<![\w-])--[a-z][\w-]*"
    r"|\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b"
    r"|\b[\w/]+\.py\b"
    r"|\b(?:model|optim|data)\.[a-z_]+\b)"
)


def _inline(text: str) -> list[nodes.Node]:
    """Text with what reads as code (see CODE) as code, so that no quote or dash is curled."""
    parts: list[nodes.Node] = []
    position = 0
    for match in CODE.finditer(text):
        if match.start() > position:
            parts.append(nodes.Text(text[position : match.start()]))
        code = match.group("span") or match.group("code")
        parts.append(nodes.literal(code, code))
        position = match.end()
    if position < len(text):
        parts.append(nodes.Text(text[position:]))
    return parts


def _cell(*children: nodes.Node) -> nodes.entry:
    return nodes.entry("", nodes.paragraph("", "", *children))


def _code(text: str) -> nodes.literal:
    return nodes.literal(text, text)


def _table(headers: list[str], rows: list[list[nodes.entry]], widths: list[int], kind: str) -> nodes.table:
    table = nodes.table(classes=["config-reference", kind, "colwidths-given"])
    group = nodes.tgroup(cols=len(headers))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    head += nodes.row("", *(_cell(nodes.Text(h)) for h in headers))
    group += head
    body = nodes.tbody()
    for row in rows:
        body += nodes.row("", *row)
    group += body
    return table


def _valid(valid: list[str | tuple]) -> list[nodes.Node]:
    """What validation accepts, as inline nodes ([] when it checks nothing beyond the type)."""
    children: list[nodes.Node] = []
    for i, item in enumerate(valid):
        if i:
            children.append(nodes.Text("; "))
        if isinstance(item, tuple):
            children.append(nodes.Text("one of "))
            for j, value in enumerate(item):
                children += [nodes.Text(", ")] if j else []
                children.append(_code(toml_literal(value)))
        else:
            children += _inline(item)
    return children


def _docstring_paragraphs(cls) -> list[nodes.paragraph]:
    doc = cls.__dict__.get("__doc__")  # a dataclass without one gets its signature instead
    if not doc or doc.startswith(cls.__name__ + "("):
        return []
    return [nodes.paragraph("", "", *_inline(" ".join(p.split()))) for p in inspect.cleandoc(doc).split("\n\n")]


# --------------------------------------------------------------------------- directives


class ConfigReference(SphinxDirective):
    """```{config-reference} model``` -> the docstring of ModelConfig and a table of its keys."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        section = self.arguments[0]
        if section not in SECTIONS:
            raise self.error(f"config-reference: {section!r} is not one of {', '.join(SECTIONS)}")
        module = _module()
        path = _source_path()
        self.env.note_dependency(str(path))
        source = path.read_text(encoding="utf-8")
        cls = getattr(module, SECTIONS[section])
        comments = field_comments(source, cls.__name__)
        valid = valid_values(source, vars(module))
        types = typing.get_type_hints(cls, vars(module))
        rows = []
        for f in dataclasses.fields(cls):
            if section == "top" and dataclasses.is_dataclass(types[f.name]):
                continue  # the sections, each with a table of its own
            key = f.name if section == "top" else f"{section}.{f.name}"
            if f.default is not dataclasses.MISSING:
                default = _code(toml_literal(f.default))
            elif f.default_factory is not dataclasses.MISSING:
                default = _code(toml_literal(f.default_factory()))
            else:
                default = nodes.Text(f"{DASH} (required)")
            kind = toml_type(types[f.name])
            meaning = nodes.entry("", nodes.paragraph("", "", *_inline(comments.get(f.name) or DASH)))
            valid_text = _valid(valid.get(key, []))
            if valid_text:
                meaning += nodes.paragraph("", "", nodes.emphasis("", "Valid: "), *valid_text)
            rows.append([_cell(_code(key)), _cell(nodes.Text(kind)), _cell(default), meaning])
        headers = ["key", "type", "default", "meaning"]
        return [*_docstring_paragraphs(cls), _table(headers, rows, [26, 11, 12, 51], f"config-{section}")]


class ConfigPresets(SphinxDirective):
    """```{config-presets}``` -> the keys each preset sets away from the defaults."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        config_module = _module()
        presets = importlib.import_module("common.presets")
        self.env.note_dependency(str(_source_path()))
        self.env.note_dependency(str(Path(inspect.getsourcefile(presets)).resolve()))
        defaults = config_module.Config(preset="")
        names = list(presets.PRESETS)
        rows = []
        for section in ("model", "optim", "data"):
            base = getattr(defaults, section)
            types = typing.get_type_hints(type(base), vars(config_module))
            for f in dataclasses.fields(base):
                if toml_type(types[f.name]) == "array of block tables":
                    continue  # the layer plans: `dcgan describe --preset P`
                values = [getattr(getattr(presets.PRESETS[n].config, section), f.name) for n in names]
                default = getattr(base, f.name)
                if all(v == default for v in values):
                    continue
                cells = [_cell(_code(f"{section}.{f.name}")), _cell(_code(toml_literal(default)))]
                cells += [_cell(_code(toml_literal(v))) if v != default else _cell(nodes.Text("·")) for v in values]
                rows.append(cells)
        for top in ("seed",):
            values = [getattr(presets.PRESETS[n].config, top) for n in names]
            if any(v != getattr(defaults, top) for v in values):
                cells = [_cell(_code(top)), _cell(_code(toml_literal(getattr(defaults, top))))]
                cells += [_cell(_code(toml_literal(v))) for v in values]
                rows.append(cells)
        headers = ["key", "default", *names]
        widths = [22, 14, *[16] * len(names)]
        return [_table(headers, rows, widths, "config-presets")]


class PresetDifferences(SphinxDirective):
    """```{preset-differences}``` -> each preset: where it comes from, and how it differs."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        presets = importlib.import_module("common.presets")
        self.env.note_dependency(str(Path(inspect.getsourcefile(presets)).resolve()))
        items = nodes.definition_list(classes=["preset-differences"])
        for name, preset in presets.PRESETS.items():
            differences = nodes.bullet_list()
            for text in preset.differences:
                differences += nodes.list_item("", nodes.paragraph("", "", *_inline(text)))
            source = nodes.paragraph("", "", nodes.Text("From " + preset.source + "."))
            items += nodes.definition_list_item(
                "", nodes.term("", "", _code(name)), nodes.definition("", source, differences)
            )
        return [items]


class CheckpointKeys(SphinxDirective):
    """```{checkpoint-keys} dcgan64``` -> the canonical keys of that preset's checkpoints."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        canonical = importlib.import_module("common.canonical")
        presets = importlib.import_module("common.presets")
        self.env.note_dependency(str(Path(inspect.getsourcefile(canonical)).resolve()))
        self.env.note_dependency(str(Path(inspect.getsourcefile(presets)).resolve()))
        config = presets.make_config(self.arguments[0])
        layouts = canonical.LAYOUTS
        batch_norm = {  # common/canonical.py's docstring, per tensor
            "weight": "batch norm scale (gamma)",
            "bias": "batch norm offset (beta)",
            "running_mean": "batch norm running mean",
            "running_var": "batch norm running variance, unbiased (n / (n - 1)), as PyTorch keeps it",
        }
        rows = []
        for entry in canonical.entries(config):
            kind = entry.layer.kind
            if kind == "batch_norm":
                layout = batch_norm[entry.name]
            elif entry.name == "bias":
                layout = "bias " + layouts["bias"]
            else:
                layout = layouts[f"{kind}.weight"]
            shape = "(" + ", ".join(map(str, entry.shape)) + ("," if len(entry.shape) == 1 else "") + ")"
            rows.append([_cell(_code(entry.key)), _cell(_code(shape)), _cell(*_inline(layout))])
        for role in canonical.ROLES:
            optimizer = canonical.OPTIMIZERS[role]
            rows.append(
                [
                    _cell(_code(canonical.step_key(role))),
                    _cell(_code("()")),
                    _cell(*_inline(f"{layouts['optimizer step']}: the {role}'s Adam updates so far")),
                ]
            )
            for moment in canonical.MOMENTS:
                key = f"{optimizer}.{moment}.LAYER.NAME"
                what = f"Adam's {'first' if moment == 'exp_avg' else 'second'} moment of `{role}.LAYER.NAME`"
                rows.append([_cell(_code(key)), _cell(nodes.Text("its parameter's")), _cell(*_inline(what))])
        what = (
            "optional (`optim.ema` > 0): the moving average of `generator.LAYER.NAME`, its layout; "
            "BN running statistics are G's own"
        )
        rows.append(
            [_cell(_code(f"{canonical.EMA}.LAYER.NAME")), _cell(nodes.Text("its tensor's")), _cell(*_inline(what))]
        )
        return [_table(["key", "shape", "layout"], rows, [38, 22, 40], "checkpoint-keys")]


class CommandReference(ArgParseDirective):
    """```{command-reference}``` -> sphinx-argparse's output, none of it smartquoted."""

    def run(self) -> list[nodes.Node]:
        found = super().run()
        for node in found:
            for element in node.findall(nodes.Element):
                element["support_smartquotes"] = False  # sphinx.util.nodes.is_smartquotable reads it
        return found


def setup(app):
    app.add_directive("config-reference", ConfigReference)
    app.add_directive("config-presets", ConfigPresets)
    app.add_directive("preset-differences", PresetDifferences)
    app.add_directive("checkpoint-keys", CheckpointKeys)
    app.add_directive("command-reference", CommandReference)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
