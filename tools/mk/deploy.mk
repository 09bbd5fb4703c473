# `make deploy-ortlib`: the ONNX Runtime custom-op library for DCNv3 (`export_onnx.py --dcnv3 custom`),
# built from the CPU kernel of ops_dcnv3 into build/onnxruntime/ (see tools/deploy/build_ort_ops.sh
# for where the ONNX Runtime headers come from; set ORT_INCLUDE_DIR to use your own).
.PHONY: deploy-ortlib
deploy-ortlib: setup
	PY=$(PY) bash tools/deploy/build_ort_ops.sh
