"""Synthetic demo datasets: small, deterministic stand-ins for COCO, ADE20K and ImageNet.

Each module (``coco``, ``ade20k``, ``imagenet``) exposes ``generate(out_dir, seed=0, ...)``
and builds on the drawing helpers in :mod:`tools.demo_data.common`.
"""
