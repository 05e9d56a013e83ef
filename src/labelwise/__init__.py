"""labelwise: multi-label text classification, from labelled text files to a served model."""
from .data import Dataset, Example, load_dataset
from .errors import DataError, LabelwiseError
from .evaluation import evaluate, predict_file
from .inference import Classifier, Prediction

__version__ = "0.1.0"


def train(dataset_dir: str, **options):
    """Fine-tune on ``dataset_dir``; ``options`` are :class:`labelwise.training.TrainConfig` fields."""
    from .training import TrainConfig, train as _train

    return _train(TrainConfig(dataset_dir=str(dataset_dir), **options))


__all__ = ["Classifier", "Prediction", "Dataset", "Example", "load_dataset", "train", "evaluate",
           "predict_file", "LabelwiseError", "DataError", "__version__"]
