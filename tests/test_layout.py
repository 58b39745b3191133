"""One direction of dependencies: the engine (`partitions/`) never imports the project or its demo (`opsapp`),
imports django-q2 only in its one adapter module (`partitions/tasks.py`), and its groups (core, engine, jobtypes,
reads, wording, operations, worker, surfaces) import only downwards."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENGINE = REPO / "partitions"
FORBIDDEN = "opsapp"
#: The only engine module that may import django-q2.
DJANGO_Q_ADAPTER = ENGINE / "tasks.py"


def _names_package(module: str | None, package: str) -> bool:
    return module is not None and (module == package or module.startswith(package + "."))


def imports_of_forbidden(source: str, filename: str = "<source>", package: str = FORBIDDEN) -> list[str]:
    """Each `import P…`, `from P… import …` or `import_module("P…")` of `package` in `source`, as `line: text`."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            hits = [alias.name for alias in node.names if _names_package(alias.name, package)]
        elif isinstance(node, ast.ImportFrom):
            # Relative imports (level > 0) stay inside the package they are written in.
            hits = [node.module] if node.level == 0 and _names_package(node.module, package) else []
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            arg = node.args[0].value
            dynamic = name in ("import_module", "__import__") and isinstance(arg, str)
            hits = [arg] if dynamic and _names_package(arg, package) else []
        else:
            continue
        found += [f"{node.lineno}: {hit}" for hit in hits]
    return found


@pytest.mark.parametrize("source", [
    "import opsapp",
    "import opsapp.billing.models as m",
    "import os, opsapp.settings",
    "from opsapp import settings",
    "from opsapp.billing.models import Subscription",
    "def f():\n    from opsapp.bench import harness",
    "import importlib\nimportlib.import_module('opsapp.billing.jobs')",
    "__import__('opsapp')",
])
def test_every_form_of_importing_opsapp_is_detected(source):
    assert imports_of_forbidden(source)


@pytest.mark.parametrize("source", [
    "import opsappx",
    "from opsapp_tools import x",
    "from . import opsapp",
    "from .opsapp import x",
    "NAME = 'opsapp.billing'",
])
def test_names_that_only_look_like_opsapp_are_not_flagged(source):
    assert imports_of_forbidden(source) == []


def test_no_module_of_the_engine_imports_opsapp():
    modules = sorted(ENGINE.rglob("*.py"))
    assert len(modules) > 20  # the walk really found the engine
    offenders = {
        str(path.relative_to(REPO)): hits
        for path in modules
        if (hits := imports_of_forbidden(path.read_text(encoding="utf-8"), str(path)))
    }
    assert offenders == {}


def test_only_the_adapter_module_of_the_engine_imports_django_q():
    offenders = {
        str(path.relative_to(REPO)): hits
        for path in sorted(ENGINE.rglob("*.py")) if path != DJANGO_Q_ADAPTER
        if (hits := imports_of_forbidden(path.read_text(encoding="utf-8"), str(path), package="django_q"))
    }
    assert offenders == {}
    assert imports_of_forbidden(DJANGO_Q_ADAPTER.read_text(encoding="utf-8"), package="django_q"), "the adapter moved"


def test_the_demo_imports_the_engine_only_through_its_api():
    demo = REPO / "opsapp" / "billing"
    engine_imports = {
        str(path.relative_to(REPO)): [hit for hit in imports_of_forbidden(path.read_text(encoding="utf-8"),
                                                                      str(path), package="partitions")
                                      if not hit.endswith((": partitions.api", ": partitions"))]
        for path in sorted(demo.rglob("*.py")) if "migrations" not in path.parts
    }
    assert {path: hits for path, hits in engine_imports.items() if hits} == {}


def test_the_package_exports_exactly_the_api_lazily():
    import partitions
    from partitions import api

    assert sorted(partitions.__all__) == sorted(api.__all__)
    assert all(getattr(partitions, name) is getattr(api, name) for name in api.__all__)
    with pytest.raises(AttributeError):
        partitions.claim_everything  # noqa: B018 - the engine's internals are not exported


#: The engine's surfaces: what operators use (the JSON API included). The core (everything else) never imports
#: them, so a duty of tick or a worker cannot depend on how a page or a command words things.
SURFACES = ("partitions.admin", "partitions.httpapi", "partitions.management", "partitions.templatetags",
            "partitions.views")


def test_the_engine_core_never_imports_its_surfaces():
    core = [path for path in sorted(ENGINE.rglob("*.py"))
            if not any(path.relative_to(REPO).with_suffix("").as_posix().replace("/", ".").startswith(surface)
                       for surface in SURFACES)]
    assert len(core) > 20
    offenders = {
        str(path.relative_to(REPO)): hits
        for path in core
        for surface in SURFACES
        if (hits := imports_of_forbidden(path.read_text(encoding="utf-8"), str(path), package=surface))
    }
    assert offenders == {}


#: The groups of `partitions/`, lowest first: a module imports only from its own group or one listed before it,
#: so the tree reads bottom-up (docs/explanation/architecture.md). Surfaces come last and import anything below.
LAYERS = (
    ("partitions.conf",),
    ("partitions.core",),
    ("partitions.models",),
    ("partitions.permissions",),
    ("partitions.engine",),
    ("partitions.jobtypes",),
    ("partitions.reads",),
    ("partitions.wording",),
    ("partitions.notify",),
    ("partitions.operations",),
    ("partitions.worker",),
    ("partitions.tasks",),
    ("partitions.metrics",),
    ("partitions.api", "partitions.httpapi", "partitions.views", "partitions.templatetags", "partitions.admin",
     "partitions.management", "partitions.checks", "partitions.apps", "partitions"),
)


def layer_of(module: str) -> int | None:
    """The index in LAYERS of the group that holds `module` (the longest matching prefix), None outside."""
    best = None
    for index, group in enumerate(LAYERS):
        for prefix in group:
            if _names_package(module, prefix) and (best is None or len(prefix) > len(best[1])):
                best = (index, prefix)
    return None if best is None else best[0]


TYPE_CHECKING_TESTS = ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def partitions_imports(source: str, filename: str) -> list[tuple[int, str]]:
    """Each engine module `source` imports (module level or inside a function), as (line, dotted name); not those
    under `if TYPE_CHECKING:`, which name a type for an annotation and load nothing."""
    tree = ast.parse(source, filename)
    annotations_only = {id(child) for node in ast.walk(tree)
                        if isinstance(node, ast.If) and ast.unparse(node.test) in TYPE_CHECKING_TESTS
                        for statement in node.body for child in ast.walk(statement)}
    found = []
    for node in ast.walk(tree):
        if id(node) in annotations_only:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if _names_package(alias.name, "partitions")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "partitions":
            found += [(node.lineno, f"partitions.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _names_package(node.module, "partitions"):
            found.append((node.lineno, node.module))
    return found


def test_every_module_of_the_engine_belongs_to_a_group_and_the_top_level_stays_small():
    top_level = sorted(path.name for path in ENGINE.glob("*.py"))
    assert len(top_level) <= 12, top_level
    for path in ENGINE.rglob("*.py"):
        if "migrations" not in path.parts:
            assert layer_of(_module_name(path)) is not None, path


def _module_name(path: Path) -> str:
    name = path.relative_to(REPO).with_suffix("").as_posix().replace("/", ".")
    return name.removesuffix(".__init__")


def test_an_import_is_placed_in_its_group_and_an_annotation_only_import_is_not_counted():
    source = ("from partitions.operations import services\nfrom partitions import conf\n"
              "if TYPE_CHECKING:\n    from partitions.worker.sample_run import SampleReport\n")
    assert partitions_imports(source, "<source>") == [(1, "partitions.operations"), (2, "partitions.conf")]
    assert layer_of("partitions.operations.services") > layer_of("partitions.core.states") > layer_of("partitions.conf")
    assert layer_of("partitions.admin.actions") == len(LAYERS) - 1 and layer_of("opsapp.settings") is None


def test_dependencies_point_down_the_groups():
    upward = []
    for path in sorted(ENGINE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        module = _module_name(path)
        own = layer_of(module)
        for line, imported in partitions_imports(path.read_text(encoding="utf-8"), str(path)):
            if (target := layer_of(imported)) is not None and target > own:
                upward.append(f"{module}:{line} imports {imported} ({LAYERS[target][0]} is above {LAYERS[own][0]})")
    assert upward == []
