"""The metrics of DESIGN §3, pinned by invariants and by values computed by hand."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest

from llm3d.config import MetricsConfig
from llm3d.exceptions import MeshError
from llm3d.meshio import load_mesh
from tests.helpers import meshes
from tests.helpers.reference_metrics import reference_metrics
from worker.geometry.nearest import NearestIndex
from worker.geometry.sampling import SampleStream, box_normalisation, sample_surface, stream_seed
from worker.metrics import (
    METRIC_NAMES,
    GroundTruthCache,
    compute_metrics,
    metric_names,
    prepare_ground_truth,
    wants_unit_chamfer,
)

N = 20_000  # enough points for the hand-computed values to hold within 2 %
FIXTURES = Path(__file__).resolve().parents[1] / "datagen" / "fixtures"


def _infinigen_table() -> meshes.Mesh:
    """A realistic ground truth: a procedural table of many thin parts."""
    data = np.load(FIXTURES / "infinigen_table.npz")
    return data["vertices"].astype(np.float64), data["faces"].astype(np.int64)


@pytest.fixture(scope="module")
def cube_gt():  # type: ignore[no-untyped-def]
    return prepare_ground_truth(*meshes.unit_cube(), points=N, seed=0)


# ---------------------------------------------------------------------------- sampling


def test_samples_lie_on_the_surface_with_unit_face_normals() -> None:
    vertices, faces = meshes.unit_cube()
    sample = sample_surface(vertices, faces, 5000, seed=3)
    on_face = np.isclose(np.abs(sample.points).max(axis=1), 0.5, atol=1e-12)
    assert on_face.all()
    assert np.allclose(np.linalg.norm(sample.normals, axis=1), 1.0)
    # each normal points along the axis of the face its point lies on
    axis = np.abs(sample.points).argmax(axis=1)
    assert (np.abs(sample.normals).argmax(axis=1) == axis).all()


def test_sampling_is_uniform_by_area_and_seeded() -> None:
    vertices, faces = meshes.box((4.0, 1.0, 1.0))  # two 1×1 ends, four 4×1 sides: area 18
    a = sample_surface(vertices, faces, 90_000, seed=7)
    b = sample_surface(vertices, faces, 90_000, seed=7)
    c = sample_surface(vertices, faces, 90_000, seed=8)
    assert np.array_equal(a.points, b.points)
    assert not np.array_equal(a.points, c.points)
    on_ends = np.isclose(np.abs(a.points[:, 0]), 2.0).mean()
    assert on_ends == pytest.approx(2 / 18, abs=0.005)


def test_zero_area_faces_are_never_sampled_and_duplicates_change_nothing() -> None:
    cube = meshes.unit_cube()
    base = sample_surface(*cube, 2000, seed=1)
    for variant in (meshes.with_zero_area_faces(cube), meshes.with_duplicate_vertices(cube)):
        other = sample_surface(*variant, 2000, seed=1)
        assert np.array_equal(base.points, other.points)


def test_by_face_lists_the_same_points_with_neighbours_together() -> None:
    v, f = meshes.sphere()
    drawn = sample_surface(v, f, 5000, seed=3)
    grouped = sample_surface(v, f, 5000, seed=3, by_face=True)
    # the same set of points (and normals), only the order differs
    key = np.lexsort(drawn.points.T)
    key_grouped = np.lexsort(grouped.points.T)
    assert np.array_equal(drawn.points[key], grouped.points[key_grouped])
    assert np.array_equal(drawn.normals[key], grouped.normals[key_grouped])

    def step(points: np.ndarray) -> float:
        return float(np.linalg.norm(np.diff(points, axis=0), axis=1).mean())

    assert step(grouped.points) < 0.5 * step(drawn.points), "consecutive points lie close"


def test_box_normalisation_fits_the_unit_cube_and_rejects_a_point() -> None:
    vertices = np.array([[1.0, 2.0, 3.0], [5.0, 3.0, 4.0]])
    t = box_normalisation(vertices)
    out = t.apply(vertices)
    assert out.min() == pytest.approx(-0.5) and out.max() == pytest.approx(0.5)
    assert np.allclose(out.mean(axis=0), 0.0)
    with pytest.raises(MeshError, match="zero"):
        box_normalisation(np.ones((3, 3)))


# ------------------------------------------------------------------ analytic values


def test_names_are_the_flat_names_of_design() -> None:
    assert metric_names() == METRIC_NAMES
    assert METRIC_NAMES == (
        "chamfer_l2",
        "f_score_0.01",
        "f_score_0.02",
        "f_score_0.05",
        "precision_0.05",
        "recall_0.05",
        "hausdorff_90",
        "normal_consistency",
        "chamfer_unit_x1000",
    )


def test_unit_cube_chamfer_is_optional_and_changes_nothing_else() -> None:
    gt_mesh = meshes.unit_cube()
    gt = prepare_ground_truth(*gt_mesh, points=3000, seed=0)
    pred = (gt_mesh[0] * np.array([1.1, 0.9, 1.0]) + 0.02, gt_mesh[1])
    full = compute_metrics(*pred, gt)
    lean = compute_metrics(*pred, gt, unit_chamfer=False)
    assert tuple(lean) == metric_names(unit_chamfer=False) == METRIC_NAMES[:-1]
    assert lean == {k: v for k, v in full.items() if k != "chamfer_unit_x1000"}
    assert full["chamfer_unit_x1000"] > 0
    assert "chamfer_unit_x1000" not in compute_metrics(
        np.zeros((0, 3)), np.zeros((0, 3), int), gt, unit_chamfer=False
    )


@pytest.mark.parametrize(
    ("mode", "points", "expected"),
    [
        ("auto", 10_000, False),  # a training reward
        ("auto", 100_000, True),  # evaluation
        ("always", 10_000, True),
        ("never", 100_000, False),
    ],
)
def test_unit_cube_chamfer_is_an_evaluation_metric_by_default(
    mode: str, points: int, expected: bool
) -> None:
    config = MetricsConfig.model_validate({"unit_chamfer": mode})
    assert wants_unit_chamfer(config, points) is expected


def test_a_cube_against_itself_scores_the_sampling_floor(cube_gt) -> None:  # type: ignore[no-untyped-def]
    # The two samples are independent (DESIGN §3), so an exact copy is not 0: on a flat
    # face, N points on area A are a Poisson process of density ρ = N / A, and the
    # distance r to the nearest point of the other sample has P(r > s) = exp(-πρs²):
    # E[r²] = 1 / (πρ), 90th percentile sqrt(ln 10 / (πρ)), share within τ 1 - exp(-πρτ²).
    m = compute_metrics(*meshes.unit_cube(), cube_gt)
    assert tuple(m) == METRIC_NAMES
    rho = N / 6.0
    assert m["chamfer_l2"] == pytest.approx(1 / (math.pi * rho), rel=0.05)
    assert m["hausdorff_90"] == pytest.approx(math.sqrt(math.log(10) / (math.pi * rho)), rel=0.05)
    for tau in (0.01, 0.02):
        assert m[f"f_score_{tau:.2f}"] == pytest.approx(
            1 - math.exp(-math.pi * rho * tau**2), abs=0.02
        )
    assert m["f_score_0.05"] == m["precision_0.05"] == m["recall_0.05"] == 1.0
    assert m["normal_consistency"] > 0.97  # only points near an edge find the other face
    # the unit-cube Chamfer: 8 192 points on each of the same cube (sum of both means)
    floor = 2 * 1000 / (math.pi * 8192 / 6.0)
    assert m["chamfer_unit_x1000"] == pytest.approx(floor, rel=0.1)


def test_the_prediction_is_sampled_independently_of_the_ground_truth() -> None:
    # An exact copy shares the ground truth's triangulation: the same stream would put
    # both samples on the same points. Here not one point coincides.
    mesh = meshes.parts_object(seed=3)
    gt = prepare_ground_truth(*mesh, points=4000, seed=11)
    pred = sample_surface(
        gt.transform.apply(mesh[0]), mesh[1], 4000, stream_seed(11, SampleStream.PREDICTION)
    )
    d2, _ = NearestIndex(gt.sample.points).nearest(pred.points)
    assert (d2 > 0).all()
    # the streams are numpy's spawned children of the seed, and each is reproducible
    children = np.random.SeedSequence(11).spawn(len(SampleStream))
    for stream in SampleStream:
        ours = np.random.default_rng(stream_seed(11, stream)).random(4)
        assert np.array_equal(ours, np.random.default_rng(children[stream]).random(4))
    first = compute_metrics(*mesh, gt)
    assert compute_metrics(*mesh, gt) == first  # same seed, same numbers
    again = compute_metrics(*mesh, prepare_ground_truth(*mesh, points=4000, seed=11))
    assert again == first  # a rebuilt (re-cached) ground truth gives the same numbers
    assert compute_metrics(*mesh, gt, seed=12) != first


@pytest.mark.parametrize("case", ["table", "parts", "cube"])
def test_an_exact_copy_keeps_f_at_0_05_at_training_points(case: str) -> None:
    mesh = {
        "table": _infinigen_table,
        "parts": lambda: meshes.parts_object(seed=0),
        "cube": meshes.unit_cube,
    }[case]()
    for seed in (0, 1, 2):
        gt = prepare_ground_truth(*mesh, points=10_000, seed=seed)
        assert compute_metrics(*mesh, gt, unit_chamfer=False)["f_score_0.05"] >= 0.99


def test_a_cube_moved_by_d_matches_the_values_computed_by_hand(cube_gt) -> None:  # type: ignore[no-untyped-def]
    d = 0.1
    m = compute_metrics(*meshes.unit_cube(centre=(d, 0.0, 0.0)), cube_gt)
    # Points of the moved cube closer than 0.05 to the cube: its inner end face near the
    # edges (1 - 0.9²), the overlapping 0.9 of the four sides, half the protruding strip.
    precision = ((1 - 0.9**2) + 4 * (0.9 + 0.05)) / 6
    assert m["precision_0.05"] == pytest.approx(precision, abs=0.01)
    assert m["recall_0.05"] == pytest.approx(precision, abs=0.01)  # symmetric
    assert m["f_score_0.05"] == pytest.approx(precision, abs=0.01)
    # Mean squared distance: outer end face d², inner end face ∫min(d, a, b)²,
    # protruding strips ∫₀ᵈ s² ds on four sides; both directions equal.
    inner = d**2 - 8 / 3 * d**3 + 2 * d**4
    chamfer = (d**2 + inner + 4 * d**3 / 3) / 6
    assert m["chamfer_l2"] == pytest.approx(chamfer, rel=0.05)
    assert m["hausdorff_90"] == pytest.approx(d, rel=0.02)
    # A translation is not a change of shape: the unit-cube Chamfer is blind to it (the
    # moved cube, normalised by its own box, is sampled exactly like the cube itself).
    same = compute_metrics(*meshes.unit_cube(), cube_gt)
    assert m["chamfer_unit_x1000"] == pytest.approx(same["chamfer_unit_x1000"], rel=1e-9)


def test_sphere_against_a_slightly_larger_sphere() -> None:
    gt = prepare_ground_truth(*meshes.sphere(0.5, 4), points=N)
    delta = 0.03
    m = compute_metrics(*meshes.sphere(0.5 + delta, 4), gt)
    # Independent samples: the nearest point lies δ away across and r along the surface,
    # r² distributed as for two samples of one plane (see the cube against itself).
    rho = N / (4 * math.pi * 0.5**2)
    assert m["chamfer_l2"] == pytest.approx(delta**2 + 1 / (math.pi * rho), rel=0.1)
    assert m["f_score_0.05"] == 1.0
    assert m["f_score_0.02"] == 0.0  # every point is ≥ 0.03 from the other surface
    assert m["f_score_0.01"] == 0.0
    r90 = math.log(10) / (math.pi * rho)
    assert m["hausdorff_90"] == pytest.approx(math.sqrt(delta**2 + r90), rel=0.05)
    assert m["normal_consistency"] > 0.99


def test_flipped_normals_leave_normal_consistency_unchanged(cube_gt) -> None:  # type: ignore[no-untyped-def]
    cube = meshes.unit_cube()
    flipped = compute_metrics(*meshes.flipped(cube), cube_gt, seed=5)
    same = compute_metrics(*cube, cube_gt, seed=5)
    assert flipped["normal_consistency"] > 0.95
    assert flipped["normal_consistency"] == pytest.approx(same["normal_consistency"], abs=0.01)


def test_a_wrong_scale_is_punished_in_the_gt_frame(cube_gt) -> None:  # type: ignore[no-untyped-def]
    m = compute_metrics(*meshes.unit_cube(size=2.0), cube_gt)
    assert m["f_score_0.05"] == 0.0
    assert m["chamfer_l2"] > 0.1
    # ... while its own-box normalisation (the unit-cube Chamfer) sees the same shape
    same = compute_metrics(*meshes.unit_cube(), cube_gt)
    assert m["chamfer_unit_x1000"] == pytest.approx(same["chamfer_unit_x1000"], rel=1e-9)


def test_metrics_are_invariant_to_a_common_similarity_transform() -> None:
    gt_mesh, pred_mesh = meshes.parts_object(seed=0), meshes.parts_object(seed=0)
    pred_mesh = (pred_mesh[0] + [0.03, 0.0, 0.0], pred_mesh[1])
    base = compute_metrics(*pred_mesh, prepare_ground_truth(*gt_mesh, points=5000))

    def move(mesh: meshes.Mesh) -> meshes.Mesh:
        return mesh[0] * 37.0 + [1e3, -5.0, 2.0], mesh[1]

    moved = compute_metrics(*move(pred_mesh), prepare_ground_truth(*move(gt_mesh), points=5000))
    for name in METRIC_NAMES:
        assert moved[name] == pytest.approx(base[name], rel=1e-6, abs=1e-9), name


def test_agrees_with_a_plain_scipy_implementation() -> None:
    gt = prepare_ground_truth(*meshes.parts_object(seed=0), points=2000, seed=2)
    for pred in (meshes.parts_object(seed=1), meshes.sphere(3.0, 3), meshes.unit_cube(0.01)):
        ours = compute_metrics(*pred, gt)
        ref = reference_metrics(*pred, gt)
        for name in METRIC_NAMES:
            assert ours[name] == pytest.approx(ref[name], rel=1e-9, abs=1e-12), name


# ----------------------------------------------------------------------- edge cases


def test_empty_prediction_scores_zero_with_infinite_distances(cube_gt) -> None:  # type: ignore[no-untyped-def]
    m = compute_metrics(*meshes.empty(), cube_gt)
    assert m["f_score_0.05"] == 0.0 and m["normal_consistency"] == 0.0
    assert math.isinf(m["chamfer_l2"]) and math.isinf(m["hausdorff_90"])


def test_single_point_prediction_has_finite_distances(cube_gt) -> None:  # type: ignore[no-untyped-def]
    m = compute_metrics(*meshes.single_point((0.0, 0.0, 0.0)), cube_gt)
    assert m["f_score_0.05"] == 0.0
    assert m["normal_consistency"] == 0.0  # a point has no normal
    # every cube point's nearest prediction point is the centre: mean |p|² over the cube
    # surface is 1/4 + 2·(1/12) = 5/12; the point's own distance to the cube is 0.5
    assert m["chamfer_l2"] == pytest.approx(0.5 * (0.25 + 5 / 12), rel=0.01)
    assert math.isfinite(m["chamfer_unit_x1000"])


def test_flat_sheet_prediction_covers_one_face(cube_gt) -> None:  # type: ignore[no-untyped-def]
    m = compute_metrics(*meshes.flat_sheet(z=0.5), cube_gt)
    assert m["precision_0.05"] == 1.0
    # the top face plus the 0.05 strips of the four sides next to it: 1.2 of 6
    assert m["recall_0.05"] == pytest.approx(1.2 / 6, abs=0.01)
    sheet_gt = prepare_ground_truth(*meshes.flat_sheet(), points=2000)
    assert compute_metrics(*meshes.flat_sheet(), sheet_gt)["f_score_0.05"] == 1.0


def test_non_finite_vertices_raise_a_mesh_error(cube_gt) -> None:  # type: ignore[no-untyped-def]
    vertices, faces = meshes.unit_cube()
    vertices[3] = np.nan
    with pytest.raises(MeshError, match="non-finite"):
        compute_metrics(vertices, faces, cube_gt)
    with pytest.raises(MeshError, match="non-finite"):
        prepare_ground_truth(vertices, faces, points=100)


def test_duplicate_vertices_and_zero_area_faces_give_identical_metrics(cube_gt) -> None:  # type: ignore[no-untyped-def]
    moved = meshes.unit_cube(centre=(0.05, 0.0, 0.0))
    base = compute_metrics(*moved, cube_gt)
    assert compute_metrics(*meshes.with_duplicate_vertices(moved), cube_gt) == base
    assert compute_metrics(*meshes.with_zero_area_faces(moved), cube_gt) == base


def test_huge_coordinates_stay_finite_and_exact() -> None:
    vertices, faces = meshes.unit_cube()
    huge = (vertices * 1e9 + 1e12, faces)
    gt = prepare_ground_truth(*huge, points=2000)
    plain = compute_metrics(vertices, faces, prepare_ground_truth(vertices, faces, points=2000))
    ours = compute_metrics(*huge, gt)
    for name in METRIC_NAMES:
        assert ours[name] == pytest.approx(plain[name], rel=1e-6), name
    far = compute_metrics(vertices * 1e150, faces, gt)  # squared distances overflow
    assert far["f_score_0.05"] == 0.0 and far["chamfer_l2"] > 1e200


def test_malformed_arrays_are_rejected_with_the_reason(cube_gt) -> None:  # type: ignore[no-untyped-def]
    vertices, faces = meshes.unit_cube()
    with pytest.raises(MeshError, match="indices"):
        compute_metrics(vertices, faces + 100, cube_gt)
    with pytest.raises(MeshError, match=r"\(n, 3\)"):
        compute_metrics(vertices[:, :2], faces, cube_gt)
    with pytest.raises(MeshError, match="zero"):
        prepare_ground_truth(*meshes.single_point(), points=100)
    line = np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]]), np.array([[0, 1, 2]])
    with pytest.raises(MeshError, match="no surface area"):
        prepare_ground_truth(*line, points=100)


# ------------------------------------------------------------------- cache, files


def test_cache_builds_once_and_evicts_the_least_recently_used() -> None:
    cache = GroundTruthCache(maxsize=2)
    builds: list[str] = []

    def builder(name: str):  # type: ignore[no-untyped-def]
        def build():  # type: ignore[no-untyped-def]
            builds.append(name)
            return prepare_ground_truth(*meshes.unit_cube(), points=100)

        return build

    a = cache.get_or_build("a", builder("a"))
    assert cache.get_or_build("a", builder("a")) is a
    cache.get_or_build("b", builder("b"))
    cache.get_or_build("a", builder("a"))  # a is now the most recent
    cache.get_or_build("c", builder("c"))  # evicts b
    assert "b" not in cache and "a" in cache and len(cache) == 2
    assert builds == ["a", "b", "c"]
    assert (cache.hits, cache.misses) == (2, 3)


def test_cache_keeps_its_ground_truths_within_a_memory_budget() -> None:
    small = prepare_ground_truth(*meshes.unit_cube(), points=2000)
    large = prepare_ground_truth(*meshes.unit_cube(), points=20_000)
    # what it counts is real: the samples, normals and indices, each buffer once
    assert 20_000 * 3 * 8 * 2 < large.nbytes < 20_000 * 3 * 8 * 5
    assert small.nbytes < large.nbytes
    cache = GroundTruthCache(maxsize=100, max_bytes=3 * small.nbytes + 1)
    for key in "abc":
        cache.get_or_build(key, lambda: small)
    assert len(cache) == 3 and cache.nbytes == 3 * small.nbytes
    cache.get_or_build("d", lambda: small)  # one over the budget: the oldest goes
    assert "a" not in cache and len(cache) == 3
    cache.get_or_build("big", lambda: large)  # bigger than the budget alone: kept, alone
    assert "big" in cache and len(cache) == 1 and cache.nbytes == large.nbytes
    cache.clear()
    assert cache.nbytes == 0 and len(cache) == 0


def test_cache_is_safe_across_threads_and_builds_a_key_once() -> None:
    cache = GroundTruthCache(maxsize=4)
    builds: list[int] = []
    gate = threading.Event()

    def build():  # type: ignore[no-untyped-def]
        builds.append(1)
        gate.wait(5)  # hold the build until every thread is waiting for it
        return prepare_ground_truth(*meshes.unit_cube(), points=100)

    results = []

    def work() -> None:
        results.append(cache.get_or_build("k", build))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(cache) == 1
    assert len(builds) == 1 and all(r is results[0] for r in results)


def test_a_failed_build_caches_nothing() -> None:
    cache = GroundTruthCache(maxsize=2)

    def broken():  # type: ignore[no-untyped-def]
        raise MeshError("bad ground truth")

    with pytest.raises(MeshError):
        cache.get_or_build("x", broken)
    assert "x" not in cache
    assert cache.get_or_build("x", lambda: prepare_ground_truth(*meshes.unit_cube(), points=100))


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".stl", ".off", ".glb"])
def test_load_mesh_reads_common_formats(tmp_path, suffix: str) -> None:  # type: ignore[no-untyped-def]
    import trimesh

    vertices, faces = meshes.unit_cube(centre=(1.0, 2.0, 3.0))
    path = tmp_path / f"cube{suffix}"
    trimesh.Trimesh(vertices, faces, process=False).export(path)
    v, f = load_mesh(path)
    assert f.shape == (12, 3) and v.dtype == np.float64
    assert np.allclose(v.min(axis=0), [0.5, 1.5, 2.5], atol=1e-6)


def test_load_mesh_concatenates_a_scene_and_names_bad_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import trimesh

    scene = trimesh.Scene()
    scene.add_geometry(trimesh.Trimesh(*meshes.unit_cube(), process=False), geom_name="a")
    scene.add_geometry(
        trimesh.Trimesh(*meshes.unit_cube(centre=(5.0, 0.0, 0.0)), process=False), geom_name="b"
    )
    path = tmp_path / "scene.glb"
    scene.export(path)
    v, f = load_mesh(path)
    assert len(f) == 24 and v[:, 0].max() == pytest.approx(5.5)
    with pytest.raises(MeshError, match="not found"):
        load_mesh(tmp_path / "missing.obj")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(MeshError, match="unsupported"):
        load_mesh(tmp_path / "x.txt")


# ------------------------------------------------ the papers' unit-cube Chamfer


def _papers_unit_chamfer_x1000(gt: meshes.Mesh, pred: meshes.Mesh, seed: int) -> float:
    """CAD-Recode / cadrille's convention, written here from its definition only.

    Each mesh is normalised into the unit cube by its own bounding box (centred, longest
    side 1), 8 192 points are sampled uniformly by area on each, independently (here with
    the square-root barycentric formula, not the reflection our sampler uses), and the
    two mean squared nearest distances are added and multiplied by 1000.
    """
    from scipy.spatial import cKDTree

    rng = np.random.default_rng([seed, 12345])

    def sample(mesh: meshes.Mesh) -> np.ndarray:
        v = np.asarray(mesh[0], dtype=np.float64)
        lo, hi = v.min(axis=0), v.max(axis=0)
        tri = ((v - (lo + hi) / 2) / (hi - lo).max())[np.asarray(mesh[1])]
        area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        face = rng.choice(len(tri), size=8192, p=area / area.sum())
        root, r2 = np.sqrt(rng.random(8192)), rng.random(8192)
        t = tri[face]
        weights = np.stack([1 - root, root * (1 - r2), root * r2], axis=1)
        return np.einsum("nk,nkd->nd", weights, t)

    a, b = sample(gt), sample(pred)
    d_ab, _ = cKDTree(b).query(a)
    d_ba, _ = cKDTree(a).query(b)
    return 1000.0 * float(np.mean(d_ab**2) + np.mean(d_ba**2))


def _moved(mesh: meshes.Mesh, scale: object = 1.0, shift: object = 0.0) -> meshes.Mesh:
    return np.asarray(mesh[0]) * np.asarray(scale) + np.asarray(shift), mesh[1]


@pytest.mark.parametrize(
    "case",
    [
        "identical",
        "cube_identical",
        "translated",
        "scaled",
        "slightly_stretched",
        "stretched",
        "different",
        "sphere_box",
    ],
)
def test_unit_cube_chamfer_agrees_with_the_papers_definition(case: str) -> None:
    parts = meshes.parts_object(seed=0)
    gt, pred = {
        "identical": (parts, parts),
        "cube_identical": (meshes.unit_cube(), meshes.unit_cube()),
        "translated": (parts, _moved(parts, shift=[0.3, -0.2, 0.1])),
        "scaled": (parts, _moved(parts, scale=2.5, shift=[1.0, 0.0, 0.0])),
        "slightly_stretched": (parts, _moved(parts, scale=[1.03, 1.0, 0.98])),
        "stretched": (parts, _moved(parts, scale=[1.3, 1.0, 0.8])),
        "different": (parts, meshes.parts_object(seed=1)),
        "sphere_box": (meshes.sphere(0.5, 3), meshes.box((1.0, 0.6, 0.3))),
    }[case]
    seeds = range(8)
    ours = np.array(
        [
            compute_metrics(*pred, prepare_ground_truth(*gt, points=200, seed=s))[
                "chamfer_unit_x1000"
            ]
            for s in seeds
        ]
    )
    papers = np.array([_papers_unit_chamfer_x1000(gt, pred, s) for s in seeds])
    # The same distribution: means within sampling noise (5 standard errors), and both
    # well away from 0 even for an identical pair (the floor the papers' numbers sit on).
    noise = math.sqrt((ours.var(ddof=1) + papers.var(ddof=1)) / len(seeds))
    assert abs(ours.mean() - papers.mean()) <= 5 * noise + 0.02 * papers.mean(), (ours, papers)
    assert ours.min() > 0.02 and papers.min() > 0.02


def test_stage_timings_are_reported_and_change_nothing(cube_gt) -> None:  # type: ignore[no-untyped-def]
    moved = meshes.unit_cube(centre=(0.05, 0.0, 0.0))
    timings: dict[str, float] = {}
    timed = compute_metrics(*moved, cube_gt, timings=timings)
    assert timed == compute_metrics(*moved, cube_gt)
    assert set(timings) == {
        "sampling",
        "nearest_pred_to_gt",
        "index_pred",
        "nearest_gt_to_pred",
        "scores",
        "normal_consistency",
        "unit_chamfer",
    }
    assert all(seconds >= 0.0 for seconds in timings.values())
