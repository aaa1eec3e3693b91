"""The learned ceiling of "what the vectors hold": a contrastive head from each image's exact
scene truth into the stored vectors.

The ridge and nearest-in-truth read-outs (`vector_content.truth_readouts`) are weak
estimators: a text encoder could beat them and still be far from what the vectors hold. This
head is trained as the text encoder is (its contrastive loss, standardised targets, batch,
learning rate and epochs), but from the truth one-hots of the query's image instead of the
caption; its epoch is chosen on the validation queries (validation images only), and it
answers the test queries on the same test gallery. What it finds is a lower bound on what a
perfect parse of every caption could find in these vectors: the text encoder's ceiling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from featuregen_assets.core.training.alignment import AlignmentConfig, ContrastiveLoss
from featuregen_assets.core.training.common import optimiser_and_schedule, optimiser_step
from featuregen_assets.core.training.metrics import ranks_of_positives
from featuregen_assets.core.training.splits import Split
from featuregen_assets.research.measurements import Measurement, rows
from featuregen_assets.research.queries import Query, QueryMatrix
from featuregen_assets.research.text_baselines import unit
from featuregen_assets.research.text_to_image import (
    Corpus,
    queries_on_test_gallery,
    seed_estimates,
    training_texts,
    validation_matrix,
)
from featuregen_assets.research.vector_content import (
    KNOWS_TRUTH,
    QUESTION,
    READOUT_SETS,
    TruthCoding,
)

CEILING = f"learned ceiling: contrastive head on the truth {KNOWS_TRUTH}"
HIDDEN = 512
CHECK_EVERY = 10  # epochs between validation checks when the encoder's config has none


class TruthHead(torch.nn.Module):
    """Truth one-hots -> unit vectors in the standardised space of the stored vectors."""

    def __init__(self, inputs: int, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(inputs, HIDDEN), torch.nn.GELU(), torch.nn.Linear(HIDDEN, len(mean))
        )
        self.register_buffer("mean", torch.from_numpy(mean.astype(np.float32)))
        self.register_buffer("std", torch.from_numpy(std.astype(np.float32)))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(codes), dim=-1)

    @torch.no_grad()
    def queries(self, codes: np.ndarray) -> np.ndarray:
        """Query vectors for cosine with the stored unit vectors (as the text encoder's)."""
        self.eval()
        out = F.normalize(self(torch.from_numpy(codes)) / self.std, dim=-1).numpy()
        self.train()
        return out


def train_truth_head(
    codes: np.ndarray,
    vectors: np.ndarray,
    config: AlignmentConfig,
    seed: int,
    validate: Callable[[TruthHead], float],
) -> TruthHead:
    """The head trained on (code, stored vector) pairs with the encoder's loss and schedule,
    kept at the epoch of its best `validate(head)` (validation recall@5)."""
    torch.manual_seed(seed)
    mean, std = vectors.mean(0), vectors.std(0) + 1e-6
    head = TruthHead(codes.shape[1], mean, std)
    targets = F.normalize(torch.from_numpy(((vectors - mean) / std).astype(np.float32)), dim=-1)
    x = torch.from_numpy(codes)
    same = (x[:, None, :] == x[None, :, :]).all(-1)  # equal truths are positives of each other
    criterion = ContrastiveLoss(config.loss)
    optimiser, scheduler, total = optimiser_and_schedule(
        [*head.parameters(), *criterion.parameters()],
        config,
        -(-len(codes) // config.batch_size),
    )
    generator = torch.Generator().manual_seed(seed)
    every = config.eval_every or CHECK_EVERY
    best, state, stale, step = -1.0, None, 0, 0
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(len(codes), generator=generator)
        for start in range(0, len(order), config.batch_size):
            if step >= total:
                break
            batch = order[start : start + config.batch_size]
            loss = criterion(head(x[batch]), targets[batch], same[batch][:, batch])
            optimiser_step(loss, optimiser, scheduler)
            step += 1
        if epoch % every == 0 or epoch == config.epochs:
            score = validate(head)
            if score > best:
                best, stale = score, 0
                state = {k: v.clone() for k, v in head.state_dict().items()}
            else:
                stale += 1
            if config.patience and stale >= config.patience:
                break
    if state is not None:
        head.load_state_dict(state)
    return head


def learned_ceiling(
    corpus: Corpus,
    split: Split,
    queries: Sequence[Query],
    records: Mapping[str, dict],
    config: AlignmentConfig,
    seeds: int = 1,
    seed: int = 0,
) -> list[Measurement]:
    """Rows of the truth head on the template (and compositional) test queries, `seeds`
    trainings averaged as the encoder's are; nothing where a query's image has no record."""
    trained = set(training_texts(corpus, split)[0])
    train = [i for i in split.train if i in records]
    validation = validation_matrix(queries, split, trained)
    if not train or not all(q.image_id in records for q in validation.queries):
        return []
    coding = TruthCoding(records.values())

    def codes(matrix: QueryMatrix) -> np.ndarray:
        return np.stack([coding.code(records[q.image_id]) for q in matrix.queries])

    def scores(head: TruthHead, matrix: QueryMatrix, gallery: Sequence[str]) -> np.ndarray:
        return head.queries(codes(matrix)) @ unit(corpus.vectors[corpus.rows_of(gallery)]).T

    def validate(head: TruthHead) -> float:
        if not validation.texts:
            return 0.0
        ranks = ranks_of_positives(scores(head, validation, split.validation), validation.positives)
        return float((ranks <= 5).mean())

    x = np.stack([coding.code(records[i]) for i in train])
    y = corpus.vectors[corpus.rows_of(train)].astype(np.float32)
    heads = [train_truth_head(x, y, config, seed + s, validate) for s in range(seeds)]
    out = []
    for query_set in READOUT_SETS:
        matrix = queries_on_test_gallery(queries, query_set, split.test, trained)
        if not matrix.texts or not all(q.image_id in records for q in matrix.queries):
            continue
        runs = [scores(h, matrix, split.test) for h in heads]
        estimates = seed_estimates(runs, matrix, seed)
        out += rows(QUESTION, "retrieval", query_set, CEILING, estimates, seeds=len(runs))
    return out
