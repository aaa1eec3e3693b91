"""Question 1, why: what the stored image vectors hold of what a caption names.

With scene records (the demo's truth: `category` and `objects`, each with `position`,
`colour`, `shape` and `size`), two checks on the text encoder's recorded split:

- Attribute probes. From a test image's stored vector a linear probe (one-hot least squares,
  its ridge chosen on the validation images) names the category and, at each place, whether
  an object is there and, where one is, its colour, shape and size. Scored by balanced
  accuracy (the mean recall over classes: chance is 1 / classes whatever their shares),
  pooled over places, with 95 % intervals over test images. Beside it: the
  same probe on the image's 8 x 8 thumbnail, an MLP head on the vector (held, but not
  linearly?) and a positive control, the probe on the true attributes plus noise, which has
  to come near 1 (the probe reads what is there); the category's control reads the true
  objects without the category (what the objects alone tell of it).
- Truth read-outs. Each template query answered from its image's scene truth itself, mapped
  into the vectors (a ridge from the truth to the training images' vectors; the nearest
  training images in truth), on the encoder's test gallery and queries: what a text encoder
  that parsed every caption perfectly could get out of these vectors, by a weak estimator;
  `learned_ceiling` is the learned one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from featuregen_assets.core.training.decoder import square_image
from featuregen_assets.core.training.metrics import ranks_of_positives
from featuregen_assets.core.training.splits import Split
from featuregen_assets.research.measurements import Measurement, rows
from featuregen_assets.research.queries import Query, QueryMatrix
from featuregen_assets.research.stats import Estimate, bootstrap, retrieval_estimates
from featuregen_assets.research.text_baselines import (
    TFIDF_NEIGHBOURS,
    neighbour_mean_scores,
    unit,
)
from featuregen_assets.research.text_to_image import (
    Corpus,
    queries_on_test_gallery,
    training_texts,
    validation_matrix,
)

QUESTION = "text_to_image"
PROBE_SET = "attribute_test_images"
KNOWS_TRUTH = "[knows the truth]"
READOUT = f"truth_readout (ridge) {KNOWS_TRUTH}"
TRUTH_KNN = "truth_knn"
READOUT_SETS = ("template", "compositional")
ATTRIBUTES = ("colour", "shape", "size")
EMPTY = -1  # the label of an attribute at a place with no object (not scored)
TASKS = ("category", "object", *ATTRIBUTES)
METRICS = {
    "category": "category",
    "object": "object_at_place",
    **{a: f"{a}_at_place" for a in ATTRIBUTES},
}
VECTOR, THUMBNAIL = "stored vector", "8 x 8 thumbnail"
CONTROL = "positive control: true attributes + noise"
LINEAR, MLP = "linear probe", "mlp 64 probe"
CONTROL_NOISE = 0.2  # sd of the noise on the control's one-hot attributes (0.25: shape 0.89)
RIDGES = (0.1, 1.0, 10.0, 100.0, 1000.0)
THUMBNAIL_SIDE = 8
MLP_HIDDEN, MLP_STEPS, MLP_CHECK_EVERY = 64, 300, 25


def probe_method(head: str, features: str) -> str:
    """An attribute probe's method name in the report's rows."""
    return f"{head}: {features}"


class TruthCoding:
    """Scene records as labels and one-hot codes; the vocabularies are the records' values."""

    def __init__(self, records: Iterable[dict]) -> None:
        records = list(records)
        objects = [o for r in records for o in r["objects"]]
        self.categories = sorted({r["category"] for r in records})
        self.places = sorted({o["position"] for o in objects})
        self.values = {a: sorted({o[a] for o in objects}) for a in ATTRIBUTES}

    def classes(self, task: str) -> int:
        """How many labels `task` has."""
        if task == "category":
            return len(self.categories)
        return 2 if task == "object" else len(self.values[task])

    def labels(self, record: dict, task: str) -> np.ndarray:
        """The record's label for `task`: one for the category, else one per place (`EMPTY`
        for an attribute where there is no object)."""
        if task == "category":
            return np.array([self.categories.index(record["category"])])
        at = {o["position"]: o for o in record["objects"]}
        if task == "object":
            return np.array([int(p in at) for p in self.places])
        return np.array(
            [self.values[task].index(at[p][task]) if p in at else EMPTY for p in self.places]
        )

    def code(self, record: dict, category: bool = True) -> np.ndarray:
        """One-hots of the category (unless `category` is False) and of every attribute at
        every place (all the truth)."""
        parts = [np.eye(len(self.categories))[self.categories.index(record["category"])]]
        if not category:
            parts = []
        for task in ATTRIBUTES:
            parts += [
                np.eye(self.classes(task))[k] if k != EMPTY else np.zeros(self.classes(task))
                for k in self.labels(record, task)
            ]
        return np.concatenate(parts).astype(np.float32)


def read_records(files: Mapping[str, Path]) -> dict[str, dict]:
    """image id -> its scene record, for the records that name a category and objects."""
    out = {}
    for image_id, path in files.items():
        record = json.loads(Path(path).read_text())
        if "category" in record and all(
            {"position", *ATTRIBUTES} <= set(o) for o in record.get("objects", ())
        ):
            out[image_id] = record
    return out


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean over the classes present in `truth` of the share of them predicted right
    (`EMPTY` entries left out)."""
    keep = truth.ravel() != EMPTY
    truth, predicted = truth.ravel()[keep], predicted.ravel()[keep]
    if not len(truth):
        return float("nan")
    return float(np.mean([(predicted[truth == c] == c).mean() for c in np.unique(truth)]))


Classifier = Callable[[np.ndarray], np.ndarray]  # features -> labels


def _standardiser(x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    mean, sd = x.mean(0), x.std(0) + 1e-6
    return lambda z: np.hstack([(z - mean) / sd, np.ones((len(z), 1))])


def ridge_solutions(x: np.ndarray, y: np.ndarray) -> dict[float, np.ndarray]:
    """Ridge regression weights from `x` to `y`, one per penalty in `RIDGES`."""
    gram, rhs = x.T @ x, x.T @ y
    return {lam: np.linalg.solve(gram + lam * np.eye(len(gram)), rhs) for lam in RIDGES}


def linear_probe(
    x: np.ndarray, y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, classes: int
) -> Classifier:
    """One-hot least squares with the ridge of the best validation balanced accuracy."""
    prep = _standardiser(x)
    a, val = prep(x), prep(val_x)
    weights = ridge_solutions(a, np.eye(classes)[y])
    best = max(
        RIDGES, key=lambda lam: (balanced_accuracy(val_y, (val @ weights[lam]).argmax(1)), lam)
    )
    return lambda z: (prep(z) @ weights[best]).argmax(1)


def mlp_probe(
    x: np.ndarray,
    y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    classes: int,
    seed: int = 0,
) -> Classifier:
    """One hidden layer, full-batch Adam, kept at its best validation balanced accuracy."""
    prep = _standardiser(x)
    torch.manual_seed(seed)
    head = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1] + 1, MLP_HIDDEN),
        torch.nn.GELU(),
        torch.nn.Linear(MLP_HIDDEN, classes),
    )
    inputs, target = torch.tensor(prep(x), dtype=torch.float32), torch.tensor(y)
    val = torch.tensor(prep(val_x), dtype=torch.float32)
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-3)
    best, state = -1.0, None
    for step in range(1, MLP_STEPS + 1):
        loss = torch.nn.functional.cross_entropy(head(inputs), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % MLP_CHECK_EVERY == 0:
            with torch.no_grad():
                score = balanced_accuracy(val_y, head(val).argmax(1).numpy())
            if score > best:
                best, state = score, {k: v.clone() for k, v in head.state_dict().items()}
    if state is not None:  # else no validation rows: the last step's weights
        head.load_state_dict(state)

    def predict(z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return head(torch.tensor(prep(z), dtype=torch.float32)).argmax(1).numpy()

    return predict


def probe_rows(
    features: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    classes: Mapping[str, int],
    train: np.ndarray,
    validation: np.ndarray,
    test: np.ndarray,
    seed: int = 0,
    task_features: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> list[Measurement]:
    """Rows of every probe on the `test` images (indices into the arrays). `features`: name ->
    (N, D), `VECTOR`, `THUMBNAIL` and `CONTROL`; `labels`: task -> (N, places) labels;
    `task_features`: task -> the features that replace some of those for that task."""
    probes = [(LINEAR, name, linear_probe) for name in features] + [(MLP, VECTOR, mlp_probe)]
    out = []
    for task, y in labels.items():
        truth = y[test]
        if (truth == EMPTY).all():
            continue
        chance = 1.0 / len(np.unique(truth[truth != EMPTY]))
        out += rows(
            QUESTION,
            "attribute_probe",
            PROBE_SET,
            "chance",
            {METRICS[task]: Estimate(chance, chance, chance, len(test))},
        )
        for head, name, fit in probes:
            x = {**features, **(task_features or {}).get(task, {})}[name]
            predicted = np.stack(
                [
                    _fit_where_labelled(fit, x, y[:, p], train, validation, classes[task])(x[test])
                    for p in range(y.shape[1])
                ],
                axis=1,
            )
            estimate = _over_images(truth, predicted, seed)
            out += rows(
                QUESTION,
                "attribute_probe",
                PROBE_SET,
                probe_method(head, name),
                {METRICS[task]: estimate},
            )
    return out


def _fit_where_labelled(
    fit: Callable[..., Classifier],
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    validation: np.ndarray,
    classes: int,
) -> Classifier:
    """`fit` on the training and validation rows whose label is not `EMPTY`."""
    train, validation = train[y[train] != EMPTY], validation[y[validation] != EMPTY]
    return fit(x[train], y[train], x[validation], y[validation], classes)


def _over_images(truth: np.ndarray, predicted: np.ndarray, seed: int) -> Estimate:
    """Balanced accuracy pooled over the images' rows, with an interval over images."""

    def pooled(images: np.ndarray) -> float:
        picked = images.astype(np.int64)
        return balanced_accuracy(truth[picked], predicted[picked])

    return bootstrap(np.arange(len(truth)), pooled, seed=seed)


def attribute_probes(
    corpus: Corpus,
    paths: Sequence[str],
    split: Split,
    records: Mapping[str, dict],
    seed: int = 0,
) -> list[Measurement]:
    """`probe_rows` on the split's images that have a record. The category's control reads
    the true objects without the category (what the objects tell of it: the bar for the
    vector), the other tasks' the whole truth."""
    sides = [[i for i in split.of(s) if i in records] for s in ("train", "validation", "test")]
    ids = [i for side in sides for i in side]
    coding = TruthCoding(records[i] for i in ids)
    picked = corpus.rows_of(ids)
    codes = np.stack([coding.code(records[i]) for i in ids])
    noise = np.random.default_rng(seed).normal(0, CONTROL_NOISE, codes.shape)
    objects = np.stack([coding.code(records[i], category=False) for i in ids])
    objects_noise = np.random.default_rng(seed).normal(0, CONTROL_NOISE, objects.shape)
    features = {
        VECTOR: unit(corpus.vectors[picked]),
        THUMBNAIL: np.stack(
            [square_image(paths[r], THUMBNAIL_SIDE).ravel() / 255.0 for r in picked]
        ),
        CONTROL: codes + noise,
    }
    labels = {t: np.stack([coding.labels(records[i], t) for i in ids]) for t in TASKS}
    bounds = np.cumsum([len(side) for side in sides])
    return probe_rows(
        features,
        labels,
        {t: coding.classes(t) for t in TASKS},
        np.arange(bounds[0]),
        np.arange(bounds[0], bounds[1]),
        np.arange(bounds[1], bounds[2]),
        seed,
        {"category": {CONTROL: objects + objects_noise}},
    )


def truth_readouts(
    corpus: Corpus,
    split: Split,
    queries: Sequence[Query],
    records: Mapping[str, dict],
    seed: int = 0,
) -> list[Measurement]:
    """Template (and compositional) queries answered from their images' scene truth, mapped
    into the stored vectors; ridge and neighbour count chosen on the validation queries.
    Nothing when a query's image has no record."""
    texts, _ = training_texts(corpus, split)
    trained = set(texts)
    train = [i for i in split.train if i in records]
    coding = TruthCoding(records.values())
    x = np.stack([coding.code(records[i]) for i in train])
    y = unit(corpus.vectors[corpus.rows_of(train)])
    mean = y.mean(0)
    maps = ridge_solutions(x, y - mean)

    def codes(matrix: QueryMatrix) -> np.ndarray:
        return np.stack([coding.code(records[q.image_id]) for q in matrix.queries])

    def ridge(matrix: QueryMatrix, gallery: Sequence[str], lam: float) -> np.ndarray:
        return (
            unit(codes(matrix) @ maps[lam] + mean) @ unit(corpus.vectors[corpus.rows_of(gallery)]).T
        )

    def nearest(matrix: QueryMatrix, gallery: Sequence[str], k: int) -> np.ndarray:
        similarity = unit(codes(matrix)) @ unit(x).T
        return neighbour_mean_scores(similarity, y, corpus.vectors[corpus.rows_of(gallery)], k)

    validation = validation_matrix(queries, split, trained)
    if not all(q.image_id in records for q in validation.queries):
        return []

    def tuned(score: Callable, options: Sequence) -> object:
        if not validation.texts:
            return options[0]
        return max(
            options,
            key=lambda o: (
                (
                    ranks_of_positives(score(validation, split.validation, o), validation.positives)
                    <= 5
                ).mean(),
                -options.index(o),
            ),
        )

    lam, k = tuned(ridge, RIDGES), tuned(nearest, TFIDF_NEIGHBOURS)
    out = []
    for query_set in READOUT_SETS:
        matrix = queries_on_test_gallery(queries, query_set, split.test, trained)
        if not matrix.texts or not all(q.image_id in records for q in matrix.queries):
            continue
        for method, scores in (
            (READOUT, ridge(matrix, split.test, lam)),
            (f"{TRUTH_KNN} (k={k}) {KNOWS_TRUTH}", nearest(matrix, split.test, k)),
        ):
            estimates = retrieval_estimates(scores, matrix.positives, matrix.matches, seed)
            out += rows(QUESTION, "retrieval", query_set, method, estimates)
    return out
