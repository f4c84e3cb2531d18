"""benchmarks/time_book.py: step times from the book's headers, and the store summary it records."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest

from domaingap import paths


@pytest.fixture(scope="module")
def time_book():
    spec = importlib.util.spec_from_file_location("time_book", paths.BENCHMARKS_DIR / "time_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_steps_start_at_their_headers_and_last_until_the_next(time_book, tmp_path):
    script = ("import time\n"
              "print('== domaingap book (ci): data check', flush=True); time.sleep(0.3)\n"
              "print('some output', flush=True)\n"
              "print('== domaingap book (ci): runs', flush=True); time.sleep(0.6)\n"
              "raise SystemExit(3)\n")
    status, wall, steps = time_book.time_steps([sys.executable, "-c", script], dict(os.environ), tmp_path / "log")
    assert status == 3 and [s["step"] for s in steps] == ["data check", "runs"]
    assert 0.25 < steps[0]["wall_s"] < steps[1]["wall_s"] and steps[1]["wall_s"] > 0.55
    assert sum(s["wall_s"] for s in steps) == pytest.approx(wall - steps[0]["start_s"], abs=1e-9)
    assert "some output" in (tmp_path / "log").read_text()


def test_store_summary_sums_compute_per_kind(time_book, tmp_path):
    for kind, key, secs in (("p1_train", "a", 1.5), ("p1_train", "b", 2.5), ("p3_finetune", "c", None)):
        (tmp_path / kind / key).mkdir(parents=True)
        computed = None if secs is None else {"seconds": secs}
        (tmp_path / kind / key / "record.json").write_text(json.dumps({"kind": kind, "computed": computed}))
    assert time_book._store_summary(tmp_path) == {"p1_train": {"runs": 2, "compute_s": 4.0},
                                                  "p3_finetune": {"runs": 1, "compute_s": 0.0}}


def test_refuses_a_store_that_is_not_empty(time_book, tmp_path):
    (tmp_path / "artefacts" / "p1_train").mkdir(parents=True)
    with pytest.raises(SystemExit, match="not empty"):
        time_book.main(["--root", str(tmp_path)])
