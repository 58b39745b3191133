"""The engine is an installable Django app: `pip wheel .` builds a wheel of `partitions` alone, with its templates,
static files and migrations inside the package, and a minimal project that installs only that wheel passes
`manage.py check` without the checkout on sys.path.

To stay fast the wheel is built without build isolation (flit_core comes from requirements.txt) and installed
with `--no-deps` into a throwaway venv that sees this venv's site-packages through a .pth file (Django,
django-q2, …). That venv can still import the demo's packages (environ, whitenoise), so a separate check holds
the engine's imports to the dependencies its wheel declares.
"""

import ast
import email.parser
import importlib.metadata
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
ENGINE = REPO / "partitions"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))

#: A project that knows nothing of opsapp: the admin, django-q2 on the ORM broker and the engine.
MINIMAL_SETTINGS = """
import os

SECRET_KEY = "packaging-test-only"
ROOT_URLCONF = "mini.urls"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "partitions",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
# Never reached by `check`; makemigrations' history check warns and goes on when it cannot connect.
DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "mini",
                         "HOST": os.path.join(os.path.dirname(__file__), "no-server")}}
STATIC_URL = "static/"
USE_TZ = True
Q_CLUSTER = {"name": "mini", "orm": "default", "timeout": 90, "retry": 400}
"""

MINIMAL_URLS = """
from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
"""

MANAGE = """
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mini.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

#: Run inside the throwaway venv: where everything came from, and what the installed package can do.
PROBE = """
import json, os, sys
from pathlib import Path

os.environ["DJANGO_SETTINGS_MODULE"] = "mini.settings"
import django

django.setup()

import partitions
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.db.migrations.loader import MigrationLoader
from django.template.loader import get_template

package = Path(partitions.__file__).parent
templates = sorted(str(p.relative_to(package / "templates")) for p in (package / "templates").rglob("*.html"))
for name in templates:
    get_template(name)  # compiles: every {% load %} and {% extends %} resolves in a bare project
try:
    import opsapp  # noqa: F401
    checkout = True
except ModuleNotFoundError:
    checkout = False
call_command("makemigrations", "partitions", check=True, dry_run=True, verbosity=0)
print(json.dumps({
    "package": str(package),
    "sys_path": sys.path,
    "checkout_importable": checkout,
    "templates": templates,
    "template_origin": get_template("admin/partitions/job/job_page.html").origin.name,
    "static": [finders.find("partitions/progress.js"), finders.find("partitions/admin.css")],
    "migrations": sorted(name for app, name in MigrationLoader(None, ignore_no_migrations=True).disk_migrations
                         if app == "partitions"),
}))
"""


def engine_files() -> set[str]:
    """Every file of the engine in the checkout, as a path in a wheel (no byte code)."""
    return {str(path.relative_to(REPO)) for path in ENGINE.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"}


def run(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The engine's wheel, built from the checkout the way a release would be (flit_core, no network)."""
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "--no-index",
        "--quiet", "--wheel-dir", str(dist), cwd=dist)
    [built] = dist.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict:
    """A throwaway venv with only the wheel installed, a minimal project in it, and what its probe reported."""
    root = tmp_path_factory.mktemp("installed")
    venv = root / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv), cwd=root)
    python = venv / "bin" / "python"
    site_packages = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    # This venv's third-party packages (Django, django-q2, psycopg, …), never the checkout itself.
    host = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site_packages / "_host_venv.pth").write_text(
        "".join(f"import site; site.addsitedir({path!r})\n" for path in sorted(host)), encoding="utf-8")
    run(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--quiet",
        str(wheel), cwd=root)

    project = root / "project"
    (project / "mini").mkdir(parents=True)
    (project / "manage.py").write_text(MANAGE, encoding="utf-8")
    (project / "mini" / "__init__.py").write_text("", encoding="utf-8")
    (project / "mini" / "settings.py").write_text(MINIMAL_SETTINGS, encoding="utf-8")
    (project / "mini" / "urls.py").write_text(MINIMAL_URLS, encoding="utf-8")
    env = {key: value for key, value in os.environ.items()
           if key not in {"PYTHONPATH", "DJANGO_SETTINGS_MODULE", "PYTHONHOME", "PYTHONSTARTUP"}}
    check = run(str(python), "manage.py", "check", cwd=project, env=env)
    probe = run(str(python), "-c", textwrap.dedent(PROBE), cwd=project, env=env)
    return {"site_packages": site_packages, "check": check, **json.loads(probe.stdout.splitlines()[-1])}


def test_the_wheel_holds_the_whole_engine_and_nothing_else(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    package_files = {name for name in names if ".dist-info/" not in name}
    assert package_files == engine_files()
    assert {"partitions/migrations/__init__.py", "partitions/migrations/0001_initial.py",
            "partitions/templates/admin/partitions/job/job_page.html", "partitions/static/partitions/progress.js",
            "partitions/management/commands/jobs.py"} <= package_files
    assert not any(name.startswith(("opsapp/", "tests/", "templates/")) for name in names)


def test_the_wheel_metadata_names_the_engine_its_python_and_its_dependencies(wheel):
    [metadata] = [name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".dist-info/METADATA")]
    fields = email.parser.Parser().parsestr(zipfile.ZipFile(wheel).read(metadata).decode())
    assert fields["Name"] == PYPROJECT["project"]["name"]
    assert fields["Version"] == PYPROJECT["project"]["version"]
    assert fields["Requires-Python"] == ">=3.12"
    requires = [Requirement(req) for req in fields.get_all("Requires-Dist")]
    declared = {canonicalize_name(req.name) for req in requires if req.marker is None}
    assert declared == {"django", "django-q2", "psycopg", "prometheus-client", "croniter"}
    # The optional extras: `[otel]` (partitions.engine.tracing is a no-op without it) and `[api]`
    # (partitions.httpapi).
    assert {canonicalize_name(req.name) for req in requires if req.marker is not None} == {
        "opentelemetry-api", "django-ninja", "pydantic"}


def test_the_engine_imports_only_the_standard_library_and_its_declared_dependencies():
    # The throwaway venv borrows every package of this one, so this keeps `--no-deps` honest. The optional
    # extras count as declared (partitions.engine.tracing imports opentelemetry inside a try).
    optional = [req for extra in PYPROJECT["project"].get("optional-dependencies", {}).values() for req in extra]
    declared = {canonicalize_name(Requirement(req).name) for req in PYPROJECT["project"]["dependencies"] + optional}
    providers = importlib.metadata.packages_distributions()
    offenders = {}
    for path in sorted(ENGINE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            for top in {module.split(".")[0] for module in modules}:
                if top in sys.stdlib_module_names or top in {"partitions", "__future__"}:
                    continue
                if not declared & {canonicalize_name(dist) for dist in providers.get(top, [])}:
                    offenders.setdefault(str(path.relative_to(REPO)), []).append(f"{node.lineno}: {top}")
    assert offenders == {}


def test_a_minimal_project_with_only_the_wheel_passes_manage_py_check(installed):
    assert "System check identified no issues" in installed["check"].stdout
    assert Path(installed["package"]) == installed["site_packages"] / "partitions"
    assert not installed["checkout_importable"]
    assert not any(entry and Path(entry).resolve() == REPO for entry in installed["sys_path"])


def test_the_installed_package_serves_its_templates_static_files_and_migrations(installed):
    package = Path(installed["package"])
    assert installed["templates"] == sorted(
        str(path.relative_to(ENGINE / "templates")) for path in (ENGINE / "templates").rglob("*.html"))
    assert Path(installed["template_origin"]).is_relative_to(package / "templates")
    assert all(found and Path(found).is_relative_to(package / "static") for found in installed["static"])
    assert installed["migrations"] == sorted(path.stem for path in (ENGINE / "migrations").glob("0*.py"))
