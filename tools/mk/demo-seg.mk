# `make demo-seg`: UperNet + InternImage on the embedded ADE20K-layout demo data, on CPU.
# Generates data/demo_ade20k, trains with tools/dist_train.sh, then prints the mIoU that
# tools/test.py computes (mmseg's IoUMetric) on the validation split.
DEMO_SEG_CONFIG ?= configs/demo/upernet_internimage-micro_demo-ade20k-128x128.py
DEMO_SEG_WORK_DIR ?= work_dirs/demo-seg
DEMO_SEG_NPROC ?= 2

.PHONY: demo-seg
demo-seg: setup
	$(PY) tools/make_demo_data.py --task seg
	PORT=$${PORT:-29511} tools/dist_train.sh $(DEMO_SEG_CONFIG) $(DEMO_SEG_NPROC) --work-dir $(DEMO_SEG_WORK_DIR)
	$(PY) tools/test.py $(DEMO_SEG_CONFIG) "$$(cat $(DEMO_SEG_WORK_DIR)/last_checkpoint)" --work-dir $(DEMO_SEG_WORK_DIR)/test
