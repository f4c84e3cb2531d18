"""P3's profile settings -> run specs and :class:`~domaingap.runs.Run` nodes; the chapter's sweeps.

Every spec is plain JSON data built from the ``p3`` profile section (see :mod:`.tasks`); the run kinds are in
:mod:`.runs`. :func:`sweeps` lists every run the notebooks read; :func:`pretrain`, :func:`finetune` and
:func:`similarities` return their verified entries (computing what is missing, upstream first), so any notebook
can run first.

Protocol (Juodelyte et al., TMLR 2023, with the chapter's substitutes): every dataset source is
pretrained once per ``pretrain_seeds`` seed, and fold ``k`` of every target starts from seed
``pretrain_seeds[k % len(pretrain_seeds)]``; every initialisation of :func:`~.tasks.inits` is fine-tuned on every
fold; each similarity run compares the networks of :func:`similarity_models` in the pairs of
:func:`similarity_pairs` on one fold of one target.
"""

from __future__ import annotations

import itertools

from ... import data, runs
from .networks import weights_init
from .runs import run_finetune, run_pretrain, run_similarity
from .tasks import FR, LAYERS, RANDOM, config, init_source, inits, pretrain_seed, random_seed

__all__ = ["finetune", "finetune_runs", "finetune_spec", "finetune_specs", "pretrain", "pretrain_runs",
           "pretrain_spec", "pretrain_specs", "replica_inits", "similarities", "similarity_models", "similarity_pairs",
           "similarity_runs", "similarity_spec", "similarity_specs", "source_init", "sweeps"]


# ------------------------------------------------------------------------------------------ specs

# the sweep names of sweeps(); the CLI checks --only against them before building any spec
SWEEPS = ("pretrain", "finetune", "similarity")

def pretrain_spec(cfg: dict, source: str, seed: int) -> dict:
    """Run spec of pretraining source ``source`` (a ``dataset`` source of ``cfg['sources']``) with ``seed``."""
    src = cfg["sources"][source]
    if "dataset" not in src:
        raise ValueError(f"source {source!r} is a weights file, not pretrained here: {src}")
    p = cfg["pretrain"]
    return {"dataset": data.info(src["dataset"]).name, "seed": int(seed), "n": p["n"], "n_test": p["n_test"],
            "epochs": p["epochs"], "batch_size": p["batch_size"], "lr": p["lr"],
            "weight_decay": p["weight_decay"], "schedule": p.get("schedule", "cosine"), "model": cfg["model"]}


def pretrain_specs(cfg: dict) -> list[dict]:
    """Every pretraining run of the chapter: each dataset source x each pretraining seed."""
    return [pretrain_spec(cfg, name, seed) for name, src in cfg["sources"].items() if "dataset" in src
            for seed in cfg["pretrain_seeds"]]


def source_init(cfg: dict, source: str, fold: int, replica: int = 0) -> dict:
    """Init spec of ``source`` for fold ``fold``: our pretraining run (seed :func:`~.tasks.pretrain_seed` of
    ``fold`` and ``replica``) or the user's weight file."""
    src = cfg["sources"][source]
    if "weights" in src:
        return weights_init(src["weights"])
    return {"kind": "pretrained", "spec": pretrain_spec(cfg, source, pretrain_seed(cfg, fold, replica))}


def finetune_spec(cfg: dict, target: str, init_name: str, fold: int, replica: int = 0) -> dict:
    """Run spec of fine-tuning initialisation ``init_name`` (``"natural"``, ``"natural-Fr"``, ``"random"``...)
    on fold ``fold`` of ``target``.

    ``replica=1``: the same source, fold and fine-tuning, started from the next pretraining seed (the seed-to-seed
    baseline of prediction agreement); only for a source pretrained here.
    Every run early-stops: ``val_fraction`` of the fold's training part (stratified, seeded by the fold) is held
    out for validation, at most ``max_epochs`` epochs, stopping after ``patience`` epochs without a lower
    validation loss, and the best-validation epoch's weights are kept.
    """
    target = data.info(target).name
    source = init_source(init_name)
    if source == RANDOM:
        if replica:
            raise ValueError("replica runs start from a second pretraining seed; random init has none")
        init = {"kind": "random", "seed": random_seed(fold)}
    elif source in cfg["sources"]:
        if replica and "dataset" not in cfg["sources"][source]:
            raise ValueError(f"source {source!r} is a weights file: it has no second pretraining seed")
        init = source_init(cfg, source, fold, replica)
    else:
        raise ValueError(f"unknown initialisation {init_name!r}; expected one of {inits(cfg, target)}")
    ft = cfg["finetune"]
    return {"target": target, "fold": int(fold), "n_folds": cfg["n_folds"], "fold_seed": cfg["fold_seed"],
            "max_pool": ft.get("max_pool"), "init_name": init_name, "replica": int(replica), "init": init,
            "warmup": cfg["warmup"] if init_name.endswith(FR) else None,
            "max_epochs": ft["max_epochs"], "patience": ft["patience"], "val_fraction": ft["val_fraction"],
            "batch_size": ft["batch_size"], "lr": ft["lr"],
            "weight_decay": ft["weight_decay"], "seed": int(fold), "model": cfg["model"]}


def replica_inits(cfg: dict, target: str) -> list[str]:
    """Initialisations fine-tuned a second time from the next pretraining seed (seed-to-seed agreement): the
    plain sources pretrained here, when there are at least two pretraining seeds."""
    if len(cfg["pretrain_seeds"]) < 2:
        return []
    return [i for i in inits(cfg, target) if i in cfg["sources"] and "dataset" in cfg["sources"][i]]


def finetune_specs(cfg: dict) -> list[dict]:
    """Every fine-tuning run: target x initialisation x fold, then the replicas (:func:`replica_inits`)."""
    main = [finetune_spec(cfg, t, i, k) for t in cfg["targets"] for i in inits(cfg, t)
            for k in range(cfg["n_folds"])]
    return main + [finetune_spec(cfg, t, i, k, replica=1) for t in cfg["targets"] for i in replica_inits(cfg, t)
                   for k in range(cfg["n_folds"])]


def similarity_models(cfg: dict, target: str, fold: int) -> dict[str, dict]:
    """Networks compared on fold ``fold`` of ``target``: name -> reference spec.

    ``"<init>-FT"``: fine-tuned networks; ``"<source>"``: the pretrained networks before fine-tuning;
    ``"random"``: the random init of the fold's random-init run; ``"random'"``: a second random init.
    """
    target = data.info(target).name
    out: dict[str, dict] = {}
    names = inits(cfg, target)
    for name in names:
        out[f"{name}-FT"] = {"kind": "finetuned", "spec": finetune_spec(cfg, target, name, fold)}
    for name in names:
        if name != RANDOM and not name.endswith(FR):
            out[name] = {"kind": "init", "init": source_init(cfg, name, fold)}
    out[RANDOM] = {"kind": "init", "init": {"kind": "random", "seed": random_seed(fold)}}
    out[RANDOM + "'"] = {"kind": "init", "init": {"kind": "random", "seed": random_seed(fold, 1)}}
    return out


def similarity_pairs(cfg: dict, target: str) -> list[tuple[str, str]]:
    """Pairs compared (P3's figure rows, then extras): each fine-tuned source vs its own init (with and without
    warm-up), sources' fine-tuned networks against each other, sources before fine-tuning against each other,
    random vs random, and the random-init run vs its init."""
    sources = [n for n in inits(cfg, target) if n != RANDOM and not n.endswith(FR)]
    pairs = [(f"{s}-FT", s) for s in sources]
    pairs += [(f"{a}-FT", f"{b}-FT") for a, b in itertools.combinations(sources, 2)]
    pairs += list(itertools.combinations(sources, 2))
    pairs += [(RANDOM, RANDOM + "'")]
    pairs += [(f"{s}{FR}-FT", s) for s in sources]
    pairs += [(f"{a}{FR}-FT", f"{b}{FR}-FT") for a, b in itertools.combinations(sources, 2)]
    pairs += [(f"{RANDOM}-FT", RANDOM)]
    return pairs


def similarity_spec(cfg: dict, target: str, fold: int) -> dict:
    """Run spec of every layer-wise comparison on fold ``fold`` of ``target``."""
    sim = cfg["similarity"]
    target = data.info(target).name
    num_classes = data.info(target).num_classes
    return {"target": target, "fold": int(fold), "num_classes": num_classes,
            "models": similarity_models(cfg, target, fold),
            "pairs": [list(p) for p in similarity_pairs(cfg, target)], "layers": list(LAYERS),
            "probe_n": sim["probe_n"], "probe_seed": sim.get("probe_seed", 0), "n_channels": sim["n_channels"],
            "repeats": sim["repeats"], "epsilon": sim.get("epsilon", 1e-12), "model": cfg["model"]}


def similarity_specs(cfg: dict) -> list[dict]:
    """Every similarity run: target x fold (folds limited by ``similarity.folds`` when set)."""
    n = cfg["similarity"].get("folds") or cfg["n_folds"]
    return [similarity_spec(cfg, t, k) for t in cfg["targets"] for k in range(min(n, cfg["n_folds"]))]


# ------------------------------------------------------------------------------------------ runs and sweeps

def pretrain_runs(cfg: dict) -> list[runs.Run]:
    """:func:`pretrain_specs` as ``p3_pretrain`` runs."""
    return [run_pretrain(s) for s in pretrain_specs(cfg)]


def finetune_runs(cfg: dict) -> list[runs.Run]:
    """:func:`finetune_specs` as ``p3_finetune`` runs (their pretraining upstream)."""
    return [run_finetune(s) for s in finetune_specs(cfg)]


def similarity_runs(cfg: dict) -> list[runs.Run]:
    """:func:`similarity_specs` as ``p3_similarity`` runs (their fine-tuning and pretraining upstream)."""
    return [run_similarity(s) for s in similarity_specs(cfg)]


def sweeps(profile: str) -> dict[str, list[runs.Run]]:
    """Every run the chapter's notebooks read at ``profile``, by sweep name (``python -m domaingap.chapters.p3``)."""
    cfg = config(profile)
    return {"pretrain": pretrain_runs(cfg), "finetune": finetune_runs(cfg), "similarity": similarity_runs(cfg)}


def pretrain(cfg: dict, *, progress: bool = True) -> list[runs.Entry]:
    """Entries of every pretraining run of ``cfg`` (computed when missing), in :func:`pretrain_specs` order."""
    return runs.compute(pretrain_runs(cfg), progress=progress, desc="P3 pretraining")


def finetune(cfg: dict, *, progress: bool = True) -> list[runs.Entry]:
    """Entries of every fine-tuning run of ``cfg`` (pretraining first when missing), in spec order."""
    return runs.compute(finetune_runs(cfg), progress=progress, desc="P3 fine-tuning")


def similarities(cfg: dict, *, progress: bool = True) -> list[runs.Entry]:
    """Entries of every layer-wise similarity run (fine-tuning first when missing), in spec order."""
    return runs.compute(similarity_runs(cfg), progress=progress, desc="P3 similarity")
