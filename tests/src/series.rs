//! Synthetic CT series written as real DICOM files (dicom-object), with the
//! attributes a scanner writes, for tests that need series with controlled
//! geometry or transfer syntax.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh UID under the UUID-derived root 2.25.
pub fn new_uid() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = (nanos << 24)
        ^ ((std::process::id() as u128) << 8)
        ^ COUNTER.fetch_add(1, Ordering::Relaxed) as u128;
    format!("2.25.{n}")
}

pub struct SyntheticSeries {
    pub study_uid: String,
    pub series_uid: String,
    pub files: Vec<PathBuf>,
}

/// How each synthetic slice differs from a clean axial CT slice.
#[derive(Clone, Copy, Default)]
pub struct Flaws {
    pub localizer: bool,
    pub coronal: bool,
}

/// Writes `slices` axial CT slices of `size`x`size` into `dir` in transfer
/// syntax `ts` (a native one: implicit or explicit VR little endian),
/// shuffled file names so that nothing can rely on file order.
pub fn write_ct_series(
    dir: &Path,
    slices: usize,
    size: u16,
    ts: &str,
    flaws: Flaws,
) -> SyntheticSeries {
    std::fs::create_dir_all(dir).unwrap();
    let study_uid = new_uid();
    let series_uid = new_uid();
    let for_uid = new_uid();
    let mut files = Vec::new();
    for i in 0..slices {
        let sop_uid = new_uid();
        let mut o = InMemDicomObject::new_empty();
        let mut put = |t: Tag, vr: VR, v: PrimitiveValue| o.put(DataElement::new(t, vr, v));
        put(
            tags::SOP_CLASS_UID,
            VR::UI,
            "1.2.840.10008.5.1.4.1.1.2".into(),
        );
        put(tags::SOP_INSTANCE_UID, VR::UI, sop_uid.as_str().into());
        put(tags::STUDY_INSTANCE_UID, VR::UI, study_uid.as_str().into());
        put(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            series_uid.as_str().into(),
        );
        put(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            for_uid.as_str().into(),
        );
        put(tags::MODALITY, VR::CS, "CT".into());
        let image_type = if flaws.localizer {
            "ORIGINAL\\PRIMARY\\LOCALIZER"
        } else {
            "ORIGINAL\\PRIMARY\\AXIAL"
        };
        put(tags::IMAGE_TYPE, VR::CS, image_type.into());
        put(tags::PATIENT_NAME, VR::PN, "Synthetic^Phantom".into());
        put(tags::PATIENT_ID, VR::LO, "SYN-0001".into());
        put(tags::INSTANCE_NUMBER, VR::IS, format!("{}", i + 1).into());
        put(tags::SERIES_NUMBER, VR::IS, "3".into());
        let z = -200.0 + 2.5 * i as f64;
        if flaws.coronal {
            put(
                tags::IMAGE_POSITION_PATIENT,
                VR::DS,
                format!("-100\\{z}\\100").into(),
            );
            put(
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                "1\\0\\0\\0\\0\\-1".into(),
            );
        } else {
            put(
                tags::IMAGE_POSITION_PATIENT,
                VR::DS,
                format!("-100\\-100\\{z}").into(),
            );
            put(
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                "1\\0\\0\\0\\1\\0".into(),
            );
        }
        put(tags::PIXEL_SPACING, VR::DS, "0.8\\0.8".into());
        put(tags::SLICE_THICKNESS, VR::DS, "2.5".into());
        put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1_u16));
        put(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            "MONOCHROME2".into(),
        );
        put(tags::ROWS, VR::US, PrimitiveValue::from(size));
        put(tags::COLUMNS, VR::US, PrimitiveValue::from(size));
        put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16_u16));
        put(tags::BITS_STORED, VR::US, PrimitiveValue::from(12_u16));
        put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(11_u16));
        put(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0_u16),
        );
        put(tags::RESCALE_INTERCEPT, VR::DS, "-1024".into());
        put(tags::RESCALE_SLOPE, VR::DS, "1".into());
        // A bright disc whose radius changes along z: every slice differs.
        let c = size as f64 / 2.0;
        let r = c * (0.3 + 0.4 * (i as f64 / slices.max(1) as f64));
        let pixels: Vec<u16> = (0..size as usize * size as usize)
            .map(|k| {
                let (y, x) = ((k / size as usize) as f64, (k % size as usize) as f64);
                if (x - c).hypot(y - c) < r { 1084 } else { 24 }
            })
            .collect();
        put(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into()));

        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.2")
            .media_storage_sop_instance_uid(sop_uid.as_str())
            .transfer_syntax(ts)
            .build()
            .unwrap();
        let path = dir.join(format!("slice_{:04}", (i * 7919) % 10_000));
        o.with_exact_meta(meta).write_to_file(&path).unwrap();
        files.push(path);
    }
    SyntheticSeries {
        study_uid,
        series_uid,
        files,
    }
}
