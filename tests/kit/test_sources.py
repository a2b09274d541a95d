"""Loading PyTorch sources: factory files with their own helper modules, several in one process."""

import sys

import pytest
import torch

from kit.data.sources import load_torch_source

# models.py imports its helper inside the function (the way a factory often defers imports) or
# at the top; each folder's layers.py builds a different head, so a mix-up shows in the output width.
MODELS = {
    "inside": "def make_model():\n    from layers import head\n    import torch\n"
              "    return torch.nn.Sequential(torch.nn.Linear(4, 8), head())\n",
    "top": "import torch\nfrom layers import head\n\n"
           "def make_model():\n    return torch.nn.Sequential(torch.nn.Linear(4, 8), head())\n",
}
LAYERS = "import torch\n\ndef head():\n    return torch.nn.Linear(8, {width})\n"


@pytest.fixture(params=MODELS)
def two_folders(tmp_path, request):
    folders = {}
    for name, width in (("a", 2), ("b", 3)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "models.py").write_text(MODELS[request.param])
        (folder / "layers.py").write_text(LAYERS.format(width=width))
        folders[name] = folder / "models.py"
    yield folders
    for name in [n for n, m in sys.modules.items() if str(tmp_path) in str(getattr(m, "__file__", ""))]:
        del sys.modules[name]  # leave no test module behind for the next test


def _width(source) -> int:
    return source.module(torch.zeros(1, 4)).shape[1]


def test_a_factory_imports_its_sibling_module_inside_the_function(two_folders):
    path_before = list(sys.path)
    source = load_torch_source(f"{two_folders['a']}:make_model")
    assert _width(source) == 2
    assert sys.path == path_before


def test_two_models_py_from_two_folders_stay_two_models(two_folders):
    a = load_torch_source(f"{two_folders['a']}:make_model")
    b = load_torch_source(f"{two_folders['b']}:make_model")
    again = load_torch_source(f"{two_folders['a']}:make_model")
    assert (_width(a), _width(b), _width(again)) == (2, 3, 2)
    assert type(a.module[1]).__module__ == "torch.nn.modules.linear"
    assert a.sha256 == again.sha256 == b.sha256  # same file content, different folders: hashes agree
    factory_files = {module.__file__ for name, module in sys.modules.items() if name.startswith("_kit_factory_models_")}
    assert {str(two_folders["a"]), str(two_folders["b"])} <= factory_files  # two modules, not one overwritten
