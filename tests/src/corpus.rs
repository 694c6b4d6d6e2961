//! The bad-input corpus (`tests/corpus/`): malformed PDUs, Part 10 files,
//! STOW-RS requests and segmentations, made deterministically (fixed UIDs,
//! a seeded generator) from valid objects written here, so that
//! `cargo run -p liverseg-tests --bin make_corpus` always writes the same
//! files and `tests/bad_input.rs` can check that the corpus on disk is
//! what this code makes.
//!
//! Each input is named after what was done to it (`rq-pdu-length-ffffffff`,
//! `meta-ts-big-endian`, ...), prefixed with its index in its category.

use crate::bad_input::base;
use dicom_core::value::{DataSetSequence, PixelFragmentSequence};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use liverseg_dicom::{dimse, sop};

/// The seed of every random choice (bit flips, cut points, garbage).
pub const SEED: u64 = 0x11BE_25E6_C0E9_0001;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Pdu,
    Dataset,
    Multipart,
    Seg,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Pdu,
        Category::Dataset,
        Category::Multipart,
        Category::Seg,
    ];

    /// Folder under `tests/corpus/` (and fuzz target name).
    pub fn dir(self) -> &'static str {
        match self {
            Category::Pdu => "pdu",
            Category::Dataset => "dataset",
            Category::Multipart => "multipart",
            Category::Seg => "seg",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Category::Pdu => "pdu",
            Category::Dataset | Category::Seg => "dcm",
            Category::Multipart => "http",
        }
    }
}

/// One corpus file.
#[derive(Debug, Clone)]
pub struct Input {
    pub category: Category,
    /// File name: `NNN-label.ext`.
    pub name: String,
    pub bytes: Vec<u8>,
}

/// `splitmix64`: small, fast and the same everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Every corpus input, in a fixed order.
pub fn generate() -> Vec<Input> {
    let mut rng = Rng::new(SEED);
    let mut out = Vec::new();
    for (category, items) in [
        (Category::Pdu, pdu::inputs(&mut rng)),
        (Category::Dataset, dataset::inputs(&mut rng)),
        (Category::Multipart, multipart::inputs(&mut rng)),
        (Category::Seg, segs::inputs(&mut rng)),
    ] {
        for (i, (label, bytes)) in items.into_iter().enumerate() {
            out.push(Input {
                category,
                name: format!("{i:03}-{label}.{}", category.extension()),
                bytes,
            });
        }
    }
    out
}

// ------------------------------------------------------ valid objects

fn put(o: &mut InMemDicomObject, tag: Tag, vr: VR, v: impl Into<PrimitiveValue>) {
    o.put(DataElement::new(tag, vr, v.into()));
}

fn put_seq(o: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    o.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

fn item(elements: impl FnOnce(&mut InMemDicomObject)) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    elements(&mut o);
    o
}

fn ds(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v}"))
        .collect::<Vec<_>>()
        .join("\\")
}

/// An axial CT slice of `base::SIZE` squared pixels at slice `i` of
/// `base::slices()`'s geometry.
pub fn ct_slice(study: &str, series: &str, sop_uid: &str, i: usize) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    put(&mut o, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100");
    put(&mut o, tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL");
    put(&mut o, tags::SOP_CLASS_UID, VR::UI, sop::CT_IMAGE_STORAGE);
    put(&mut o, tags::SOP_INSTANCE_UID, VR::UI, sop_uid);
    put(&mut o, tags::STUDY_DATE, VR::DA, "20240101");
    put(&mut o, tags::MODALITY, VR::CS, "CT");
    put(&mut o, tags::PATIENT_NAME, VR::PN, "Corpus^Phantom");
    put(&mut o, tags::PATIENT_ID, VR::LO, "CORPUS-1");
    put(
        &mut o,
        tags::SLICE_THICKNESS,
        VR::DS,
        ds(&[base::SLICE_THICKNESS]),
    );
    put(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, study);
    put(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, series);
    put(&mut o, tags::SERIES_NUMBER, VR::IS, "3");
    put(&mut o, tags::INSTANCE_NUMBER, VR::IS, format!("{}", i + 1));
    put(
        &mut o,
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        ds(&base::position(i)),
    );
    put(
        &mut o,
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        ds(&base::ORIENTATION),
    );
    put(
        &mut o,
        tags::FRAME_OF_REFERENCE_UID,
        VR::UI,
        base::FRAME_OF_REFERENCE,
    );
    put(&mut o, tags::SAMPLES_PER_PIXEL, VR::US, 1_u16);
    put(
        &mut o,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    );
    put(&mut o, tags::ROWS, VR::US, base::SIZE as u16);
    put(&mut o, tags::COLUMNS, VR::US, base::SIZE as u16);
    put(
        &mut o,
        tags::PIXEL_SPACING,
        VR::DS,
        ds(&[base::PIXEL_SPACING, base::PIXEL_SPACING]),
    );
    put(&mut o, tags::BITS_ALLOCATED, VR::US, 16_u16);
    put(&mut o, tags::BITS_STORED, VR::US, 12_u16);
    put(&mut o, tags::HIGH_BIT, VR::US, 11_u16);
    put(&mut o, tags::PIXEL_REPRESENTATION, VR::US, 0_u16);
    put(&mut o, tags::RESCALE_INTERCEPT, VR::DS, "-1024");
    put(&mut o, tags::RESCALE_SLOPE, VR::DS, "1");
    let n = base::SIZE * base::SIZE;
    let pixels: Vec<u16> = (0..n).map(|k| if k % 5 < 3 { 1084 } else { 24 }).collect();
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(pixels.into()),
    ));
    o
}

/// `obj` as a Part 10 file in transfer syntax `ts`, with a fixed
/// implementation identity (so the bytes never depend on library versions).
pub fn part10(obj: InMemDicomObject, ts: &str) -> Vec<u8> {
    let class = liverseg_dicom::instance::text(&obj, tags::SOP_CLASS_UID).unwrap_or_default();
    let uid = liverseg_dicom::instance::text(&obj, tags::SOP_INSTANCE_UID).unwrap_or_default();
    let meta = FileMetaTableBuilder::new()
        .information_version([0, 1])
        .media_storage_sop_class_uid(class)
        .media_storage_sop_instance_uid(uid)
        .transfer_syntax(ts)
        .implementation_class_uid("2.25.7999")
        .implementation_version_name("LIVERSEG_CORPUS")
        .build()
        .expect("file meta of a generated object");
    let mut out = Vec::new();
    obj.with_exact_meta(meta)
        .write_all(&mut out)
        .expect("writing a generated object");
    out
}

/// The CT series of [`base`] as Part 10 files (explicit VR little endian),
/// the series every generated SEG refers to.
pub fn base_series_files() -> Vec<Vec<u8>> {
    (0..base::SLICES)
        .map(|i| {
            part10(
                ct_slice(base::STUDY, base::SERIES, &base::slice_uid(i), i),
                sop::EXPLICIT_VR_LE,
            )
        })
        .collect()
}

/// Slices of the base series that the valid SEG covers.
const SEG_SLICES: [usize; 3] = [2, 3, 4];

/// A valid BINARY SEG of the liver (a square on three slices) on the base
/// series, written as a viewer would; `seg` replays refuse nothing here.
pub fn base_seg() -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    put(&mut o, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100");
    put(&mut o, tags::IMAGE_TYPE, VR::CS, "DERIVED\\PRIMARY");
    put(
        &mut o,
        tags::SOP_CLASS_UID,
        VR::UI,
        sop::SEGMENTATION_STORAGE,
    );
    put(&mut o, tags::SOP_INSTANCE_UID, VR::UI, base::SEG_INSTANCE);
    put(&mut o, tags::MODALITY, VR::CS, "SEG");
    put(&mut o, tags::MANUFACTURER, VR::LO, "liverseg corpus");
    put_seq(
        &mut o,
        tags::REFERENCED_SERIES_SEQUENCE,
        vec![item(|i| {
            put_seq(
                i,
                tags::REFERENCED_INSTANCE_SEQUENCE,
                SEG_SLICES
                    .iter()
                    .map(|&s| {
                        item(|r| {
                            put(
                                r,
                                tags::REFERENCED_SOP_CLASS_UID,
                                VR::UI,
                                sop::CT_IMAGE_STORAGE,
                            );
                            put(
                                r,
                                tags::REFERENCED_SOP_INSTANCE_UID,
                                VR::UI,
                                base::slice_uid(s),
                            );
                        })
                    })
                    .collect(),
            );
            put(i, tags::SERIES_INSTANCE_UID, VR::UI, base::SERIES);
        })],
    );
    put(&mut o, tags::PATIENT_NAME, VR::PN, "Corpus^Phantom");
    put(&mut o, tags::PATIENT_ID, VR::LO, "CORPUS-1");
    put(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, base::STUDY);
    put(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, base::SEG_SERIES);
    put(&mut o, tags::SERIES_NUMBER, VR::IS, "300");
    put(&mut o, tags::INSTANCE_NUMBER, VR::IS, "1");
    put(
        &mut o,
        tags::FRAME_OF_REFERENCE_UID,
        VR::UI,
        base::FRAME_OF_REFERENCE,
    );
    put(&mut o, tags::SAMPLES_PER_PIXEL, VR::US, 1_u16);
    put(
        &mut o,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    );
    put(
        &mut o,
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        format!("{}", SEG_SLICES.len()),
    );
    put(&mut o, tags::ROWS, VR::US, base::SIZE as u16);
    put(&mut o, tags::COLUMNS, VR::US, base::SIZE as u16);
    put(&mut o, tags::BITS_ALLOCATED, VR::US, 1_u16);
    put(&mut o, tags::BITS_STORED, VR::US, 1_u16);
    put(&mut o, tags::HIGH_BIT, VR::US, 0_u16);
    put(&mut o, tags::PIXEL_REPRESENTATION, VR::US, 0_u16);
    put(&mut o, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
    put(&mut o, tags::SEGMENTATION_TYPE, VR::CS, "BINARY");
    put_seq(
        &mut o,
        tags::SEGMENT_SEQUENCE,
        vec![item(|s| {
            put_seq(
                s,
                tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE,
                vec![code("123037004", "SCT", "Anatomical Structure")],
            );
            put(s, tags::SEGMENT_NUMBER, VR::US, 1_u16);
            put(s, tags::SEGMENT_LABEL, VR::LO, "Liver");
            put(s, tags::SEGMENT_ALGORITHM_TYPE, VR::CS, "MANUAL");
            put_seq(
                s,
                tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE,
                vec![code("10200004", "SCT", "Liver")],
            );
        })],
    );
    put_seq(
        &mut o,
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        vec![item(|g| {
            put_seq(
                g,
                tags::PIXEL_MEASURES_SEQUENCE,
                vec![item(|m| {
                    put(
                        m,
                        tags::SLICE_THICKNESS,
                        VR::DS,
                        ds(&[base::SLICE_THICKNESS]),
                    );
                    put(
                        m,
                        tags::PIXEL_SPACING,
                        VR::DS,
                        ds(&[base::PIXEL_SPACING, base::PIXEL_SPACING]),
                    );
                })],
            );
            put_seq(
                g,
                tags::PLANE_ORIENTATION_SEQUENCE,
                vec![item(|p| {
                    put(
                        p,
                        tags::IMAGE_ORIENTATION_PATIENT,
                        VR::DS,
                        ds(&base::ORIENTATION),
                    );
                })],
            );
        })],
    );
    put_seq(
        &mut o,
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        SEG_SLICES.iter().map(|&s| frame_group(s, 1)).collect(),
    );
    let plane = base::SIZE * base::SIZE;
    let mut bits = vec![0u8; (SEG_SLICES.len() * plane).div_ceil(8)];
    for k in 0..SEG_SLICES.len() {
        for r in 4..12 {
            for c in 4..12 {
                let bit = k * plane + r * base::SIZE + c;
                bits[bit / 8] |= 1 << (bit % 8);
            }
        }
    }
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(bits),
    ));
    o
}

fn code(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    item(|c| {
        put(c, tags::CODE_VALUE, VR::SH, value);
        put(c, tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme);
        put(c, tags::CODE_MEANING, VR::LO, meaning);
    })
}

/// The per-frame functional group of a frame on slice `s` of segment
/// `segment`.
fn frame_group(s: usize, segment: u16) -> InMemDicomObject {
    item(|g| {
        put_seq(
            g,
            tags::DERIVATION_IMAGE_SEQUENCE,
            vec![item(|d| {
                put_seq(
                    d,
                    tags::SOURCE_IMAGE_SEQUENCE,
                    vec![item(|r| {
                        put(
                            r,
                            tags::REFERENCED_SOP_CLASS_UID,
                            VR::UI,
                            sop::CT_IMAGE_STORAGE,
                        );
                        put(
                            r,
                            tags::REFERENCED_SOP_INSTANCE_UID,
                            VR::UI,
                            base::slice_uid(s),
                        );
                    })],
                );
            })],
        );
        put_seq(
            g,
            tags::FRAME_CONTENT_SEQUENCE,
            vec![item(|f| {
                put(
                    f,
                    tags::DIMENSION_INDEX_VALUES,
                    VR::UL,
                    PrimitiveValue::U32([1_u32, s as u32 + 1].as_slice().into()),
                );
            })],
        );
        put_seq(
            g,
            tags::PLANE_POSITION_SEQUENCE,
            vec![item(|p| {
                put(
                    p,
                    tags::IMAGE_POSITION_PATIENT,
                    VR::DS,
                    ds(&base::position(s)),
                );
            })],
        );
        put_seq(
            g,
            tags::SEGMENT_IDENTIFICATION_SEQUENCE,
            vec![item(|i| {
                put(i, tags::REFERENCED_SEGMENT_NUMBER, VR::US, segment)
            })],
        );
    })
}

/// The valid base SEG as a Part 10 file.
pub fn base_seg_file() -> Vec<u8> {
    part10(base_seg(), sop::EXPLICIT_VR_LE)
}

// --------------------------------------------------- byte-level tools

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn set16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn set32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// One element (or item, or delimiter) of a generated encoding.
#[derive(Debug, Clone)]
struct El {
    group: u16,
    element: u16,
    /// Offset of the tag.
    at: usize,
    /// Bytes of tag, VR and length.
    header: usize,
    /// Offset and size of the length field.
    len_at: usize,
    len_size: usize,
    len: u32,
    depth: usize,
}

impl El {
    fn is(&self, tag: Tag) -> bool {
        (self.group, self.element) == (tag.group(), tag.element())
    }

    fn value_at(&self) -> usize {
        self.at + self.header
    }

    fn end(&self) -> usize {
        self.value_at() + self.len as usize
    }
}

/// The elements of a little-endian encoding we wrote ourselves, depth
/// first (items and delimiters included).
fn walk(
    b: &[u8],
    start: usize,
    end: usize,
    explicit: bool,
    depth: usize,
    out: &mut Vec<El>,
) -> usize {
    let mut pos = start;
    while pos + 8 <= end {
        let (group, element) = (le16(b, pos), le16(b, pos + 2));
        if group == 0xFFFE {
            let len = le32(b, pos + 4);
            out.push(El {
                group,
                element,
                at: pos,
                header: 8,
                len_at: pos + 4,
                len_size: 4,
                len,
                depth,
            });
            if element != 0xE000 {
                return pos + 8;
            }
            pos = if len == u32::MAX {
                walk(b, pos + 8, end, explicit, depth + 1, out)
            } else {
                walk(b, pos + 8, pos + 8 + len as usize, explicit, depth + 1, out);
                pos + 8 + len as usize
            };
            continue;
        }
        let (header, len_at, len_size, is_sq) = if explicit && group != 0xFFFE {
            let vr = &b[pos + 4..pos + 6];
            if liverseg_dicom::structure::has_long_length(vr) {
                (12, pos + 8, 4, vr == b"SQ")
            } else {
                (8, pos + 6, 2, false)
            }
        } else {
            (8, pos + 4, 4, false)
        };
        let len = if len_size == 2 {
            u32::from(le16(b, len_at))
        } else {
            le32(b, len_at)
        };
        out.push(El {
            group,
            element,
            at: pos,
            header,
            len_at,
            len_size,
            len,
            depth,
        });
        pos += header;
        if len == u32::MAX {
            pos = walk(b, pos, end, explicit, depth + 1, out);
        } else {
            if is_sq {
                walk(b, pos, pos + len as usize, explicit, depth + 1, out);
            }
            pos += len as usize;
        }
    }
    pos
}

/// The elements of a Part 10 file we wrote (meta and data set explicit
/// unless `explicit_body` is false).
fn elements(file: &[u8], explicit_body: bool) -> Vec<El> {
    let mut out = Vec::new();
    let body = liverseg_dicom::instance::data_set_offset(file).expect("a generated Part 10 file");
    walk(file, 132, body, true, 0, &mut out);
    walk(file, body, file.len(), explicit_body, 0, &mut out);
    out
}

fn find(els: &[El], tag: Tag) -> &El {
    els.iter()
        .find(|e| e.is(tag) && e.depth == 0)
        .unwrap_or_else(|| panic!("generated object lacks {tag}"))
}

fn set_len(b: &mut [u8], e: &El, len: u32) {
    if e.len_size == 2 {
        set16(b, e.len_at, len as u16);
    } else {
        set32(b, e.len_at, len);
    }
}

fn splice(b: &[u8], at: usize, remove: usize, insert: &[u8]) -> Vec<u8> {
    let mut out = b[..at].to_vec();
    out.extend_from_slice(insert);
    out.extend_from_slice(&b[at + remove..]);
    out
}

fn flip(b: &[u8], rng: &mut Rng, positions: &[usize], flips: usize) -> Vec<u8> {
    let mut out = b.to_vec();
    for _ in 0..flips {
        let at = positions[rng.below(positions.len())];
        out[at] ^= 1 << rng.below(8);
    }
    out
}

/// Explicit VR little endian element bytes.
fn ex(group: u16, element: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(vr);
    if liverseg_dicom::structure::has_long_length(vr) {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
    out
}

/// Explicit element header with an arbitrary 4-byte length (long VRs).
fn ex_header(group: u16, element: u16, vr: &[u8; 2], len: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(vr);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&len.to_le_bytes());
    out
}

/// Item, item delimiter and sequence delimiter headers.
fn tag_len(group: u16, element: u16, len: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out
}

const UNDEFINED: u32 = u32::MAX;

fn item_start(len: u32) -> Vec<u8> {
    tag_len(0xFFFE, 0xE000, len)
}

fn item_end() -> Vec<u8> {
    tag_len(0xFFFE, 0xE00D, 0)
}

fn seq_end() -> Vec<u8> {
    tag_len(0xFFFE, 0xE0DD, 0)
}

/// `depth` nested undefined-length sequences in a private tag, explicit
/// VR; `closed` adds every delimiter.
fn deep_sequence(depth: usize, closed: bool) -> Vec<u8> {
    let mut out = ex(0x0009, 0x0010, b"LO", b"LIVERSEG");
    for _ in 0..depth {
        out.extend(ex_header(0x0009, 0x1001, b"SQ", UNDEFINED));
        out.extend(item_start(UNDEFINED));
    }
    if closed {
        for _ in 0..depth {
            out.extend(item_end());
            out.extend(seq_end());
        }
    }
    out
}

/// Offsets where a flipped bit breaks structure rather than renaming an
/// attribute or changing a patient's name: the VR and length of every
/// element, whole item and delimiter headers, the tags of the identifying
/// UIDs and the values of the SOP Class and Transfer Syntax UIDs.
fn structural_positions(els: &[El]) -> Vec<usize> {
    let identifying = [
        tags::SOP_CLASS_UID,
        tags::SOP_INSTANCE_UID,
        tags::STUDY_INSTANCE_UID,
        tags::SERIES_INSTANCE_UID,
        tags::TRANSFER_SYNTAX_UID,
        tags::PIXEL_DATA,
    ];
    let mut out = Vec::new();
    for e in els {
        if e.group == 0xFFFE || identifying.iter().any(|&t| e.is(t)) {
            out.extend(e.at..e.at + e.header);
        } else {
            out.extend(e.at + 4..e.at + e.header);
        }
        if e.is(tags::SOP_CLASS_UID) || e.is(tags::TRANSFER_SYNTAX_UID) {
            out.extend(e.value_at()..e.end());
        }
    }
    out
}

// ------------------------------------------------------------- PDUs

mod pdu {
    use super::*;

    const APP_CONTEXT: &str = "1.2.840.10008.3.1.1.1";
    const EXPLICIT: &str = sop::EXPLICIT_VR_LE;
    const IMPLICIT: &str = sop::IMPLICIT_VR_LE;
    const MR: &str = "1.2.840.10008.5.1.4.1.1.4";
    const CT_UID: &str = "2.25.7201";

    pub fn pdu(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![ty, 0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn it(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![ty, 0];
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn ae(title: &str) -> Vec<u8> {
        let mut t = title.as_bytes().to_vec();
        t.resize(16, b' ');
        t
    }

    fn app_context() -> Vec<u8> {
        it(0x10, APP_CONTEXT.as_bytes())
    }

    fn pc(id: u8, abstract_syntax: &str, ts: &[&str]) -> Vec<u8> {
        let mut body = vec![id, 0, 0, 0];
        body.extend(it(0x30, abstract_syntax.as_bytes()));
        for t in ts {
            body.extend(it(0x40, t.as_bytes()));
        }
        it(0x20, &body)
    }

    fn user_info(sub: &[Vec<u8>]) -> Vec<u8> {
        it(0x50, &sub.concat())
    }

    fn max_length(v: u32) -> Vec<u8> {
        it(0x51, &v.to_be_bytes())
    }

    fn implementation() -> Vec<Vec<u8>> {
        vec![it(0x52, b"2.25.7999"), it(0x55, b"CORPUS")]
    }

    fn default_user_info() -> Vec<u8> {
        let mut sub = vec![max_length(16384)];
        sub.extend(implementation());
        user_info(&sub)
    }

    fn contexts() -> Vec<Vec<u8>> {
        vec![
            pc(1, sop::VERIFICATION, &[IMPLICIT]),
            pc(3, sop::CT_IMAGE_STORAGE, &[EXPLICIT, IMPLICIT]),
            pc(5, sop::SEGMENTATION_STORAGE, &[EXPLICIT]),
        ]
    }

    /// An A-ASSOCIATE-RQ from the fixed header fields and `items`.
    fn rq_with(version: u16, called: &[u8], calling: &[u8], items: &[Vec<u8>]) -> Vec<u8> {
        let mut body = version.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(called);
        body.extend_from_slice(calling);
        body.extend_from_slice(&[0; 32]);
        body.extend(items.concat());
        pdu(0x01, &body)
    }

    fn rq_items(items: &[Vec<u8>]) -> Vec<u8> {
        rq_with(1, &ae("LIVERSEG"), &ae("CORPUS"), items)
    }

    fn standard_items() -> Vec<Vec<u8>> {
        let mut items = vec![app_context()];
        items.extend(contexts());
        items.push(default_user_info());
        items
    }

    /// The valid request every session starts with.
    pub fn rq() -> Vec<u8> {
        rq_items(&standard_items())
    }

    /// A P-DATA-TF of (context, message control header, data) PDVs.
    fn pdata(pdvs: &[(u8, u8, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (pc, control, data) in pdvs {
            body.extend_from_slice(&(data.len() as u32 + 2).to_be_bytes());
            body.push(*pc);
            body.push(*control);
            body.extend_from_slice(data);
        }
        pdu(0x04, &body)
    }

    const COMMAND_LAST: u8 = 0x03;
    const COMMAND_MORE: u8 = 0x01;
    const DATA_LAST: u8 = 0x02;
    const DATA_MORE: u8 = 0x00;

    fn release() -> Vec<u8> {
        pdu(0x05, &[0; 4])
    }

    fn echo() -> Vec<u8> {
        dimse::echo_request(1).expect("C-ECHO-RQ")
    }

    fn store(class: &str, uid: &str) -> Vec<u8> {
        dimse::store_request(7, class, uid).expect("C-STORE-RQ")
    }

    /// A C-STORE data set: the CT slice's data set in explicit VR.
    fn ct_data_set() -> Vec<u8> {
        let file = part10(
            ct_slice(base::OTHER_STUDY, base::OTHER_SERIES, CT_UID, 0),
            EXPLICIT,
        );
        file[liverseg_dicom::instance::data_set_offset(&file).unwrap()..].to_vec()
    }

    fn session(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut out = rq();
        for p in parts {
            out.extend_from_slice(p);
        }
        out
    }

    /// Implicit VR command bytes with a raw element appended.
    fn command_with(extra: &[u8]) -> Vec<u8> {
        let mut c = echo();
        c.extend_from_slice(extra);
        c
    }

    fn implicit_el(group: u16, element: u16, len: u32, value: &[u8]) -> Vec<u8> {
        let mut out = tag_len(group, element, len);
        out.extend_from_slice(value);
        out
    }

    /// A command whose last element nests `depth` undefined-length
    /// sequences (implicit VR), split over as many P-DATA-TF as needed.
    fn deep_command(depth: usize, closed: bool) -> Vec<u8> {
        let mut c = echo();
        for _ in 0..depth {
            c.extend(tag_len(0x0008, 0x1140, UNDEFINED));
            c.extend(item_start(UNDEFINED));
        }
        if closed {
            for _ in 0..depth {
                c.extend(item_end());
                c.extend(seq_end());
            }
        }
        fragments(1, COMMAND_MORE, COMMAND_LAST, &c)
    }

    /// `data` in P-DATA-TF PDUs of at most 16000 bytes each.
    fn fragments(pc: u8, more: u8, last: u8, data: &[u8]) -> Vec<u8> {
        let chunks: Vec<&[u8]> = data.chunks(16_000).collect();
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let control = if i + 1 == chunks.len() { last } else { more };
            out.extend(pdata(&[(pc, control, chunk)]));
        }
        out
    }

    pub fn inputs(rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = Vec::new();
        let mut add = |label: &str, bytes: Vec<u8>| v.push((label.to_string(), bytes));
        let rq = rq();

        // A-ASSOCIATE-RQ cut short.
        for cut in [1, 2, 5, 6, 7, 10, 20, 40, 60, 73, 74, 75, 76, 80, 100, 150] {
            add(&format!("rq-truncated-at-{cut}"), rq[..cut].to_vec());
        }
        add("rq-truncated-last-byte", rq[..rq.len() - 1].to_vec());
        // Its PDU length field.
        let true_len = (rq.len() - 6) as u32;
        for (label, len) in [
            ("0", 0),
            ("1", 1),
            ("67", 67),
            ("minus-1", true_len - 1),
            ("plus-1", true_len + 1),
            ("plus-1000", true_len + 1000),
            ("65536", 65536),
            ("65537", 65537),
            ("7fffffff", 0x7FFF_FFFF),
            ("ffffffff", u32::MAX),
        ] {
            let mut b = rq.clone();
            b[2..6].copy_from_slice(&len.to_be_bytes());
            add(&format!("rq-pdu-length-{label}"), b);
        }
        // Fixed fields.
        for version in [0u16, 2, 0xFFFF] {
            add(
                &format!("rq-protocol-version-{version}"),
                rq_with(version, &ae("LIVERSEG"), &ae("CORPUS"), &standard_items()),
            );
        }
        add(
            "rq-called-ae-blank",
            rq_with(1, &ae(""), &ae("CORPUS"), &standard_items()),
        );
        add(
            "rq-called-ae-other",
            rq_with(1, &ae("OTHER"), &ae("CORPUS"), &standard_items()),
        );
        add(
            "rq-called-ae-non-ascii",
            rq_with(1, &[0xFF; 16], &ae("CORPUS"), &standard_items()),
        );
        add(
            "rq-called-ae-nul",
            rq_with(1, &[0; 16], &ae("CORPUS"), &standard_items()),
        );
        add(
            "rq-calling-ae-invalid-utf8",
            rq_with(1, &ae("LIVERSEG"), &[0xC3; 16], &standard_items()),
        );

        // Application context item.
        let others = || {
            let mut items = contexts();
            items.push(default_user_info());
            items
        };
        let with_app = |app: Vec<u8>| {
            let mut items = vec![app];
            items.extend(others());
            rq_items(&items)
        };
        add("rq-app-context-missing", rq_items(&others()));
        let mut wrong_type = app_context();
        wrong_type[0] = 0x11;
        add("rq-app-context-item-type-11", with_app(wrong_type));
        let mut zero = app_context();
        zero[2..4].copy_from_slice(&0u16.to_be_bytes());
        add("rq-app-context-length-0", with_app(zero));
        let mut huge = app_context();
        huge[2..4].copy_from_slice(&0xFFFFu16.to_be_bytes());
        add("rq-app-context-length-ffff", with_app(huge));
        let mut over = app_context();
        over[2..4].copy_from_slice(&(APP_CONTEXT.len() as u16 + 1).to_be_bytes());
        add("rq-app-context-length-plus-1", with_app(over));
        add("rq-app-context-wrong-name", with_app(it(0x10, b"1.2.3")));
        add("rq-app-context-long-name", with_app(it(0x10, &[b'1'; 300])));
        let mut twice = vec![app_context(), app_context()];
        twice.extend(others());
        add("rq-app-context-twice", rq_items(&twice));

        // Presentation context items.
        let with_pcs = |pcs: Vec<Vec<u8>>| {
            let mut items = vec![app_context()];
            items.extend(pcs);
            items.push(default_user_info());
            rq_items(&items)
        };
        add("rq-no-presentation-context", with_pcs(vec![]));
        for (label, len) in [("0", 0u16), ("3", 3), ("ffff", 0xFFFF)] {
            let mut p = pc(1, sop::VERIFICATION, &[IMPLICIT]);
            p[2..4].copy_from_slice(&len.to_be_bytes());
            add(&format!("rq-pc-length-{label}"), with_pcs(vec![p]));
        }
        for id in [0u8, 2, 255] {
            add(
                &format!("rq-pc-id-{id}"),
                with_pcs(vec![pc(id, sop::VERIFICATION, &[IMPLICIT])]),
            );
        }
        let mut p = pc(1, sop::VERIFICATION, &[IMPLICIT]);
        p[8] = 0x31;
        add("rq-pc-abstract-item-type-31", with_pcs(vec![p]));
        let mut p = pc(1, sop::VERIFICATION, &[IMPLICIT]);
        p[10..12].copy_from_slice(&0u16.to_be_bytes());
        add("rq-pc-abstract-length-0", with_pcs(vec![p]));
        let mut p = pc(1, sop::VERIFICATION, &[IMPLICIT]);
        p[10..12].copy_from_slice(&0x7FFFu16.to_be_bytes());
        add("rq-pc-abstract-length-7fff", with_pcs(vec![p]));
        add(
            "rq-pc-no-transfer-syntax",
            with_pcs(vec![pc(1, sop::VERIFICATION, &[])]),
        );
        let mut p = pc(1, sop::VERIFICATION, &[IMPLICIT]);
        let ts_len_at = 4 + 4 + 4 + sop::VERIFICATION.len() + 2;
        p[ts_len_at..ts_len_at + 2].copy_from_slice(&200u16.to_be_bytes());
        add("rq-pc-ts-length-past-item", with_pcs(vec![p]));
        add(
            "rq-pc-128-contexts",
            with_pcs(
                (0..128u8)
                    .map(|i| pc(2 * i + 1, sop::CT_IMAGE_STORAGE, &[EXPLICIT]))
                    .collect(),
            ),
        );
        add(
            "rq-pc-duplicate-id",
            with_pcs(vec![
                pc(1, sop::VERIFICATION, &[IMPLICIT]),
                pc(1, sop::CT_IMAGE_STORAGE, &[EXPLICIT]),
            ]),
        );
        add("rq-pc-only-mr", with_pcs(vec![pc(1, MR, &[EXPLICIT])]));
        add(
            "rq-pc-only-unknown-ts",
            with_pcs(vec![pc(1, sop::CT_IMAGE_STORAGE, &["1.2.3.4.5.6"])]),
        );
        let mut body = vec![1, 0, 0, 0];
        body.extend(it(0x30, sop::VERIFICATION.as_bytes()));
        body.extend(it(0x50, &max_length(0)));
        add("rq-pc-user-info-inside", with_pcs(vec![it(0x20, &body)]));
        add(
            "rq-pc-abstract-not-uid",
            with_pcs(vec![pc(1, "\u{7f}\u{1b}[2J<script>", &[IMPLICIT])]),
        );
        add(
            "rq-pc-ts-500-syntaxes",
            with_pcs(vec![pc(
                1,
                sop::VERIFICATION,
                &vec!["1.2.840.10008.1.2.4.9999"; 500],
            )]),
        );

        // User information item.
        let with_user = |user: Option<Vec<u8>>| {
            let mut items = vec![app_context()];
            items.extend(contexts());
            items.extend(user);
            rq_items(&items)
        };
        add("rq-user-info-missing", with_user(None));
        add("rq-user-info-empty", with_user(Some(user_info(&[]))));
        for (label, body) in [
            ("0", vec![]),
            ("2", vec![0, 1]),
            ("8", vec![0, 0, 0x40, 0, 0, 0, 0, 0]),
        ] {
            let mut sub = vec![it(0x51, &body)];
            sub.extend(implementation());
            add(
                &format!("rq-max-length-item-length-{label}"),
                with_user(Some(user_info(&sub))),
            );
        }
        for v in [0u32, 1, u32::MAX] {
            let mut sub = vec![max_length(v)];
            sub.extend(implementation());
            add(
                &format!("rq-max-length-value-{v:x}"),
                with_user(Some(user_info(&sub))),
            );
        }
        let mut sub = vec![max_length(16384)];
        let mut class = it(0x52, b"2.25.7999");
        class[2..4].copy_from_slice(&0x4000u16.to_be_bytes());
        sub.push(class);
        add(
            "rq-impl-class-length-past-item",
            with_user(Some(user_info(&sub))),
        );
        let mut sub = vec![max_length(16384)];
        sub.push(it(0x5F, b"??"));
        add("rq-user-sub-item-type-5f", with_user(Some(user_info(&sub))));
        // User identity (0x58): type 2, primary field length past the item.
        let mut identity = vec![2, 1];
        identity.extend_from_slice(&0xFFF0u16.to_be_bytes());
        identity.extend_from_slice(b"user");
        add(
            "rq-user-identity-length-past-item",
            with_user(Some(user_info(&[max_length(16384), it(0x58, &identity)]))),
        );
        add(
            "rq-user-identity-empty",
            with_user(Some(user_info(&[max_length(16384), it(0x58, &[])]))),
        );
        // SOP class extended negotiation (0x56) and role selection (0x54)
        // shorter than the UID length they announce.
        let mut ext = 40u16.to_be_bytes().to_vec();
        ext.extend_from_slice(b"1.2");
        add(
            "rq-extended-negotiation-short",
            with_user(Some(user_info(&[max_length(16384), it(0x56, &ext)]))),
        );
        add(
            "rq-role-selection-short",
            with_user(Some(user_info(&[
                max_length(16384),
                it(0x54, &[0, 30, b'1']),
            ]))),
        );
        add(
            "rq-async-window-empty",
            with_user(Some(user_info(&[max_length(16384), it(0x53, &[])]))),
        );
        add(
            "rq-user-info-twice",
            with_user(Some([default_user_info(), default_user_info()].concat())),
        );
        // Item types that do not belong in a request.
        for ty in [0x00u8, 0x21, 0xFF] {
            let mut items = standard_items();
            items.insert(1, it(ty, b"junk"));
            add(&format!("rq-item-type-{ty:02x}"), rq_items(&items));
        }
        let mut items = standard_items();
        items.push(vec![0x20]);
        add("rq-trailing-partial-item", rq_items(&items));

        // Bit flips and overwritten bytes anywhere in the request.
        let positions: Vec<usize> = (0..rq.len()).collect();
        for i in 0..25 {
            let flips = 1 + i % 3;
            add(
                &format!("rq-bitflip-{i:02}"),
                flip(&rq, rng, &positions, flips),
            );
        }
        for i in 0..10 {
            let mut b = rq.clone();
            let at = rng.below(b.len() - 4);
            b[at..at + 4].copy_from_slice(&[0xFF; 4]);
            add(&format!("rq-overwrite-ffffffff-{i:02}"), b);
        }

        // Something else than a request first.
        for ty in [0x00u8, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0xFF] {
            add(&format!("first-pdu-type-{ty:02x}"), pdu(ty, &[0, 0, 0, 0]));
        }
        add(
            "first-pdata-with-echo",
            pdata(&[(1, COMMAND_LAST, &echo())]),
        );
        add(
            "garbage-http-get",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        );
        let mut hello = vec![
            0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03,
        ];
        hello.extend(rng.bytes(64));
        add("garbage-tls-client-hello", hello);
        add("garbage-one-byte", vec![0x01]);
        add("garbage-five-bytes", vec![0x01, 0x00, 0x00, 0x00, 0x00]);
        add(
            "garbage-header-only",
            vec![0x01, 0x00, 0x00, 0x00, 0x00, 0x64],
        );
        add("garbage-random-64", rng.bytes(64));
        add("garbage-random-4096", rng.bytes(4096));
        add("garbage-zeros-1000", vec![0; 1000]);

        // After a valid request: P-DATA-TF with wrong PDV lengths.
        let e = echo();
        let good = pdata(&[(1, COMMAND_LAST, &e)]);
        for (label, len) in [
            ("0", 0u32),
            ("1", 1),
            ("2", 2),
            ("plus-3", e.len() as u32 + 5),
            ("ffffffff", u32::MAX),
            ("minus-4", e.len() as u32 - 2),
        ] {
            let mut b = good.clone();
            b[6..10].copy_from_slice(&len.to_be_bytes());
            add(
                &format!("pdata-pdv-length-{label}"),
                session(&[b, release()]),
            );
        }
        let mut longer = good.clone();
        longer.extend_from_slice(&[0xAB; 7]);
        let len = (longer.len() - 6) as u32;
        longer[2..6].copy_from_slice(&len.to_be_bytes());
        add("pdata-trailing-bytes-in-pdu", session(&[longer, release()]));
        let mut shorter = good.clone();
        let len = (shorter.len() - 6 - 5) as u32;
        shorter[2..6].copy_from_slice(&len.to_be_bytes());
        add("pdata-pdu-shorter-than-pdv", session(&[shorter, release()]));
        add("pdata-no-pdv", session(&[pdu(0x04, &[]), release()]));
        for pc in [0u8, 2, 7, 255] {
            add(
                &format!("pdata-context-{pc}"),
                session(&[pdata(&[(pc, COMMAND_LAST, &e)]), release()]),
            );
        }
        for (label, control) in [("reserved-bits", 0x07u8), ("ff", 0xFF)] {
            add(
                &format!("pdata-control-{label}"),
                session(&[pdata(&[(1, control, &e)]), release()]),
            );
        }
        add(
            "pdata-data-before-command",
            session(&[pdata(&[(3, DATA_LAST, &ct_data_set())]), release()]),
        );
        add(
            "pdata-command-then-data-before-last",
            session(&[
                pdata(&[(1, COMMAND_MORE, &e[..10]), (1, DATA_LAST, b"xx")]),
                release(),
            ]),
        );
        // Command sets that do not parse or ask for what is not served.
        for (label, command) in [
            ("garbage", vec![0xFF; 10]),
            ("empty", vec![]),
            ("truncated", e[..e.len() / 2].to_vec()),
            ("one-byte", vec![0]),
            (
                "undefined-length-element",
                command_with(&implicit_el(0x0000, 0x0902, UNDEFINED, b"abcd")),
            ),
            (
                "length-7ffffff0",
                command_with(&implicit_el(0x0000, 0x0902, 0x7FFF_FFF0, b"abcd")),
            ),
            (
                "length-10000000",
                command_with(&implicit_el(0x0000, 0x0902, 0x1000_0000, b"abcd")),
            ),
            // Found by the `pdu` fuzz target: ten bytes, 4 GiB reserved.
            (
                "10-bytes-length-fffffbff",
                vec![0xEC, 0xFF, 0xFF, 0xFF, 0xFF, 0xFB, 0xFF, 0xFF, 0x00, 0x00],
            ),
            (
                "length-past-end",
                command_with(&implicit_el(0x0000, 0x0902, 64, b"abcd")),
            ),
            (
                "odd-length",
                command_with(&implicit_el(0x0000, 0x0902, 3, b"abc")),
            ),
            ("no-command-field", {
                let mut c = Vec::new();
                c.extend(implicit_el(0x0000, 0x0110, 2, &[1, 0]));
                c.extend(implicit_el(0x0000, 0x0800, 2, &[0x01, 0x01]));
                c
            }),
            ("command-field-c-find", {
                let mut c = implicit_el(0x0000, 0x0100, 2, &0x0020u16.to_le_bytes());
                c.extend(implicit_el(0x0000, 0x0110, 2, &[1, 0]));
                c
            }),
            ("command-field-ffff", {
                let mut c = implicit_el(0x0000, 0x0100, 2, &[0xFF, 0xFF]);
                c.extend(implicit_el(0x0000, 0x0110, 2, &[1, 0]));
                c
            }),
            ("command-field-3-bytes", {
                let mut c = implicit_el(0x0000, 0x0100, 3, &[0x30, 0, 0]);
                c.extend(implicit_el(0x0000, 0x0110, 2, &[1, 0]));
                c
            }),
            ("store-without-data-set", {
                let class = format!("{}\0", sop::CT_IMAGE_STORAGE);
                let mut c = implicit_el(0x0000, 0x0002, class.len() as u32, class.as_bytes());
                c.extend(implicit_el(0x0000, 0x0100, 2, &[0x01, 0x00]));
                c.extend(implicit_el(0x0000, 0x0110, 2, &[7, 0]));
                c.extend(implicit_el(0x0000, 0x0700, 2, &[0, 0]));
                c.extend(implicit_el(0x0000, 0x0800, 2, &[0x01, 0x01]));
                c.extend(implicit_el(0x0000, 0x1000, 10, b"2.25.7201\0"));
                c
            }),
        ] {
            add(
                &format!("command-{label}"),
                session(&[pdata(&[(1, COMMAND_LAST, &command)]), release()]),
            );
        }
        for (depth, closed) in [
            (1000, false),
            (10_000, false),
            (30_000, false),
            (2000, true),
        ] {
            add(
                &format!(
                    "command-nested-{depth}-{}",
                    if closed { "closed" } else { "open" }
                ),
                session(&[deep_command(depth, closed), release()]),
            );
        }
        // C-STORE with a data set that is not one.
        let s = store(sop::CT_IMAGE_STORAGE, CT_UID);
        let data = ct_data_set();
        let store_then = |parts: &[Vec<u8>]| {
            let mut all = vec![pdata(&[(3, COMMAND_LAST, &s)])];
            all.extend_from_slice(parts);
            session(&all)
        };
        add(
            "store-garbage-data-set",
            store_then(&[pdata(&[(3, DATA_LAST, &[0xFF; 100])]), release()]),
        );
        add(
            "store-truncated-data-set",
            store_then(&[pdata(&[(3, DATA_LAST, &data[..data.len() / 3])]), release()]),
        );
        add(
            "store-data-set-then-abort",
            store_then(&[pdata(&[(3, DATA_MORE, &data[..200])]), pdu(0x07, &[0; 4])]),
        );
        add(
            "store-release-mid-data-set",
            store_then(&[pdata(&[(3, DATA_MORE, &data[..200])]), release()]),
        );
        add(
            "store-command-mid-data-set",
            store_then(&[
                pdata(&[(3, DATA_MORE, &data[..200])]),
                pdata(&[(1, COMMAND_LAST, &e)]),
                release(),
            ]),
        );
        add(
            "store-data-on-other-context",
            store_then(&[
                pdata(&[(3, DATA_MORE, &data[..200])]),
                pdata(&[(5, DATA_LAST, &data[200..])]),
                release(),
            ]),
        );
        add(
            "store-data-set-uid-differs",
            session(&[
                pdata(&[(3, COMMAND_LAST, &store(sop::CT_IMAGE_STORAGE, "2.25.7209"))]),
                pdata(&[(3, DATA_LAST, &data)]),
                release(),
            ]),
        );
        add(
            "store-seg-class-on-ct-context",
            session(&[
                pdata(&[(3, COMMAND_LAST, &store(sop::SEGMENTATION_STORAGE, CT_UID))]),
                pdata(&[(3, DATA_LAST, &data)]),
                release(),
            ]),
        );
        add(
            "store-uid-path-traversal",
            session(&[
                pdata(&[(3, COMMAND_LAST, &store(sop::CT_IMAGE_STORAGE, "../../x"))]),
                pdata(&[(3, DATA_LAST, &data[..100])]),
                release(),
            ]),
        );
        add(
            "store-mr-class",
            session(&[
                pdata(&[(3, COMMAND_LAST, &store(MR, CT_UID))]),
                pdata(&[(3, DATA_LAST, &data[..100])]),
                release(),
            ]),
        );
        add(
            "store-nested-data-set",
            store_then(&[
                fragments(3, DATA_MORE, DATA_LAST, &{
                    let pixel = data.len() - 512 - 12;
                    let mut d = data[..pixel].to_vec();
                    d.extend(deep_sequence(1000, false));
                    d
                }),
                release(),
            ]),
        );
        // Release and abort variants, and PDUs that have no place here.
        add("release-length-0", session(&[pdu(0x05, &[])]));
        add("release-length-100", session(&[pdu(0x05, &[0xEE; 100])]));
        let mut rel = release();
        rel[2..6].copy_from_slice(&u32::MAX.to_be_bytes());
        add("release-length-ffffffff", session(&[rel]));
        add("release-rp-from-requestor", session(&[pdu(0x06, &[0; 4])]));
        add("abort-length-0", session(&[pdu(0x07, &[])]));
        add(
            "abort-source-reason-ff",
            session(&[pdu(0x07, &[0, 0, 0xFF, 0xFF])]),
        );
        add(
            "abort-length-100000",
            session(&[pdu(0x07, &vec![0; 100_000])]),
        );
        add("second-associate-rq", session(std::slice::from_ref(&rq)));
        add(
            "associate-ac-from-requestor",
            session(&[pdu(0x02, &rq[6..])]),
        );
        add(
            "associate-rj-from-requestor",
            session(&[pdu(0x03, &[0, 1, 1, 1])]),
        );
        add("unknown-pdu-type-09", session(&[pdu(0x09, &[1, 2, 3, 4])]));
        let mut big = pdata(&[(1, COMMAND_LAST, &vec![0; 65_600])]);
        add(
            "pdata-pdu-over-max-length",
            session(&[big.clone(), release()]),
        );
        big[2..6].copy_from_slice(&0x7FFF_FFFFu32.to_be_bytes());
        add(
            "pdata-pdu-length-7fffffff",
            session(&[big[..1000].to_vec()]),
        );

        // Bit flips after a valid request, in an echo-and-release exchange.
        let exchange = [good.clone(), release()].concat();
        let positions: Vec<usize> = (0..exchange.len()).collect();
        for i in 0..15 {
            add(
                &format!("session-bitflip-{i:02}"),
                session(&[flip(&exchange, rng, &positions, 1 + i % 2)]),
            );
        }
        // And random cut points in a C-STORE session.
        let full = store_then(&[pdata(&[(3, DATA_LAST, &data)]), release()]);
        for i in 0..8 {
            let cut = rq.len() + 1 + rng.below(full.len() - rq.len() - 2);
            add(&format!("store-session-cut-{i}"), full[..cut].to_vec());
        }
        v
    }
}

// --------------------------------------------------------- data sets

mod dataset {
    use super::*;

    const NESTED: Tag = tags::PROCEDURE_CODE_SEQUENCE;

    fn base_object() -> InMemDicomObject {
        let mut o = ct_slice(
            base::OTHER_STUDY,
            base::OTHER_SERIES,
            base::OTHER_INSTANCE,
            0,
        );
        put_seq(
            &mut o,
            NESTED,
            vec![
                code("74185", "C4", "CT abdomen"),
                code("74150", "C4", "CT abdomen"),
            ],
        );
        o
    }

    pub fn inputs(rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = Vec::new();
        let mut add = |label: &str, bytes: Vec<u8>| v.push((label.to_string(), bytes));
        let f = part10(base_object(), sop::EXPLICIT_VR_LE);
        let els = elements(&f, true);
        let body = liverseg_dicom::instance::data_set_offset(&f).unwrap();
        let pixel = find(&els, tags::PIXEL_DATA).at;

        // Preamble and magic.
        add("empty", vec![]);
        add("only-preamble", vec![0; 128]);
        add(
            "preamble-and-magic-only",
            [vec![0; 128], b"DICM".to_vec()].concat(),
        );
        add("no-preamble", f[128..].to_vec());
        add("preamble-127-bytes", f[1..].to_vec());
        add("preamble-129-bytes", [vec![0], f.clone()].concat());
        for (label, magic) in [("DICN", b"DICN"), ("dicm", b"dicm"), ("zeros", &[0u8; 4])] {
            let mut b = f.clone();
            b[128..132].copy_from_slice(magic);
            add(&format!("magic-{label}"), b);
        }
        add("bare-data-set", f[body..].to_vec());
        add(
            "preamble-then-data-set",
            [f[..132].to_vec(), f[body..].to_vec()].concat(),
        );

        // The file meta group.
        let group_length = find(&els, tags::FILE_META_INFORMATION_GROUP_LENGTH);
        let true_len = le32(&f, group_length.value_at());
        for (label, len) in [
            ("0", 0u32),
            ("4", 4),
            ("minus-1", true_len - 1),
            ("plus-1", true_len + 1),
            ("plus-100", true_len + 100),
            ("ffff", 0xFFFF),
            ("7fffffff", 0x7FFF_FFFF),
            ("ffffffff", u32::MAX),
        ] {
            let mut b = f.clone();
            set32(&mut b, group_length.value_at(), len);
            add(&format!("meta-group-length-{label}"), b);
        }
        add(
            "meta-group-length-missing",
            splice(&f, group_length.at, group_length.header + 4, &[]),
        );
        for vr in [b"UI", b"XX"] {
            let mut b = f.clone();
            b[group_length.at + 4..group_length.at + 6].copy_from_slice(vr);
            add(
                &format!("meta-group-length-vr-{}", String::from_utf8_lossy(vr)),
                b,
            );
        }
        let ts = find(&els, tags::TRANSFER_SYNTAX_UID).clone();
        let meta_len_fix = |b: &mut Vec<u8>, delta: i64| {
            let at = group_length.value_at();
            let l = le32(b, at) as i64 + delta;
            set32(b, at, l as u32);
        };
        for (label, uid) in [
            ("unknown", "1.2.3.4.5.6"),
            ("empty", ""),
            ("big-endian", "1.2.840.10008.1.2.2"),
            ("implicit", sop::IMPLICIT_VR_LE),
            ("deflate", "1.2.840.10008.1.2.1.99"),
            ("jpeg-baseline", "1.2.840.10008.1.2.4.50"),
            ("rle", "1.2.840.10008.1.2.5"),
            ("not-a-uid", "explicit little endian"),
            ("long", &"1.2".repeat(150)),
            ("non-ascii", "1.2.840.10008.1.2.1\u{e9}"),
        ] {
            let mut value = uid.as_bytes().to_vec();
            if value.len() % 2 == 1 {
                value.push(0);
            }
            let new = ex(0x0002, 0x0010, b"UI", &value);
            let mut b = splice(&f, ts.at, ts.header + ts.len as usize, &new);
            meta_len_fix(
                &mut b,
                new.len() as i64 - (ts.header + ts.len as usize) as i64,
            );
            add(&format!("meta-ts-{label}"), b);
        }
        for (label, len) in [("0", 0u32), ("odd", ts.len + 1), ("ffff", 0xFFFF)] {
            let mut b = f.clone();
            set_len(&mut b, &ts, len);
            add(&format!("meta-ts-length-{label}"), b);
        }
        let version = find(&els, tags::FILE_META_INFORMATION_VERSION).clone();
        for (label, len) in [("ffffffff", u32::MAX), ("7ffffff0", 0x7FFF_FFF0), ("3", 3)] {
            let mut b = f.clone();
            set_len(&mut b, &version, len);
            add(&format!("meta-version-length-{label}"), b);
        }
        let dup = ex(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.2\0");
        let mut b = splice(&f, ts.at, 0, &dup);
        meta_len_fix(&mut b, dup.len() as i64);
        add("meta-ts-duplicate", b);
        add(
            "meta-missing",
            [f[..128].to_vec(), b"DICM".to_vec(), f[body..].to_vec()].concat(),
        );
        // The meta group written implicit VR (as no file may).
        let mut implicit = Vec::new();
        for e in els.iter().filter(|e| e.group == 2 && e.depth == 0) {
            implicit.extend(tag_len(e.group, e.element, e.len));
            implicit.extend_from_slice(&f[e.value_at()..e.end()]);
        }
        add(
            "meta-implicit-vr",
            [f[..132].to_vec(), implicit, f[body..].to_vec()].concat(),
        );
        let mut b = f.clone();
        b[ts.at..ts.at + 2].copy_from_slice(&0x0008u16.to_le_bytes());
        add("meta-ts-in-group-8", b);

        // Elements of the data set: lengths.
        let instance = find(&els, tags::SOP_INSTANCE_UID).clone();
        for (label, len) in [
            ("0", 0u32),
            ("odd", instance.len + 1),
            ("ffff", 0xFFFF),
            ("minus-2", instance.len - 2),
        ] {
            let mut b = f.clone();
            set_len(&mut b, &instance, len);
            add(&format!("sop-instance-length-{label}"), b);
        }
        let mut b = f.clone();
        b[instance.value_at() + 3] = 0xFF;
        add("sop-instance-uid-invalid-utf8", b);
        // VRs.
        for (name, tag) in [
            ("sop-class", tags::SOP_CLASS_UID),
            ("sop-instance", tags::SOP_INSTANCE_UID),
            ("study", tags::STUDY_INSTANCE_UID),
            ("series", tags::SERIES_INSTANCE_UID),
            ("rows", tags::ROWS),
            ("patient-name", tags::PATIENT_NAME),
        ] {
            let e = find(&els, tag);
            for vr in [b"ZZ", b"\0\0", b"ui", b"SQ", b"UN", b"OB"] {
                let mut b = f.clone();
                b[e.at + 4..e.at + 6].copy_from_slice(vr);
                let vr_label: String = vr
                    .iter()
                    .map(|&c| {
                        if c.is_ascii_alphanumeric() {
                            c as char
                        } else {
                            '0'
                        }
                    })
                    .collect();
                add(&format!("vr-{name}-{vr_label}"), b);
            }
        }
        let rows = find(&els, tags::ROWS).clone();
        let mut b = splice(&f, rows.value_at(), 2, &[0x10, 0x00, 0x00]);
        set_len(&mut b, &rows, 3);
        add("rows-length-3", b);
        // Private elements before the identifying UIDs: undefined and
        // huge lengths.
        let first = els.iter().find(|e| e.at >= body).unwrap().at;
        let private_ob = |len: u32, tail: &[u8]| {
            let mut p = ex(0x0007, 0x0010, b"LO", b"LIVERSEG");
            p.extend(ex_header(0x0007, 0x1000, b"OB", len));
            p.extend_from_slice(tail);
            splice(&f, first, 0, &p)
        };
        add(
            "private-ob-undefined-length",
            private_ob(UNDEFINED, b"abcdefgh"),
        );
        add(
            "private-ob-length-7ffffff0",
            private_ob(0x7FFF_FFF0, b"abcdefgh"),
        );
        add(
            "private-ob-length-fffffff0",
            private_ob(0xFFFF_FFF0, b"abcdefgh"),
        );
        add(
            "private-ob-length-10000000",
            private_ob(0x1000_0000, &[0; 64]),
        );
        let mut un = ex(0x0007, 0x0010, b"LO", b"LIVERSEG");
        un.extend(ex_header(0x0007, 0x1000, b"UN", UNDEFINED));
        un.extend(item_start(8));
        un.extend_from_slice(b"notdicom");
        add(
            "private-un-undefined-length-no-delimiter",
            splice(&f, first, 0, &un),
        );
        let mut ut = ex(0x0007, 0x0010, b"LO", b"LIVERSEG");
        ut.extend(ex_header(0x0007, 0x1000, b"UT", UNDEFINED));
        ut.extend_from_slice(b"text that never ends");
        add("private-ut-undefined-length", splice(&f, first, 0, &ut));
        // Pixel data that claims more than the file holds.
        let pd = find(&els, tags::PIXEL_DATA).clone();
        let mut b = f.clone();
        set_len(&mut b, &pd, 0xFFFF_FFF0);
        add("pixel-data-length-fffffff0", b);
        let mut b = f.clone();
        set_len(&mut b, &pd, UNDEFINED);
        add("pixel-data-native-undefined-length", b);

        // Sequences.
        let nested = find(&els, NESTED).clone();
        let seq_start = first;
        let seq = |content: Vec<u8>| splice(&f, seq_start, 0, &content);
        let mut open = ex(0x0009, 0x0010, b"LO", b"LIVERSEG");
        open.extend(ex_header(0x0009, 0x1001, b"SQ", UNDEFINED));
        open.extend(item_start(UNDEFINED));
        open.extend(ex(0x0008, 0x0100, b"SH", b"12"));
        add(
            "sequence-never-closed-at-end",
            [f.clone(), open.clone()].concat(),
        );
        let mut item_open = open.clone();
        item_open.extend(seq_end());
        add("sequence-item-never-closed", seq(item_open));
        let mut long_item = ex(0x0009, 0x0010, b"LO", b"LIVERSEG");
        long_item.extend(ex_header(0x0009, 0x1001, b"SQ", 16));
        long_item.extend(item_start(64));
        long_item.extend(ex(0x0008, 0x0100, b"SH", b"12"));
        add("sequence-item-longer-than-sequence", seq(long_item));
        let mut huge_item = ex(0x0009, 0x0010, b"LO", b"LIVERSEG");
        huge_item.extend(ex_header(0x0009, 0x1001, b"SQ", UNDEFINED));
        huge_item.extend(item_start(0xFFFF_FFF0));
        huge_item.extend(ex(0x0008, 0x0100, b"SH", b"12"));
        add("sequence-item-length-fffffff0", seq(huge_item));
        let mut odd_item = ex(0x0009, 0x0010, b"LO", b"LIVERSEG");
        odd_item.extend(ex_header(0x0009, 0x1001, b"SQ", UNDEFINED));
        odd_item.extend(item_start(7));
        odd_item.extend(ex(0x0008, 0x0100, b"SH", b"12"));
        odd_item.extend(seq_end());
        add("sequence-item-length-odd", seq(odd_item));
        let mut not_item = ex(0x0009, 0x0010, b"LO", b"LIVERSEG");
        not_item.extend(ex_header(0x0009, 0x1001, b"SQ", UNDEFINED));
        not_item.extend(ex(0x0008, 0x0100, b"SH", b"12"));
        not_item.extend(seq_end());
        add("sequence-element-instead-of-item", seq(not_item));
        add(
            "item-at-top-level",
            seq([item_start(8), b"abcdefgh".to_vec()].concat()),
        );
        add("sequence-delimiter-at-top-level", seq(seq_end()));
        add("item-delimiter-at-top-level", seq(item_end()));
        // A defined-length sequence of one item of one element (18 bytes).
        let defined = |sq_len: u32, item_len: u32| {
            let mut s = ex(0x0009, 0x0010, b"LO", b"LIVERSEG");
            s.extend(ex_header(0x0009, 0x1002, b"SQ", sq_len));
            s.extend(item_start(item_len));
            s.extend(ex(0x0008, 0x0100, b"SH", b"12"));
            s
        };
        add("sequence-defined-length-halved", seq(defined(9, 10)));
        add("sequence-defined-length-plus-40", seq(defined(58, 10)));
        add("sequence-item-length-plus-2", seq(defined(18, 12)));
        add("sequence-item-length-minus-2", seq(defined(18, 8)));
        if nested.len == UNDEFINED {
            let mut b = f.clone();
            set_len(&mut b, &nested, 0x7FFF_FFFF);
            add("sequence-undefined-made-7fffffff", b);
        }
        for (depth, closed) in [
            (64, false),
            (512, false),
            (4096, false),
            (20_000, false),
            (4096, true),
        ] {
            add(
                &format!("nested-{depth}-{}", if closed { "closed" } else { "open" }),
                seq(deep_sequence(depth, closed)),
            );
        }

        // Truncated anywhere before the pixel data, and in it.
        for _ in 0..20 {
            let cut = 1 + rng.below(pixel - 1);
            add(&format!("truncated-at-{cut}"), f[..cut].to_vec());
        }
        for e in els.iter().filter(|e| e.at > body && e.depth == 0).take(6) {
            add(
                &format!("truncated-in-header-of-{:04x}{:04x}", e.group, e.element),
                f[..e.at + 5].to_vec(),
            );
        }
        add("truncated-before-pixel-data", f[..pixel].to_vec());
        add("truncated-in-pixel-data", f[..pixel + 100].to_vec());

        // Bit flips in tags, VRs, lengths and UIDs.
        let positions = structural_positions(&els);
        for i in 0..40 {
            add(
                &format!("bitflip-{i:02}"),
                flip(&f, rng, &positions, 1 + i % 4),
            );
        }
        // The same object written implicit VR, damaged likewise.
        let imp = part10(base_object(), sop::IMPLICIT_VR_LE);
        let imp_els = elements(&imp, false);
        let imp_pixel = find(&imp_els, tags::PIXEL_DATA).at;
        for _ in 0..6 {
            let cut = 1 + rng.below(imp_pixel - 1);
            add(&format!("implicit-truncated-at-{cut}"), imp[..cut].to_vec());
        }
        let positions = structural_positions(&imp_els);
        for i in 0..10 {
            add(
                &format!("implicit-bitflip-{i:02}"),
                flip(&imp, rng, &positions, 1 + i % 3),
            );
        }
        let imp_ts = find(&imp_els, tags::TRANSFER_SYNTAX_UID).clone();
        let new = ex(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1\0");
        let mut b = splice(&imp, imp_ts.at, imp_ts.header + imp_ts.len as usize, &new);
        let gl = find(&imp_els, tags::FILE_META_INFORMATION_GROUP_LENGTH).value_at();
        let l =
            le32(&b, gl) as i64 + new.len() as i64 - (imp_ts.header + imp_ts.len as usize) as i64;
        set32(&mut b, gl, l as u32);
        add("implicit-body-meta-says-explicit", b);

        // Not DICOM at all.
        add("garbage-random-256", rng.bytes(256));
        add(
            "garbage-dicm-then-random",
            [vec![0; 128], b"DICM".to_vec(), rng.bytes(300)].concat(),
        );
        add("garbage-png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec());
        add("garbage-zip", b"PK\x03\x04\x14\0\0\0\x08\0".to_vec());
        add(
            "garbage-text",
            b"this is a text file, not a DICOM object\n".repeat(10),
        );
        v
    }
}

// -------------------------------------------------------- multipart

mod multipart {
    use super::*;

    const B: &str = "liverseg-corpus-boundary";
    const PAYLOAD_UID: &str = "2.25.7301";

    fn ct() -> Vec<u8> {
        part10(
            ct_slice(base::OTHER_STUDY, base::OTHER_SERIES, PAYLOAD_UID, 1),
            sop::EXPLICIT_VR_LE,
        )
    }

    fn ct_type() -> String {
        format!("multipart/related; type=\"application/dicom\"; boundary={B}")
    }

    fn part(headers: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = format!("--{B}\r\n{headers}\r\n").into_bytes();
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        out
    }

    fn close() -> Vec<u8> {
        format!("--{B}--\r\n").into_bytes()
    }

    fn body(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut out = parts.concat();
        out.extend(close());
        out
    }

    fn dicom_part(payload: &[u8]) -> Vec<u8> {
        part("Content-Type: application/dicom\r\n", payload)
    }

    /// A corpus input: Content-Type line, then the body.
    fn input(content_type: &str, body: &[u8]) -> Vec<u8> {
        assert!(!content_type.contains(['\r', '\n']));
        let mut out = content_type.as_bytes().to_vec();
        out.push(b'\n');
        out.extend_from_slice(body);
        out
    }

    pub fn inputs(rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = Vec::new();
        let mut add = |label: &str, bytes: Vec<u8>| v.push((label.to_string(), bytes));
        let ct = ct();
        // Garbage payloads where the structure itself is acceptable: the
        // request must then fail on the part, never store it.
        let junk = b"not a DICOM object".to_vec();
        let broken_ct = ct[..ct.len() / 3].to_vec();
        let good = body(&[dicom_part(&ct)]);

        // Content types.
        for (label, content_type) in [
            ("missing", String::new()),
            ("application-dicom", "application/dicom".to_string()),
            ("form-data", format!("multipart/form-data; boundary={B}")),
            ("mixed", format!("multipart/mixed; boundary={B}")),
            (
                "no-boundary",
                "multipart/related; type=\"application/dicom\"".to_string(),
            ),
            ("empty-boundary", "multipart/related; boundary=".to_string()),
            (
                "quoted-empty-boundary",
                "multipart/related; boundary=\"\"".to_string(),
            ),
            (
                "type-json",
                format!("multipart/related; type=\"application/json\"; boundary={B}"),
            ),
            (
                "type-jpeg",
                format!("multipart/related; type=image/jpeg; boundary={B}"),
            ),
            ("text-plain", "text/plain".to_string()),
            (
                "other-boundary",
                "multipart/related; boundary=not-the-one".to_string(),
            ),
            (
                "boundary-param-twice",
                format!("multipart/related; boundary={B}; boundary=second"),
            ),
            (
                "boundary-unbalanced-quote",
                format!("multipart/related; boundary=\"{B}"),
            ),
            (
                "non-ascii",
                format!("multipart/related; boundary={B}; x=\u{e9}t\u{e9}"),
            ),
            ("semicolons-only", ";;;;".to_string()),
            (
                "boundary-without-equals",
                format!("multipart/related; boundary {B}"),
            ),
        ] {
            add(
                &format!("content-type-{label}"),
                input(&content_type, &good),
            );
        }
        // Acceptable content types with odd spellings: the part is junk.
        let long_boundary = "b".repeat(200);
        add(
            "boundary-200-chars",
            input(
                &format!("multipart/related; boundary={long_boundary}"),
                format!("--{long_boundary}\r\nContent-Type: application/dicom\r\n\r\nxx\r\n--{long_boundary}--\r\n")
                    .as_bytes(),
            ),
        );
        add(
            "boundary-with-space",
            input(
                "multipart/related; boundary=\"a b\"",
                b"--a b\r\nContent-Type: application/dicom\r\n\r\nxx\r\n--a b--\r\n",
            ),
        );
        add(
            "content-type-uppercase",
            input(
                &format!("MULTIPART/RELATED; TYPE=\"APPLICATION/DICOM\"; BOUNDARY={B}"),
                &body(&[dicom_part(&junk)]),
            ),
        );
        add(
            "content-type-8k",
            input(
                &format!("multipart/related; {}boundary={B}", "x-pad=1; ".repeat(800)),
                &body(&[dicom_part(&broken_ct)]),
            ),
        );

        // Bodies.
        add("body-empty", input(&ct_type(), b""));
        add("body-close-only", input(&ct_type(), &close()));
        add("body-no-boundary", input(&ct_type(), &ct));
        add("body-only-crlf", input(&ct_type(), &b"\r\n".repeat(100)));
        add("body-no-close", input(&ct_type(), &dicom_part(&ct)));
        let open = format!("--{B}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
        for cut in [1, 3, 2] {
            let n = ct.len() * cut / 4;
            add(
                &format!("body-truncated-in-payload-{cut}q"),
                input(&ct_type(), &[open.clone(), ct[..n].to_vec()].concat()),
            );
        }
        add(
            "body-truncated-in-part-headers",
            input(&ct_type(), format!("--{B}\r\nContent-Ty").as_bytes()),
        );
        add(
            "body-truncated-after-boundary",
            input(&ct_type(), format!("--{B}").as_bytes()),
        );
        add(
            "body-truncated-in-close",
            input(
                &ct_type(),
                &[dicom_part(&ct), format!("--{B}-").into_bytes()].concat(),
            ),
        );
        let mut no_blank = format!("--{B}\r\nContent-Type: application/dicom\r\n").into_bytes();
        no_blank.extend_from_slice(&ct);
        no_blank.extend(format!("\r\n--{B}--\r\n").into_bytes());
        add("part-without-blank-line", input(&ct_type(), &no_blank));
        let mut no_crlf = format!("--{B}Content-Type: application/dicom\r\n\r\n").into_bytes();
        no_crlf.extend_from_slice(&ct);
        no_crlf.extend(format!("\r\n--{B}--\r\n").into_bytes());
        add("boundary-line-without-crlf", input(&ct_type(), &no_crlf));
        for (label, part_type) in [
            ("json", "application/json"),
            ("dicom-json", "application/dicom+json"),
            ("octet-stream", "application/octet-stream"),
            ("nested-multipart", "multipart/related; boundary=inner"),
        ] {
            add(
                &format!("part-type-{label}"),
                input(
                    &ct_type(),
                    &body(&[part(&format!("Content-Type: {part_type}\r\n"), &ct)]),
                ),
            );
        }
        add(
            "part-type-unparseable",
            input(&ct_type(), &body(&[part("Content-Type: ///\r\n", &junk)])),
        );
        add(
            "part-header-100k",
            input(
                &ct_type(),
                &body(&[part(
                    &format!(
                        "Content-Type: application/dicom\r\nX-Pad: {}\r\n",
                        "a".repeat(100_000)
                    ),
                    &broken_ct,
                )]),
            ),
        );
        add(
            "part-40-headers",
            input(
                &ct_type(),
                &body(&[part(
                    &(0..40)
                        .map(|i| format!("X-H{i}: {i}\r\n"))
                        .collect::<String>(),
                    &ct,
                )]),
            ),
        );
        add(
            "part-header-without-colon",
            input(
                &ct_type(),
                &body(&[part("Content-Type application/dicom\r\n", &ct)]),
            ),
        );
        add(
            "part-header-nul",
            input(
                &ct_type(),
                &body(&[part(
                    "Content-Type: application/dicom\r\nX-A: a\0b\r\n",
                    &ct,
                )]),
            ),
        );
        add(
            "part-header-never-ends",
            input(
                &ct_type(),
                &[
                    format!("--{B}\r\nContent-Type: application/dicom\r\nX-Pad: ").into_bytes(),
                    vec![b'a'; 50_000],
                ]
                .concat(),
            ),
        );
        let mut lf_only = format!("--{B}\nContent-Type: application/dicom\n\n").into_bytes();
        lf_only.extend_from_slice(&ct);
        lf_only.extend(format!("\n--{B}--\n").into_bytes());
        add("lf-line-endings", input(&ct_type(), &lf_only));
        add(
            "preamble-before-first-boundary",
            input(
                &ct_type(),
                &[
                    b"This is a preamble.\r\n".to_vec(),
                    body(&[dicom_part(&junk)]),
                ]
                .concat(),
            ),
        );
        add(
            "epilogue-after-close",
            input(
                &ct_type(),
                &[body(&[dicom_part(&junk)]), b"epilogue".to_vec()].concat(),
            ),
        );
        add(
            "boundary-trailing-whitespace",
            input(
                &ct_type(),
                &[
                    format!("--{B}   \r\nContent-Type: application/dicom\r\n\r\n").into_bytes(),
                    junk.clone(),
                    format!("\r\n--{B}--\r\n").into_bytes(),
                ]
                .concat(),
            ),
        );
        add(
            "boundary-twice-in-a-row",
            input(
                &ct_type(),
                &[
                    format!("--{B}\r\n").into_bytes(),
                    body(&[dicom_part(&junk)]),
                ]
                .concat(),
            ),
        );
        add(
            "boundary-inside-payload-header",
            input(
                &ct_type(),
                &body(&[dicom_part(
                    &[
                        ct[..300].to_vec(),
                        format!("\r\n--{B}\r\n\r\n").into_bytes(),
                        ct[300..].to_vec(),
                    ]
                    .concat(),
                )]),
            ),
        );
        add(
            "close-delimiter-first",
            input(&ct_type(), &[close(), dicom_part(&ct)].concat()),
        );
        add(
            "parts-1000-empty",
            input(&ct_type(), &body(&vec![dicom_part(b""); 1000])),
        );
        add(
            "parts-200-junk-and-broken-ct",
            input(
                &ct_type(),
                &body(
                    &(0..200)
                        .map(|i| dicom_part(if i == 100 { &broken_ct } else { &junk }))
                        .collect::<Vec<_>>(),
                ),
            ),
        );
        add(
            "part-content-length-lies",
            input(
                &ct_type(),
                &body(&[part(
                    "Content-Type: application/dicom\r\nContent-Length: 10\r\n",
                    &junk,
                )]),
            ),
        );
        add(
            "part-base64-encoded",
            input(
                &ct_type(),
                &body(&[part(
                    "Content-Type: application/dicom\r\nContent-Transfer-Encoding: base64\r\n",
                    b"RElDTQ==",
                )]),
            ),
        );
        for i in 0..5 {
            let n = 16 + rng.below(2000);
            add(
                &format!("body-random-{i}"),
                input(&ct_type(), &rng.bytes(n)),
            );
        }
        // A valid first part, then a second cut short: nothing may be kept.
        let two = body(&[dicom_part(&ct), dicom_part(&ct)]);
        let second = ct.len() + 60;
        for i in 0..6 {
            let cut = second + 1 + rng.below(two.len() - second - 10);
            add(
                &format!("second-part-truncated-{i}"),
                input(&ct_type(), &two[..cut]),
            );
        }
        // Flipped bits in boundaries and headers (the payload untouched).
        let header_end = good.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let tail = good.len() - close().len() - 2;
        let positions: Vec<usize> = (0..header_end).chain(tail..good.len()).collect();
        for i in 0..15 {
            add(
                &format!("structure-bitflip-{i:02}"),
                input(&ct_type(), &flip(&good, rng, &positions, 1 + i % 2)),
            );
        }
        // Damaged DICOM in a well-formed request.
        for i in 0..8 {
            let cut = 1 + rng.below(ct.len() / 2);
            add(
                &format!("payload-truncated-{i}"),
                input(&ct_type(), &body(&[dicom_part(&ct[..cut])])),
            );
        }
        v
    }
}

// ------------------------------------------------------------- SEGs

mod segs {
    use super::*;

    fn with(k: usize, change: impl FnOnce(&mut InMemDicomObject)) -> Vec<u8> {
        let mut o = base_seg();
        put(
            &mut o,
            tags::SOP_INSTANCE_UID,
            VR::UI,
            format!("{}.{k}", base::SEG_INSTANCE),
        );
        change(&mut o);
        part10(o, sop::EXPLICIT_VR_LE)
    }

    fn per_frame(o: &InMemDicomObject) -> Vec<InMemDicomObject> {
        o.get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
            .and_then(|e| e.items())
            .map(|i| i.to_vec())
            .unwrap_or_default()
    }

    fn edit_frames(o: &mut InMemDicomObject, f: impl Fn(usize, &mut InMemDicomObject)) {
        let mut frames = per_frame(o);
        for (k, g) in frames.iter_mut().enumerate() {
            f(k, g);
        }
        put_seq(o, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, frames);
    }

    fn edit_shared(o: &mut InMemDicomObject, f: impl Fn(&mut InMemDicomObject)) {
        let mut shared =
            liverseg_dicom::instance::first_item(o, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)
                .cloned()
                .unwrap_or_else(InMemDicomObject::new_empty);
        f(&mut shared);
        put_seq(o, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, vec![shared]);
    }

    fn position(g: &mut InMemDicomObject, value: &str) {
        put_seq(
            g,
            tags::PLANE_POSITION_SEQUENCE,
            vec![item(|p| {
                put(p, tags::IMAGE_POSITION_PATIENT, VR::DS, value)
            })],
        );
    }

    fn pixels(o: &InMemDicomObject) -> Vec<u8> {
        o.get(tags::PIXEL_DATA)
            .and_then(|e| e.to_bytes().ok())
            .map(|b| b.into_owned())
            .unwrap_or_default()
    }

    pub fn inputs(rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = Vec::new();
        let mut k = 0;
        let mut add = |label: &str, change: Box<dyn FnOnce(&mut InMemDicomObject)>| {
            k += 1;
            v.push((label.to_string(), with(k, change)));
        };

        // Frame counts.
        for (label, value) in [
            ("minus-1", "2"),
            ("plus-1", "4"),
            ("0", "0"),
            ("1000000", "1000000"),
            ("4294967295", "4294967295"),
            ("abc", "abc"),
            ("negative", "-1"),
            ("empty", ""),
        ] {
            add(
                &format!("frames-{label}"),
                Box::new(move |o| put(o, tags::NUMBER_OF_FRAMES, VR::IS, value)),
            );
        }
        add(
            "frames-missing",
            Box::new(|o| {
                o.remove_element(tags::NUMBER_OF_FRAMES);
            }),
        );
        add(
            "frames-extra-per-frame-group",
            Box::new(|o| {
                let mut frames = per_frame(o);
                frames.push(frame_group(5, 1));
                put_seq(o, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, frames);
            }),
        );
        // Matrix.
        for (label, rows, columns) in [
            ("rows-0", Some(0u16), Some(16u16)),
            ("columns-0", Some(16), Some(0)),
            ("rows-missing", None, Some(16)),
            ("columns-missing", Some(16), None),
            ("rows-17", Some(17), Some(16)),
            ("matrix-65535", Some(65535), Some(65535)),
        ] {
            add(
                &format!("matrix-{label}"),
                Box::new(move |o| {
                    match rows {
                        Some(r) => put(o, tags::ROWS, VR::US, r),
                        None => {
                            o.remove_element(tags::ROWS);
                        }
                    }
                    match columns {
                        Some(c) => put(o, tags::COLUMNS, VR::US, c),
                        None => {
                            o.remove_element(tags::COLUMNS);
                        }
                    }
                }),
            );
        }
        add(
            "matrix-is-4294967295-bits-8",
            Box::new(|o| {
                put(o, tags::ROWS, VR::IS, "4294967295");
                put(o, tags::COLUMNS, VR::IS, "4294967295");
                put(o, tags::BITS_ALLOCATED, VR::US, 8_u16);
            }),
        );
        add(
            "matrix-is-4294967295-frames-4294967295",
            Box::new(|o| {
                put(o, tags::ROWS, VR::IS, "4294967295");
                put(o, tags::COLUMNS, VR::IS, "4294967295");
                put(o, tags::NUMBER_OF_FRAMES, VR::IS, "4294967295");
            }),
        );
        add(
            "matrix-65535-frames-4294967295-bits-8",
            Box::new(|o| {
                put(o, tags::ROWS, VR::US, 65535_u16);
                put(o, tags::COLUMNS, VR::US, 65535_u16);
                put(o, tags::NUMBER_OF_FRAMES, VR::IS, "4294967295");
                put(o, tags::BITS_ALLOCATED, VR::US, 8_u16);
            }),
        );
        // Bits.
        for bits in [0u16, 16, 32, 2] {
            add(
                &format!("bits-allocated-{bits}"),
                Box::new(move |o| put(o, tags::BITS_ALLOCATED, VR::US, bits)),
            );
        }
        add(
            "bits-allocated-missing",
            Box::new(|o| {
                o.remove_element(tags::BITS_ALLOCATED);
            }),
        );
        add(
            "fractional-8-bit-too-short",
            Box::new(|o| {
                put(o, tags::SEGMENTATION_TYPE, VR::CS, "FRACTIONAL");
                put(o, tags::BITS_ALLOCATED, VR::US, 8_u16);
                put(o, tags::MAXIMUM_FRACTIONAL_VALUE, VR::US, 0_u16);
            }),
        );
        // Pixel data.
        add(
            "pixel-data-missing",
            Box::new(|o| {
                o.remove_element(tags::PIXEL_DATA);
            }),
        );
        add(
            "pixel-data-empty",
            Box::new(|o| put(o, tags::PIXEL_DATA, VR::OB, Vec::<u8>::new())),
        );
        add(
            "pixel-data-short-by-2",
            Box::new(|o| {
                let mut p = pixels(o);
                p.truncate(p.len() - 2);
                put(o, tags::PIXEL_DATA, VR::OB, p);
            }),
        );
        add(
            "pixel-data-one-frame",
            Box::new(|o| {
                let mut p = pixels(o);
                p.truncate(32);
                put(o, tags::PIXEL_DATA, VR::OB, p);
            }),
        );
        add(
            "pixel-data-encapsulated",
            Box::new(|o| {
                let p = pixels(o);
                o.put(DataElement::new(
                    tags::PIXEL_DATA,
                    VR::OB,
                    PixelFragmentSequence::new(vec![], vec![p]),
                ));
            }),
        );
        add(
            "pixel-data-as-text",
            Box::new(|o| put(o, tags::PIXEL_DATA, VR::LO, "liver")),
        );
        // SOP class.
        for (label, class) in [
            ("ct", sop::CT_IMAGE_STORAGE),
            ("enhanced-ct", sop::ENHANCED_CT_IMAGE_STORAGE),
            ("unknown", "1.2.3"),
            ("empty", ""),
            ("sr", sop::COMPREHENSIVE_SR_STORAGE),
        ] {
            add(
                &format!("sop-class-{label}"),
                Box::new(move |o| put(o, tags::SOP_CLASS_UID, VR::UI, class)),
            );
        }
        add(
            "sop-class-missing",
            Box::new(|o| {
                o.remove_element(tags::SOP_CLASS_UID);
            }),
        );
        add(
            "sop-instance-invalid",
            Box::new(|o| put(o, tags::SOP_INSTANCE_UID, VR::UI, "../../etc/passwd")),
        );
        add(
            "series-uid-missing",
            Box::new(|o| {
                o.remove_element(tags::SERIES_INSTANCE_UID);
            }),
        );
        // Functional groups.
        add(
            "shared-groups-missing",
            Box::new(|o| {
                o.remove_element(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
            }),
        );
        add(
            "per-frame-groups-missing",
            Box::new(|o| {
                o.remove_element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
            }),
        );
        add(
            "per-frame-groups-empty",
            Box::new(|o| put_seq(o, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, vec![])),
        );
        add(
            "per-frame-group-empty-items",
            Box::new(|o| {
                put_seq(
                    o,
                    tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
                    vec![InMemDicomObject::new_empty(); 3],
                )
            }),
        );
        add(
            "plane-position-missing",
            Box::new(|o| {
                edit_frames(o, |_, g| {
                    g.remove_element(tags::PLANE_POSITION_SEQUENCE);
                })
            }),
        );
        add(
            "plane-position-empty-sequence",
            Box::new(|o| edit_frames(o, |_, g| put_seq(g, tags::PLANE_POSITION_SEQUENCE, vec![]))),
        );
        add(
            "plane-position-two-values",
            Box::new(|o| edit_frames(o, |_, g| position(g, "1\\2"))),
        );
        add(
            "plane-position-nan",
            Box::new(|o| edit_frames(o, |_, g| position(g, "nan\\nan\\nan"))),
        );
        add(
            "plane-position-1e400",
            Box::new(|o| edit_frames(o, |_, g| position(g, "1e400\\0\\0"))),
        );
        add(
            "plane-position-text",
            Box::new(|o| edit_frames(o, |_, g| position(g, "left\\of\\centre"))),
        );
        add(
            "plane-orientation-missing",
            Box::new(|o| {
                edit_shared(o, |g| {
                    g.remove_element(tags::PLANE_ORIENTATION_SEQUENCE);
                })
            }),
        );
        add(
            "plane-orientation-zero",
            Box::new(|o| {
                edit_shared(o, |g| {
                    put_seq(
                        g,
                        tags::PLANE_ORIENTATION_SEQUENCE,
                        vec![item(|p| {
                            put(
                                p,
                                tags::IMAGE_ORIENTATION_PATIENT,
                                VR::DS,
                                "0\\0\\0\\0\\0\\0",
                            )
                        })],
                    )
                })
            }),
        );
        add(
            "pixel-measures-missing-everywhere-and-no-orientation",
            Box::new(|o| {
                o.remove_element(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
                o.remove_element(tags::IMAGE_ORIENTATION_PATIENT);
            }),
        );
        add(
            "segment-identification-missing",
            Box::new(|o| {
                edit_frames(o, |_, g| {
                    g.remove_element(tags::SEGMENT_IDENTIFICATION_SEQUENCE);
                })
            }),
        );
        add(
            "segment-identification-empty",
            Box::new(|o| {
                edit_frames(o, |_, g| {
                    put_seq(g, tags::SEGMENT_IDENTIFICATION_SEQUENCE, vec![])
                })
            }),
        );
        add(
            "referenced-segment-99",
            Box::new(|o| {
                edit_frames(o, |_, g| {
                    put_seq(
                        g,
                        tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                        vec![item(|i| {
                            put(i, tags::REFERENCED_SEGMENT_NUMBER, VR::US, 99_u16)
                        })],
                    )
                })
            }),
        );
        // Segments.
        add(
            "segment-sequence-missing",
            Box::new(|o| {
                o.remove_element(tags::SEGMENT_SEQUENCE);
            }),
        );
        add(
            "segment-sequence-empty",
            Box::new(|o| put_seq(o, tags::SEGMENT_SEQUENCE, vec![])),
        );
        add(
            "segments-none-liver",
            Box::new(|o| {
                put_seq(
                    o,
                    tags::SEGMENT_SEQUENCE,
                    (1..=2u16)
                        .map(|n| {
                            item(|s| {
                                put(s, tags::SEGMENT_NUMBER, VR::US, n);
                                put(s, tags::SEGMENT_LABEL, VR::LO, format!("Kidney {n}"));
                            })
                        })
                        .collect(),
                )
            }),
        );
        add(
            "segment-number-text",
            Box::new(|o| {
                put_seq(
                    o,
                    tags::SEGMENT_SEQUENCE,
                    vec![item(|s| {
                        put(s, tags::SEGMENT_NUMBER, VR::IS, "one");
                        put(s, tags::SEGMENT_LABEL, VR::LO, "spleen");
                    })],
                )
            }),
        );
        // Geometry that does not match the series.
        add(
            "frame-between-slices",
            Box::new(|o| {
                edit_frames(o, |k, g| {
                    let mut p = base::position(2 + k);
                    p[2] += base::SLICE_THICKNESS / 2.0;
                    position(g, &ds(&p));
                })
            }),
        );
        add(
            "frame-outside-series",
            Box::new(|o| edit_frames(o, |_, g| position(g, "-6.4\\-6.4\\500"))),
        );
        add(
            "frame-shifted-in-plane",
            Box::new(|o| {
                edit_frames(o, |k, g| {
                    let mut p = base::position(2 + k);
                    p[0] += 3.0;
                    position(g, &ds(&p));
                })
            }),
        );
        add(
            "orientation-sagittal",
            Box::new(|o| {
                edit_shared(o, |g| {
                    put_seq(
                        g,
                        tags::PLANE_ORIENTATION_SEQUENCE,
                        vec![item(|p| {
                            put(
                                p,
                                tags::IMAGE_ORIENTATION_PATIENT,
                                VR::DS,
                                "0\\1\\0\\0\\0\\-1",
                            )
                        })],
                    )
                })
            }),
        );
        add(
            "pixel-spacing-0.9",
            Box::new(|o| {
                edit_shared(o, |g| {
                    put_seq(
                        g,
                        tags::PIXEL_MEASURES_SEQUENCE,
                        vec![item(|m| put(m, tags::PIXEL_SPACING, VR::DS, "0.9\\0.9"))],
                    )
                })
            }),
        );
        add(
            "pixel-spacing-zero",
            Box::new(|o| {
                edit_shared(o, |g| {
                    put_seq(
                        g,
                        tags::PIXEL_MEASURES_SEQUENCE,
                        vec![item(|m| put(m, tags::PIXEL_SPACING, VR::DS, "0\\0"))],
                    )
                })
            }),
        );
        add(
            "matrix-17x17-with-pixels",
            Box::new(|o| {
                put(o, tags::ROWS, VR::US, 17_u16);
                put(o, tags::COLUMNS, VR::US, 17_u16);
                put(o, tags::PIXEL_DATA, VR::OB, vec![0xFFu8; 112]);
            }),
        );
        add(
            "frame-of-reference-other",
            Box::new(|o| put(o, tags::FRAME_OF_REFERENCE_UID, VR::UI, "2.25.9999")),
        );
        add(
            "study-other",
            Box::new(|o| put(o, tags::STUDY_INSTANCE_UID, VR::UI, "2.25.9998")),
        );
        add(
            "study-missing",
            Box::new(|o| {
                o.remove_element(tags::STUDY_INSTANCE_UID);
            }),
        );
        add(
            "referenced-series-unknown",
            Box::new(|o| {
                put_seq(
                    o,
                    tags::REFERENCED_SERIES_SEQUENCE,
                    vec![item(|i| {
                        put(i, tags::SERIES_INSTANCE_UID, VR::UI, "2.25.9997")
                    })],
                );
                edit_frames(o, |_, g| {
                    g.remove_element(tags::DERIVATION_IMAGE_SEQUENCE);
                });
            }),
        );
        add(
            "no-reference",
            Box::new(|o| {
                o.remove_element(tags::REFERENCED_SERIES_SEQUENCE);
                edit_frames(o, |_, g| {
                    g.remove_element(tags::DERIVATION_IMAGE_SEQUENCE);
                });
            }),
        );
        add(
            "referenced-series-empty-item",
            Box::new(|o| {
                put_seq(
                    o,
                    tags::REFERENCED_SERIES_SEQUENCE,
                    vec![InMemDicomObject::new_empty()],
                );
                edit_frames(o, |_, g| {
                    g.remove_element(tags::DERIVATION_IMAGE_SEQUENCE);
                });
            }),
        );
        add(
            "frames-1000-on-one-slice-pixels-short",
            Box::new(|o| {
                put(o, tags::NUMBER_OF_FRAMES, VR::IS, "1000");
                put_seq(
                    o,
                    tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
                    (0..1000).map(|_| frame_group(3, 1)).collect(),
                );
            }),
        );

        // Byte-level damage to the valid SEG.
        let f = base_seg_file();
        let els = elements(&f, true);
        let body = liverseg_dicom::instance::data_set_offset(&f).unwrap();
        let mut push = |label: &str, bytes: Vec<u8>| v.push((label.to_string(), bytes));
        push("bare-data-set-implicit-meta-missing", {
            let mut o = base_seg();
            put(
                &mut o,
                tags::SOP_INSTANCE_UID,
                VR::UI,
                format!("{}.900", base::SEG_INSTANCE),
            );
            put(&mut o, tags::NUMBER_OF_FRAMES, VR::IS, "7");
            let mut out = Vec::new();
            o.write_dataset_with_ts(
                &mut out,
                &dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased(),
            )
            .expect("bare data set");
            out
        });
        let ts = find(&els, tags::TRANSFER_SYNTAX_UID).clone();
        let group_length = find(&els, tags::FILE_META_INFORMATION_GROUP_LENGTH).value_at();
        for (label, uid) in [
            ("unknown", "1.2.3.4\0"),
            ("big-endian", "1.2.840.10008.1.2.2\0"),
            ("deflate", "1.2.840.10008.1.2.1.99"),
            ("implicit", "1.2.840.10008.1.2\0"),
        ] {
            let new = ex(0x0002, 0x0010, b"UI", uid.as_bytes());
            let mut b = splice(&f, ts.at, ts.header + ts.len as usize, &new);
            let l = le32(&b, group_length) as i64 + new.len() as i64
                - (ts.header + ts.len as usize) as i64;
            set32(&mut b, group_length, l as u32);
            push(&format!("meta-ts-{label}"), b);
        }
        let pixel = find(&els, tags::PIXEL_DATA).clone();
        let mut b = f.clone();
        set_len(&mut b, &pixel, pixel.len + 1000);
        push("pixel-data-length-past-end", b);
        let mut b = f.clone();
        set_len(&mut b, &pixel, UNDEFINED);
        push("pixel-data-undefined-length-native", b);
        let per_frame = find(&els, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).at;
        push(
            "nested-5000-in-per-frame",
            splice(&f, per_frame, 0, &deep_sequence(5000, false)),
        );
        push(
            "nested-3000-closed",
            splice(&f, body, 0, &deep_sequence(3000, true)),
        );
        for _ in 0..14 {
            let cut = body + rng.below(f.len() - body);
            push(&format!("truncated-at-{cut}"), f[..cut].to_vec());
        }
        let positions = structural_positions(&els);
        for i in 0..30 {
            push(
                &format!("bitflip-{i:02}"),
                flip(&f, rng, &positions, 1 + i % 3),
            );
        }
        v
    }
}
