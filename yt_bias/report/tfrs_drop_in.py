"""Section ``tfrs_drop_in``: the TFRS basic-retrieval tutorial's model with only its task line changed.

Needs ``--movielens DIR``. The tutorial's user-ID and movie-ID towers in a ``tfrs.Model``, trained
with ``tfrs.tasks.Retrieval()``, with the same task given a mean loss, and with
:class:`~yt_bias.integrations.tfrs.CorrectedRetrieval`; evaluated by
:func:`yt_bias.experiments.tfrs_drop_in.run_comparison` (the protocol of notebooks/04_tfrs_drop_in.ipynb).
"""

from __future__ import annotations

from yt_bias._keras import keras
from yt_bias.experiments import tfrs_drop_in
from yt_bias.report.base import SectionResult, Settings, fmt_pm, provenance, put_stats, seeds_note, skipped, write_table

NAME = "tfrs_drop_in"
TITLE = "The drop-in for TFRS users"
VARIANTS = ("plain", "plain, mean", "corrected")
LABELS = {"plain": "`tfrs.tasks.Retrieval()`", "plain, mean": "`tfrs.tasks.Retrieval()`, mean loss",
          "corrected": "`CorrectedRetrieval()`", "most-popular": "most-popular"}
SEEDS = (0, 1, 2)
EPOCHS = 6
BATCH_SIZE = 512
EMBEDDING_DIMENSION = 32


def _builder(users, movies):
    import tensorflow_recommenders as tfrs

    from yt_bias.integrations.tfrs import CorrectedRetrieval

    def make_task(variant):
        if variant == "plain":
            return tfrs.tasks.Retrieval()
        if variant == "plain, mean":
            mean = keras.losses.CategoricalCrossentropy(from_logits=True, reduction=keras.losses.Reduction.SUM_OVER_BATCH_SIZE)
            return tfrs.tasks.Retrieval(loss=mean)
        return CorrectedRetrieval()

    class MovielensModel(tfrs.Model):
        def __init__(self, task):
            super().__init__()
            self.user_model = keras.Sequential([keras.layers.StringLookup(vocabulary=users, mask_token=None),
                                                keras.layers.Embedding(len(users) + 1, EMBEDDING_DIMENSION)])
            self.movie_model = keras.Sequential([keras.layers.StringLookup(vocabulary=movies, mask_token=None),
                                                 keras.layers.Embedding(len(movies) + 1, EMBEDDING_DIMENSION)])
            self.task = task

        def compute_loss(self, features, training=False):
            movie_ids = features["movie_id"]
            return self.task(self.user_model(features["user_id"]), self.movie_model(movie_ids), candidate_ids=movie_ids,
                             training=training)

    return lambda variant, seed: MovielensModel(make_task(variant))


def run(settings: Settings, out_dir: str) -> SectionResult:
    if not settings.movielens:
        return skipped("needs --movielens DIR (MovieLens-100K is not shipped)")
    seeds, epochs = ((0,), 1) if settings.quick else (SEEDS, EPOCHS)
    ks = tfrs_drop_in.DEFAULT_KS
    ratings = tfrs_drop_in.load_ratings(settings.movielens)
    users, movies = tfrs_drop_in.vocabularies(ratings)
    results = tfrs_drop_in.run_comparison(_builder(users, movies), ratings, variants=VARIANTS, seeds=seeds, epochs=epochs,
                                          batch_size=BATCH_SIZE, ks=ks)
    results["most-popular"] = [tfrs_drop_in.evaluate_most_popular(ratings, ks)]
    numbers: dict = {"ks": list(ks), "warm_share": results["plain"][0].get("warm_share")}
    for variant, runs in results.items():
        for prefix in ("warm/", ""):
            for k in ks:
                put_stats(numbers, f"{variant}/{prefix}recall@{k}", [r[f"{prefix}recall@{k}"] for r in runs])
    text = ("Queries of users with training ratings:\n\n" + tfrs_drop_in.format_table(results, ks, prefix="warm/")
            + "\n\nAll held-out positives:\n\n" + tfrs_drop_in.format_table(results, ks))
    table = write_table(out_dir, NAME, text)
    return SectionResult(
        numbers=numbers, tables=[table],
        config={"variants": list(VARIANTS), "seeds": list(seeds), "epochs": epochs, "batch_size": BATCH_SIZE,
                "embedding_dimension": EMBEDDING_DIMENSION, "data": "ML100K_DIR"},
        summary=f"MovieLens-100K, the tutorial's ID towers, {epochs} epochs, batch {BATCH_SIZE}, "
        + seeds_note(seeds),
    )


def readme_blocks(entry: dict) -> dict[str, str]:
    n = entry["numbers"]
    ks = n["ks"]
    lines = ["| task | " + " | ".join(f"R@{k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for variant in (*VARIANTS, "most-popular"):
        if f"{variant}/warm/recall@{ks[0]}/mean" in n:
            lines.append(f"| {LABELS[variant]} | " + " | ".join(fmt_pm(n, f"{variant}/warm/recall@{k}") for k in ks) + " |")
    share = n.get("warm_share")
    lines += ["", "Queries of users seen in training" + (f" ({share:.0%} of the held-out positives)" if share else "")
              + "; all queries in the report's table.", "", provenance(entry)]
    return {NAME: "\n".join(lines)}
