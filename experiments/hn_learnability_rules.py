"""The pre-registered rules that decided HN-k's defaults, as functions of run records: each
:class:`Question` names the default it put to a rule and the protocols it was put under
(``docs/protocols/``); :func:`rule` reads the rule's clauses off the runs' metrics.
``experiments.hn_learnability_page`` prints them on the results page.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxcl.io.records import paired


@dataclasses.dataclass(frozen=True)
class Question:
    """A default put to a pre-registered rule: the variant it is now (``old``), the one that
    would replace it (``new``), what each means in words, the rule's extra clause (``"gap"``: on
    the Fashion-MNIST subset, HN-2 ``new`` within 5 points of Naive's learning accuracy;
    ``"third"``: on each MLP split, HN-2 ``new`` forgets at most a third of Naive's), and its
    protocols in the order they were committed, each ``(file under docs/protocols/, seeds, MLP
    runs, ResNet runs)``; the last whose runs are all committed decides."""

    title: str
    old: str
    new: str
    adopted: str
    kept: str
    extra: str
    protocols: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...]


QUESTIONS = (
    Question("LeCun-variance heads as the default?", "jaxcl", "jaxcl+lecun",
             "jaxcl's default is `hnet_init=\"lecun\"` (`--preset paper` keeps `\"torch\"`, the "
             "reference's)", "jaxcl's default stays `hnet_init=\"torch\"`, the reference's", "gap",
             (("hn_init_lecun.md", "seeds 300-302",
               ("fmnist_mlp_30steps_seeds300", "digits_mlp_30steps_seeds300"),
               ("fmnist_resnet_120steps_jaxcl", "fmnist_resnet_120steps_lecun")),
              ("hn_init_lecun_seeds400.md", "MLP seeds 400-409, ResNet seeds 400-402",
               ("fmnist_mlp_30steps_seeds400", "digits_mlp_30steps_seeds400"),
               ("fmnist_resnet_120steps_seeds400",)))),
    Question("A quarter-experience warm-up as the default?", "jaxcl+lecun", "lecun+warmup0.25",
             "jaxcl's default is `reg_warmup=0.25` (`--preset paper` keeps 0)",
             "jaxcl's default stays `reg_warmup=0.5`", "third",
             (("hn_warmup_quarter.md", "MLP seeds 500-509, ResNet seeds 500-502",
               ("fmnist_mlp_30steps_seeds500", "digits_mlp_30steps_seeds500"),
               ("fmnist_resnet_120steps_seeds500",)),)),
)
"""The defaults put to pre-registered rules, in the order they were asked."""


def budget_of(metrics: dict) -> dict:
    """The one budget's records of a run's metrics (per label, per seed)."""
    (budget,) = metrics["extra"]["budgets"].values()
    return budget


def _paired(metrics: dict, name: str, label: str, other: str) -> str:
    """``label``'s metric minus ``other``'s, seed by seed: mean and 95 % interval (points)."""
    budget = budget_of(metrics)
    by_seed = [{i: 100 * v for i, v in enumerate(budget[name][k])} for k in (label, other)]
    d = paired(*by_seed)
    return f"paired {d['diff']:+.1f}" + ("" if d["ci95"] is None else f" ± {d['ci95']:.1f}")


def rule(mlp: dict[str, dict], resnet: dict, old: str, new: str,
         extra: str) -> tuple[list[str], bool]:
    """A :class:`Question`'s decision rule, clause by clause, read off the means of the runs'
    metrics (``mlp``: by folder name; ``resnet``: the merged ResNet runs), each clause with its
    paired difference for information: ``new``'s learning accuracy at least ``old``'s minus 1
    point and its forgetting at most ``old``'s plus 1, for every k of the MLP runs; the
    question's ``extra`` clause; on the ResNet, HN-2 ``new``'s learning accuracy at least
    ``old``'s minus 1 point and its forgetting at most a third of Naive's. Returns ``(lines,
    verdict)``: the default changes only if every clause holds."""
    def means(metrics, name):
        return {label: 100 * float(np.mean(v)) for label, v in budget_of(metrics)[name].items()}

    clauses = []
    for folder, metrics in mlp.items():
        la, fg = means(metrics, "learning_accuracy"), means(metrics, "forgetting")
        for label in (lab for lab in la if lab.endswith(" " + old)):
            k = label.split()[0]
            other = f"{k} {new}"
            d_la, d_f = la[other] - la[label], fg[other] - fg[label]
            clauses.append((d_la >= -1, f"{folder}, {k}: learning accuracy {d_la:+.1f} points "
                            f"against `{old}`'s (at least -1; "
                            f"{_paired(metrics, 'learning_accuracy', other, label)})"))
            clauses.append((d_f <= 1, f"{folder}, {k}: forgetting {d_f:+.1f} points against "
                            f"`{old}`'s (at most +1; "
                            f"{_paired(metrics, 'forgetting', other, label)})"))
        two = f"HN-2 {new}"
        if extra == "gap" and folder.startswith("fmnist") and two in la:
            gap = la["Naive"] - la[two]
            clauses.append((gap <= 5, f"{folder}, HN-2: {gap:.1f} points below Naive's "
                                      "learning accuracy (at most 5)"))
        if extra == "third" and two in fg:
            clauses.append((fg[two] <= fg["Naive"] / 3,
                            f"{folder}, HN-2: forgetting {fg[two]:.1f} against Naive's "
                            f"{fg['Naive']:.1f} (at most a third)"))
    la, fg = means(resnet, "learning_accuracy"), means(resnet, "forgetting")
    two, base = f"HN-2 {new}", f"HN-2 {old}"
    d_la = la[two] - la[base]
    clauses.append((d_la >= -1, f"ResNet, HN-2: learning accuracy {d_la:+.1f} points against "
                                f"`{old}`'s (at least -1; "
                                f"{_paired(resnet, 'learning_accuracy', two, base)})"))
    clauses.append((fg[two] <= fg["Naive"] / 3,
                    f"ResNet, HN-2: forgetting {fg[two]:.1f} against Naive's "
                    f"{fg['Naive']:.1f} (at most a third)"))
    verdict = all(ok for ok, _ in clauses)
    return [f"- {text}: {'holds' if ok else 'fails'}" for ok, text in clauses], verdict
