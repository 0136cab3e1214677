"""Two-parameter logistic item response theory (2PL IRT) on a question x model response matrix.

``P(model j answers question i) = sigmoid(a_i * (theta_j - b_i))``: ``b_i`` is the question's difficulty,
``a_i`` its discrimination, ``theta_j`` the model's ability. Fitting follows the split rule of every label
here: abilities are estimated jointly with the items of the *training* questions only, then each
question's (a, b), test questions included, is fitted with the abilities held fixed, so no test response
informs the abilities that define the scale. Estimates are maximum a posteriori with weak normal priors
(theta ~ N(0, 1), log a ~ N(0, 0.5^2), b ~ N(0, 3^2)), which keeps items that every model (or no model)
answered finite. Missing responses (NaN) are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from safetensors.numpy import load_file, save

from probes_hub.atomic import atomic_write_bytes
from probes_hub.cache import cache_dir, sha256_text

FIT_VERSION = "1"
"""Part of the on-disk memo's key: change it when the fit itself changes."""
ABILITY_SD, LOG_DISCRIMINATION_SD, DIFFICULTY_SD = 1.0, 0.5, 3.0


@dataclass(frozen=True)
class IRTFit:
    """Fitted parameters: ``difficulty`` and ``discrimination`` per question, ``ability`` per model (mean 0, sd 1)."""

    difficulty: np.ndarray
    discrimination: np.ndarray
    ability: np.ndarray


def fit_2pl(responses: np.ndarray, train_items: np.ndarray | None = None, *, max_iter: int = 1000) -> IRTFit:
    """Fit 2PL IRT to ``responses [questions, models]`` (1 correct, 0 wrong, NaN missing).

    Args:
        responses: the response matrix.
        train_items: boolean mask or indices of the questions whose responses may inform the abilities
            (default: all).
        max_iter: L-BFGS iterations per stage.

    Returns:
        :class:`IRTFit` for every question and model.
    """
    Y = np.asarray(responses, dtype=np.float64)
    if Y.ndim != 2 or not np.all(np.isnan(Y) | (Y == 0) | (Y == 1)):
        raise ValueError("responses must be a 2-D array of 0, 1 or NaN (questions x models).")
    train = np.zeros(len(Y), dtype=bool)
    train[np.arange(len(Y)) if train_items is None else np.asarray(train_items)] = True
    if train.sum() < 2:
        raise ValueError("IRT needs at least two training questions to place the models' abilities.")
    memo = cache_dir("irt") / (sha256_text(FIT_VERSION, str(max_iter), str(Y.shape), Y.tobytes(), train.tobytes()) + ".safetensors")
    if memo.exists():  # the joint fit over every benchmark takes ~20 s; the same responses give the same fit
        return IRTFit(**load_file(str(memo)))
    ability, _, _ = _fit_joint(Y[train], max_iter)
    ability = (ability - ability.mean()) / (ability.std() or 1.0)  # the scale: abilities of mean 0, sd 1
    log_a, b = _fit_items(Y, ability, max_iter)
    fit = IRTFit(difficulty=b, discrimination=np.exp(log_a), ability=ability)
    atomic_write_bytes(memo, save(vars(fit)))
    return fit


def _terms(Y: np.ndarray, theta: np.ndarray, log_a: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Negative log-likelihood of the observed responses, the residuals ``y - p`` (0 where missing) and ``a``."""
    a = np.exp(log_a)
    z = a[:, None] * (theta[None, :] - b[:, None])
    seen = ~np.isnan(Y)
    y = np.where(seen, Y, 0.0)
    nll = float(np.sum(np.where(seen, np.logaddexp(0.0, z) - y * z, 0.0)))
    residual = np.where(seen, y - 1.0 / (1.0 + np.exp(-z)), 0.0)
    return nll, residual, a


def _item_gradients(residual: np.ndarray, a: np.ndarray, theta: np.ndarray, log_a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of the negative log-posterior with respect to log a and b."""
    grad_log_a = -np.sum(residual * a[:, None] * (theta[None, :] - b[:, None]), axis=1) + log_a / LOG_DISCRIMINATION_SD**2
    grad_b = np.sum(residual, axis=1) * a + b / DIFFICULTY_SD**2
    return grad_log_a, grad_b


def _priors(theta: np.ndarray | None, log_a: np.ndarray, b: np.ndarray) -> float:
    value = 0.5 * np.sum(log_a**2) / LOG_DISCRIMINATION_SD**2 + 0.5 * np.sum(b**2) / DIFFICULTY_SD**2
    return float(value + (0.0 if theta is None else 0.5 * np.sum(theta**2) / ABILITY_SD**2))


def _fit_joint(Y: np.ndarray, max_iter: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Abilities and item parameters together, on the training questions."""
    from scipy.optimize import minimize

    n_items, n_models = Y.shape
    start = np.concatenate([_starting_ability(Y), np.zeros(n_items), _starting_difficulty(Y)])

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        theta, log_a, b = x[:n_models], x[n_models:n_models + n_items], x[n_models + n_items:]
        nll, residual, a = _terms(Y, theta, log_a, b)
        grad_theta = -np.sum(residual * a[:, None], axis=0) + theta / ABILITY_SD**2
        grad_log_a, grad_b = _item_gradients(residual, a, theta, log_a, b)
        return nll + _priors(theta, log_a, b), np.concatenate([grad_theta, grad_log_a, grad_b])

    x = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": max_iter, "ftol": 1e-13, "gtol": 1e-9}).x
    return x[:n_models], x[n_models:n_models + n_items], x[n_models + n_items:]


def _fit_items(Y: np.ndarray, theta: np.ndarray, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Every question's (log a, b) with the abilities fixed (the questions are independent given them)."""
    from scipy.optimize import minimize

    n_items = len(Y)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        log_a, b = x[:n_items], x[n_items:]
        nll, residual, a = _terms(Y, theta, log_a, b)
        grad_log_a, grad_b = _item_gradients(residual, a, theta, log_a, b)
        return nll + _priors(None, log_a, b), np.concatenate([grad_log_a, grad_b])

    start = np.concatenate([np.zeros(n_items), _starting_difficulty(Y) * max(theta.std(), 1e-6)])
    x = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": max_iter, "ftol": 1e-13, "gtol": 1e-9}).x
    return x[:n_items], x[n_items:]


def _starting_ability(Y: np.ndarray) -> np.ndarray:
    """Logit of each model's accuracy, standardized: a start close to the answer for well-behaved data (0 for a model with no
    response here, whose ability then rests on the prior)."""
    answered = ~np.isnan(Y).all(axis=0)
    rate = np.full(Y.shape[1], 0.5)
    rate[answered] = np.clip(np.nanmean(Y[:, answered], axis=0), 0.02, 0.98)
    logit = np.log(rate / (1 - rate))
    return (logit - logit.mean()) / (logit.std() or 1.0)


def _starting_difficulty(Y: np.ndarray) -> np.ndarray:
    """Minus the logit of each question's success rate (harder questions start higher)."""
    rate = np.nan_to_num(np.clip(np.nanmean(np.where(np.isnan(Y).all(axis=1, keepdims=True), 0.5, Y), axis=1), 0.02, 0.98), nan=0.5)
    return -np.log(rate / (1 - rate))
