"""seqtrain: config-driven training of neural sequence models on time-series tables.

From Python (the command line's code path)::

    import seqtrain
    run = seqtrain.train(["model=tcn", "data=parquet", "data.path=bars.parquet", "data.target=up"])
    run.metrics["test"], run.path
    preds = seqtrain.load(run.path).predict(new_rows)

    from seqtrain import SequenceModel  # scikit-learn style: fit(X, y) / predict(X)
"""

from seqtrain.api import Run, SequenceModel, compose, load, train
from seqtrain.errors import SeqtrainError

__all__ = ["Run", "SequenceModel", "SeqtrainError", "compose", "load", "train"]
