"""Prediction on new patients: DICOM (or PCLT20K PNGs) -> masks, RTSTRUCT, NIfTI, statistics and a report."""
