"""The nearest-neighbour searches behind the metrics: exact, whatever path a query takes.

``worker.geometry.nearest`` answers near points with a bounded k-d search and far ones with an
unbounded pass or the direction tree (``worker.geometry.nearest_far``); every path must give the
brute-force answer, and the metrics must not depend on which one ran.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import meshes
from tests.helpers.reference_metrics import reference_metrics
from worker.geometry.nearest import NearestIndex
from worker.geometry.sampling import sample_surface
from worker.metrics import METRIC_NAMES, compute_metrics, prepare_ground_truth

# ----------------------------------------------------------- far predictions, index


@pytest.mark.parametrize("scale", [0.01, 30.0])
def test_far_predictions_stay_exact(scale: float) -> None:
    sphere = meshes.sphere(0.5, 3)
    gt = prepare_ground_truth(*sphere, points=3000)
    pred = (sphere[0] * scale, sphere[1])
    ours = compute_metrics(*pred, gt)
    ref = reference_metrics(*pred, gt)
    for name in METRIC_NAMES:
        assert ours[name] == pytest.approx(ref[name], rel=1e-9), name


def test_nearest_index_bounded_and_unbounded_agree() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(3000, 3))
    queries = np.vstack([rng.normal(size=(500, 3)), rng.normal(size=(500, 3)) * 50])
    index = NearestIndex(data)
    d2_a, i_a = index.nearest(queries, bound=0.05)
    _, i_b = index.nearest(queries)
    brute = ((queries[:, None, :] - data[None]) ** 2).sum(-1)
    assert np.array_equal(i_a, brute.argmin(1)) and np.array_equal(i_b, i_a)
    assert np.allclose(d2_a, brute.min(1), rtol=1e-12)
    empty_d2, empty_i = NearestIndex(np.zeros((0, 3))).nearest(queries)
    assert np.isinf(empty_d2).all() and (empty_i == -1).all()


# ------------------------------------------------------------------ direction tree


def _brute_nearest(points: np.ndarray, queries: np.ndarray) -> np.ndarray:
    return ((queries[:, None, :] - points[None]) ** 2).sum(-1).min(axis=1)


@pytest.mark.parametrize(
    "case", ["random", "inside_shell", "around_shell", "far_away", "duplicates", "at_centre"]
)
def test_direction_tree_is_exact(case: str) -> None:
    from worker.geometry.nearest_far import far_nearest

    rng = np.random.default_rng(4)
    shell = sample_surface(*meshes.sphere(0.5, 3), 2000, seed=1).points
    points, queries = {
        "random": (rng.normal(size=(2000, 3)), rng.normal(size=(400, 3)) * 3),
        "inside_shell": (shell, shell[:400] * 0.01),
        "around_shell": (shell * 0.02, shell[:400] * 20),
        "far_away": (shell, shell[:400] + np.array([30.0, -5.0, 2.0])),
        "duplicates": (np.repeat(shell[:50], 40, axis=0), rng.normal(size=(400, 3))),
        "at_centre": (np.vstack([shell, [[0.0, 0.0, 0.0]]]), np.zeros((3, 3))),
    }[case]
    index = far_nearest(points, queries)
    d2 = ((queries - points[index]) ** 2).sum(axis=1)
    assert np.array_equal(d2, _brute_nearest(points, queries))


def test_metrics_through_the_direction_tree_match_the_plain_implementation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import worker.geometry.nearest

    # every group of far points goes to the direction tree, whatever the timings say
    monkeypatch.setattr(worker.geometry.nearest, "SIZE_RATIO", 1e9)  # no geometric shortcut
    monkeypatch.setattr(worker.geometry.nearest, "FAST_KD_PROBE_S", -1.0)
    monkeypatch.setattr(
        worker.geometry.nearest, "_prefer_direction_tree", lambda kd, direction: True
    )
    sphere = meshes.sphere(0.5, 3)
    gt = prepare_ground_truth(*sphere, points=3000)
    for pred in ((sphere[0] * 0.01, sphere[1]), meshes.parts_object(seed=2)):
        ours = compute_metrics(*pred, gt)
        ref = reference_metrics(*pred, gt)
        for name in METRIC_NAMES:
            assert ours[name] == pytest.approx(ref[name], rel=1e-9), name


def test_direction_tree_is_safe_from_many_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from worker.geometry.nearest_far import far_nearest

    shell = sample_surface(*meshes.sphere(0.5, 3), 3000, seed=1).points
    queries = shell[:500] * 0.01
    expected = far_nearest(shell, queries)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: far_nearest(shell, queries), range(8)))
    assert all(np.array_equal(r, expected) for r in results)


def test_direction_tree_returns_valid_indices_when_distances_overflow() -> None:
    from worker.geometry.nearest_far import far_nearest

    points = np.array([[1e200, 0.0, 0.0], [-1e200, 0.0, 0.0], [0.0, 1e200, 0.0]])
    index = far_nearest(points, np.zeros((4, 3)))
    assert ((index >= 0) & (index < 3)).all()


# ------------------------------------------------------- one pass or two


@pytest.mark.parametrize("share", [0.0, 0.25, 2.0])
def test_one_pass_and_two_passes_give_the_same_exact_answers(
    share: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    import worker.geometry.nearest

    monkeypatch.setattr(worker.geometry.nearest, "ONE_PASS_FAR_SHARE", share)  # 2.0: never one pass
    rng = np.random.default_rng(1)
    data = rng.normal(size=(3000, 3))
    near = data[rng.integers(0, 3000, 1500)] + rng.normal(scale=0.01, size=(1500, 3))
    queries = np.vstack([near, rng.normal(size=(3000, 3)) * 4])  # 4 500 queries, most far
    d2, index = NearestIndex(data).nearest(queries, bound=0.05)
    brute = ((queries[:, None, :] - data[None]) ** 2).sum(-1)
    assert np.array_equal(index, brute.argmin(1))
    assert np.allclose(d2, brute.min(1), rtol=1e-12)


def test_metrics_do_not_depend_on_the_one_pass_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.geometry.nearest

    sphere = meshes.sphere(0.5, 3)
    gt = prepare_ground_truth(*meshes.parts_object(seed=0), points=4000)
    sphere_gt = prepare_ground_truth(*sphere, points=4000)
    cases = [
        (meshes.parts_object(seed=1), gt),  # a wrong object: one pass
        ((sphere[0] * 0.01, sphere[1]), sphere_gt),  # tiny inside: the direction tree
        (meshes.parts_object(seed=0), gt),  # a copy: nothing far
    ]
    for pred, truth in cases:
        monkeypatch.setattr(worker.geometry.nearest, "ONE_PASS_FAR_SHARE", 2.0)
        two = compute_metrics(*pred, truth)
        monkeypatch.setattr(worker.geometry.nearest, "ONE_PASS_FAR_SHARE", 0.0)
        assert compute_metrics(*pred, truth) == two
        assert two == pytest.approx(reference_metrics(*pred, truth), rel=1e-9)
