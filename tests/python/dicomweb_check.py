"""A DICOMweb (PS3.18) server checked from the outside with a real client
(dicomweb-client) against the DICOM files it was given: QIDO-RS, WADO-RS and
STOW-RS. The same script runs against Orthanc's DICOMweb plugin and against
liverseg's gateway, so it must not depend on either.

    python dicomweb_check.py make-upload --ct-file FILE --out DIR [--count 2]
    python dicomweb_check.py roundtrip --url ROOT --study UID --series UID \
        --ct-dir DIR [--upload FILE...] [--allow-undecoded-query]

`make-upload` copies one CT file into COUNT files with a fresh Study, Series
(alternating between two series) and SOP Instance UID each. `roundtrip`
STOWs the `--upload` files (made on the fly from the CT when none are given).

`roundtrip` prints ONE JSON line: {"ok", "url", "failed": [names],
"checks": {name: {"ok", numbers..., "error"?}}, "notes": {...}} and exits 1
when any check failed (the failing checks are named on stderr too).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import pathlib
import sys
import tempfile
import urllib.request
import uuid
from urllib.parse import urljoin, urlparse

import pydicom
import pydicom.datadict
import pydicom.encaps
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import generate_uid

from dicomweb_client.api import DICOMwebClient

# Media types asked for explicitly: dicomweb-client's default for frames and
# bulk data is `multipart/related; type="*/*"`, which Orthanc answers with 400.
OCTET_ANY = (("application/octet-stream", "*"),)
DICOM_ANY = (("application/dicom", "*"),)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# DICOM JSON keys (PS3.18 F.2) of the attributes the checks read.
STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
PATIENT_NAME, MODALITY = "00100010", "00080060"
N_STUDY_INSTANCES, N_SERIES_INSTANCES = "00201208", "00201209"
IMAGE_POSITION, PIXEL_DATA = "00200032", "7FE00010"


class CheckFailed(Exception):
    pass


def expect(cond, message):
    if not cond:
        raise CheckFailed(message)


def value(item, key):
    """The first value of a DICOM JSON attribute, or None."""
    v = item.get(key, {}).get("Value")
    return v[0] if v else None


def values(item, key):
    return item.get(key, {}).get("Value") or []


class Report:
    """Runs named checks; a check returns a dict of numbers or raises."""

    def __init__(self):
        self.checks: dict[str, dict] = {}
        self.notes: dict[str, object] = {}

    def run(self, name, fn, *needs):
        missing = [n for n in needs if not self.checks.get(n, {}).get("ok")]
        if missing:
            self.checks[name] = {"ok": False, "error": f"not run: {', '.join(missing)} failed"}
            return None
        try:
            info = fn() or {}
            self.checks[name] = {"ok": True, **info}
            return info
        except Exception as e:  # noqa: BLE001 - every failure is reported by name
            status = getattr(getattr(e, "response", None), "status_code", None)
            detail = f"{type(e).__name__}: {e}"
            self.checks[name] = {"ok": False, "error": detail[:500]}
            if status is not None:
                self.checks[name]["http_status"] = status
            return None

    def failed(self):
        return [n for n, c in self.checks.items() if not c["ok"]]


def dataset_bytes(ds):
    """The data set (no File Meta) encoded as Explicit VR Little Endian, so
    that two copies compare byte for byte whatever their file headers."""
    body = pydicom.Dataset()
    for elem in ds:
        if elem.tag.group != 0x0002:
            body.add(copy.deepcopy(elem))
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, body)
    return fp.getvalue()


def first_difference(a, b):
    """Offset of the first byte where two encodings differ."""
    return next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))


def native(ds):
    return not ds.file_meta.TransferSyntaxUID.is_compressed


def frame_length(ds):
    return int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.BitsAllocated) // 8


def expected_frame(ds, index=0):
    """Frame `index` of the file as a server gives it with transfer-syntax=*:
    the native bytes, or the compressed frame as stored."""
    if native(ds):
        n = frame_length(ds)
        return bytes(ds.PixelData[index * n:(index + 1) * n])
    frames = int(ds.get("NumberOfFrames", 1))
    return pydicom.encaps.get_frame(ds.PixelData, index, number_of_frames=frames)


def files(directory):
    return sorted(p for p in pathlib.Path(directory).rglob("*") if p.is_file() and not p.name.startswith("."))


# Study and Patient IE attributes that are not among PS3.18's default study
# result attributes: asked for with includefield.
STUDY_INCLUDE_CANDIDATES = ["StudyDescription", "PatientAge", "PatientWeight", "PatientSize",
                            "AdditionalPatientHistory", "OtherPatientIDs"]


def study_include_field(ds):
    return next((k for k in STUDY_INCLUDE_CANDIDATES if str(ds.get(k, "")).strip()), None)


def client_for(url):
    client = DICOMwebClient(url, timeout=120)
    # dicomweb-client sends `Host: HOST` without the port on every GET and
    # small POST (it overrides the header with its parsed host name). A
    # server that builds absolute URLs (RetrieveURL, BulkDataURI) from Host
    # then points at port 80. Send the real authority; `notes` records what
    # the server answers to the client's own header.
    client.host = urlparse(url).netloc
    return client


def raw_get_json(url):
    """GET with the URL exactly as written: no percent-encoding of the query
    (requests would still encode `^`)."""
    request = urllib.request.Request(url, headers={"Accept": "application/dicom+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
    return json.loads(body) if body else []


# ---------------------------------------------------------------- make-upload

def make_upload(ct_file, out, count):
    """COUNT copies of one CT file: one new study, two new series, new SOP
    Instance UIDs; returns (study, [series], [paths])."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    study = generate_uid()
    series = [generate_uid() for _ in range(min(2, count))]
    frame_of_reference = generate_uid()
    paths = []
    for i in range(count):
        ds = pydicom.dcmread(ct_file)
        sop = generate_uid()
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series[i % len(series)]
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.FrameOfReferenceUID = frame_of_reference
        ds.InstanceNumber = i + 1
        ds.SeriesDescription = f"dicomweb_check upload {i % len(series) + 1}"
        ds.StudyDescription = "dicomweb_check upload"
        path = out / f"upload_{i + 1}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return study, series, paths


def cmd_make_upload(a):
    study, series, paths = make_upload(a.ct_file, a.out, a.count)
    print(json.dumps({"study": study, "series": series, "files": [str(p) for p in paths]}))


# ------------------------------------------------------------------ roundtrip

def page_through(fetch, limit, key, cap=10000):
    """Pages with limit/offset until an empty page; the UIDs (by `key`) and
    page sizes. Each page must hold at most `limit` results."""
    uids, sizes, offset = [], [], 0
    while len(sizes) < cap:
        page = fetch(limit=limit, offset=offset)
        expect(len(page) <= limit, f"page at offset {offset} has {len(page)} > limit {limit} results")
        sizes.append(len(page))
        if not page:
            return uids, sizes
        uids.extend(value(item, key) for item in page)
        offset += len(page)
    raise CheckFailed(f"more than {cap} pages: offset ignored?")


def check_paging(fetch, limit, key, full):
    uids, sizes = page_through(fetch, limit, key)
    expect(len(uids) == len(set(uids)), f"duplicate results across pages: {sizes}")
    expect(set(uids) == set(full), f"pages hold {len(set(uids))} UIDs, a full search {len(set(full))}")
    return {"limit": limit, "pages": len(sizes), "page_sizes": sizes, "results": len(uids)}


def roundtrip(a):
    report = Report()
    client = client_for(a.url)
    study, series = a.study, a.series

    # The files, read once; three instances (first, middle, last) for the
    # per-instance WADO checks.
    headers = {}
    for p in files(a.ct_dir):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        headers[ds.SOPInstanceUID] = (p, ds)
    paths = sorted(headers.values(), key=lambda t: str(t[0]))
    picked = [paths[0], paths[len(paths) // 2], paths[-1]] if paths else []
    picked = list({ds.SOPInstanceUID: (p, ds) for p, ds in picked}.values())
    full = {ds.SOPInstanceUID: pydicom.dcmread(p) for p, ds in picked}
    first = paths[0][1] if paths else None

    def inputs():
        expect(paths, f"no files under {a.ct_dir}")
        wrong = [str(p) for p, ds in paths if ds.StudyInstanceUID != study or ds.SeriesInstanceUID != series]
        expect(not wrong, f"files not in --study/--series: {wrong[:3]}")
        return {"files": len(paths)}

    if report.run("inputs", inputs) is None:
        return finish(report, a.url)

    # ---------------------------------------------------------------- QIDO
    def qido_study_uid():
        found = client.search_for_studies(search_filters={"StudyInstanceUID": study})
        expect(len(found) == 1, f"{len(found)} studies for StudyInstanceUID={study}")
        s = found[0]
        expect(value(s, STUDY_UID) == study, f"StudyInstanceUID {value(s, STUDY_UID)}")
        name = value(s, PATIENT_NAME)
        if str(first.get("PatientName", "")):
            expect(isinstance(name, dict) and name.get("Alphabetic") == str(first.PatientName),
                   f"PatientName {name!r}, file has {str(first.PatientName)!r} (want {{'Alphabetic': ...}})")
        n = value(s, N_STUDY_INSTANCES)
        if n is not None:
            expect(int(n) >= len(paths), f"NumberOfStudyRelatedInstances {n} < {len(paths)} files")
        return {"studies": len(found), "study_related_instances": n}

    report.run("qido_study_uid", qido_study_uid)

    def found_study(**kw):
        found = client.search_for_studies(**kw)
        return found, any(value(s, STUDY_UID) == study for s in found)

    def found_study_by_name(name, fuzzy=False):
        """Studies for PatientName=`name`, as dicomweb-client sends it
        (percent-encoded: `*` as %2A, `^` as %5E). With
        --allow-undecoded-query, a miss is retried with the value as is and
        noted."""
        kw = {"fuzzymatching": True} if fuzzy else {}
        found, hit = found_study(search_filters={"PatientName": name}, **kw)
        if not hit and a.allow_undecoded_query:
            query = f"PatientName={name}" + ("&fuzzymatching=true" if fuzzy else "")
            found = raw_get_json(f"{a.url.rstrip('/')}/studies?{query}")
            hit = any(value(s, STUDY_UID) == study for s in found)
            if hit:
                report.notes.setdefault("needed_undecoded_query", []).append(query)
        return found, hit

    def qido_patient_name():
        name = str(first.get("PatientName", ""))
        expect(name, "the files have no PatientName")
        pattern = name[:3] + "*"
        found, hit = found_study_by_name(pattern)
        expect(hit, f"PatientName={pattern} does not find the study ({len(found)} studies)")
        # A pattern that matches nothing, restricted to this study: 0 results.
        miss = "Q" + uuid.uuid4().hex[:8] + "*"
        none, _ = found_study(search_filters={"StudyInstanceUID": study, "PatientName": miss})
        expect(not none, f"PatientName={miss} (and the study UID) found {len(none)} studies")
        return {"pattern": pattern, "studies": len(found), "non_matching_pattern_studies": len(none)}

    report.run("qido_patient_name_wildcard", qido_patient_name)

    def check_study_include_field(uid, ds, keyword):
        tag = f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
        found = client.search_for_studies(search_filters={"StudyInstanceUID": uid}, fields=[keyword])
        expect(len(found) == 1, f"{len(found)} studies for {uid}")
        got = value(found[0], tag)
        expect(got == str(ds.get(keyword)).strip(),
               f"includefield={keyword}: {got!r}, file has {str(ds.get(keyword))!r}")

    def qido_fuzzy():
        name = str(first.get("PatientName", ""))
        expect(name, "the files have no PatientName")
        counts = {}
        for variant in (name.lower(), name.upper()):
            found, hit = found_study_by_name(variant, fuzzy=True)
            expect(hit, f"fuzzymatching=true&PatientName={variant} does not find the study")
            counts[variant] = len(found)
        return {"queries": len(counts), "studies": list(counts.values())}

    report.run("qido_fuzzymatching", qido_fuzzy)

    def qido_date_range():
        date = str(first.get("StudyDate", ""))
        if len(date) != 8:
            return {"skipped": "no StudyDate"}
        d = datetime.datetime.strptime(date, "%Y%m%d").date()
        fmt = lambda x: x.strftime("%Y%m%d")  # noqa: E731
        day = datetime.timedelta(days=1)
        hits = {
            f"{fmt(d - day)}-{fmt(d + day)}": True,
            f"{fmt(d)}-{fmt(d)}": True,
            f"-{fmt(d)}": True,
            f"{fmt(d)}-": True,
            f"{fmt(d + day)}-{fmt(d + 2 * day)}": False,
            f"-{fmt(d - day)}": False,
        }
        for rng, want in hits.items():
            found, _ = found_study(search_filters={"StudyInstanceUID": study, "StudyDate": rng})
            expect(len(found) == int(want), f"StudyDate={rng}: {len(found)} studies, want {int(want)}")
        return {"study_date": date, "ranges": len(hits)}

    report.run("qido_date_range", qido_date_range)

    def qido_includefield():
        # Study level: a Study or Patient IE attribute that is not a default
        # study result key, when the files have one (stow_qido checks the
        # uploads' StudyDescription too).
        keyword = study_include_field(first)
        out = {"study_field": keyword}
        if keyword:
            check_study_include_field(study, first, keyword)
        # Instance level: ImagePositionPatient of every instance, paged.
        found = client.search_for_instances(study, series, fields=["ImagePositionPatient"])
        compared = 0
        for item in found:
            uid = value(item, SOP_UID)
            if uid in headers and "ImagePositionPatient" in headers[uid][1]:
                want = [float(x) for x in headers[uid][1].ImagePositionPatient]
                got = [float(x) for x in values(item, IMAGE_POSITION)]
                expect(len(got) == 3 and all(abs(x - y) < 1e-3 for x, y in zip(got, want)),
                       f"{uid}: ImagePositionPatient {got}, file has {want}")
                compared += 1
        expect(compared == len(paths), f"ImagePositionPatient compared for {compared} of {len(paths)}")
        out["instance_positions_compared"] = compared
        return out

    report.run("qido_includefield", qido_includefield)

    def qido_series():
        found = client.search_for_series(study)
        ours = [s for s in found if value(s, SERIES_UID) == series]
        expect(len(ours) == 1, f"series {series} found {len(ours)} times among {len(found)}")
        expect(value(ours[0], MODALITY) == str(first.Modality), f"Modality {value(ours[0], MODALITY)}")
        n = value(ours[0], N_SERIES_INSTANCES)
        if n is not None:
            expect(int(n) == len(paths), f"NumberOfSeriesRelatedInstances {n}, {len(paths)} files")
        return {"series_in_study": len(found), "series_related_instances": n}

    report.run("qido_series", qido_series)

    def qido_series_paging():
        full = [value(s, SERIES_UID) for s in client.search_for_series(study)]
        in_study = check_paging(lambda **kw: client.search_for_series(study, **kw), 1, SERIES_UID, full)
        everywhere = [value(s, SERIES_UID) for s in client.search_for_series()]
        expect(series in everywhere, "the series is not in a search over all series")
        all_series = check_paging(lambda **kw: client.search_for_series(**kw), 2, SERIES_UID, everywhere)
        return {"in_study": in_study, "all_series": all_series}

    report.run("qido_series_paging", qido_series_paging)

    def qido_instances():
        found = client.search_for_instances(study, series)
        uids = [value(i, SOP_UID) for i in found]
        expect(len(found) == len(paths), f"{len(found)} instances, {len(paths)} files")
        expect(set(uids) == set(headers), "SOPInstanceUIDs differ from the files'")
        paged = check_paging(lambda **kw: client.search_for_instances(study, series, **kw), 50, SOP_UID, uids)
        return {"instances": len(found), "files": len(paths), "paging": paged}

    report.run("qido_instances", qido_instances)

    # ---------------------------------------------------------------- WADO
    metadata = {}
    metadata_url = f"{a.url.rstrip('/')}/studies/{study}/series/{series}/metadata"

    def wado_metadata():
        items = client.retrieve_series_metadata(study, series)
        expect(len(items) == len(paths), f"{len(items)} data sets, {len(paths)} files")
        for item in items:
            metadata[value(item, SOP_UID)] = item
        expect(set(metadata) == set(headers), "SOPInstanceUIDs differ from the files'")
        for uid, item in metadata.items():
            px = item.get(PIXEL_DATA)
            expect(px is not None, f"{uid}: no PixelData (7FE00010) in the metadata")
            expect("BulkDataURI" in px and "InlineBinary" not in px and "Value" not in px,
                   f"{uid}: PixelData is not a BulkDataURI: {sorted(px)}")
            ds = headers[uid][1]
            expect(value(item, "00280010") == ds.Rows and value(item, "00280011") == ds.Columns,
                   f"{uid}: Rows/Columns differ from the file's")
        return {"instances": len(items), "bulkdata_uris": len(items)}

    report.run("wado_metadata", wado_metadata)

    def wado_instance():
        compared, px_bytes = 0, 0
        for uid, original in full.items():
            got = client.retrieve_instance(study, series, uid, media_types=DICOM_ANY)
            expect(got.SOPInstanceUID == uid, f"asked for {uid}, got {got.SOPInstanceUID}")
            expect(bytes(got.PixelData) == bytes(original.PixelData), f"{uid}: PixelData bytes differ")
            if native(original) and native(got):
                import numpy as np  # pydicom's pixel handlers need it
                expect(np.array_equal(got.pixel_array, original.pixel_array), f"{uid}: pixel_array differs")
            want, have = dataset_bytes(original), dataset_bytes(got)
            expect(want == have,
                   f"{uid}: data set differs from the file's at byte {first_difference(want, have)}"
                   f" ({len(have)} vs {len(want)} bytes)")
            compared += 1
            px_bytes = len(got.PixelData)
        return {"instances": compared, "pixel_data_bytes": px_bytes}

    report.run("wado_instance", wado_instance)

    def wado_frames():
        compared, length = 0, 0
        for uid, original in full.items():
            frames = client.retrieve_instance_frames(study, series, uid, [1], media_types=OCTET_ANY)
            expect(len(frames) == 1, f"{uid}: {len(frames)} parts for frame 1")
            want = expected_frame(original)
            got = frames[0]
            # A native frame of odd length may carry one pad byte.
            expect(got[:len(want)] == want and len(got) - len(want) in (0, len(want) % 2),
                   f"{uid}: frame 1 is {len(got)} bytes, differs from the file's {len(want)}")
            compared += 1
            length = len(got)
        return {"instances": compared, "frame_bytes": length}

    report.run("wado_frames", wado_frames)

    def wado_bulkdata():
        compared, length, relative = 0, 0, 0
        for uid, original in full.items():
            uri = metadata[uid][PIXEL_DATA]["BulkDataURI"]
            if not urlparse(uri).scheme:
                relative += 1
            parts = client.retrieve_bulkdata(urljoin(metadata_url, uri), media_types=OCTET_ANY)
            expect(len(parts) == 1, f"{uid}: {len(parts)} parts at {uri}")
            want = bytes(original.PixelData)
            expect(parts[0] == want, f"{uid}: bulk data is {len(parts[0])} bytes, differs from PixelData ({len(want)})")
            compared += 1
            length = len(parts[0])
        return {"instances": compared, "bytes": length, "relative_uris": relative}

    report.run("wado_bulkdata", wado_bulkdata, "wado_metadata")

    def wado_rendered():
        uid, original = next(iter(full.items()))
        png = client.retrieve_instance_rendered(study, series, uid, media_types=("image/png",))
        expect(png[:8] == PNG_SIGNATURE, f"not a PNG: {png[:8]!r}")
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        expect((width, height) == (original.Columns, original.Rows),
               f"PNG is {width}x{height}, the image {original.Columns}x{original.Rows}")
        return {"bytes": len(png), "width": width, "height": height}

    report.run("wado_rendered_png", wado_rendered)

    # What the server writes in BulkDataURI when the client sends dicomweb-client's
    # own Host header (no port): informational only.
    try:
        plain = DICOMwebClient(a.url, timeout=120)
        uid = next(iter(full))
        item = plain.retrieve_instance_metadata(study, series, uid)
        uri = item.get(PIXEL_DATA, {}).get("BulkDataURI", "")
        target = urlparse(urljoin(metadata_url, uri))
        report.notes["bulkdata_uri_with_portless_host"] = {
            "uri_authority": target.netloc,
            "reachable_authority": target.netloc == urlparse(a.url).netloc,
        }
    except Exception as e:  # noqa: BLE001
        report.notes["bulkdata_uri_with_portless_host"] = {"error": f"{type(e).__name__}: {e}"[:300]}

    # ---------------------------------------------------------------- STOW
    upload_paths = [pathlib.Path(p) for p in a.upload]
    tmp = None
    if not upload_paths:
        tmp = tempfile.TemporaryDirectory()
        _, _, upload_paths = make_upload(picked[len(picked) // 2][0], tmp.name, 2)
    uploads = [pydicom.dcmread(p) for p in upload_paths]
    up_study = uploads[0].StudyInstanceUID
    up_series = sorted({ds.SeriesInstanceUID for ds in uploads})

    def stow_store():
        expect(all(ds.StudyInstanceUID == up_study for ds in uploads), "the uploads are not one study")
        known = client.search_for_studies(search_filters={"StudyInstanceUID": up_study})
        expect(not known, f"upload study {up_study} is already on the server: use fresh UIDs")
        answer = client.store_instances(uploads)
        failed = answer.get("FailedSOPSequence", [])
        expect(not failed, f"{len(failed)} instances failed: "
                           f"{[(i.get('ReferencedSOPInstanceUID'), i.get('FailureReason')) for i in failed]}")
        stored = {i.ReferencedSOPInstanceUID for i in answer.get("ReferencedSOPSequence", [])}
        expect(stored == {ds.SOPInstanceUID for ds in uploads},
               f"ReferencedSOPSequence lists {len(stored)} of {len(uploads)} instances")
        return {"instances": len(uploads), "bytes": sum(p.stat().st_size for p in upload_paths)}

    report.run("stow_store", stow_store)

    def stow_qido():
        found = client.search_for_studies(search_filters={"StudyInstanceUID": up_study})
        expect(len(found) == 1, f"{len(found)} studies for the uploaded study")
        got_series = sorted(value(s, SERIES_UID) for s in client.search_for_series(up_study))
        expect(got_series == up_series, f"series {got_series}, uploaded {up_series}")
        paged = check_paging(lambda **kw: client.search_for_series(up_study, **kw), 1, SERIES_UID, up_series)
        keyword = study_include_field(uploads[0])
        if keyword:
            check_study_include_field(up_study, uploads[0], keyword)
        instances = client.search_for_instances(up_study)
        uids = {value(i, SOP_UID) for i in instances}
        expect(uids == {ds.SOPInstanceUID for ds in uploads}, f"{len(uids)} instances, {len(uploads)} uploaded")
        return {"series": len(got_series), "instances": len(instances), "series_paging": paged,
                "study_field": keyword}

    report.run("stow_qido", stow_qido, "stow_store")

    def stow_wado():
        total = 0
        for ds in uploads:
            got = client.retrieve_instance(up_study, ds.SeriesInstanceUID, ds.SOPInstanceUID, media_types=DICOM_ANY)
            want, have = dataset_bytes(ds), dataset_bytes(got)
            expect(want == have, f"{ds.SOPInstanceUID}: data set differs from the upload at byte "
                                 f"{first_difference(want, have)} ({len(have)} vs {len(want)} bytes)")
            total += len(have)
        return {"instances": len(uploads), "dataset_bytes": total}

    report.run("stow_wado", stow_wado, "stow_store")
    if tmp is not None:
        tmp.cleanup()
    return finish(report, a.url)


def finish(report, url):
    failed = report.failed()
    print(json.dumps({"ok": not failed, "url": url, "failed": failed,
                      "checks": report.checks, "notes": report.notes}))
    for name in failed:
        print(f"FAILED {name}: {report.checks[name].get('error')}", file=sys.stderr)
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make-upload", help="copies of a CT file with fresh UIDs, to STOW")
    p.add_argument("--ct-file", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--count", type=int, default=2)
    p = sub.add_parser("roundtrip", help="QIDO, WADO and STOW checks against a DICOMweb root")
    p.add_argument("--url", required=True, help="the DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    p.add_argument("--study", required=True)
    p.add_argument("--series", required=True)
    p.add_argument("--ct-dir", required=True, help="the files of the series, as sent to the server")
    p.add_argument("--upload", nargs="*", default=[], metavar="FILE",
                   help="DICOM files with UIDs new to the server to STOW (default: made from the CT)")
    p.add_argument("--allow-undecoded-query", action="store_true",
                   help="the server does not percent-decode query values (Orthanc 1.10 with DICOMweb 1.7): "
                        "retry PatientName matches with `*` and `^` unencoded and note it instead of failing")
    a = ap.parse_args()
    if a.cmd == "make-upload":
        cmd_make_upload(a)
        return 0
    return roundtrip(a)


if __name__ == "__main__":
    sys.exit(main())
