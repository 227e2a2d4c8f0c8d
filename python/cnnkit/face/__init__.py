"""Face verification (1:1) and recognition (1:K) as one-shot learning on encodings.

An encoder (:func:`build_encoder`) maps a face to a unit-length encoding; it is trained
either with the triplet loss and online mining (:class:`TripletLoss` on
:class:`PKSampler` batches, optionally after classification pre-training with
:func:`pretrain_encoder`) or as a Siamese network with a binary head
(:func:`build_siamese`, :class:`VerificationHead`, :class:`PairSampler`). A
:class:`FaceDatabase` holds the enrolled people's encodings and answers "is this X?" and
"who is this, or nobody?" by comparing distances with a threshold.
:mod:`cnnkit.face.evaluate` holds the verification metrics (the LFW protocol, VAL at FAR,
ROC and AUC, threshold choice, plots).
"""

from __future__ import annotations

from . import evaluate
from .classification import CosineClassifier, MarginSoftmaxLoss, pretrain_encoder
from .database import FaceDatabase
from .encoder import build_encoder, ensemble_encoder
from .losses import MINING_MODES, TripletLoss, pairwise_squared_distances, triplet_loss
from .sampling import PairSampler, PKSampler, sample_pairs
from .siamese import VerificationHead, build_siamese

__all__ = [
    "MINING_MODES",
    "CosineClassifier",
    "FaceDatabase",
    "MarginSoftmaxLoss",
    "PKSampler",
    "PairSampler",
    "TripletLoss",
    "VerificationHead",
    "build_encoder",
    "build_siamese",
    "ensemble_encoder",
    "evaluate",
    "pairwise_squared_distances",
    "pretrain_encoder",
    "sample_pairs",
    "triplet_loss",
]
