"""tests/containers/image/pip_settings.py: this machine's pip settings for a container build, as one pip.conf
and read-only mounts. PIP_* variables win over config files, as they do for pip itself.
(make image-test shows pip inside a build reaching the registry with them.)"""
import configparser
import importlib.util
import subprocess
import sys

from tests.containers.recipes import REPO

SCRIPT = REPO / "tests" / "containers" / "image" / "pip_settings.py"
_spec = importlib.util.spec_from_file_location("pip_settings", SCRIPT)
pip_settings = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pip_settings)


def _listing(tmp_path) -> str:
    """A `pip config list` as pip prints it: files' sections, then PIP_* variables (:env:)."""
    return "\n".join([
        f"global.cert='{tmp_path}/old-ca.pem'",
        f"global.extra-index-url='file://{tmp_path}/mirror/simple https://example.org/simple'",
        f"install.find-links='{tmp_path}/elsewhere'",
        "install.no-compile='yes'",
        f":env:.cert='{tmp_path}/ca.pem'",
        f":env:.find-links='{tmp_path}/wheels'",
        ":env:.default-timeout='180'",
        "not a setting line",
    ])


def test_variables_win_over_every_file_section(tmp_path):
    sections = pip_settings.parse(_listing(tmp_path))
    assert sections == {
        "global": {"cert": f"{tmp_path}/ca.pem", "extra-index-url": f"file://{tmp_path}/mirror/simple "
                   "https://example.org/simple", "find-links": f"{tmp_path}/wheels", "default-timeout": "180"},
        "install": {"no-compile": "yes"},  # its find-links is overridden by PIP_FIND_LINKS
    }


def test_mounts_are_the_existing_paths_read_only(tmp_path):
    (tmp_path / "ca.pem").write_text("CA")
    (tmp_path / "wheels" / "sub").mkdir(parents=True)
    (tmp_path / "mirror" / "simple").mkdir(parents=True)
    sections = pip_settings.parse(_listing(tmp_path))
    volumes = pip_settings.write(sections, tmp_path / "out")
    assert volumes == [
        f"{tmp_path}/out/pip.conf:/etc/pip.conf:ro",
        f"{tmp_path}/ca.pem:{tmp_path}/ca.pem:ro",
        f"{tmp_path}/mirror:{tmp_path}/mirror:ro",  # a local index: its folder (pages link to ../../files)
        f"{tmp_path}/wheels:{tmp_path}/wheels:ro",
    ]  # not the overridden or missing paths, not the https index


def test_a_path_inside_another_is_mounted_once(tmp_path):
    (tmp_path / "opt" / "wheels").mkdir(parents=True)
    sections = {"global": {"find-links": f"{tmp_path}/opt/wheels {tmp_path}/opt"}}
    assert pip_settings.host_paths(sections) == [f"{tmp_path}/opt"]


def test_ca_bundle_from_ssl_cert_file_when_pip_has_none():
    sections = pip_settings.with_ca_bundle({}, environ={"SSL_CERT_FILE": "/etc/ssl/host.pem"})
    assert sections == {"global": {"cert": "/etc/ssl/host.pem"}}
    mine = {"global": {"cert": "/mine.pem"}}
    assert pip_settings.with_ca_bundle(mine, environ={"SSL_CERT_FILE": "/x"}) == {"global": {"cert": "/mine.pem"}}


def test_the_command_writes_the_conf_and_prints_the_volumes(tmp_path):
    """As image-test runs it: `pip config list` on stdin; the pip.conf holds the merged settings."""
    (tmp_path / "wheels").mkdir()
    r = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "out")],
                       input=_listing(tmp_path), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{tmp_path}/out/pip.conf:/etc/pip.conf:ro",
                                     f"{tmp_path}/wheels:{tmp_path}/wheels:ro"]
    conf = configparser.ConfigParser(interpolation=None)
    conf.read(tmp_path / "out" / "pip.conf")
    assert {name: dict(conf[name]) for name in conf.sections()} == pip_settings.parse(_listing(tmp_path))


def test_usage_without_a_folder():
    r = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True,
                       text=True, input="")
    assert r.returncode == 2 and r.stderr.startswith("usage:")
