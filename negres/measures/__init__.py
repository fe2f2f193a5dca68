"""Pure functions that measure models and compare seeds, on arrays with the seed axis first.

``metrics`` scores outputs against labels (accuracy, cross-entropy, calibration, confusion);
``losses`` holds the training losses of the built-in tasks; ``saliency`` computes gradient
attributions (gradient, gradient x input, integrated gradients, SmoothGrad, exact Shapley)
for one seed or all of them, beside ``kernel_shap`` (sampled Shapley values) and
``deeplift`` (DeepLIFT's rescale rule, shap.DeepExplainer's), each registered among its
methods here; ``agreement`` compares attributions across seeds (rank
correlations, top-k overlap, max-sensitivity, the randomisation sanity check);
``interpretability`` holds proxies of how interpretable a model is (sparsity, linear
surrogate fidelity). Nothing here reads a config or a task: evaluators do that.

Layer: measures, tasks and models. Pure functions on arrays; imports only the
foundations (errors, fields, files, results, seeds, sharding).
"""

from negres.measures import deeplift, kernel_shap, saliency

# One registration each: the methods in files of their own join saliency's registry here,
# since each imports saliency's target and reference helpers.
saliency.ATTRIBUTION_METHODS["kernel_shap"] = kernel_shap.kernel_shap
saliency.ATTRIBUTION_METHODS["deeplift"] = deeplift.deeplift
