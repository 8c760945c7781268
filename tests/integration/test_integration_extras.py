"""Each integration names the extra to install when its framework is missing, and `import lfm_colbert`
pulls in no framework."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

MODULES = {"langchain": "langchain_core", "llamaindex": "llama_index", "haystack": "haystack", "mcp": "mcp"}


@pytest.mark.parametrize("extra", sorted(MODULES))
def test_missing_framework_names_the_extra(extra, monkeypatch):
    framework = MODULES[extra]
    for name in [n for n in sys.modules if n == framework or n.startswith(framework + ".")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    if framework not in sys.modules:
        monkeypatch.setitem(sys.modules, framework, None)
    monkeypatch.delitem(sys.modules, f"lfm_colbert.integrations.{extra}", raising=False)
    with pytest.raises(ModuleNotFoundError) as caught:
        importlib.import_module(f"lfm_colbert.integrations.{extra}")
    assert str(caught.value) == (f"lfm_colbert.integrations.{extra} needs the optional package {framework!r}: "
                                 f"pip install 'lfm-colbert[{extra}]'")
    assert caught.value.name == framework and caught.value.__cause__ is None


def test_importing_the_package_imports_no_framework():
    code = ("import sys, lfm_colbert, lfm_colbert.integrations, lfm_colbert.integrations._common, lfm_colbert.cli; "
            "print([m for m in ('langchain_core', 'llama_index', 'haystack', 'mcp') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
