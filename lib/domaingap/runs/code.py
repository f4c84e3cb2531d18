"""What code a run's result depends on: the source hash that goes into its key.

A run kind declares its run function and what else it uses (:class:`domaingap.runs.graph.Kind`). The code hash
covers, and only covers:

- the source of the run function;
- the source of every function or class it *declares* in ``uses``, and every module it declares there (the whole
  module file, or every file of a package);
- recursively, the source of the ``domaingap`` functions and classes that any of those functions reference by a
  global name or as an attribute of a ``domaingap`` module (``training.fit`` inside a run pulls in ``fit``, not
  the whole of ``training``), and the values of the plain-data module constants they reference (a changed
  ``PREPROCESS_VERSION = "v2"`` changes the key). Only UPPERCASE names count as constants: a module-level
  cache that runs fill in (``_int_mm_ok = {}``) must be lowercase, or a worker that has run something before
  would compute another key than the scheduler (the executors' key check then refuses the run, loudly).

So editing an analysis function, a table or a notebook changes no key, while editing a run function or anything it
calls changes the key of that run and, through the upstream keys, of every run downstream of it.

The closure is memoised per process: the code that runs is the code that was imported, so a file edited while a
sweep runs does not change that sweep's keys halfway through.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import types
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from . import canonical

PACKAGE = "domaingap"
# Modules that decide where bytes come from, not what a run computes from them: the run machinery itself, the
# paths of the data and artefact folders, and the fetching / checksum verification / extraction of dataset files
# (whatever they do, the bytes a run reads are the ones whose SHA-256 the registry holds). Editing them (e.g. a
# download default) must not re-key every run that reads data.
NOT_IN_KEY = ("domaingap.runs", "domaingap.paths", "domaingap.data.files")

__all__ = ["code_hash", "closure"]


def _ours(obj: Any, roots: frozenset[str] = frozenset()) -> bool:
    """True for objects of the domaingap package or of a module in ``roots`` (the modules of the declared items:
    a run kind defined outside domaingap still gets its own helpers followed), except the modules of
    :data:`NOT_IN_KEY`, which store results or fetch verified bytes but do not shape results."""
    if isinstance(obj, types.ModuleType):
        mod = obj.__name__
    else:
        mod = getattr(obj, "__module__", None) or ""
    if any(mod == m or mod.startswith(m + ".") for m in NOT_IN_KEY):
        return False
    return mod == PACKAGE or mod.startswith(PACKAGE + ".") or mod in roots


def _code_objects(code: types.CodeType) -> Iterable[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _functions_of(obj: Any) -> list[types.FunctionType]:
    """Plain functions whose code belongs to ``obj`` (a function, or the methods and properties of a class)."""
    obj = inspect.unwrap(obj) if callable(obj) else obj
    if isinstance(obj, types.FunctionType):
        return [obj]
    if isinstance(obj, type):
        out = []
        for member in vars(obj).values():
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if isinstance(member, property):
                out += [f for f in (member.fget, member.fset) if f is not None]
            elif isinstance(member, types.FunctionType):
                out.append(member)
        return out
    return []


def _local_imports(code: types.CodeType, module: str) -> list[Any]:
    """Modules and objects that the import statements inside ``code`` bind (``from . import training``,
    ``from ..kernels import attacks``, ``import domaingap.data``), resolved from the bytecode against ``module``'s
    package. Deterministic: it does not depend on what happens to be imported already."""
    import dis
    import importlib
    import importlib.util

    package = module if getattr(sys.modules.get(module), "__path__", None) else module.rpartition(".")[0]
    found: list[Any] = []
    consts: list[Any] = []
    for ins in dis.get_instructions(code):
        if ins.opname == "LOAD_CONST":
            consts.append(ins.argval)
            continue
        if ins.opname == "IMPORT_NAME" and len(consts) >= 2:
            level, fromlist = consts[-2], consts[-1]
            name = ("." * level + ins.argval) if isinstance(level, int) and level > 0 else ins.argval
            try:
                target = importlib.util.resolve_name(name, package) if name.startswith(".") else name
                if not (target == PACKAGE or target.startswith(PACKAGE + ".")):
                    consts = []
                    continue
                mod = importlib.import_module(target)
            except (ImportError, ValueError):
                consts = []
                continue
            found.append(mod)
            for item in fromlist or ():
                value = getattr(mod, item, None)
                if value is None:
                    try:
                        value = importlib.import_module(f"{target}.{item}")
                    except ImportError:
                        continue
                found.append(value)
        consts = [] if ins.opname != "LOAD_CONST" else consts
    return found


def _submodule(package: types.ModuleType, name: str) -> types.ModuleType | None:
    """``package.name`` when it is a submodule, imported if it was not: a package's attributes depend on which of
    its submodules happen to be imported, and a key must not."""
    import importlib
    import importlib.util

    if not hasattr(package, "__path__") or not name.isidentifier():
        return None
    try:
        if importlib.util.find_spec(f"{package.__name__}.{name}") is None:
            return None
        return importlib.import_module(f"{package.__name__}.{name}")
    except (ImportError, ValueError):
        return None


def _code_members(value: Any, roots: frozenset[str]) -> list[Any]:
    """Our functions and classes held in a container constant (dict values, list/tuple items, one level)."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    return [v for v in items if isinstance(v, (types.FunctionType, type)) and _ours(v, roots)]


def _plain_constant(value: Any) -> bool:
    try:
        canonical.canonical(value)
        return True
    except (TypeError, ValueError):
        return False


def _as_code(obj: Any) -> Any:
    """A run Kind stands for its function; decorated functions for what they wrap."""
    if isinstance(getattr(obj, "fn", None), types.FunctionType) and hasattr(obj, "uses"):
        obj = obj.fn
    return inspect.unwrap(obj) if isinstance(obj, types.FunctionType) else obj


def closure(items: Iterable[Any]) -> dict[str, str]:
    """``{qualified name: source text}`` of everything the code hash covers for ``items`` (functions, classes,
    modules). Raises ``TypeError`` for an item that is none of these."""
    found: dict[str, str] = {}
    todo = [_as_code(i) for i in items]
    roots = frozenset(getattr(i, "__module__", None) or "" for i in todo if not isinstance(i, types.ModuleType))
    seen: set[int] = set()
    while todo:
        obj = _as_code(todo.pop())
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, types.ModuleType):
            path = Path(obj.__file__)
            files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
            for f in files:
                found[f"file:{f.name if len(files) == 1 else f.relative_to(path.parent)}:{obj.__name__}"] = \
                    f.read_text(encoding="utf-8")
            continue
        raw = obj
        if not isinstance(raw, (types.FunctionType, type)):
            raise TypeError(f"a run kind may declare functions, classes or modules in `uses`, not {obj!r}")
        found[f"{raw.__module__}.{raw.__qualname__}"] = inspect.getsource(raw)
        for fn in _functions_of(raw):
            names = {n for c in _code_objects(fn.__code__) for n in c.co_names}
            env = fn.__globals__
            modules = [env[n] for n in names if isinstance(env.get(n), types.ModuleType) and _ours(env[n], roots)]
            for value in (v for c in _code_objects(fn.__code__) for v in _local_imports(c, fn.__module__)):
                if isinstance(value, types.ModuleType):
                    if _ours(value, roots) and value not in modules:
                        modules.append(value)
                elif isinstance(value, (types.FunctionType, type)) and _ours(value, roots):
                    todo.append(value)
            for n in names:
                if n not in env:
                    continue
                value = env[n]
                if isinstance(value, (types.FunctionType, type)) and _ours(value, roots):
                    todo.append(value)
                elif getattr(value, "__wrapped__", None) is not None and _ours(inspect.unwrap(value), roots):
                    todo.append(inspect.unwrap(value))
                elif hasattr(value, "fn") and isinstance(getattr(value, "fn"), types.FunctionType) and _ours(value.fn, roots):
                    todo.append(value.fn)  # a run Kind referenced by name: its function
                elif not isinstance(value, types.ModuleType) and n.isupper():
                    if _plain_constant(value):
                        found[f"const:{fn.__module__}.{n}"] = canonical.canonical(value)
                    else:  # a registry of functions, e.g. READERS = {"npz": read_npz}: follow its members
                        todo += _code_members(value, roots)
            for mod in modules:  # attribute access on a domaingap module: module.fit -> fit (the list grows)
                for n in names:
                    value = getattr(mod, n, None)
                    if value is None:
                        value = _submodule(mod, n)  # a package's submodule, whether or not imported yet
                    if isinstance(value, types.ModuleType):
                        if _ours(value, roots) and value not in modules:
                            modules.append(value)  # kernels.attacks.pgd: follow into the submodule
                    elif isinstance(value, (types.FunctionType, type)) and _ours(value, roots):
                        todo.append(value)
                    elif n.isupper() and value is not None:
                        if _plain_constant(value):
                            found[f"const:{mod.__name__}.{n}"] = canonical.canonical(value)
                        else:
                            todo += _code_members(value, roots)
    return found


@lru_cache(maxsize=None)
def _hash(items: tuple) -> str:
    digest = hashlib.sha256()
    for name, text in sorted(closure(items).items()):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def code_hash(items: Iterable[Any]) -> str:
    """Hash of :func:`closure` of ``items`` (memoised per process)."""
    return _hash(tuple(items))
