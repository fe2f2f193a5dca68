"""Claims as declared estimands (negres.statistics.claims): every kind of reference and
every sampling kind can come out "reproduces", "does not reproduce" and "inconclusive" on
constructed per-seed numbers; a claim on the margin reproduces about as rarely as its level
allows; a grid claim is universal and reports its share; bad claims are refused naming the
attribute."""

import numpy as np
import pytest

from negres.errors import ArgumentError
from negres.results import ConditionResults, MetricInfo, Saved
from negres.statistics import claims
from negres.statistics.claims import FAILS, INCONCLUSIVE, REPRODUCES, Claim, judge

SEEDS = 16
FAST = {"num_resamples": 400, "seed": 0}


def _condition(values, *, pairwise=None, per_example=None, **more) -> ConditionResults:
    """A condition holding metric ``m`` (and ``more``: name -> (S,) values)."""
    metrics = {"m": np.asarray(values, float)}
    info = {"m": MetricInfo(direction="higher", evaluator="e",
                            pairwise="agreement" if pairwise is not None else None,
                            per_example="per_example" if per_example is not None else None)}
    saved = Saved(per_seed={} if per_example is None else {"per_example": per_example},
                  pairwise={} if pairwise is None else {"agreement": pairwise})
    for name, v in more.items():
        metrics[name] = np.asarray(v, float)
        info[name] = MetricInfo(direction="higher", evaluator="e")
    return ConditionResults(metrics=metrics, metric_info=info, evaluations={"e": saved},
                            seed_indices=np.arange(len(values)), num_seeds=len(values))


def _normal(mean, sd, seed=0, n=SEEDS):
    return np.random.default_rng(seed).normal(mean, sd, n)


def _verdict(claim, conditions, **kw):
    return judge([claim], conditions, **{**FAST, **kw})[0]["verdict"]


@pytest.mark.parametrize("mean, sd, expected", [
    (0.90, 0.01, REPRODUCES),        # clearly above 0.8 + 0.05
    (0.80, 0.01, FAILS),             # clearly short of 0.85
    (0.85, 0.05, INCONCLUSIVE),      # on the margin, wide
])
def test_a_claim_against_a_value_comes_out_each_way(mean, sd, expected):
    claim = Claim("v", "m is above 0.8", "m", "a", "higher", margin=0.05, versus_value=0.8)
    assert _verdict(claim, {"a": _condition(_normal(mean, sd))}) == expected
    # Read as "below 0.8 by more than 0.05", every one of them is shown not to be.
    lower = Claim("v", "m is below 0.8", "m", "a", "lower", margin=0.05, versus_value=0.8)
    assert _verdict(lower, {"a": _condition(_normal(mean, sd))}) == FAILS


@pytest.mark.parametrize("shift, sd, expected", [
    (-0.2, 0.02, REPRODUCES), (0.0, 0.02, FAILS), (-0.1, 0.3, INCONCLUSIVE)])
def test_a_claim_between_conditions_comes_out_each_way(shift, sd, expected):
    conditions = {"noisy": _condition(_normal(0.7 + shift, sd, 1)),
                  "clean": _condition(_normal(0.7, sd, 2))}
    claim = Claim("c", "noise lowers m", "m", "noisy", "lower", margin=0.05,
                  versus_condition="clean")
    assert _verdict(claim, conditions) == expected


@pytest.mark.parametrize("gap, noise, expected", [
    (0.3, 0.01, REPRODUCES), (0.0, 0.01, FAILS), (0.1, 0.3, INCONCLUSIVE)])
def test_a_claim_between_two_metrics_of_the_same_seeds_is_paired(gap, noise, expected):
    rng = np.random.default_rng(3)
    base = rng.normal(0.9, 0.1, SEEDS)  # large spread across seeds, shared by both metrics
    condition = _condition(base, other=base - gap + rng.normal(0, noise, SEEDS))
    claim = Claim("p", "other falls short of m", "other", "a", "lower", margin=0.05,
                  versus_metric="m")
    assert _verdict(claim, {"a": condition}) == expected


def _pairwise(level, spread, seed):
    rng = np.random.default_rng(seed)
    seed_effect = rng.normal(0, spread, SEEDS)
    matrix = level + (seed_effect[:, None] + seed_effect[None, :]) / 2
    matrix = matrix + rng.normal(0, spread / 4, (SEEDS, SEEDS))
    matrix = (matrix + matrix.T) / 2
    np.fill_diagonal(matrix, 1.0)
    return matrix


@pytest.mark.parametrize("level, spread, expected", [
    (0.6, 0.02, REPRODUCES), (0.95, 0.01, FAILS), (0.8, 0.4, INCONCLUSIVE)])
def test_a_pairwise_metric_is_judged_with_its_u_statistic_interval(level, spread, expected):
    from negres.results import pairwise_row_means

    matrix = _pairwise(level, spread, 4)
    condition = _condition(pairwise_row_means(matrix), pairwise=matrix)
    claim = Claim("agree", "seeds agree less than 0.8", "m", "a", "lower", margin=0.0,
                  versus_value=0.8)
    record = judge([claim], {"a": condition}, **FAST)[0]
    assert record["verdict"] == expected
    assert "U-statistic" in record["points"][0]["covers"]


def test_a_metric_over_examples_counts_the_examples_where_the_claim_is_about_them():
    rng = np.random.default_rng(5)
    # Seeds agree closely; 60 shared examples vary a lot: over seeds alone the mean is
    # pinned, over seeds and examples it is not.
    example = rng.normal(0, 0.3, 60)
    example -= example.mean()  # these examples' mean is 0.84 exactly
    per_example = 0.84 + example[None, :] + rng.normal(0, 0.01, (SEEDS, 60))
    condition = _condition(per_example.mean(axis=1), per_example=per_example)
    base = dict(name="x", text="m exceeds 0.8", metric="m", condition="a", direction="higher",
                margin=0.0, versus_value=0.8)
    seeds_only = Claim(**base, about="test_set")
    distribution = Claim(**base, about="distribution")
    assert _verdict(seeds_only, {"a": condition}) == REPRODUCES
    assert _verdict(distribution, {"a": condition}) == INCONCLUSIVE


@pytest.mark.parametrize("effect, expected", [
    (0.0, REPRODUCES), (0.3, FAILS), (0.05, INCONCLUSIVE)])
def test_a_within_claim_says_an_effect_stays_short_of_the_margin(effect, expected):
    conditions = {"ablated": _condition(_normal(0.5 + effect, 0.02, 6)),
                  "full": _condition(_normal(0.5, 0.02, 7))}
    claim = Claim("w", "ablation does not help", "m", "ablated", "higher", margin=0.05,
                  versus_condition="full", asserts="within")
    assert _verdict(claim, conditions) == expected


def test_a_grid_claim_must_hold_at_every_point_and_reports_its_share():
    def grid(shifts):
        out = {}
        for i, (point, shift) in enumerate(shifts.items()):
            out[f"{point}/treated"] = _condition(_normal(0.5 + shift, 0.01, 10 + i))
            out[f"{point}/control"] = _condition(_normal(0.5, 0.01, 20 + i))
        return out

    claim = Claim("g", "treatment raises m at every learning rate", "m", "{point}/treated",
                  "higher", margin=0.05, versus_condition="{point}/control",
                  points=("lr1", "lr2", "lr3"))
    every = judge([claim], grid({"lr1": 0.2, "lr2": 0.2, "lr3": 0.2}), **FAST)[0]
    assert every["verdict"] == REPRODUCES and every["share"] == 1.0
    assert every["share_ci"][0] < 1.0 == every["share_ci"][1]
    one_fails = judge([claim], grid({"lr1": 0.2, "lr2": 0.0, "lr3": 0.2}), **FAST)[0]
    assert one_fails["verdict"] == FAILS and one_fails["share"] == pytest.approx(2 / 3)
    assert [p["verdict"] for p in one_fails["points"]] == [REPRODUCES, FAILS, REPRODUCES]
    unsure = judge([claim], grid({"lr1": 0.2, "lr2": 0.05, "lr3": 0.2}), **FAST)[0]
    assert unsure["verdict"] == INCONCLUSIVE
    assert "holds at 67% of 3 grid points" in claims.claim_sentence(one_fails)


def test_a_claim_on_its_margin_reproduces_about_as_rarely_as_its_level_allows():
    # The effect exactly at the margin: "reproduces" (and "does not reproduce") are errors;
    # each side of a 95% interval errs about 2.5% of the time.
    claim = Claim("m", "m above 0.8", "m", "a", "higher", margin=0.0, versus_value=0.8)
    verdicts = [_verdict(claim, {"a": _condition(_normal(0.8, 0.05, seed, n=12))},
                         num_resamples=300, seed=seed) for seed in range(300)]
    for wrong in (REPRODUCES, FAILS):
        assert verdicts.count(wrong) / len(verdicts) < 0.06, wrong
    # Far from it, the claim is decided nearly always.
    far = [_verdict(claim, {"a": _condition(_normal(0.87, 0.05, seed, n=12))},
                    num_resamples=300, seed=seed) for seed in range(60)]
    assert far.count(REPRODUCES) / len(far) > 0.9


def test_the_study_verdict_and_sentence_follow_the_claims():
    good = Claim("good", "m is above 0.8", "m", "a", "higher", versus_value=0.8)
    bad = Claim("bad", "m is below 0.8", "m", "a", "lower", versus_value=0.8)
    conditions = {"a": _condition(_normal(0.9, 0.01))}
    both = judge([good, bad], conditions, **FAST)
    assert claims.overall(both[:1]) == "Reproduces"
    assert claims.overall(both[1:]) == "Does not reproduce"
    assert claims.overall(both) == "Partly reproduces (1 of 2 claims)"
    sentence = claims.finding(both)
    assert sentence.startswith("Partly reproduces (1 of 2 claims): m is above 0.8: "
                               "**reproduces** (m in `a` − 0.8 = ")
    assert "16 seeds" in sentence
    # A premise is reported beside the claims and does not count among them, unless it is
    # not shown: then the study did not test its claims.
    premise_holds = Claim("p", "m is positive", "m", "a", "higher", versus_value=0.0,
                          role="premise")
    premise_fails = Claim("q", "m exceeds 2", "m", "a", "higher", versus_value=2.0,
                          role="premise")
    judged = judge([good, premise_holds], conditions, **FAST)
    assert claims.overall(judged) == "Reproduces"
    assert claims.finding(judged).split(". Premise: ")[1].startswith(
        "m is positive: **reproduces**")
    judged = judge([good, premise_fails], conditions, **FAST)
    assert claims.overall(judged) == "Not tested (a premise is not shown)"
    missing = judge([Claim("x", "n is high", "n", "a", "higher", versus_value=0.0)],
                    conditions, **FAST)[0]
    assert missing["verdict"] == "not measured" and "'n'" in missing["reason"]


@pytest.mark.parametrize("change, field", [
    ({"direction": "up"}, "claim.direction"),
    ({"margin": -0.1}, "claim.margin"),
    ({"margin": float("nan")}, "claim.margin"),
    ({"versus_value": None}, "claim.versus_condition"),
    ({"versus_condition": "b"}, "claim.versus_condition"),
    ({"versus_value": float("inf")}, "claim.versus_value"),
    ({"about": "everything"}, "claim.about"),
    ({"asserts": "maybe"}, "claim.asserts"),
    ({"role": "aside"}, "claim.role"),
    ({"points": ("a", "a")}, "claim.points"),
    ({"points": ("p",)}, "claim.condition"),
    ({"metric": ""}, "claim.metric"),
])
def test_a_bad_claim_is_refused_naming_its_attribute(change, field):
    base = dict(name="c", text="t", metric="m", condition="a", direction="higher",
                versus_value=0.5)
    with pytest.raises(ArgumentError) as error:
        Claim(**{**base, **change})
    assert error.value.field == field
    with pytest.raises(ArgumentError, match=r"claims\.colour"):
        Claim.from_config({**base, "colour": 1})
    with pytest.raises(ArgumentError, match="claims"):
        claims.check_claims([Claim(**base), Claim(**base)], ["a"])
    with pytest.raises(ArgumentError, match=r"claims\[0\]\.condition"):
        claims.check_claims([Claim(**{**base, "condition": "z"})], ["a"])


def test_a_library_user_gets_the_verdict_and_sentence_of_the_command_line(tmp_path):
    # The command line's study and a library user's own pieces (negres.train on a flax
    # model and optax's Adam, negres.evaluate, negres.statistics.analyze) on the same seeds.
    import optax
    from tests_configs import tiny_config

    import negres
    from negres.study import experiment

    config = tiny_config()
    config.evaluation.evaluators = ()
    config.train.steps = 30
    declared = (
        dict(name="accurate", text="test accuracy is above 0.8", metric="test_accuracy",
             condition="mlp", versus_value=0.8, direction="higher"),
        dict(name="gap", text="test accuracy falls short of training accuracy",
             metric="test_accuracy", condition="mlp", versus_metric="train_accuracy",
             direction="lower", margin=0.01),
    )
    config.claims = declared
    cli = experiment.run(config, str(tmp_path))

    task = negres.load_task(config.task)
    model = negres.models.build_model(config.model, task.num_outputs)
    trained = negres.train(
        negres.builtin_program(model, optax.adam(config.optimizer.learning_rate)),
        negres.builtin_data(task.x_train, task.y_train), steps=config.train.steps,
        batch_size=config.train.batch_size, num_seeds=config.num_seeds, seed=config.seed,
        eval_every=config.train.eval_every)
    evaluations = negres.evaluate(negres.linen_apply(model), trained.params, task,
                                  evaluators=())
    mine = negres.statistics.analyze(
        {"mlp": negres.evaluators.as_results(evaluations)}, "mlp",
        claims=[negres.Claim(**c) for c in declared],
        num_resamples=config.stats.num_resamples, seed=config.seed)
    assert [r["verdict"] for r in mine.claims] == [
        r["verdict"] for r in cli.statistics.claims]
    assert claims.finding(mine.claims) == cli.finding
    assert cli.finding.startswith(claims.overall(cli.statistics.claims))


def test_a_look_that_spends_nothing_decides_no_claim():
    # A look of one seed tests at alpha 0 (negres.statistics.sequential): nothing decided.
    claim = Claim("c", "m is above 0.8", "m", "a", "higher", versus_value=0.8)
    record = judge([claim], {"a": _condition(_normal(0.9, 0.01, n=1))}, alpha=0.0)[0]
    assert record["verdict"] == INCONCLUSIVE and "one seed" in record["reason"]
    assert claims.finding([record]).startswith("Inconclusive: m is above 0.8: inconclusive")
