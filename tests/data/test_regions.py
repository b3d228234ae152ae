from __future__ import annotations

import numpy as np

from igtv.data.regions import tile_region, uptake_region
from igtv.geometry import Geometry


def _geom(shape_zyx, spacing_xyz=(1.0, 2.0, 3.0)) -> Geometry:
    return Geometry(shape_zyx, spacing_xyz, (0.0, 0.0, 0.0))


def test_uptake_region_is_the_box_of_the_reach_in_millimetres_around_each_hot_voxel():
    """One hot voxel, anisotropic voxels (x 1 mm, y 2 mm, z 3 mm), 6 mm reach: the box of +-6 x, +-3 y, +-2 z voxels
    around it, and nothing else; a voxel just below the threshold is not uptake."""
    pet = np.zeros((20, 30, 40), np.float32)
    pet[10, 15, 20] = 3.0
    pet[2, 2, 2] = 2.99
    near = uptake_region(pet, _geom(pet.shape), 3.0, 6.0)
    box = np.zeros(pet.shape, bool)
    box[8:13, 12:19, 14:27] = True
    assert np.array_equal(near, box)
    assert not uptake_region(pet, _geom(pet.shape), 3.5, 6.0).any()


def test_tile_region_limits_the_thorax_to_the_uptake_and_is_off_at_zero():
    pet = np.zeros((10, 20, 20), np.float32)
    pet[5, 3, 3] = 4.0
    geom = _geom(pet.shape, (1.0, 1.0, 1.0))
    thorax = np.zeros(pet.shape, bool)
    thorax[:, :, 2:] = True
    both = tile_region(thorax, pet, geom, 3.0, 2.0)
    assert both[5, 3, 3] and both[5, 1, 2] and not both[5, 3, 1]  # the thorax cuts the box
    assert not both[5, 6, 3] and not both[8, 3, 3]  # beyond the reach
    assert np.array_equal(tile_region(None, pet, geom, 3.0, 2.0), uptake_region(pet, geom, 3.0, 2.0))
    assert tile_region(thorax, pet, geom, 0.0, 2.0) is thorax  # no SUV rule: every tile of the thorax
    assert tile_region(None, pet, geom, 3.0, 0.0) is None  # reach 0: everywhere
