"""docs/deploy.md stays accurate to the code: every variable the settings read is documented there and in
.env.example, and its systemd units stop a qcluster the way opsapp/processes.py does (SIGTERM to the main pid)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from partitions import conf

REPO = Path(__file__).resolve().parent.parent
GUIDE = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
#: Read by the settings for development and tests only (documented in .env.example, not for production).
DEVELOPMENT_ONLY = {"TEST_DATABASE_NAME"}
UNIT = re.compile(r"```ini\n# /etc/systemd/system/(\S+)\n(.*?)```", re.S)


def settings_variables() -> set[str]:
    """What the settings read: each `env.<type>("NAME"` call, and every engine setting (one loop over the
    engine's table of defaults reads PARTITIONS_<name> for each)."""
    source = (REPO / "opsapp" / "settings.py").read_text(encoding="utf-8")
    found = set(re.findall(r'env\.\w+\("([A-Z][A-Z0-9_]*)"', source))
    assert len(found) > 20  # the pattern still matches how settings read the environment
    assert "for _name, _default in _ENGINE_DEFAULTS.items():" in source  # …and the engine loop is still there
    return found | {f"PARTITIONS_{name}" for name in conf.DEFAULTS}


def test_every_variable_the_settings_read_is_in_the_guide_and_in_env_example():
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    production = settings_variables() - DEVELOPMENT_ONLY
    assert {name for name in production if f"`{name}`" not in GUIDE} == set()
    assert {name for name in settings_variables() if not re.search(rf"^#? ?{name}=", example, re.M)} == set()


def test_the_units_signal_the_main_pid_only_and_read_no_stray_env_file():
    units = dict(UNIT.findall(GUIDE))
    assert set(units) == {"opsapp-qcluster@.service", "opsapp-web.service"}
    for text in units.values():
        assert "KillMode=mixed" in text
        assert "Environment=ENV_FILE= " in text
    assert "ExecStart=/srv/opsapp/.venv/bin/python manage.py qcluster" in units["opsapp-qcluster@.service"]


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_the_units_pass_systemd_analyze_verify(tmp_path):
    (tmp_path / "env").write_text("", encoding="utf-8")
    paths = []
    for name, text in UNIT.findall(GUIDE):
        # The guide's host layout, pointed at this checkout so the executables exist.
        text = (text.replace("/srv/opsapp/.venv/bin/", f"{REPO}/.venv/bin/").replace("/srv/opsapp", str(REPO))
                .replace("/etc/opsapp/opsapp.env", str(tmp_path / "env"))
                .replace("User=opsapp", "User=root").replace("Group=opsapp", "Group=root"))
        path = tmp_path / name.replace("@.", "@1.")
        path.write_text(text, encoding="utf-8")
        paths.append(str(path))
    result = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
