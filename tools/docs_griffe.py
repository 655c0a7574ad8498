"""Griffe extension of the documentation build (``mkdocs.yml`` loads it through mkdocstrings).

radhe's docstrings are numpydoc with Sphinx cross-reference roles (``:func:`radhe.io.read_image```,
``:class:`~radhe.errors.InputError```, ``:meth:`fit```), which mkdocstrings does not understand: they
would show as raw text. This extension rewrites them, before the docstrings are parsed, into
mkdocs-autorefs links ``[`read_image()`][radhe.io.image.read_image]``:

* the name is resolved as Python would from the docstring's scope (its object, enclosing class and
  module, then the module's imports), then absolutely, and names that a package exports lazily
  (``radhe.make_pipeline``, through ``__getattr__``) by importing them; aliases are followed to the
  object's defining place (``radhe.pipeline.make_pipeline``), the anchor the API page has;
* only objects the site renders become links: a module listed with ``::: module`` on the API page,
  or a public (no ``_`` part) object with a docstring in or re-exported by such a module. Anything else (scikit-learn, numpy, private helpers)
  becomes inline code, as Sphinx shows an unresolved reference. A link whose target is missing after
  all makes ``mkdocs build --strict`` fail, so a wrong reference cannot go unnoticed;
* ``~a.b.c`` shows ``c``, ``title <target>`` shows ``title``, ``!name`` never links, and functions and
  methods get ``()``, as in Sphinx; in a numpydoc entry's type or default (``labels : list, default
  :data:`X```), which renders as code, the role becomes the bare name.

The deep-learning estimators (``@torch_estimator``) are dataclasses whose docstring lines
``[shared: a, b]`` are expanded at import time (``radhe.nn.base.shared_parameters``); static analysis
sees neither the expansion nor the generated ``__init__``. For those classes the runtime docstring and
signature are used.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import griffe

#: A Sphinx Python-domain role: ``:func:`x```, ``:py:class:`~a.B```, ``:meth:`title <a.B.f>```.
ROLE = re.compile(r":(?:py:)?(?P<role>func|meth|class|mod|attr|data|obj|exc|const):`(?P<body>[^`\n]+)`")
CALLABLE_ROLES = {"func", "meth"}
#: The first line of a numpydoc parameter/attribute entry: ``name : type, default value``.
NUMPYDOC_ENTRY = re.compile(r"^\s*\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*\s+:\s")
#: Decorators whose classes get their docstring and signature from the imported class.
RUNTIME_DECORATORS = {"torch_estimator", "shared_parameters"}


class RadheDocstrings(griffe.Extension):
    """Expand runtime docstrings of ``@torch_estimator`` classes and rewrite Sphinx roles.

    Parameters
    ----------
    api_page : str, optional
        The Markdown page whose ``::: module`` lines say which modules the site documents. Default:
        ``docs/api.md`` of this repository.
    """

    def __init__(self, api_page: str | None = None) -> None:
        super().__init__()
        page = Path(api_page) if api_page else Path(__file__).resolve().parents[1] / "docs" / "api.md"
        text = page.read_text(encoding="utf-8")
        self.documented_modules = tuple(re.findall(r"^:::\s*([\w.]+)\s*$", text, flags=re.MULTILINE))
        self.rewritten: dict[str, int] = {}

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs) -> None:
        objects = list(_walk(pkg))
        for obj in objects:
            if obj.is_class and _decorator_names(obj) & RUNTIME_DECORATORS:
                _use_runtime_class(obj)
        for obj in objects:
            if obj.docstring is not None and ":" in obj.docstring.value:
                new, count = self.rewrite(obj.docstring.value, obj, loader.modules_collection)
                if count:
                    obj.docstring.value = new
                    self.rewritten[obj.path] = count

    def rewrite(self, text: str, scope: griffe.Object, collection) -> tuple[str, int]:
        """Rewrite the roles of a docstring; return the text and the number of roles."""
        lines, total = [], 0
        for line in text.splitlines(keepends=True):
            # a numpydoc entry's type and default ("name : type, default X") render as code: bare names
            plain = NUMPYDOC_ENTRY.match(line) is not None
            line, count = ROLE.subn(lambda m, plain=plain: self._replace(m, scope, collection, plain=plain), line)
            lines.append(line)
            total += count
        return "".join(lines), total

    # ------------------------------------------------------------------------------------------
    def _replace(self, match: re.Match, scope: griffe.Object, collection, *, plain: bool = False) -> str:
        role, body = match["role"], match["body"].strip()
        title = None
        explicit = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^<>]+)>", body)
        if explicit:
            title, body = explicit["title"], explicit["target"].strip()
        no_link = body.startswith("!")
        short = body.startswith("~")
        name = body.lstrip("!~")
        if title is None:
            title = name.rsplit(".", 1)[-1] if short else name.lstrip(".")
            if role in CALLABLE_ROLES and not title.endswith(")"):
                title += "()"
        if plain:
            return title
        target = None if no_link else self._target(name, scope, collection)
        if target is None:
            return f"`{title}`"
        return f"[`{title}`][{target}]"

    def _target(self, name: str, scope: griffe.Object, collection) -> str | None:
        """The anchor of ``name`` seen from ``scope`` when the site renders it, else None."""
        obj = _resolve(name.lstrip("."), scope, collection)
        if obj is None:
            return None
        path = obj.path
        if obj.is_module:  # a module has a section only when the API page lists it (no submodules)
            return path if path in self.documented_modules else None
        module = next((m for m in self.documented_modules if path == m or path.startswith(m + ".")), None)
        if module is None:
            return None
        if any(part.startswith("_") for part in path[len(module):].split(".")[1:]):
            return None
        if not obj.has_docstrings:
            return None  # mkdocstrings does not render objects without docstrings
        return path


def _walk(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


def _decorator_names(cls: griffe.Class) -> set[str]:
    return {str(d.value).rsplit(".", 1)[-1].split("(", 1)[0] for d in cls.decorators}


def _final(obj):
    """Follow aliases to the defining object; None when the target is not loaded (external)."""
    try:
        return obj.final_target if obj.is_alias else obj
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _member(collection, path: str):
    try:
        return _final(collection.get_member(path))
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _resolve(name: str, scope: griffe.Object, collection):
    """Resolve a dotted ``name`` as Python would from ``scope``'s namespaces, then absolutely."""
    head, _, rest = name.partition(".")
    current = scope
    while current is not None:
        if head in current.members:
            base = _final(current.members[head])
            if base is None:
                return None  # an import of something outside the loaded packages
            return _member(collection, f"{base.path}.{rest}") if rest else base
        current = current.parent
    found = _member(collection, name)
    if found is None and head in collection:  # e.g. radhe.make_pipeline: exported lazily (__getattr__)
        path = _runtime_path(name)
        found = _member(collection, path) if path else None
    return found


def _runtime_path(name: str) -> str | None:
    """Where the object ``name`` names is defined, found by importing it; None if it cannot be."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for part in parts[split:]:
                obj = getattr(obj, part)
        except AttributeError:
            return None
        if inspect.ismodule(obj):
            return obj.__name__
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        return f"{module}.{qualname}" if module and qualname else None
    return None


def _use_runtime_class(cls: griffe.Class) -> None:
    """Take ``cls``'s docstring and ``__init__`` signature from the imported class."""
    runtime = getattr(importlib.import_module(cls.module.path), cls.name)
    if runtime.__doc__:
        if cls.docstring is None:
            cls.docstring = griffe.Docstring(inspect.cleandoc(runtime.__doc__), parent=cls)
        else:
            cls.docstring.value = inspect.cleandoc(runtime.__doc__)
    parameters = [griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)]
    for p in list(inspect.signature(runtime.__init__).parameters.values())[1:]:
        parameters.append(griffe.Parameter(
            p.name,
            kind=griffe.ParameterKind(p.kind.description),
            annotation=None if p.annotation is inspect.Parameter.empty else str(p.annotation),
            default=None if p.default is inspect.Parameter.empty else repr(p.default),
        ))
    init = griffe.Function("__init__", lineno=cls.lineno, endlineno=cls.endlineno,
                           parameters=griffe.Parameters(*parameters))
    cls.set_member("__init__", init)
