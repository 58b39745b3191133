"""One direction of dependencies: the engine (`partitions/`) never imports the project or its demo (`opsapp`), and
imports django-q2 only in its one adapter module (`partitions/tasks.py`)."""

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
