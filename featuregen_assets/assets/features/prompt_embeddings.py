"""`prompt_embeddings`: a sentence vector of each text of the category's images."""

import dagster as dg

from featuregen_assets.assets.features.image_prompts import image_prompts
from featuregen_assets.assets.features.model_step import ModelStep, feature_asset
from featuregen_assets.core.store.feature_store import missing_text_vectors, text_count
from featuregen_assets.core.store.table import Table
from featuregen_assets.core.vision.model_profiles import random_weights
from featuregen_assets.resources.models import SentenceEncoderResource
from featuregen_assets.resources.postgres import PostgresResource

TEXT_EMBEDDING = ModelStep(
    columns=("embedding",),
    doing="embedding",
    done="embedded",
    results="text vectors",
    count="embedded",
    unit="texts",
    key="text_key",
    inputs=lambda pending: [text for _, text in pending],
)


@feature_asset(
    deps=[image_prompts],
    stored_in="pgvector",
    primary_key=["image_id", "model", "prompt_model", "source"],
    hnsw_by="model",
)
def prompt_embeddings(
    context: dg.AssetExecutionContext,
    sentence_encoder: SentenceEncoderResource,
    postgres: PostgresResource,
) -> Table:
    """Unit sentence vectors of the category's images' texts (each link caption and each
    generated prompt, a row each with its prompt model and source) not yet embedded as they
    are by this sentence encoder. Texts of a random-weight captioner are marked
    `random_weights` (search leaves them out).

    Finished vectors are checkpointed as they come; a re-run after a failure resumes there.
    """
    model = sentence_encoder.model
    with postgres.connection() as conn:
        missing = missing_text_vectors(conn, context.partition_key, model.key)
        texts = text_count(conn, context.partition_key)
    described = {_text_key(row): row for row in missing}  # (image_id, prompt model, source, sha)
    step = TEXT_EMBEDDING.run(
        context,
        model.key,
        [(_text_key(row), row[3]) for row in missing],
        model.encode_rows,
        sentence_encoder.compute,
        texts,
        f" (dim {model.dim})",
    )
    done = [described[key] for key in step.rows.columns["text_key"]]
    random = [random_weights(prompt_model) for _, prompt_model, *_ in done]
    context.add_output_metadata(
        {**step.metadata, "dim": model.dim, "random_weight_texts": sum(random)}
    )
    return Table(
        {
            "image_id": [row[0] for row in done],
            "model": [model.key] * len(done),
            "prompt_model": [row[1] for row in done],
            "source": [row[2] for row in done],
            "text_sha": [row[4] for row in done],
            "random_weights": random,
            "embedding": step.rows.columns["embedding"],
        }
    )


def _text_key(row: tuple[str, ...]) -> str:
    """A text's checkpoint key: image, prompt model, source and the text's sha256."""
    image_id, prompt_model, source, _, sha = row
    return "\t".join((image_id, prompt_model, source, sha))
