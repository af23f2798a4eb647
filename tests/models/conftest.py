import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These networks see tiny tensors: on a shared machine a second thread waits more than it works."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
