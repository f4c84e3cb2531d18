import textwrap

import pytest

from domaingap import profile_schema, profiles, refs, runner


def test_every_section_defines_every_profile():
    for section in profiles.sections():
        for p in profiles.PROFILES:
            assert profiles.get(section, p)["profile"] == p


def test_unknown_profile_and_section():
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        profiles.get("data_overview", "fast")
    with pytest.raises(KeyError, match="data_overview"):
        profiles.get("nope", "ci")


def test_get_returns_a_copy():
    a = profiles.get("data_overview", "ci")
    a["stats_n"] = -1
    assert profiles.get("data_overview", "ci")["stats_n"] != -1


def test_every_notebook_has_a_parameters_cell_and_profile_section():
    for source in runner.sources():
        nb = runner.to_notebook(source)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and 'profile = "default"' in tagged[0].source, source


def test_nbval_references_match_their_sources():
    assert refs.stale_refs() == []


# ------------------------------------------------------------------------------------------ the schema

def test_the_real_profiles_validate_and_every_section_has_exactly_one_model():
    table = profiles.load()  # raises ProfileError naming every problem
    assert sorted(table) == sorted(profile_schema.SECTIONS)
    for section, model in profile_schema.SECTIONS.items():
        assert issubclass(model, profile_schema.Section)
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


def test_get_returns_the_yaml_values_uncoerced():
    # validation only checks: ints stay ints where the model says float (run specs, and so cache keys, use them)
    tab1 = profiles.get("p2_tab1", "ci")
    assert tab1["pgd_eps_multipliers"] == [1, 2, 4] and all(type(m) is int for m in tab1["pgd_eps_multipliers"])
    fgsm = profiles.get("p1_fig3", "default")["attacks"]["fgsm"]  # the model says list[float]
    assert fgsm == [1, 2, 4, 8] and all(type(e) is int for e in fgsm)
    data = profiles.get("p1_data", "default")
    assert data["medical_datasets"][0] == "breastmnist" and len(data["medical_datasets"]) == 7
    assert "width" not in profiles.get("p1_fig2", "paper")["models"]["resnet18"]  # no defaults filled in


GOOD = """
p1_fig4:
  common:
    k: 20
  ci: {}
  default: {}
  paper: {}
"""


def problems(tmp_path, files: dict[str, str]) -> list[str]:
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    with pytest.raises(profiles.ProfileError) as info:
        profiles.load(tmp_path)
    assert all(p in str(info.value) for p in info.value.problems)
    return info.value.problems


def test_a_valid_directory_loads(tmp_path):
    (tmp_path / "p1.yaml").write_text(GOOD)
    assert profiles.load(tmp_path) == {"p1_fig4": {p: {"k": 20} for p in profiles.PROFILES}}


@pytest.mark.parametrize("yaml_text, expected", [
    # wrong type
    (GOOD.replace("default: {}", "default: {k: x}"),
     ["p1.yaml: section p1_fig4, profile default: key 'k': Input should be a valid integer, got 'x'"]),
    # no coercion: a string or a bool is not an int
    (GOOD.replace("ci: {}", "ci: {k: '20'}").replace("paper: {}", "paper: {k: true}"),
     ["p1.yaml: section p1_fig4, profile ci: key 'k': Input should be a valid integer, got '20'",
      "p1.yaml: section p1_fig4, profile paper: key 'k': Input should be a valid integer, got True"]),
    # wrong type in common: every profile reports it, naming where it is set
    (GOOD.replace("k: 20", "k: 2.5"),
     [f"p1.yaml: section p1_fig4, profile {p}: key 'k' (set in common): Input should be a valid integer, got 2.5"
      for p in profiles.PROFILES]),
    # unknown key
    (GOOD.replace("ci: {}", "ci: {kk: 1}"),
     ["p1.yaml: section p1_fig4, profile ci: key 'kk': unknown key (not in the schema of the section, "
      "profile_schema.P1Fig4: add a field there, see domaingap/profile_schema.py)"]),
    # missing key
    (GOOD.replace("k: 20", "{}").replace("common:\n    {}", "common: {}").replace("paper: {}", "paper: {k: 1}"),
     ["p1.yaml: section p1_fig4, profile ci: key 'k': missing (give it in common or in this profile)",
      "p1.yaml: section p1_fig4, profile default: key 'k': missing (give it in common or in this profile)"]),
    # unknown section
    (GOOD + "p1_fig9:\n  ci: {}\n  default: {}\n  paper: {}\n",
     ["p1.yaml: section p1_fig9: unknown section (no model for it in domaingap/profile_schema.py; known: "]),
    # missing and unknown profiles
    (GOOD.replace("  paper: {}\n", "  fast: {}\n"),
     ["p1.yaml: section p1_fig4, profile fast: unknown profile (expected common (optional), ci, default, paper)",
      "p1.yaml: section p1_fig4, profile paper: missing (every section needs ci, default, paper)"]),
    # a key given twice (PyYAML would silently keep the last)
    (GOOD.replace("k: 20", "k: 20\n    k: 30"), ["p1.yaml: not valid YAML: line 5, column 5: duplicate key 'k'"]),
    # a number PyYAML reads as a string
    ("""
     p1_fig2:
       common: {weight_decay: 1e-4, sizes: [20], seeds: [0], epochs: 1}
       ci: {models: {resnet18: {lr: 1.0e-3, batch_size: 32}}}
       default: {models: {resnet18: {lr: fast, batch_size: 32, widht: 8}}}
       paper: {models: {resnet18: {lr: 1.0e-3, batch_size: 32}}}
     """,
     ["p1.yaml: section p1_fig2, profile ci: key 'weight_decay' (set in common): Input should be a valid number, "
      "got '1e-4' (YAML reads a number without a '.' in its mantissa, like 1e-3, as a string: write 1.0e-3)",
      "p1.yaml: section p1_fig2, profile default: key 'models.resnet18.lr': Input should be a valid number, "
      "got 'fast'",
      "p1.yaml: section p1_fig2, profile default: key 'models.resnet18.widht': unknown key"]),
], ids=["type", "no-coercion", "type-in-common", "unknown-key", "missing-key", "unknown-section", "profiles",
        "duplicate-key", "nested"])
def test_bad_profiles_name_file_section_profile_and_key(tmp_path, yaml_text, expected):
    found = problems(tmp_path, {"p1.yaml": yaml_text})
    for message in expected:
        assert any(p.startswith(message) for p in found), f"{message!r} not in {found}"


def test_a_section_in_two_files(tmp_path):
    found = problems(tmp_path, {"p1.yaml": GOOD, "p2.yaml": GOOD.replace("20", "10")})
    assert found == ["p2.yaml: section p1_fig4: also defined in p1.yaml (a section may appear in one file only)"]


def test_every_problem_of_every_file_is_listed_at_once(tmp_path):
    found = problems(tmp_path, {"a.yaml": GOOD.replace("ci: {}", "ci: {k: x}"),
                                "b.yaml": "data_overview:\n  ci: {grid_per_class: 4}\n  default: []\n"})
    assert found == [
        "a.yaml: section p1_fig4, profile ci: key 'k': Input should be a valid integer, got 'x'",
        "b.yaml: section data_overview, profile default: must map keys to values, got list",
        "b.yaml: section data_overview, profile paper: missing (every section needs ci, default, paper)",
        "b.yaml: section data_overview, profile ci: key 'stats_n': missing (give it in common or in this profile)"]


def test_get_validates_when_the_profiles_are_first_loaded(tmp_path, monkeypatch):
    (tmp_path / "p1.yaml").write_text(GOOD.replace("k: 20", "k: x"))
    monkeypatch.setattr(profiles, "_DIR", tmp_path)
    profiles._table.cache_clear()
    try:
        with pytest.raises(profiles.ProfileError, match=r"p1\.yaml: section p1_fig4, profile ci: key 'k'"):
            profiles.get("p1_fig4", "ci")
    finally:
        profiles._table.cache_clear()
