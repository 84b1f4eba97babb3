"""The architecture holds: arrows point one way, the core does no I/O, files stay small.

Every module's imports are read from its source (``ast``): a module of a layer may import its
own layer and the layers below it, never one above (``types`` <- ``names`` <- ``config`` <-
``core`` <- ``models`` <- ``learners`` <- ``train`` <- ``io``). Below ``io`` nothing prints, draws
a progress bar, opens a socket or a file.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxcl"
LAYERS = ["types", "names", "config", "core", "models", "learners", "train", "io"]
"""From the bottom up (``names``: the names a user types and their suggestions, pure
functions; ``config``: settings as dataclass fields, imports nothing of ours); ``data`` may use
``types``, ``names`` and ``core`` only, ``streams`` (the public entry for a user's arrays)
``data`` and what it may, ``cli`` anything."""
ALLOWED = {layer: set(LAYERS[: i + 1]) for i, layer in enumerate(LAYERS)}
ALLOWED["data"] = {"types", "names", "core", "data"}
ALLOWED["streams"] = {*ALLOWED["data"], "streams"}
FORBIDDEN_CALLS = {"print", "open", "input"}
FORBIDDEN_MODULES = {"tqdm", "socket", "urllib", "requests", "matplotlib", "tensorboardX"}


def _layer(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if _layer(p) not in ("__init__", "cli"))


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "jaxcl":
                names |= {f"jaxcl.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_and_the_core_does_no_io(path):
    layer = _layer(path)
    tree = ast.parse(path.read_text())
    imports = _imports(tree)
    ours = {name.split(".")[1] for name in imports if name.startswith("jaxcl.")}
    assert ours <= ALLOWED[layer], f"{layer} imports {sorted(ours - ALLOWED[layer])}"
    if layer != "io":
        outside = {name.split(".")[0] for name in imports} & FORBIDDEN_MODULES
        assert not outside, f"{layer} imports {sorted(outside)}"
        calls = {n.func.id for n in ast.walk(tree)
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert not calls & FORBIDDEN_CALLS, f"{layer} calls {sorted(calls & FORBIDDEN_CALLS)}"


def test_the_checker_sees_a_backward_arrow_and_a_print():
    """The test above can fail: a model importing the loop and printing is caught."""
    tree = ast.parse("from jaxcl.train.loop import train_seeds\nprint('hi')\n")
    assert {n.split(".")[1] for n in _imports(tree)} - ALLOWED["models"] == {"train"}
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert "print" in calls


@pytest.mark.parametrize("path", [*sorted(PACKAGE.rglob("*.py")),
                                  *sorted((PACKAGE.parent / "experiments").glob("*.py"))],
                         ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_every_module_is_small_and_says_why_it_exists(path):
    text = path.read_text()
    assert len(text.splitlines()) < 400, f"{len(text.splitlines())} lines"
    doc = ast.get_docstring(ast.parse(text))
    assert doc and len(doc.split()) >= 8, "no opening paragraph"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("__init__.py")),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_package_faces_only_re_export(path):
    """What a package defines lives in a module named for it; ``__init__`` only re-exports."""
    tree = ast.parse(path.read_text())
    defined = [n for n in tree.body
               if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
    assert not defined, [n.name for n in defined]


def test_the_package_ships_its_types():
    assert (PACKAGE / "py.typed").is_file()
    assert 'jaxcl = ["py.typed"]' in (PACKAGE.parent / "pyproject.toml").read_text()


def _public_callables():
    """Every public function, and every public method of every public class, defined in a module
    of jaxcl."""
    import importlib
    import inspect
    import pkgutil

    import jaxcl

    out = {}
    for info in pkgutil.walk_packages(jaxcl.__path__, "jaxcl."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != info.name:
                continue
            if inspect.isfunction(obj):
                out[f"{info.name}.{name}"] = obj
            elif inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    member = getattr(member, "__func__", member)  # class and static methods
                    if inspect.isfunction(member) and not attr.startswith("_"):
                        out[f"{info.name}.{name}.{attr}"] = member
    return out


def test_the_public_api_is_annotated():
    """Every parameter and return of jaxcl's public functions and methods carries a type (the
    package ships ``py.typed``): a user's type checker and editor see the API as its docs
    describe it."""
    import inspect

    found = _public_callables()
    assert len(found) > 200
    bare = []
    for name, fn in found.items():
        signature = inspect.signature(fn)
        params = [p.name for p in signature.parameters.values()
                  if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
        if params or signature.return_annotation is inspect.Signature.empty:
            bare.append(f"{name}({', '.join(params)})")
    assert not bare, bare
    assert (PACKAGE / "py.typed").is_file()
