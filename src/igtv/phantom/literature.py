"""Reference ranges the phantom's tissues are drawn from, each with where it comes from.

Ranges marked "issue 18" are the ones the project's issue 18 lists for FDG PET physiology; the web sources named
beside them are the ones that could be read from this project's tools (nothing was copied from memory). HU ranges
for lung are for inspiration CT; the phantom's CT is at end exhale, where lung is denser, so its lung range
starts higher (see ``PHANTOM_HU``).
"""

from __future__ import annotations

# (low, high), source
SUV_LITERATURE: dict[str, tuple[tuple[float, float], str]] = {
    "myocardium": ((1.0, 15.0), "issue 18 (very variable with fasting and insulin)"),
    "blood_pool": (
        (1.5, 2.2),
        "issue 18; mediastinal blood pool SUVmax 1.5-2.2: droracle.ai/articles/537405 (normal organ SUVmax)",
    ),
    "liver": (
        (1.8, 3.0),
        "issue 18; SUVmax 2.0-3.5: droracle.ai/articles/537405; SUVmax 2.5: Mettler & Guiberteau, Essentials of "
        "Nuclear Medicine Imaging, 5th ed., pp. 375-376 (as quoted by roentgenrayreader.blogspot.com, 2009/12)",
    ),
    "spleen": ((1.5, 2.5), "issue 18; SUVmax 1.9: Mettler & Guiberteau (as above)"),
    "bone_marrow": (
        (1.0, 2.0),
        "issue 18; SUVmax 1.0: Mettler & Guiberteau; < 2.5 normal (L3): droracle.ai/articles/537405",
    ),
    "muscle": ((0.5, 1.0), "issue 18"),
    "lung": ((0.3, 0.7), "SUVmax 0.7: Mettler & Guiberteau (as above); parenchyma mean lower"),
}

HU_LITERATURE: dict[str, tuple[tuple[float, float], str]] = {
    "lung": (
        (-910.0, -850.0),
        "lung parenchyma (inspiration) -850 to -910: radclass.mudr.org/content/hounsfield-units-scale-hu-ct-numbers "
        "(after Buzug 2008, Prokop 2003); -950 to -550: radgray.com/ct/general-ct/hounsfield-scale",
    ),
    "fat": ((-100.0, -50.0), "fat -50 to -100: radclass.mudr.org (as above); basicmedicalkey.com/principles-of-ct"),
    "muscle": ((10.0, 40.0), "muscle 10 to 40: ecgcourse.com/topic/radiodensity-common-tissues-3"),
    "liver": ((45.0, 65.0), "liver 45 to 65: radclass.mudr.org; 40 to 60: basicmedicalkey.com"),
    "spleen": ((35.0, 55.0), "spleen 35 to 55: radclass.mudr.org"),
    "kidney": ((20.0, 40.0), "kidney 20 to 40: radclass.mudr.org; radgray.com"),
    "blood": ((30.0, 65.0), "blood 45 to 65: radclass.mudr.org; +30 to +45: radgray.com"),
    "cancellous_bone": ((50.0, 200.0), "spongiose bone +50 to +200: radgray.com"),
    "compact_bone": ((250.0, 1000.0), "compact bone +250 to +1000: radgray.com"),
}
