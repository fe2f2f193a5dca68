"""Doc 000: does high accuracy hide rule violations when a shortcut agrees with the label?

Tabular (default): the label follows ``IF core_a > 0.3 AND core_b > 0.3 THEN 1``; a
shortcut feature agrees with the label on 95% of training and test examples. The control
world's shortcut agrees half the time (no information). Per seed: in-distribution
accuracy, rule fidelity on the test examples where the shortcut contradicts the rule,
accuracy as the shortcut is reversed (severity = share of examples reversed), the share of
attribution on the shortcut, the right-for-the-wrong-reasons rate and the confusion.

``--config configs/rule_shortcut.py:image``: the image version, real digits with a
class-coding patch on the left edge (95% agreement; the control's patch is random), an
MLP on the pixels, and the patch shuffled as the shift; its saliency maps show where the
model looks. (An MLP rather than a CNN: XLA's CPU convolutions run ~60x slower than the
MLP inside the training loop; ``--config.model.name=cnn`` on an accelerator.)
"""

from configs import default


def get_config(variant: str | None = None):
    variant = variant or "tabular"
    if variant not in ("tabular", "image"):
        raise ValueError(f"configs/rule_shortcut.py:{variant}: the variant must be "
                         "'tabular' (default) or 'image'")
    config = default.get_config()
    config.finding = "rule_shortcut"
    config.num_seeds = 16
    config.train.steps = 1000
    config.train.eval_every = 100
    config.evaluation.severities = (0.0, 0.25, 0.5, 0.75, 1.0)
    config.evaluation.attribution_methods = ("integrated_gradients",)
    config.evaluation.randomization_check = False
    config.baseline = "shortcut"
    if variant == "tabular":
        config.title = "A rule and a shortcut, tabular (doc 000)"
        config.task.name = "rule_shortcut"
        config.model.hidden_sizes = (64, 64)
        config.evaluation.shifts = ("shortcut_reversal",)
        config.evaluation.attribution_examples = 200
        config.evaluation.top_k = 1
        config.evaluation.save_attributions = 64
        control_agreement = 0.5  # the sign of the shortcut is a coin flip
    else:
        config.title = "A rule and a shortcut, digits with a class-coding patch (doc 000)"
        config.task.name = "digits_shortcut"
        config.model.hidden_sizes = (128, 64)
        config.evaluation.shifts = ("patch_shuffle",)
        config.evaluation.attribution_examples = 64
        config.evaluation.top_k = 8
        config.evaluation.save_attributions = 16
        control_agreement = 0.1  # the patch codes a uniformly random class
    config.conditions = (
        {"name": "shortcut"},
        {"name": "control", "task.shortcut_agreement": control_agreement},
    )
    return config
