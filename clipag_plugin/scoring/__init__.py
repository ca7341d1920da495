"""Scoring generated pictures: CLIP score, FID / KID / IS on the field's Inception-v3, the mini world's judge."""

from __future__ import annotations

from .inception import INCEPTION, fetch_inception, inception_path
from .metrics import clip_score, inception_scores, judge_scores

__all__ = ["clip_score", "inception_scores", "judge_scores", "fetch_inception", "inception_path", "INCEPTION"]
