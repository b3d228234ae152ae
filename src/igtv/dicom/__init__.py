"""Clinical DICOM in and out: index a tree and pick the exam (:mod:`.index`), read series with geometry checks
(:mod:`.series`), SUV from PET headers (:mod:`.suv`), RTSTRUCT and SEG to masks (:mod:`.rtstruct`,
:mod:`.structures`), and CT/PET/RTSTRUCT writing (:mod:`.write`)."""
