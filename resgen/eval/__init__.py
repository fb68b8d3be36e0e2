"""Evaluators, exact and fully offline (see the "Evaluation" page for every protocol).

Images: Fréchet distance with Inception-v3 (FID) or classifier features, Inception Score,
precision/recall, and class accuracy under the bundled Fashion-MNIST classifier. Speech: WER/CER
with a documented normaliser and offline ASR back-ends, and speaker similarity. Heavy back-ends
(the Inception network, Whisper, Resemblyzer) load lazily inside the calls that need them.
"""

from resgen.eval.asr import PocketSphinxRecognizer, SpeechRecognizer, WhisperRecognizer
from resgen.eval.classifier import FashionClassifier, class_accuracy
from resgen.eval.features import (
    ClassifierFeatures,
    FeatureExtractor,
    InceptionFeatures,
    compute_features,
    compute_stats,
)
from resgen.eval.frechet import FeatureStats, frechet_distance, frechet_distance_from_features
from resgen.eval.image_metrics import (
    InceptionScore,
    PrecisionRecall,
    inception_score,
    precision_recall,
)
from resgen.eval.speaker import ResemblyzerEncoder, SpeakerEncoder, speaker_similarity
from resgen.eval.text import character_error_rate, normalize_text, word_error_rate

__all__ = [
    "ClassifierFeatures",
    "FashionClassifier",
    "FeatureExtractor",
    "FeatureStats",
    "InceptionFeatures",
    "InceptionScore",
    "PocketSphinxRecognizer",
    "PrecisionRecall",
    "ResemblyzerEncoder",
    "SpeakerEncoder",
    "SpeechRecognizer",
    "WhisperRecognizer",
    "character_error_rate",
    "class_accuracy",
    "compute_features",
    "compute_stats",
    "frechet_distance",
    "frechet_distance_from_features",
    "inception_score",
    "normalize_text",
    "precision_recall",
    "speaker_similarity",
    "word_error_rate",
]
