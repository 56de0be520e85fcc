"""Findings: the vertebral-augmentation candidacy rules and the clinical inputs they weigh."""

from .candidacy import CATEGORIES, evaluate_patient
from .clinical import ClinicalInputs, read_clinical_csv

__all__ = ["CATEGORIES", "evaluate_patient", "ClinicalInputs", "read_clinical_csv"]
