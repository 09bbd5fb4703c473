"""tools/gpu_check.sh refuses clearly (exit 2, no table of skipped steps) where no GPU is visible."""
import os
import subprocess

import pytest
import torch


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is visible: the script would run for real')
def test_gpu_check_without_gpu_exits_2_with_a_reason(repo_root):
    proc = subprocess.run(['bash', os.path.join(repo_root, 'tools', 'gpu_check.sh')],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert 'no CUDA GPU is visible' in proc.stderr
    assert 'step' not in proc.stdout  # no summary table of steps that never ran
