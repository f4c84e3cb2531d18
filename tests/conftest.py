"""Shared fixtures. Dataset tests need the real files: set DOMAINGAP_DATA (CI points it at the offline mirror).

Options (as kornia's test suite): ``--device cpu|cuda`` chooses the device of the ``device`` fixture (default cpu;
``gpu``-marked tests are skipped without CUDA), ``--skip-slow`` deselects tests marked ``slow`` (those that start
worker processes or notebook kernels).
"""

import os

import pytest

from domaingap import data

# downloads are on by default for users (data.files.DOWNLOAD_BY_DEFAULT); tests never reach the network unless a
# test asks with allow_download=True against a monkeypatched download function
os.environ.setdefault(data.DOWNLOAD_ENV, "0")

# partly executed notebooks left by a failed `runner refs` are not references
collect_ignore_glob = ["notebooks/*.tmp.ipynb"]


@pytest.fixture
def require_data():
    """Skip (locally) or fail (in CI) when a dataset's files are not in the data directory."""

    def need(name: str) -> None:
        ds = data.info(name)
        if ds.files and not data._have_files(ds):
            if os.environ.get("CI"):
                pytest.fail(f"CI must have dataset {name!r}: set DOMAINGAP_DATA to the mirror")
            pytest.skip(f"dataset {name!r} not in {data.paths.data_dir()}")

    return need


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", choices=("cpu", "cuda"),
                     help="device of the `device` fixture (kernel and model tests that take it run there)")
    parser.addoption("--skip-slow", action="store_true", help="deselect tests marked slow")


@pytest.fixture
def device(request):
    """The torch device chosen with ``--device`` (a clear failure when CUDA is asked for but absent)."""
    import torch

    name = request.config.getoption("--device")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.fail("--device cuda was given, but torch sees no CUDA device")
    return torch.device(name)


def pytest_collection_modifyitems(session, config, items):
    """Skip gpu-marked tests without CUDA, deselect slow tests on ``--skip-slow``, and run the nbval notebooks in
    the book's execution order (claims pages after the notebooks they read)."""
    if any(item.get_closest_marker("gpu") for item in items):
        import torch

        if not torch.cuda.is_available():
            skip = pytest.mark.skip(reason="needs a CUDA device")
            for item in items:
                if item.get_closest_marker("gpu"):
                    item.add_marker(skip)
    if config.getoption("--skip-slow"):
        kept = [item for item in items if not item.get_closest_marker("slow")]
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("slow")])
        items[:] = kept

    def order(item):
        path = item.path
        if path.suffix != ".ipynb":
            return (0,)
        chapter, _, stem = path.stem.partition("__")
        return (1, chapter == "summary", chapter, stem.endswith("claims"), stem)

    items.sort(key=order)  # stable: cells of one notebook keep their order


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one torch thread: for tiny models intra-op threads only add synchronisation,
    badly so on a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
