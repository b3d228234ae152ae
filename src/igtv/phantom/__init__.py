"""The breathing-motion thorax PET/CT phantom: settings (:mod:`.config`), anatomy, tumours, motion, CT and PET
synthesis (:mod:`.patient`), and cohorts written as DICOM, NIfTI and the PCLT20K layout (:mod:`.cohort`)."""
