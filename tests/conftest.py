"""Shared fixtures. Dataset tests need the real files: set DOMAINGAP_DATA (CI points it at the offline mirror)."""

import os

import pytest

from domaingap import data

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


def pytest_collection_modifyitems(session, config, items):
    """Run the nbval notebooks in the book's execution order (claims pages after the notebooks they read)."""
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
