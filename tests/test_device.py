"""igtv.device: the device picked and the prediction batch size that goes with it."""

import pytest
import torch

from igtv.device import auto_batch_size, pick_device


def test_cpu_is_picked_when_asked_and_cuda_refused_without_one():
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert pick_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="no CUDA device"):
            pick_device("cuda")


def test_auto_batch_size_fills_a_gpu_with_small_tiles_and_never_goes_below_eight():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)  # a device object needs no GPU to exist
    assert auto_batch_size(cpu, 96) == 8 and auto_batch_size(cpu, 0) == 8
    assert auto_batch_size(cuda, 96) == 32
    assert auto_batch_size(cuda, 64) == 72  # as many pixels as 32 tiles of 96 px
    assert auto_batch_size(cuda, 192) == 8 and auto_batch_size(cuda, 512) == 8  # large tiles: never below 8
    assert auto_batch_size(cuda, 0) == 8  # whole-slice models keep the CPU's batch
