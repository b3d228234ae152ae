"""igtv: IGTV/GTV lung tumour contouring on PET/CT.

Importing the package is cheap: heavy dependencies (torch, SimpleITK, pydicom, matplotlib) are imported by the
submodules that need them, never here.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
