"""The project needs nothing outside its clone: no tracked file names a path of one particular
machine (users' clones have no sibling folders and none of the developers' absolute paths)."""
import os
import re
import subprocess

import pytest

# Absolute paths of the machines this project was developed on, and the steering folder beside the
# clone. Standard install locations (/usr/local/cuda as a default CUDA_HOME) are not machine paths.
MACHINE_PATH = re.compile(r'(^|[^\w.~-])/(work|farm|mnt/\w+|home/\w+)/|\.\./shared\b')


def _tracked_files(root):
    try:
        out = subprocess.run(['git', 'ls-files', '-z'], cwd=root, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip('not a git checkout (an sdist or copied tree): nothing to scan')
    return [f for f in out.stdout.decode().split('\0') if f]


def test_no_tracked_file_names_a_machine_path(repo_root):
    offenders = []
    for rel in _tracked_files(repo_root):
        path = os.path.join(repo_root, rel)
        if rel == 'tests/test_self_contained.py' or not os.path.isfile(path):
            continue
        with open(path, 'rb') as f:
            data = f.read()
        if b'\0' in data:  # binary (compressed key tables)
            continue
        for lineno, line in enumerate(data.decode('utf-8', 'replace').splitlines(), 1):
            if MACHINE_PATH.search(line):
                offenders.append(f'{rel}:{lineno}: {line.strip()[:120]}')
    assert not offenders, '\n'.join(offenders)
