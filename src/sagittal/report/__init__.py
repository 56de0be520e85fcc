"""Outputs: the analysis document (the contract), and later overlays, HTML and DICOM SR."""

from .analysis import SCHEMA_ID, analysis_document, measure_input

__all__ = ["SCHEMA_ID", "analysis_document", "measure_input"]
