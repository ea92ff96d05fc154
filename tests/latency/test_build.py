"""The plugin is compiled once per source digest and load-checked in a real QEMU."""

from __future__ import annotations

import shutil

import pytest

from testbed.latency import build
from testbed.latency.build import PluginError

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("qemu-system-x86_64") is None,
                                reason="needs gcc and qemu-system-x86_64")


@pytest.fixture
def own_source(tmp_path, monkeypatch):
    """A private copy of plugin.c and a private cache, so edits here touch nothing shared."""
    source = tmp_path / "plugin.c"
    shutil.copy(build.SOURCE, source)
    monkeypatch.setattr(build, "SOURCE", source)
    monkeypatch.setenv("LLAMAS_CACHE", str(tmp_path / "cache"))
    return source


def test_built_once_then_reused_from_the_cache(own_source):
    library = build.ensure()
    assert library.name == f"libllamas-latency-{build.source_digest()}.so"
    built_at = library.stat().st_mtime_ns
    assert build.ensure() == library
    assert library.stat().st_mtime_ns == built_at


def test_a_changed_source_is_a_new_build(own_source):
    first = build.ensure()
    own_source.write_text(own_source.read_text() + "\n/* changed */\n")
    second = build.ensure()
    assert second != first and second.exists() and first.exists()


def test_a_broken_source_names_the_file_and_the_compiler_error(own_source):
    own_source.write_text(own_source.read_text() + "\nthis is not C;\n")
    with pytest.raises(PluginError, match=r"compiling .*plugin\.c failed:\n.*error"):
        build.ensure()


def test_qemu_refuses_a_library_that_is_no_plugin(tmp_path):
    not_a_plugin = tmp_path / "libempty.so"
    (tmp_path / "empty.c").write_text("int nothing_here;\n")
    assert __import__("subprocess").run(["gcc", "-shared", "-fPIC", "-o", str(not_a_plugin),
                                         str(tmp_path / "empty.c")]).returncode == 0
    with pytest.raises(PluginError, match="cannot load the latency plugin"):
        build.check_loads(not_a_plugin)


def test_qemu_version_is_read_from_the_binary():
    major, minor, _ = build.qemu_version()
    assert (major, minor) >= build.MIN_QEMU


def test_a_missing_qemu_is_a_clear_error():
    with pytest.raises(PluginError, match="cannot run no-such-qemu --version"):
        build.qemu_version("no-such-qemu")
