"""seqtrain from Python: the command line's code path, called from a pipeline.

``train`` composes the same config as ``seqtrain key=value ...`` and trains into a run folder;
``load`` opens a finished run; ``Run.predict`` is ``seqtrain predict`` on a DataFrame (all in
``seqtrain.api.runs``). ``SequenceModel`` wraps all three as a scikit-learn style estimator over
time-indexed frames, and ``forecast_scorer`` scores it in a search (``seqtrain.api.estimator``).
Bad input raises one ``SeqtrainError`` whose message is the line the command line prints.
"""

from seqtrain.api.estimator import SequenceModel, forecast_scorer
from seqtrain.api.runs import Run, compose, load, train

__all__ = ["Run", "SequenceModel", "compose", "forecast_scorer", "load", "train"]
