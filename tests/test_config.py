"""Settings as data: each setting defined once (its default, its help), found by name in whatever
section owns it, checked by that owner; one default per setting across the library; one
vocabulary for the look-ahead order."""

import dataclasses
import importlib
import inspect

import jax
import jax.numpy as jnp
import optax
import pytest

from jaxcl import config as settings
from jaxcl.config import section, setting

EXPERIMENTS = ("split_benchmark", "noisy_stream", "freeze_depth", "first_vs_second_order",
               "lookahead_ablation", "hn_learnability", "compression", "memory_usage",
               "sde_flow_forgetting")


@dataclasses.dataclass(frozen=True)
class Inner:
    width: int = setting(3, "a width, >= 1")
    names: tuple[str, ...] = setting(("a",), "names", distinct=True)
    hidden: int = setting(0, "set by the config", flag=False)

    def __post_init__(self):
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        settings.check_distinct(self)


@dataclasses.dataclass(frozen=True)
class Outer:
    inner: Inner = section(Inner, width=5)
    progress: bool = setting(True, "bars", effect="run")
    which: str = setting("x", "which runs", effect="selection")

    def __post_init__(self):  # a check across sections, the config's own
        if self.inner.width == 6 and self.which == "x":
            raise ValueError("width 6 needs which='y'")


def test_settings_are_found_by_name_and_checked_by_their_owner():
    config = Outer()
    assert config.inner.width == 5  # the section's default for this config
    assert settings.flat(config) == {"width": 5, "names": ("a",), "progress": True, "which": "x"}
    changed = settings.replace(config, width=7, progress=False)
    assert (changed.inner.width, changed.progress, changed.inner.names) == (7, False, ("a",))
    with pytest.raises(ValueError, match="width 6 needs which='y'"):  # sees the new section
        settings.replace(config, width=6)
    assert settings.replace(config, width=6, which="y").inner.width == 6
    with pytest.raises(ValueError, match="width must be >= 1, got 0"):
        settings.replace(config, width=0)
    with pytest.raises(ValueError, match=r"names \['a', 'a'\] name \['a'\] more than once"):
        settings.make(Outer, names=("a", "a"))
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['widht'\]; Outer takes width, "):
        settings.replace(config, widht=2)
    with pytest.raises(ValueError, match="unknown setting"):  # set by the config, not a flag
        settings.replace(config, hidden=1)
    assert "hidden" not in settings.flat(config)


def test_what_a_setting_changes_decides_fingerprint_and_identity():
    config = Outer()
    assert set(settings.fingerprint(config)) == {"width", "names"}
    assert set(settings.identity(config)) == {"width", "names", "which"}


def test_a_name_two_sections_share_and_a_mutable_default_are_refused():
    @dataclasses.dataclass(frozen=True)
    class Twice:
        inner: Inner = section(Inner)
        width: int = setting(1, "again")

    with pytest.raises(TypeError, match="setting 'width' is defined in two sections"):
        settings.fields_by_name(Twice)
    with pytest.raises(TypeError, match="immutable"):
        setting([1], "a list")
    with pytest.raises(ValueError, match="effect='numbers' is not one of"):
        setting(1, "x", effect="numbers")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_setting_of_every_module_has_one_owner_and_a_help_line(name):
    module = importlib.import_module(f"experiments.{name}")
    fields = settings.fields_by_name(module.Config)  # refuses a name two sections share
    assert fields
    for field in fields.values():
        help_text = field.metadata.get("help", "")
        assert len(help_text) > 5, f"{name}: --{field.name} has no help"


def test_one_default_per_setting_across_the_library():
    """A default the experiments, the learners and the models share is defined once: the
    strategies' config, the learner's builder and the hypernetwork's config agree, and the
    study's config reads its model's, loss weights' and data's."""
    from experiments import sde_flow_forgetting, split_benchmark
    from jaxcl.core.hypernet import HypernetConfig
    from jaxcl.data.points import point_tasks
    from jaxcl.learners import HN_PRESETS, PartialHypernet, StrategyConfig
    from jaxcl.learners.sde_flow_variant import LossWeights, Variant
    from jaxcl.models.sde_flow import SdeFlowConfig

    strategy = StrategyConfig()
    build = inspect.signature(PartialHypernet.build).parameters
    for name in ("order", "coef", "max_prev_tasks", "reg_warmup", "task_lr_scale"):
        assert build[name].default == getattr(strategy, name), name
    hnet = HypernetConfig(num_tasks=1)
    assert (hnet.embedding_dim, hnet.chunk_dim, hnet.new_task_init, hnet.init) == (
        strategy.embedding_dim, strategy.chunk_dim, strategy.new_task_init, strategy.hnet_init)
    assert {n: getattr(strategy, n) for n in HN_PRESETS["jaxcl"]} == HN_PRESETS["jaxcl"]
    assert split_benchmark.Config().strategy == strategy  # the experiments read these too

    study = sde_flow_forgetting.Config()
    weights, variant, model = LossWeights(), Variant(), SdeFlowConfig()
    points = inspect.signature(point_tasks).parameters
    assert (study.weights.virtual_lr, study.weights.coef, study.weights.nll_weight) == (
        weights.virtual_lr, weights.coef, weights.nll)
    assert (study.model.batch_size, study.model.learning_rate, study.run.epochs) == (
        variant.batch_size, variant.learning_rate, variant.epochs)
    assert (study.model.nll, study.model.hidden) == (model.nll, model.hidden)
    # The latent is the study's own (the fair protocol's 2); the model's default is the data's.
    assert (study.model.latent, model.latent_dim) == (2, 3)
    assert study.data.train_per_task == points["train_per_task"].default


def test_the_order_has_one_vocabulary_from_the_command_line_to_the_step():
    from jaxcl.core.lookahead import ORDERS, check_order, lookahead_grad, parse_order

    assert [parse_order(str(o)) for o in ORDERS] == list(ORDERS) == [1, 2, "none"]
    for bad in ("3", "None", "first"):
        with pytest.raises(ValueError, match=f"order must be one of 1, 2, none, got {bad!r}"):
            parse_order(bad)
    with pytest.raises(ValueError, match="order=True is not one of"):
        check_order(True)
    # "none" is the regulariser on psi itself: L_CE(psi) + lambda L_H(psi).
    psi = {"w": jnp.array([0.5, -1.0])}
    task = lambda p: jnp.sum(p["w"] ** 2)  # noqa: E731
    reg = lambda p: jnp.sum(jnp.sin(p["w"]))  # noqa: E731
    grad, info = lookahead_grad(task, reg, psi, virtual_opt=0.1, order="none", coef=0.5)
    want = jax.grad(lambda p: task(p) + 0.5 * reg(p))(psi)
    assert jnp.allclose(grad["w"], want["w"], rtol=1e-6)
    assert info.hessian_term is None
    ahead, _ = lookahead_grad(task, reg, psi, virtual_opt=optax.sgd(0.1), order=1, coef=0.5)
    assert not jnp.allclose(ahead["w"], grad["w"])  # a virtual step that moves differs
