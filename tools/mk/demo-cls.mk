# `make demo-cls`: InternImage classification on the embedded ImageNet-layout demo data, on CPU.
# Generates data/demo_imagenet, trains with tools/dist_train.sh, then prints the top-1 accuracy
# that tools/test.py computes (mmpretrain's Accuracy) on the validation split.
DEMO_CLS_CONFIG ?= configs/demo/internimage-micro_demo-imagenet-64.py
DEMO_CLS_WORK_DIR ?= work_dirs/demo-cls
DEMO_CLS_NPROC ?= 2

.PHONY: demo-cls
demo-cls: setup
	$(PY) tools/make_demo_data.py --task cls
	PORT=$${PORT:-29512} tools/dist_train.sh $(DEMO_CLS_CONFIG) $(DEMO_CLS_NPROC) --work-dir $(DEMO_CLS_WORK_DIR)
	$(PY) tools/test.py $(DEMO_CLS_CONFIG) "$$(cat $(DEMO_CLS_WORK_DIR)/last_checkpoint)" --work-dir $(DEMO_CLS_WORK_DIR)/test
