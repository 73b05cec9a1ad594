"""Fixtures shared by the sampling and streaming tests."""
import pytest
import torch

from fixtures import tiny_checkpoint
from common import load_checkpoint


@pytest.fixture(scope='module')
def one_thread():
    """Tiny tensors gain nothing from a second thread, and on a busy 2-core machine every parallel op waits
    for a descheduled thread: one thread keeps these tests fast. Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def ckpt_path(tmp_path_factory):
    return tiny_checkpoint(str(tmp_path_factory.mktemp('ckpt') / 'ckpt.pt'))


@pytest.fixture(scope='module')
def loaded(ckpt_path):
    return load_checkpoint(ckpt_path, 'cpu')
